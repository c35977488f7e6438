package controllers

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// yamlBlock is a fenced YAML block at the start of a line (blocks indented
// in a list are excerpts, not whole objects).
var yamlBlock = regexp.MustCompile("(?ms)^```yaml\n(.*?)^```")

var _ = Describe("The examples in the README and docs/", func() {
	It("are accepted by the API server, every GateTemplate, ClusterGateTemplate and ModelRollout with a spec.stable", func() {
		files := []string{filepath.Join("..", "README.md")}
		Expect(filepath.WalkDir(filepath.Join("..", "docs"), func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() && strings.HasSuffix(p, ".md") {
				files = append(files, p)
			}
			return err
		})).To(Succeed())
		checked := map[string]int{}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			for _, m := range yamlBlock.FindAllStringSubmatch(string(raw), -1) {
				for _, d := range strings.Split(m[1], "\n---\n") {
					if !strings.Contains(d, "apiVersion: rollouts.modelrollout.io/") {
						continue
					}
					obj := &unstructured.Unstructured{}
					Expect(yaml.Unmarshal([]byte(d), &obj.Object)).To(Succeed(), "%s:\n%s", f, d)
					if _, whole, _ := unstructured.NestedMap(obj.Object, "spec", "stable"); obj.GetKind() == "ModelRollout" && !whole {
						continue // an excerpt: the fields a section is about
					}
					if obj.GetKind() != "ClusterGateTemplate" {
						obj.SetNamespace("default")
					}
					Expect(k8sClient.Create(suiteCtx, obj, client.DryRunAll)).To(Succeed(), "%s: %s %s", f, obj.GetKind(), obj.GetName())
					checked[filepath.Base(f)]++
				}
			}
		}
		// The README's quick start, the rollout of "What you write" and
		// the gate template example's template at least.
		Expect(checked).To(HaveKey("README.md"))
		Expect(checked).To(HaveKey("rollout.md"))
		Expect(checked).To(HaveKey("gates.md"))
	})
})
