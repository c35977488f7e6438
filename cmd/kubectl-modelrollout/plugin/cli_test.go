package plugin

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t       *testing.T
	c       client.WithWatch
	user    string
	stdout  *syncBuffer
	stderr  *syncBuffer
	current time.Time
}

func newHarness(t *testing.T, objs ...*rolloutsv1.ModelRollout) *harness {
	b := fake.NewClientBuilder().WithScheme(Scheme).
		WithStatusSubresource(&rolloutsv1.ModelRollout{}).
		WithIndex(&eventsv1.Event{}, "regarding.name", func(o client.Object) []string {
			return []string{o.(*eventsv1.Event).Regarding.Name}
		})
	for _, o := range objs {
		o.ResourceVersion = ""
		b = b.WithObjects(o)
	}
	return &harness{t: t, c: b.Build(), current: now}
}

// run runs one command line and returns its exit code.
func (h *harness) run(args ...string) int {
	h.t.Helper()
	h.stdout, h.stderr = &syncBuffer{}, &syncBuffer{}
	return h.runCtx(context.Background(), args...)
}

func (h *harness) runCtx(ctx context.Context, args ...string) int {
	app := &App{
		Out: h.stdout, ErrOut: h.stderr,
		Now:    func() time.Time { return h.current },
		Getenv: func(string) string { return "" },
		Connect: func(f KubeFlags) (*Cluster, error) {
			ns := *f.Namespace
			if ns == "" {
				ns = "default"
			}
			return &Cluster{Client: crClient{h.c}, Namespace: ns, Host: "https://fake", User: h.user}, nil
		},
	}
	return app.Run(ctx, args)
}

func (h *harness) get(name string) *rolloutsv1.ModelRollout {
	h.t.Helper()
	ro := &rolloutsv1.ModelRollout{}
	if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: "ai-gateway", Name: name}, ro); err != nil {
		h.t.Fatal(err)
	}
	return ro
}

func (h *harness) expect(code int, args ...string) {
	h.t.Helper()
	if got := h.run(args...); got != code {
		h.t.Fatalf("%v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, got, code, h.stdout, h.stderr)
	}
}

func TestPromote(t *testing.T) {
	h := newHarness(t, progressing())
	h.expect(0, "promote", "gpt4", "-n", "ai-gateway")
	tok := now.Format(time.RFC3339Nano)
	if got := h.get("gpt4").Annotations[rolloutsv1.AnnotationPromote]; got != tok {
		t.Errorf("promote annotation = %q, want %q", got, tok)
	}
	assertContains(t, h.stdout.String(), []string{`modelrollout "gpt4" promote requested at step 2/5 (rollouts.modelrollout.io/promote=` + tok + ")"})
}

func TestPromoteRefused(t *testing.T) {
	idle := fixture()
	idle.Spec.Canary = nil
	idle.Status.Phase = rolloutsv1.PhaseIdle
	for _, tt := range []struct {
		ro   *rolloutsv1.ModelRollout
		want string
	}{
		{succeeded(), "gpt4 is Succeeded; only a Progressing or Paused rollout can be promoted (the canary already has all traffic)"},
		{rolledBack(), "gpt4 is RolledBack; only a Progressing or Paused rollout can be promoted (to start again at step 1: kubectl modelrollout retry gpt4 -n ai-gateway)"},
		{waiting(), "gpt4 is Waiting; only a Progressing or Paused rollout can be promoted (waiting: Service vllm-gpt4-v2 has no ready endpoints)"},
		{idle, "gpt4 is Idle (no spec.canary); only a Progressing or Paused rollout can be promoted"},
	} {
		h := newHarness(t, tt.ro)
		h.expect(1, "promote", "gpt4", "-n", "ai-gateway")
		assertContains(t, h.stderr.String(), []string{"Error: " + tt.want + "\n"})
		if _, ok := h.get("gpt4").Annotations[rolloutsv1.AnnotationPromote]; ok {
			t.Errorf("%s: promote annotation written on a refused promote", tt.ro.Status.Phase)
		}
	}
}

func TestAbort(t *testing.T) {
	h := newHarness(t, progressing())
	h.expect(0, "abort", "gpt4", "-n", "ai-gateway", "--reason", "bad outputs")
	a := h.get("gpt4").Annotations
	if a[rolloutsv1.AnnotationAbort] != now.Format(time.RFC3339Nano) || a[rolloutsv1.AnnotationAbortReason] != "bad outputs" {
		t.Errorf("annotations = %v", a)
	}

	h = newHarness(t, awaitingPromoteFixture())
	h.user = "alice"
	h.expect(0, "abort", "gpt4", "-n", "ai-gateway")
	if got := h.get("gpt4").Annotations[rolloutsv1.AnnotationAbortReason]; got != "aborted by alice" {
		t.Errorf("abort reason = %q", got)
	}

	h = newHarness(t, waiting())
	h.expect(0, "abort", "gpt4", "-n", "ai-gateway")
	if got := h.get("gpt4").Annotations[rolloutsv1.AnnotationAbortReason]; got != "aborted by kubectl-modelrollout" {
		t.Errorf("abort reason = %q", got)
	}
}

func TestAbortRefused(t *testing.T) {
	h := newHarness(t, succeeded())
	h.expect(1, "abort", "gpt4", "-n", "ai-gateway", "--reason", "x")
	assertContains(t, h.stderr.String(), []string{"a Succeeded rollout is not rolled back; change spec.canary or spec.stable instead"})
	h = newHarness(t, rolledBack())
	h.expect(1, "abort", "gpt4", "-n", "ai-gateway")
	assertContains(t, h.stderr.String(), []string{"gpt4 is RolledBack already"})
	if len(h.get("gpt4").Annotations) != 0 {
		t.Error("annotations written on a refused abort")
	}
}

func TestRetry(t *testing.T) {
	h := newHarness(t, progressing())
	h.expect(1, "retry", "gpt4", "-n", "ai-gateway")
	assertContains(t, h.stderr.String(), []string{"Error: gpt4 is Progressing; only a RolledBack rollout can be retried\n"})

	h = newHarness(t, rolledBack())
	h.expect(0, "retry", "gpt4", "-n", "ai-gateway")
	if got := h.get("gpt4").Annotations[rolloutsv1.AnnotationRetry]; got != now.Format(time.RFC3339Nano) {
		t.Errorf("retry annotation = %q", got)
	}

	// A rolled-back rollout whose canary changed starts again by itself:
	// the controller would see it Waiting and ignore the retry.
	ro := rolledBack()
	ro.Spec.Canary.Name = "vllm-gpt4-v3"
	h = newHarness(t, ro)
	h.expect(1, "retry", "gpt4", "-n", "ai-gateway")
	assertContains(t, h.stderr.String(), []string{"gpt4 is Waiting (a new rollout of Service/vllm-gpt4-v1:8000 -> Service/vllm-gpt4-v3:8000 is starting); only a RolledBack rollout can be retried"})
}

func TestPauseResume(t *testing.T) {
	h := newHarness(t, progressing())
	h.expect(0, "pause", "gpt4", "-n", "ai-gateway")
	if got := h.get("gpt4").Annotations[rolloutsv1.AnnotationPaused]; got != "true" {
		t.Fatalf("paused annotation = %q", got)
	}
	h.expect(0, "pause", "gpt4", "-n", "ai-gateway")
	assertContains(t, h.stdout.String(), []string{"already paused"})
	h.expect(0, "resume", "gpt4", "-n", "ai-gateway")
	if _, ok := h.get("gpt4").Annotations[rolloutsv1.AnnotationPaused]; ok {
		t.Fatal("paused annotation not removed")
	}
	h.expect(0, "resume", "gpt4", "-n", "ai-gateway")
	assertContains(t, h.stdout.String(), []string{`modelrollout "gpt4" is not paused; nothing to do`})

	h = newHarness(t, succeeded())
	h.expect(1, "pause", "gpt4", "-n", "ai-gateway")
	assertContains(t, h.stderr.String(), []string{"gpt4 is Succeeded; only a Waiting, Progressing or Paused rollout can be paused"})

	ro := progressing()
	ro.Spec.Paused = true
	ro.Status.Phase = rolloutsv1.PhasePaused
	h = newHarness(t, ro)
	h.expect(1, "resume", "gpt4", "-n", "ai-gateway")
	assertContains(t, h.stderr.String(), []string{"gpt4 is paused by spec.paused"})

	h = newHarness(t, awaitingPromoteFixture())
	h.expect(1, "resume", "gpt4", "-n", "ai-gateway")
	assertContains(t, h.stderr.String(), []string{"step 3/5 has no pause and waits for a promote"})
}

func TestMissingRolloutAndUsage(t *testing.T) {
	h := newHarness(t)
	for _, verb := range []string{"get", "status", "promote", "pause", "resume", "abort", "retry"} {
		h.expect(1, verb, "nope", "-n", "ai-gateway")
		if got := h.stderr.String(); got != "Error: modelrollout \"nope\" not found in namespace \"ai-gateway\"\n" {
			t.Errorf("%s: stderr = %q", verb, got)
		}
	}
	for _, args := range [][]string{
		{"status"}, {"promote", "a", "b"}, {"get", "a", "b"}, {"frobnicate"}, {"get", "--bogus"}, {"version", "x"}, {"get", "x", "-A"},
	} {
		h.expect(2, args...)
		assertContains(t, h.stderr.String(), []string{"Error: ", "Usage:"})
	}
	h.expect(0, "version")
	assertContains(t, h.stdout.String(), []string{"kubectl-modelrollout "})
	h.expect(0, "help")
	assertContains(t, h.stdout.String(), []string{"promote", "retry", "abort"})
}

func TestGetAndStatus(t *testing.T) {
	ro := progressing()
	other := rolledBack()
	other.Name, other.Namespace = "mixtral", "team-b"
	h := newHarness(t, ro, other)
	h.expect(0, "get", "-n", "ai-gateway")
	assertContains(t, h.stdout.String(), []string{"NAME   ROUTE                  CANARY         WEIGHT   STEP   PHASE         AGE\n",
		"gpt4   model-header-routing   vllm-gpt4-v2   25       2/5    Progressing   41m\n"}, "mixtral")
	h.expect(0, "get", "-A")
	assertContains(t, h.stdout.String(), []string{"NAMESPACE", "ai-gateway   gpt4", "team-b       mixtral"})
	h.expect(0, "get", "-n", "empty")
	assertContains(t, h.stderr.String(), []string{"No modelrollouts found in empty namespace."})

	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "gpt4.1", Namespace: "ai-gateway"},
		EventTime:  metav1.NewMicroTime(now.Add(-2 * time.Minute)),
		Regarding:  corev1ObjectReference("gpt4", "ai-gateway"),
		Reason:     "StepStarted", Note: "Step 2/5: canary vllm-gpt4-v2 at 25%", Type: "Normal",
		Action: "StepStarted", ReportingController: "modelrollout-controller", ReportingInstance: "x",
	}
	if err := h.c.Create(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	h.expect(0, "status", "gpt4", "-n", "ai-gateway")
	assertContains(t, h.stdout.String(), []string{"Rollout gpt4: Progressing, step 2/5",
		"Events   2m   Normal   StepStarted   Step 2/5: canary vllm-gpt4-v2 at 25%"})
}

// --wait returns once the controller (simulated here) records the token.
func TestPromoteWait(t *testing.T) {
	h := newHarness(t, progressing())
	h.stdout, h.stderr = &syncBuffer{}, &syncBuffer{}
	done := make(chan int)
	go func() {
		done <- h.runCtx(context.Background(), "promote", "gpt4", "-n", "ai-gateway", "--wait", "--timeout", "20s")
	}()

	// The simulated controller handles the token once it is written and,
	// like a real one, keeps writing status, so that a watch started just
	// after the update still sees the handled token (the fake client's
	// watches do not replay from a resource version).
	tok := now.Format(time.RFC3339Nano)
	deadline := time.After(15 * time.Second)
	for n := 0; ; n++ {
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("exit %d; stderr: %s", code, h.stderr)
			}
			assertContains(t, h.stdout.String(), []string{"gpt4 is Progressing, step 2/5: Step 2/5: canary at 25%, promoted"})
			return
		case <-deadline:
			t.Fatalf("promote --wait did not return; stdout: %s stderr: %s", h.stdout, h.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		ro := &rolloutsv1.ModelRollout{}
		if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: "ai-gateway", Name: "gpt4"}, ro); err != nil {
			t.Fatal(err)
		}
		if ro.Annotations[rolloutsv1.AnnotationPromote] != tok {
			continue
		}
		ro.Status.LastHandledPromote = tok
		ro.Status.Promoted = true
		ro.Status.Message = "Step 2/5: canary at 25%, promoted"
		ro.Status.ObservedGeneration = int64(n)
		if err := h.c.Status().Update(context.Background(), ro); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWaitTimesOut(t *testing.T) {
	h := newHarness(t, rolledBack())
	h.expect(1, "retry", "gpt4", "-n", "ai-gateway", "--wait", "--timeout", "200ms")
	assertContains(t, h.stderr.String(), []string{"timed out after 200ms waiting for the controller to handle the request (is the modelrollout controller running?)"})
}

// get -w in an empty namespace prints the header with the first row that
// appears, and Ctrl-C (a cancelled context) ends it cleanly.
func TestGetWatchEmptyNamespace(t *testing.T) {
	h := newHarness(t)
	h.stdout, h.stderr = &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- h.runCtx(ctx, "get", "-w", "-n", "ai-gateway") }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; stdout:\n%s\nstderr:\n%s", what, h.stdout, h.stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the empty notice", func() bool { return h.stderr.String() == "No modelrollouts found in ai-gateway namespace.\n" })
	// The watch starts after the notice; keep creating until a row shows,
	// as a fake watch does not replay what happened before it started.
	for i := 0; !strings.Contains(h.stdout.String(), "gpt4-"); i++ {
		if i == 200 {
			t.Fatalf("no row printed; stdout:\n%s", h.stdout)
		}
		ro := progressing()
		ro.Name = fmt.Sprintf("gpt4-%d", i)
		ro.ResourceVersion = ""
		if err := h.c.Create(context.Background(), ro); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFor("the header", func() bool { return strings.HasPrefix(h.stdout.String(), "NAME ") })
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after Ctrl-C", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("get -w did not stop on Ctrl-C")
	}
}

func TestGetOutputFormats(t *testing.T) {
	ro := progressing()
	other := rolledBack()
	other.Name = "mixtral"
	other.Spec.Canary.Name = "vllm-mixtral-v2"
	h := newHarness(t, ro, other)

	h.expect(0, "get", "gpt4", "-n", "ai-gateway", "-o", "json")
	assertContains(t, h.stdout.String(), []string{`"apiVersion": "rollouts.modelrollout.io/v1alpha1"`, `"kind": "ModelRollout"`, `"canaryWeight": 25`}, `"kind": "List"`)
	h.expect(0, "get", "-n", "ai-gateway", "-o", "yaml")
	assertContains(t, h.stdout.String(), []string{"apiVersion: v1\nitems:\n- apiVersion: rollouts.modelrollout.io/v1alpha1\n  kind: ModelRollout\n", "kind: List\n", "name: mixtral\n"})
	h.expect(0, "get", "-n", "ai-gateway", "-o", "name")
	if got := h.stdout.String(); got != "modelrollout.rollouts.modelrollout.io/gpt4\nmodelrollout.rollouts.modelrollout.io/mixtral\n" {
		t.Errorf("-o name printed %q", got)
	}
	h.expect(0, "get", "-n", "ai-gateway", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.canaryWeight}{\"\\n\"}{end}")
	if got := h.stdout.String(); got != "gpt4=25\nmixtral=0\n" {
		t.Errorf("-o jsonpath printed %q", got)
	}
	h.expect(0, "get", "gpt4", "-n", "ai-gateway", "-o", "jsonpath={.spec.canary.name}")
	if got := h.stdout.String(); got != "vllm-gpt4-v2" {
		t.Errorf("-o jsonpath on one rollout printed %q", got)
	}
	h.expect(0, "get", "-n", "ai-gateway", "-o", "custom-columns=NAME:.metadata.name,GATES:.status.gates[*].name,ROLLBACK:{.status.rollback.reason}")
	if got := h.stdout.String(); got != "NAME      GATES                 ROLLBACK\ngpt4      errors,latency,ttft   <none>\nmixtral   errors,latency,ttft   AlertFiring\n" {
		t.Errorf("-o custom-columns printed %q", got)
	}
	h.expect(0, "get", "-n", "ai-gateway", "-o", "custom-columns=NAME:metadata.name", "--no-headers")
	if got := h.stdout.String(); got != "gpt4\nmixtral\n" {
		t.Errorf("-o custom-columns --no-headers printed %q", got)
	}
	h.expect(0, "get", "gpt4", "-n", "ai-gateway", "-o", "wide")
	assertContains(t, h.stdout.String(), []string{
		"NAME   ROUTE                  CANARY         WEIGHT   STEP   PHASE         AGE   STABLE         MESSAGE\n",
		"gpt4   model-header-routing   vllm-gpt4-v2   25       2/5    Progressing   41m   vllm-gpt4-v1   Step 2/5: canary at 25%, next step in 18m\n"})
	h.expect(0, "get", "-A", "--no-headers")
	assertContains(t, h.stdout.String(), []string{"ai-gateway   gpt4"}, "NAMESPACE")
	h.expect(0, "get", "gpt4", "-n", "ai-gateway", "--template", "{{.metadata.name}} {{.status.phase}}")
	if got := h.stdout.String(); got != "gpt4 Progressing" {
		t.Errorf("--template printed %q", got)
	}
	// An empty namespace is an empty List in json, as with kubectl.
	h.expect(0, "get", "-n", "empty", "-o", "json")
	assertContains(t, h.stdout.String(), []string{`"kind": "List"`, `"items": []`})

	for _, tt := range []struct{ output, want string }{
		{"toml", `unable to match a printer suitable for the output format "toml", allowed formats are: wide,custom-columns,json,yaml,`},
		{"custom-columns=", "custom-columns format specified but no custom columns given"},
		{"custom-columns=NAME", `unexpected custom-columns spec "NAME", expected <header>:<json-path-expr>`},
		{"jsonpath={.metadata.name", "unclosed action"},
	} {
		h.expect(2, "get", "-n", "ai-gateway", "-o", tt.output)
		assertContains(t, h.stderr.String(), []string{"Error: ", tt.want})
	}
}

func TestCompletion(t *testing.T) {
	ro := progressing()
	other := rolledBack()
	other.Name = "mixtral"
	far := progressing()
	far.Name, far.Namespace = "llama", "team-b"
	h := newHarness(t, ro, other, far)

	h.expect(0, "__complete", "status", "-n", "ai-gateway", "")
	want := "gpt4\tProgressing, canary vllm-gpt4-v2 at 25%\nmixtral\tRolledBack, canary vllm-gpt4-v2 at 0%\n:4\n"
	if got := h.stdout.String(); !strings.HasPrefix(got, want) {
		t.Errorf("completion of status:\n%q\nwant prefix\n%q", got, want)
	}
	h.expect(0, "__complete", "abort", "-n", "ai-gateway", "mi")
	assertContains(t, h.stdout.String(), []string{"mixtral\t"}, "gpt4\t")
	h.expect(0, "__complete", "promote", "--namespace=team-b", "")
	assertContains(t, h.stdout.String(), []string{"llama\t"}, "gpt4\t")
	// One name only: nothing more after it.
	h.expect(0, "__complete", "retry", "gpt4", "")
	assertContains(t, h.stdout.String(), []string{":4\n"}, "mixtral")
	h.expect(0, "__complete", "get", "-o", "")
	assertContains(t, h.stdout.String(), []string{"wide\n", "custom-columns\n", "json\n", "yaml\n", "name\n", "jsonpath\n"})

	for _, shell := range []string{"bash", "zsh", "fish"} {
		h.expect(0, "completion", shell)
		assertContains(t, h.stdout.String(), []string{"kubectl-modelrollout", "__complete"})
	}
	h.expect(0, "completion", "--help")
	assertContains(t, h.stdout.String(), []string{"kubectl_complete-modelrollout"})
}
