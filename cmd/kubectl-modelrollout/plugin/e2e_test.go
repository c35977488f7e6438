package plugin_test

// The end-to-end test builds the kubectl-modelrollout binary and runs it as a
// person would, against a real kube-apiserver and etcd (envtest) with the
// ModelRollout CRD installed. No controller runs: the test writes the
// rollout's status itself, through the status subresource, to put the rollout
// in each state, and plays the controller's part where a verb waits for it.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/cmd/kubectl-modelrollout/plugin"
)

// repoRoot is the module root, from this package's folder.
const repoRoot = "../../.."

type e2e struct {
	t          *testing.T
	g          *WithT
	c          client.Client
	bin        string
	kubeconfig string
	home       string
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the plugin with KUBECONFIG pointing at the admin kubeconfig,
// whose context namespace is ai-gateway.
func (e *e2e) run(args ...string) result {
	e.t.Helper()
	cmd := exec.Command(e.bin, args...)
	cmd.Env = e.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		e.t.Fatalf("run %v: %v", args, err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func (e *e2e) env() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.home, "KUBECONFIG=" + e.kubeconfig}
}

// expect runs the plugin and checks its exit code.
func (e *e2e) expect(code int, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	e.t.Logf("$ kubectl modelrollout %s   # exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	if r.code != code {
		e.t.Fatalf("kubectl modelrollout %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

// lockedBuffer collects a running process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// background is a plugin process left running, e.g. with --watch.
type background struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan error
}

func (e *e2e) start(args ...string) *background {
	e.t.Helper()
	cmd := exec.Command(e.bin, args...)
	cmd.Env = e.env()
	bg := &background{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = bg.stderr
	out, err := cmd.StdoutPipe()
	e.g.Expect(err).NotTo(HaveOccurred())
	e.g.Expect(cmd.Start()).To(Succeed())
	go func() {
		_, _ = io.Copy(bg.stdout, out)
		bg.done <- cmd.Wait()
	}()
	e.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	return bg
}

// interrupt sends Ctrl-C and expects a clean exit.
func (e *e2e) interrupt(bg *background) {
	e.t.Helper()
	e.t.Logf("$ %s   # interrupted\n%s%s", strings.Join(bg.cmd.Args, " "), bg.stdout.String(), bg.stderr.String())
	e.g.Expect(bg.cmd.Process.Signal(os.Interrupt)).To(Succeed())
	var err error
	e.g.Eventually(bg.done, 10*time.Second).Should(Receive(&err))
	e.g.Expect(err).NotTo(HaveOccurred(), "exit after Ctrl-C; stderr: %s", bg.stderr.String())
}

func (e *e2e) rollout(ns, name string) *rolloutsv1.ModelRollout {
	e.t.Helper()
	ro := &rolloutsv1.ModelRollout{}
	e.g.Expect(e.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, ro)).To(Succeed())
	return ro
}

// setStatus writes a rollout's status as the controller would.
func (e *e2e) setStatus(ns, name string, mutate func(ro *rolloutsv1.ModelRollout)) {
	e.t.Helper()
	e.g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ro := &rolloutsv1.ModelRollout{}
		if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, ro); err != nil {
			return err
		}
		mutate(ro)
		return e.c.Status().Update(context.Background(), ro)
	})).To(Succeed())
}

func mt(t time.Time) *metav1.Time {
	v := metav1.NewTime(t)
	return &v
}

func umt(t time.Time) *rolloutsv1.MicroTime {
	v := rolloutsv1.NewMicroTime(metav1.NewMicroTime(t))
	return &v
}

// progressingStatus is step 2/5, 12 minutes into its 30 minute pause.
func progressingStatus(ro *rolloutsv1.ModelRollout) {
	now := time.Now()
	idx := int32(1)
	ro.Status = rolloutsv1.ModelRolloutStatus{
		ObservedGeneration: ro.Generation,
		Phase:              rolloutsv1.PhaseProgressing,
		Revision:           ro.Spec.Revision(),
		Canary:             ro.Spec.Canary.DeepCopy(),
		CurrentStepIndex:   &idx,
		Step:               "2/5",
		CanaryWeight:       25,
		StepStartedAt:      umt(now.Add(-12 * time.Minute)),
		StartedAt:          mt(now.Add(-42 * time.Minute)),
		Message:            "Step 2/5: canary at 25%",
		StepHistory: []rolloutsv1.StepRecord{
			{Weight: 10, StartedAt: *umt(now.Add(-42 * time.Minute)), EndedAt: umt(now.Add(-12 * time.Minute))},
			{Weight: 25, StartedAt: *umt(now.Add(-12 * time.Minute))},
		},
		Gates: []rolloutsv1.GateStatus{
			{Name: "errors", Verdict: rolloutsv1.VerdictPass, Value: "0.004", Threshold: "<= 0.05", LastEvaluatedAt: mt(now.Add(-30 * time.Second))},
			{Name: "latency", Verdict: rolloutsv1.VerdictPass, Value: "11.2", Threshold: "<= 30", LastEvaluatedAt: mt(now.Add(-30 * time.Second))},
		},
		LastHandledPromote: ro.Status.LastHandledPromote,
		LastHandledAbort:   ro.Status.LastHandledAbort,
		LastHandledRetry:   ro.Status.LastHandledRetry,
	}
}

func rolledBackStatus(ro *rolloutsv1.ModelRollout) {
	progressingStatus(ro)
	ro.Status.Phase = rolloutsv1.PhaseRolledBack
	ro.Status.CanaryWeight = 0
	ro.Status.StepHistory[1].EndedAt = umt(time.Now().Add(-time.Minute))
	ro.Status.Rollback = &rolloutsv1.RollbackStatus{
		Reason: rolloutsv1.ReasonAlertFiring, Message: `alert HighErrorRate{model="gpt-4",severity="critical"} firing`,
		FromWeight: 25, At: *mt(time.Now().Add(-time.Minute)),
	}
	ro.Status.Message = "Rolled back: " + ro.Status.Rollback.Message + "; canary weight 25 -> 0"
}

func newRollout(ns, name string) *rolloutsv1.ModelRollout {
	port := int32(8000)
	max := func(v float64) *float64 { return &v }
	return &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{{Name: "model-header-routing"}},
			Stable: rolloutsv1.BackendRef{Name: "vllm-gpt4-v1", Port: &port},
			Canary: &rolloutsv1.BackendRef{Name: "vllm-gpt4-v2", Port: &port},
			Analysis: &rolloutsv1.Analysis{Gates: []rolloutsv1.Gate{
				{Name: "errors", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-error-ratio", Max: max(0.05)}},
				{Name: "latency", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-e2e-latency-p99", Max: max(30)}},
			}},
		},
	}
}

func (e *e2e) annotations(ns, name string) map[string]string {
	return e.rollout(ns, name).Annotations
}

// isToken checks a request token is an RFC 3339 time.
func (e *e2e) isToken(tok string) {
	e.t.Helper()
	_, err := time.Parse(time.RFC3339Nano, tok)
	e.g.Expect(err).NotTo(HaveOccurred(), "token %q", tok)
}

func newG(t *testing.T) *WithT {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	return g
}

func TestEndToEnd(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set: this test needs kube-apiserver and etcd; " +
			"run `make test-deps` (or bash test/scripts/control-plane.sh) and set KUBEBUILDER_ASSETS=$PWD/bin/control-plane/v1.37.2")
	}
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	g := newG(t)
	tmp := t.TempDir()

	// Build the plugin as a user would.
	bin := filepath.Join(tmp, "kubectl-modelrollout")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kubectl-modelrollout")
	build.Dir = repoRoot
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "go build: %s", out)

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })

	// An admin kubeconfig whose context's namespace is ai-gateway, so that
	// commands without -n use it.
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	kc, err := admin.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := clientcmd.Load(kc)
	g.Expect(err).NotTo(HaveOccurred())
	raw.Contexts[raw.CurrentContext].Namespace = "ai-gateway"
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	g.Expect(clientcmd.WriteToFile(*raw, kubeconfig)).To(Succeed())

	c, err := client.New(cfg, client.Options{Scheme: plugin.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	e := &e2e{t: t, g: g, c: c, bin: bin, kubeconfig: kubeconfig, home: tmp}
	ctx := context.Background()

	// run runs a subtest with its own e and g, so that a failure stops the
	// subtest only.
	run := func(name string, fn func(e *e2e, g *WithT)) {
		t.Run(name, func(t *testing.T) {
			sub := *e
			sub.t, sub.g = t, newG(t)
			fn(&sub, sub.g)
		})
	}

	for _, ns := range []string{"ai-gateway", "team-b"} {
		g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
	gpt4 := newRollout("ai-gateway", "gpt4")
	g.Expect(c.Create(ctx, gpt4)).To(Succeed())
	e.setStatus("ai-gateway", "gpt4", progressingStatus)
	mixtral := newRollout("team-b", "mixtral")
	mixtral.Spec.Canary.Name = "vllm-mixtral-v2"
	mixtral.Spec.Stable.Name = "vllm-mixtral-v1"
	g.Expect(c.Create(ctx, mixtral)).To(Succeed())
	e.setStatus("team-b", "mixtral", rolledBackStatus)

	run("get", func(e *e2e, g *WithT) {
		r := e.expect(0, "get")
		g.Expect(r.stdout).To(MatchRegexp(`^NAME   ROUTE                  CANARY         WEIGHT   STEP   PHASE         AGE\n` +
			`gpt4   model-header-routing   vllm-gpt4-v2   25       2/5    Progressing   \d+s\n$`))
		r = e.expect(0, "get", "mixtral", "-n", "team-b")
		g.Expect(r.stdout).To(ContainSubstring("mixtral   model-header-routing   vllm-mixtral-v2   0        2/5    RolledBack"))
	})

	run("get -A", func(e *e2e, g *WithT) {
		r := e.expect(0, "get", "-A")
		g.Expect(r.stdout).To(HavePrefix("NAMESPACE    NAME      ROUTE"))
		g.Expect(r.stdout).To(ContainSubstring("ai-gateway   gpt4      model-header-routing   vllm-gpt4-v2      25       2/5    Progressing"))
		g.Expect(r.stdout).To(ContainSubstring("team-b       mixtral   model-header-routing   vllm-mixtral-v2   0        2/5    RolledBack"))
	})

	run("status", func(e *e2e, g *WithT) {
		e.setStatus("ai-gateway", "gpt4", progressingStatus)
		ro := e.rollout("ai-gateway", "gpt4")
		ev := &eventsv1.Event{
			ObjectMeta:          metav1.ObjectMeta{Namespace: "ai-gateway", Name: "gpt4.step2"},
			EventTime:           metav1.NewMicroTime(time.Now().Add(-12 * time.Minute)),
			ReportingController: "modelrollout-controller", ReportingInstance: "modelrollout-controller-0",
			Action: "StepStarted", Reason: "StepStarted", Type: corev1.EventTypeNormal,
			Note:      "Step 2/5: canary vllm-gpt4-v2 at 25%",
			Regarding: corev1.ObjectReference{APIVersion: rolloutsv1.GroupVersion.String(), Kind: "ModelRollout", Namespace: "ai-gateway", Name: "gpt4", UID: ro.UID},
		}
		g.Expect(c.Create(ctx, ev)).To(Succeed())
		// An event about another object of the same name is not shown.
		other := ev.DeepCopy()
		other.ResourceVersion, other.UID = "", ""
		other.Name, other.Note = "gpt4.pod", "Pod event"
		other.Regarding = corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "ai-gateway", Name: "gpt4"}
		g.Expect(c.Create(ctx, other)).To(Succeed())

		r := e.expect(0, "status", "gpt4")
		g.Expect(r.stdout).To(MatchRegexp(`^Rollout gpt4: Progressing, step 2/5, canary vllm-gpt4-v2 at 25%   \(next step in 18m\)\n`))
		g.Expect(r.stdout).To(MatchRegexp(`Steps    ✔ 10% 30m   ▶ 25% 30m \(18m left\)   · 50% 1h   · 75% 1h   · 100% 1h\n`))
		g.Expect(r.stdout).To(MatchRegexp(`Gates    errors    0.004   ≤ 0.05   ✔   3\ds ago\n`))
		g.Expect(r.stdout).To(ContainSubstring("latency   11.2s   ≤ 30s    ✔"))
		g.Expect(r.stdout).To(ContainSubstring("Events   12m   Normal   StepStarted   Step 2/5: canary vllm-gpt4-v2 at 25%"))
		g.Expect(r.stdout).NotTo(ContainSubstring("Pod event"))
		g.Expect(r.stdout).NotTo(ContainSubstring("\x1b["), "no colour when stdout is not a terminal")

		r = e.expect(0, "status", "mixtral", "-n", "team-b", "--ascii")
		g.Expect(r.stdout).To(MatchRegexp(`^Rollout mixtral: RolledBack at step 2/5, canary vllm-mixtral-v2 at 0% \(was 25%\)   \(rolled back 1m(\d+s)? ago\)\n`))
		g.Expect(r.stdout).To(ContainSubstring(`Reason   AlertFiring: alert HighErrorRate{model="gpt-4",severity="critical"} firing`))
		g.Expect(r.stdout).To(ContainSubstring("+ 10% 30m   x 25% 11m (rolled back)   - 50% 1h"))
	})

	run("promote", func(e *e2e, g *WithT) {
		r := e.expect(0, "promote", "gpt4")
		tok := e.annotations("ai-gateway", "gpt4")[rolloutsv1.AnnotationPromote]
		e.isToken(tok)
		g.Expect(r.stdout).To(Equal(`modelrollout "gpt4" promote requested at step 2/5 (rollouts.modelrollout.io/promote=` + tok + ")\n"))

		e.setStatus("ai-gateway", "gpt4", func(ro *rolloutsv1.ModelRollout) {
			ro.Status.Phase = rolloutsv1.PhaseSucceeded
			ro.Status.CanaryWeight = 100
		})
		r = e.expect(1, "promote", "gpt4")
		g.Expect(r.stderr).To(Equal("Error: gpt4 is Succeeded; only a Progressing or Paused rollout can be promoted (the canary already has all traffic)\n"))
		g.Expect(e.annotations("ai-gateway", "gpt4")[rolloutsv1.AnnotationPromote]).To(Equal(tok), "a refused promote writes nothing")
		e.setStatus("ai-gateway", "gpt4", progressingStatus)
	})

	run("promote --full and --skip-gates", func(e *e2e, g *WithT) {
		e.setStatus("ai-gateway", "gpt4", progressingStatus)
		r := e.expect(0, "promote", "gpt4", "--full", "--reason", "v1 is down; all traffic to v2")
		a := e.annotations("ai-gateway", "gpt4")
		tok := a[rolloutsv1.AnnotationPromoteFull]
		e.isToken(tok)
		// Who asked, as the API server's SelfSubjectReview says.
		g.Expect(a).To(HaveKeyWithValue(rolloutsv1.AnnotationRequestedBy, "admin"))
		g.Expect(a).To(HaveKeyWithValue(rolloutsv1.AnnotationPromoteReason, "v1 is down; all traffic to v2"))
		g.Expect(r.stdout).To(Equal(`modelrollout "gpt4" full promote requested at step 2/5 by admin: "v1 is down; all traffic to v2" (rollouts.modelrollout.io/promote-full=` + tok + ")\n"))
		g.Expect(r.stderr).To(BeEmpty())

		r = e.expect(0, "promote", "gpt4", "--skip-gates", "--reason", "minRequests too high at night")
		a = e.annotations("ai-gateway", "gpt4")
		e.isToken(a[rolloutsv1.AnnotationSkipGates])
		g.Expect(a).To(HaveKeyWithValue(rolloutsv1.AnnotationPromoteReason, "minRequests too high at night"))
		g.Expect(a).To(HaveKeyWithValue(rolloutsv1.AnnotationRequestedBy, "admin"))
		g.Expect(a).To(HaveKeyWithValue(rolloutsv1.AnnotationPromoteFull, tok), "the full promote's token stays as it was")
		g.Expect(r.stdout).To(ContainSubstring(`skip of the gates requested at step 2/5 by admin: "minRequests too high at night"`))

		// Refused while paused by annotation: nothing is written.
		e.expect(0, "pause", "gpt4")
		r = e.expect(1, "promote", "gpt4", "--skip-gates", "--reason", "again")
		g.Expect(r.stderr).To(HavePrefix("Error: gpt4 is paused by the rollouts.modelrollout.io/paused annotation"))
		g.Expect(e.annotations("ai-gateway", "gpt4")).To(HaveKeyWithValue(rolloutsv1.AnnotationPromoteReason, "minRequests too high at night"))
		e.expect(0, "resume", "gpt4")
		g.Expect(e.rollout("ai-gateway", "gpt4").Generation).To(Equal(int64(1)), "the spec is never written")
	})

	run("pause and resume", func(e *e2e, g *WithT) {
		r := e.expect(0, "pause", "gpt4")
		g.Expect(r.stdout).To(Equal("modelrollout \"gpt4\" paused (rollouts.modelrollout.io/paused=true)\n"))
		g.Expect(e.annotations("ai-gateway", "gpt4")).To(HaveKeyWithValue(rolloutsv1.AnnotationPaused, "true"))
		r = e.expect(0, "resume", "gpt4")
		g.Expect(r.stdout).To(Equal("modelrollout \"gpt4\" resumed (rollouts.modelrollout.io/paused removed)\n"))
		g.Expect(e.annotations("ai-gateway", "gpt4")).NotTo(HaveKey(rolloutsv1.AnnotationPaused))
		// The spec is never written.
		g.Expect(e.rollout("ai-gateway", "gpt4").Generation).To(Equal(int64(1)))
	})

	run("abort", func(e *e2e, g *WithT) {
		r := e.expect(0, "abort", "gpt4", "--reason", "bad outputs")
		a := e.annotations("ai-gateway", "gpt4")
		e.isToken(a[rolloutsv1.AnnotationAbort])
		g.Expect(a).To(HaveKeyWithValue(rolloutsv1.AnnotationAbortReason, "bad outputs"))
		g.Expect(r.stdout).To(ContainSubstring(`modelrollout "gpt4" abort requested: "bad outputs"`))

		// Without --reason, the reason names who aborted, as the API
		// server knows them.
		e.expect(0, "abort", "gpt4")
		g.Expect(e.annotations("ai-gateway", "gpt4")).To(HaveKeyWithValue(rolloutsv1.AnnotationAbortReason, "aborted by admin"))

		r = e.expect(1, "abort", "mixtral", "-n", "team-b")
		g.Expect(r.stderr).To(ContainSubstring("mixtral is RolledBack already"))
	})

	run("retry", func(e *e2e, g *WithT) {
		r := e.expect(1, "retry", "gpt4")
		g.Expect(r.stderr).To(Equal("Error: gpt4 is Progressing; only a RolledBack rollout can be retried\n"))
		g.Expect(e.annotations("ai-gateway", "gpt4")).NotTo(HaveKey(rolloutsv1.AnnotationRetry))

		e.setStatus("ai-gateway", "gpt4", rolledBackStatus)
		r = e.expect(0, "retry", "gpt4")
		tok := e.annotations("ai-gateway", "gpt4")[rolloutsv1.AnnotationRetry]
		e.isToken(tok)
		g.Expect(r.stdout).To(ContainSubstring("retry requested"))
		e.setStatus("ai-gateway", "gpt4", progressingStatus)
	})

	run("abort refused on Succeeded", func(e *e2e, g *WithT) {
		e.setStatus("team-b", "mixtral", func(ro *rolloutsv1.ModelRollout) {
			progressingStatus(ro)
			ro.Status.Phase = rolloutsv1.PhaseSucceeded
		})
		r := e.expect(1, "abort", "mixtral", "-n", "team-b", "--reason", "x")
		g.Expect(r.stderr).To(Equal("Error: mixtral is Succeeded; a Succeeded rollout is not rolled back; change spec.canary or spec.stable instead\n"))
	})

	run("missing rollout and usage", func(e *e2e, g *WithT) {
		r := e.expect(1, "status", "nope")
		g.Expect(r.stderr).To(Equal("Error: modelrollout \"nope\" not found in namespace \"ai-gateway\"\n"))
		r = e.expect(1, "promote", "nope", "-n", "team-b")
		g.Expect(r.stderr).To(Equal("Error: modelrollout \"nope\" not found in namespace \"team-b\"\n"))
		r = e.expect(2, "status")
		g.Expect(r.stderr).To(ContainSubstring("Error: status needs the name of a ModelRollout"))
		g.Expect(r.stderr).To(ContainSubstring("Usage:\n  kubectl modelrollout status NAME [flags]"))
		e.expect(2, "get", "--no-such-flag")
	})

	run("connection errors", func(e *e2e, g *WithT) {
		bad := raw.DeepCopy()
		for _, cl := range bad.Clusters {
			cl.Server = "https://127.0.0.1:1"
		}
		badPath := filepath.Join(tmp, "unreachable")
		g.Expect(clientcmd.WriteToFile(*bad, badPath)).To(Succeed())
		r := e.expect(1, "get", "--kubeconfig", badPath)
		g.Expect(r.stderr).To(HavePrefix("Error: cannot reach the Kubernetes API server at https://127.0.0.1:1: "))
		r = e.expect(1, "get", "--kubeconfig", filepath.Join(tmp, "missing"))
		g.Expect(r.stderr).To(ContainSubstring("cannot load kubeconfig " + filepath.Join(tmp, "missing") + " (--kubeconfig)"))
		r = e.expect(1, "get", "--context", "nope")
		g.Expect(r.stderr).To(ContainSubstring(`context "nope"`))
	})

	run("as a kubectl plugin", func(e *e2e, g *WithT) {
		kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
		if _, err := os.Stat(kubectl); err != nil {
			t.Skipf("no kubectl in KUBEBUILDER_ASSETS: %v", err)
		}
		// kubectl finds kubectl-modelrollout on PATH and passes it the
		// arguments after "modelrollout".
		cmd := exec.Command(kubectl, "modelrollout", "get", "gpt4")
		cmd.Env = []string{"PATH=" + filepath.Dir(e.bin), "HOME=" + e.home, "KUBECONFIG=" + e.kubeconfig}
		out, err := cmd.CombinedOutput()
		e.t.Logf("$ kubectl modelrollout get gpt4\n%s", out)
		g.Expect(err).NotTo(HaveOccurred(), "%s", out)
		g.Expect(string(out)).To(ContainSubstring("gpt4   model-header-routing   vllm-gpt4-v2   25       2/5    Progressing"))
	})

	flags := setupFlags(t, g, env, cfg, c, raw, tmp)
	testFlags(run, flags, tmp)
	testOutputAndCompletion(run, tmp, raw.CurrentContext)

	run("get -w", func(e *e2e, g *WithT) {
		bg := e.start("get", "gpt4", "-w")
		g.Eventually(bg.stdout.String).Should(MatchRegexp(`gpt4   model-header-routing   vllm-gpt4-v2   25       2/5    Progressing   \S+\n$`))
		e.setStatus("ai-gateway", "gpt4", func(ro *rolloutsv1.ModelRollout) {
			ro.Status.Phase = rolloutsv1.PhasePaused
			ro.Status.Message = "Paused at step 2/5 (canary at 25%)"
		})
		g.Eventually(bg.stdout.String).Should(MatchRegexp(`gpt4   model-header-routing   vllm-gpt4-v2   25       2/5    Paused        \S+\n$`))
		// A status write that changes nothing shown prints nothing.
		e.setStatus("ai-gateway", "gpt4", func(ro *rolloutsv1.ModelRollout) { ro.Status.Message = "still paused" })
		e.setStatus("ai-gateway", "gpt4", func(ro *rolloutsv1.ModelRollout) {
			ro.Status.Step, ro.Status.CanaryWeight = "3/5", 50
			ro.Status.Phase = rolloutsv1.PhaseProgressing
		})
		g.Eventually(bg.stdout.String).Should(ContainSubstring("50       3/5    Progressing"))
		g.Expect(strings.Count(bg.stdout.String(), "\n")).To(Equal(4), "header and three rows:\n%s", bg.stdout.String())
		e.interrupt(bg)
	})

	run("status -w", func(e *e2e, g *WithT) {
		e.setStatus("ai-gateway", "gpt4", progressingStatus)
		bg := e.start("status", "gpt4", "-w")
		g.Eventually(bg.stdout.String).Should(ContainSubstring("Rollout gpt4: Progressing, step 2/5"))
		e.setStatus("ai-gateway", "gpt4", rolledBackStatus)
		g.Eventually(bg.stdout.String).Should(ContainSubstring("Rollout gpt4: RolledBack at step 2/5, canary vllm-gpt4-v2 at 0% (was 25%)"))

		// A new event about the rollout redraws the view too.
		ro := e.rollout("ai-gateway", "gpt4")
		g.Expect(c.Create(ctx, &eventsv1.Event{
			ObjectMeta:          metav1.ObjectMeta{Namespace: "ai-gateway", Name: "gpt4.rolledback"},
			EventTime:           metav1.NewMicroTime(time.Now()),
			ReportingController: "modelrollout-controller", ReportingInstance: "modelrollout-controller-0",
			Action: "RolledBack", Reason: "RolledBack", Type: corev1.EventTypeWarning,
			Note:      "alert HighErrorRate firing; canary weight 25 -> 0",
			Regarding: corev1.ObjectReference{APIVersion: rolloutsv1.GroupVersion.String(), Kind: "ModelRollout", Namespace: "ai-gateway", Name: "gpt4", UID: ro.UID},
		})).To(Succeed())
		g.Eventually(bg.stdout.String).Should(MatchRegexp(`\d+s\s+Warning\s+RolledBack\s+alert HighErrorRate firing; canary weight 25 -> 0`))
		e.interrupt(bg)
		g.Expect(bg.stderr.String()).To(BeEmpty())
	})

	run("promote --wait", func(e *e2e, g *WithT) {
		e.setStatus("ai-gateway", "gpt4", progressingStatus)
		bg := e.start("promote", "gpt4", "--wait", "--timeout", "30s")
		// Play the controller: handle the token once it is written.
		var tok string
		g.Eventually(func() string {
			tok = e.annotations("ai-gateway", "gpt4")[rolloutsv1.AnnotationPromote]
			return tok
		}).Should(Satisfy(func(s string) bool {
			return regexp.MustCompile(`^\d{4}-`).MatchString(s) && strings.Contains(bg.stdout.String(), s)
		}))
		e.setStatus("ai-gateway", "gpt4", func(ro *rolloutsv1.ModelRollout) {
			ro.Status.LastHandledPromote = tok
			ro.Status.Promoted = true
			ro.Status.Message = "Step 2/5: canary at 25%, promoted"
		})
		var err error
		g.Eventually(bg.done).Should(Receive(&err))
		g.Expect(err).NotTo(HaveOccurred(), "stderr: %s", bg.stderr.String())
		g.Expect(bg.stdout.String()).To(HaveSuffix("gpt4 is Progressing, step 2/5: Step 2/5: canary at 25%, promoted\n"))
	})
}
