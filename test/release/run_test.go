package release_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/release"
)

// TestImageManagerReconciles takes /manager out of the image's layer for
// this machine's platform and runs it against the test API server until it
// moves a rollout's canary to its first step.
func TestImageManagerReconciles(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("the image's binaries are for Linux; this is %s", runtime.GOOS)
	}
	g := NewWithT(t)
	built := buildImage(t)
	_, kcfg := apiServer(t)

	idx, _ := readIndex(t, built.files.Layout)
	m, err := idx.IndexManifest()
	g.Expect(err).NotTo(HaveOccurred())
	bin := filepath.Join(t.TempDir(), "manager")
	for _, d := range m.Manifests {
		if d.Platform.Architecture != runtime.GOARCH {
			continue
		}
		img, err := idx.Image(d.Digest)
		g.Expect(err).NotTo(HaveOccurred())
		_, data := layerContent(t, img)
		entry := strings.TrimPrefix(release.Entrypoint, "/")
		g.Expect(data).To(HaveKey(entry))
		g.Expect(os.WriteFile(bin, data[entry], 0o755)).To(Succeed())
	}
	g.Expect(bin).To(BeAnExistingFile(), "the image has no %s/%s manager", runtime.GOOS, runtime.GOARCH)

	c := apiClient(g, kcfg)

	ctx, cancel := context.WithCancel(context.Background())
	probes := freePort(t)
	cmd := exec.CommandContext(ctx, bin,
		"--kubeconfig", kcfg,
		"--leader-elect=true", "--leader-election-namespace=default",
		"--metrics-bind-address=0", "--health-probe-bind-address="+probes,
		"--zap-encoder=json")
	cmd.Env = []string{"HOME=" + t.TempDir()}
	logs := startManager(t, g, cmd, cancel)

	// The version stamped at link time is the one `git describe` gave.
	b := sourceBuild(t)
	g.Eventually(logs.String, time.Minute).Should(ContainSubstring(fmt.Sprintf(`"msg":"Starting the manager","version":%q`, b.Describe)))

	ns := "image-run"
	createNamespace(ctx, g, c, ns)
	createCanaryRollout(ctx, g, c, ns)

	// The manager in the image moves the canary to 10 % on the route and
	// reports the step in status.
	waitFirstStep(ctx, g, c, ns, logs, func(g Gomega, ro *rolloutsv1.ModelRollout) {
		g.Expect(ro.Status.StepStartedAt).NotTo(BeNil())
	})

	// It serves its probes and holds the leader election Lease.
	g.Eventually(func() (int, error) {
		resp, err := http.Get("http://" + probes + "/readyz")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}, time.Minute).Should(Equal(http.StatusOK))
	g.Eventually(func() (string, error) {
		return runErr(nil, kubectl(t), "--kubeconfig", kcfg, "get", "lease", "-n", "default", "-o", "name")
	}, time.Minute).Should(ContainSubstring("modelrollout-controller.rollouts.modelrollout.io"))
	g.Expect(strings.Contains(logs.String(), `"level":"error"`)).To(BeFalse(), "the manager logged errors:\n%s", logs.String())
}
