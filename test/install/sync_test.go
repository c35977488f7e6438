package install

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The chart cannot read files outside its folder, so it carries copies of
// the generated CRDs and ClusterRole. These tests fail when a copy drifts
// from its source; UPDATE_GENERATED=1 rewrites the copies.

// syncFile checks that dst holds exactly want, or rewrites it.
func syncFile(t *testing.T, dst string, want []byte, fix string) {
	t.Helper()
	got, err := os.ReadFile(dst)
	if err == nil && bytes.Equal(got, want) {
		return
	}
	if updateGenerated() {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", dst)
		return
	}
	if err != nil {
		t.Errorf("%s: %v; %s", dst, err, fix)
		return
	}
	t.Errorf("%s is out of date; %s", dst, fix)
}

const fixHint = "run: UPDATE_GENERATED=1 go test ./test/install -run InSync"

func TestCRDsInSync(t *testing.T) {
	root := repoRoot(t)
	src := filepath.Join(root, "config", "crd", "bases")
	dst := filepath.Join(chartDir(t), "crds")
	want := map[string]bool{}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		want[e.Name()] = true
		syncFile(t, filepath.Join(dst, e.Name()), readFile(t, filepath.Join(src, e.Name())), fixHint)
	}
	if len(want) == 0 {
		t.Fatalf("no CRDs in %s", src)
	}
	got, err := os.ReadDir(dst)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if !want[e.Name()] {
			if updateGenerated() {
				if err := os.Remove(filepath.Join(dst, e.Name())); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("charts/modelrollout/crds/%s has no source in config/crd/bases; %s", e.Name(), fixHint)
		}
	}
}

func TestClusterRoleCopyInSync(t *testing.T) {
	root := repoRoot(t)
	syncFile(t, filepath.Join(chartDir(t), "files", "manager-role.yaml"),
		readFile(t, filepath.Join(root, "config", "rbac", "role.yaml")), fixHint)
}

// argocdConfigMap renders config/argocd/argocd-cm.yaml from the Lua files
// beside it, so the snippet people paste always carries the tested scripts.
func argocdConfigMap(t *testing.T) []byte {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "config", "argocd")
	lua := func(rel string) string { return string(readFile(t, filepath.Join(dir, rel))) }
	var b strings.Builder
	b.WriteString(`# Generated from health.lua and actions/ by test/install (UPDATE_GENERATED=1
# go test ./test/install -run InSync); edit the .lua files, not this one.
#
# Merge these keys into the argocd-cm ConfigMap of your Argo CD installation
# (with the argo-cd Helm chart: under configs.cm), e.g.
#   kubectl -n argocd patch configmap argocd-cm --patch-file config/argocd/argocd-cm.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
  resource.customizations.health.rollouts.modelrollout.io_ModelRollout: |
`)
	b.WriteString(indent(lua("health.lua"), 4))
	b.WriteString("  resource.customizations.actions.rollouts.modelrollout.io_ModelRollout: |\n")
	b.WriteString("    discovery.lua: |\n")
	b.WriteString(indent(lua(filepath.Join("actions", "discovery.lua")), 6))
	b.WriteString("    definitions:\n")
	for _, name := range argocdActions {
		b.WriteString("    - name: " + name + "\n")
		b.WriteString("      action.lua: |\n")
		b.WriteString(indent(lua(filepath.Join("actions", name, "action.lua")), 8))
	}
	return []byte(b.String())
}

// argocdActions are the custom actions, in the order Argo CD lists them.
var argocdActions = []string{"promote", "promote-full", "skip-gates", "pause", "resume", "abort", "retry"}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestArgoCDConfigMapInSync(t *testing.T) {
	want := argocdConfigMap(t)
	path := filepath.Join(repoRoot(t), "config", "argocd", "argocd-cm.yaml")
	syncFile(t, path, want, fixHint)

	// The snippet must parse back into exactly the scripts, the way Argo CD
	// reads it: a ConfigMap whose actions key is itself YAML.
	cm := &corev1.ConfigMap{}
	if err := yaml.Unmarshal(want, cm); err != nil {
		t.Fatalf("argocd-cm.yaml: %v", err)
	}
	dir := filepath.Join(repoRoot(t), "config", "argocd")
	if got := cm.Data["resource.customizations.health.rollouts.modelrollout.io_ModelRollout"]; got != string(readFile(t, filepath.Join(dir, "health.lua"))) {
		t.Errorf("the health key does not hold health.lua verbatim")
	}
	var actions struct {
		Discovery   string `json:"discovery.lua"`
		Definitions []struct {
			Name   string `json:"name"`
			Action string `json:"action.lua"`
		} `json:"definitions"`
	}
	if err := yaml.UnmarshalStrict([]byte(cm.Data["resource.customizations.actions.rollouts.modelrollout.io_ModelRollout"]), &actions); err != nil {
		t.Fatalf("the actions key: %v", err)
	}
	if actions.Discovery != string(readFile(t, filepath.Join(dir, "actions", "discovery.lua"))) {
		t.Errorf("discovery.lua differs in the snippet")
	}
	var names []string
	for _, d := range actions.Definitions {
		names = append(names, d.Name)
		if d.Action != string(readFile(t, filepath.Join(dir, "actions", d.Name, "action.lua"))) {
			t.Errorf("action %s differs in the snippet", d.Name)
		}
	}
	sort.Strings(names)
	wantNames := append([]string(nil), argocdActions...)
	sort.Strings(wantNames)
	if strings.Join(names, ",") != strings.Join(wantNames, ",") {
		t.Errorf("actions in the snippet: %v, want %v", names, wantNames)
	}
	// Every action folder is wired.
	entries, err := os.ReadDir(filepath.Join(dir, "actions"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && !contains(argocdActions, e.Name()) {
			t.Errorf("config/argocd/actions/%s is not wired into argocd-cm.yaml", e.Name())
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
