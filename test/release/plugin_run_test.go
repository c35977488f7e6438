package release_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/release"
)

// TestPluginArchiveRuns unpacks the bundle's plugin archive for this
// machine's platform into a directory, puts only that directory and
// kubectl's on PATH, and runs the plugin through kubectl as users do:
// `kubectl modelrollout version` and `kubectl modelrollout status NAME`
// against the test API server.
func TestPluginArchiveRuns(t *testing.T) {
	g := NewWithT(t)
	p := release.Platform{OS: runtime.GOOS, Arch: runtime.GOARCH}
	supported := false
	for _, q := range release.PluginPlatforms {
		supported = supported || q == p
	}
	if !supported {
		t.Skipf("the plugin is not released for %s", p)
	}
	bundle := buildBundle(t)
	b := sourceBuild(t)
	_, kcfg := apiServer(t)
	kc := kubectl(t)

	archive := bundle.Archives[p]
	g.Expect(filepath.Base(archive)).To(Equal(release.ArchiveName(version, p)))
	dir := filepath.Join(t.TempDir(), "plugin")
	g.Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
	// As users unpack it: tar keeps the archive's modes, so the plugin runs
	// only if the archive says it is executable.
	run(t, nil, "tar", "-xzf", archive, "-C", dir)
	entries := archiveEntries(t, archive)
	g.Expect(entries).To(HaveKey(release.PluginName))
	g.Expect(entries).To(HaveKey("README.md"))

	env := []string{
		"PATH=" + dir + string(os.PathListSeparator) + filepath.Dir(kc),
		"KUBECONFIG=" + kcfg,
		"HOME=" + t.TempDir(),
	}
	// kubectl finds the plugin on PATH.
	g.Expect(run(t, env, kc, "plugin", "list", "--name-only")).To(ContainSubstring(release.PluginName))
	out := run(t, env, kc, "modelrollout", "version")
	g.Expect(strings.TrimSpace(out)).To(HavePrefix(release.PluginName+" "+b.Describe), "the version the release stamped")

	c := apiClient(g, kcfg)
	ctx := context.Background()
	ns := "plugin-run"
	createNamespace(ctx, g, c, ns)
	pause := rolloutsv1.Duration("1h")
	ro := &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: ns},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{{Name: "route"}},
			Stable: rolloutsv1.BackendRef{Name: "stable", Port: ptr.To[int32](8000)},
			Canary: &rolloutsv1.BackendRef{Name: "canary-v2", Port: ptr.To[int32](8000)},
			Steps:  []rolloutsv1.Step{{Weight: 25, Pause: &pause}, {Weight: 100, Pause: &pause}},
		},
	}
	g.Expect(c.Create(ctx, ro)).To(Succeed())
	// No controller runs here: the test writes the status a controller
	// would, so that status has something to show.
	now := rolloutsv1.NewMicroTime(metav1.NowMicro())
	ro.Status.Phase = rolloutsv1.PhaseProgressing
	ro.Status.CurrentStepIndex = ptr.To[int32](0)
	ro.Status.CanaryWeight = 25
	ro.Status.StepStartedAt = &now
	ro.Status.ObservedGeneration = ro.Generation
	g.Expect(c.Status().Update(ctx, ro)).To(Succeed())

	out = run(t, env, kc, "modelrollout", "status", "chat", "-n", ns)
	g.Expect(out).To(ContainSubstring("Rollout chat: Progressing, step 1/2, canary canary-v2 at 25%"))

	// A rollout that is not there is an error, not an empty status.
	_, err := runErr(env, kc, "modelrollout", "status", "missing", "-n", ns)
	g.Expect(err).To(MatchError(ContainSubstring("missing")))
}
