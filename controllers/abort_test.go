package controllers

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	crevent "sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// A rollout with a pending abort jumps the work queue, ahead of events
// queued before it, including a thousand-rollout initial list.
func TestAbortJumpsTheQueue(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("abort-test")
	defer q.ShutDown()
	h := abortFirstHandler()
	ctx := context.Background()
	for i := range 1000 {
		ro := newRollout("ai", step(100, "1h"))
		ro.Name = "r" + itoa32(int32(i))
		h.Create(ctx, crevent.TypedCreateEvent[client.Object]{Object: ro, IsInInitialList: true}, q)
	}
	for i := range 10 {
		ro := newRollout("ai", step(100, "1h"))
		ro.Name = "step" + itoa32(int32(i))
		h.Update(ctx, crevent.TypedUpdateEvent[client.Object]{ObjectOld: ro.DeepCopy(), ObjectNew: withVersion(ro, "2")}, q)
	}
	aborted := newRollout("ai", step(100, "1h"))
	aborted.Name = "aborted"
	aborted.Annotations = map[string]string{rolloutsv1.AnnotationAbort: "t1"}
	h.Update(ctx, crevent.TypedUpdateEvent[client.Object]{ObjectOld: newRollout("ai"), ObjectNew: withVersion(aborted, "3")}, q)

	// The queue takes additions through a buffer: wait until all are in.
	NewWithT(t).Eventually(q.Len).Should(Equal(1011))
	first, prio, _ := q.GetWithPriority()
	if first.Name != "aborted" || prio != abortPriority {
		t.Fatalf("first out of the queue: %s at priority %d, want the aborted rollout at %d", first.Name, prio, abortPriority)
	}
	// Once the abort is recorded in status, its events are ordinary again.
	aborted.Status.LastHandledAbort = "t1"
	h.Update(ctx, crevent.TypedUpdateEvent[client.Object]{ObjectOld: newRollout("ai"), ObjectNew: withVersion(aborted, "4")}, q)
	if _, prio, _ := q.GetWithPriority(); prio == abortPriority {
		t.Fatal("a handled abort must not keep the high priority")
	}
}

// A new leader's initial list puts the rollouts that move ahead of the
// settled ones, so that a failover resumes steps before it re-reads a fleet
// of finished rollouts.
func TestInitialListMovingFirst(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("initial-list-test")
	defer q.ShutDown()
	h := abortFirstHandler()
	ctx := context.Background()
	for i := range 1000 {
		ro := newRollout("ai")
		ro.Name = "idle" + itoa32(int32(i))
		ro.Spec.Canary = nil
		ro.Status.Phase = rolloutsv1.PhaseIdle
		h.Create(ctx, crevent.TypedCreateEvent[client.Object]{Object: ro, IsInInitialList: true}, q)
		done := newRollout("ai")
		done.Name = "done" + itoa32(int32(i))
		done.Status.Phase = rolloutsv1.PhaseSucceeded
		done.Status.Revision = done.Spec.Revision()
		h.Create(ctx, crevent.TypedCreateEvent[client.Object]{Object: done, IsInInitialList: true}, q)
	}
	moving := newRollout("ai")
	moving.Name = "moving"
	moving.Status.Phase = rolloutsv1.PhaseProgressing
	h.Create(ctx, crevent.TypedCreateEvent[client.Object]{Object: moving, IsInInitialList: true}, q)
	retry := newRollout("ai")
	retry.Name = "retry"
	retry.Status.Phase = rolloutsv1.PhaseRolledBack
	retry.Status.Revision = retry.Spec.Revision()
	retry.Annotations = map[string]string{rolloutsv1.AnnotationRetry: "t1"}
	h.Create(ctx, crevent.TypedCreateEvent[client.Object]{Object: retry, IsInInitialList: true}, q)

	NewWithT(t).Eventually(q.Len).Should(Equal(2002))
	got := map[string]bool{}
	for range 2 {
		item, _, _ := q.GetWithPriority()
		got[item.Name] = true
		q.Done(item)
	}
	if !got["moving"] || !got["retry"] {
		t.Fatalf("first out of the initial list: %v, want the moving rollout and the one with a pending retry", got)
	}
	// Outside the initial list, a settled rollout's events are ordinary.
	later := newRollout("ai")
	later.Name = "later"
	later.Status.Phase = rolloutsv1.PhaseIdle
	later.Spec.Canary = nil
	h.Create(ctx, crevent.TypedCreateEvent[client.Object]{Object: later}, q)
	NewWithT(t).Eventually(q.Len).Should(Equal(2001))
	if item, prio, _ := q.GetWithPriority(); item.Name != "later" || prio != 0 {
		t.Fatalf("a created rollout got %s at priority %d, want later at 0", item.Name, prio)
	}
}

func withVersion(ro *rolloutsv1.ModelRollout, rv string) *rolloutsv1.ModelRollout {
	ro = ro.DeepCopy()
	ro.ResourceVersion = rv
	return ro
}

// hangingGates passes every gate of a rollout without an abort request;
// for one that carries it, it blocks until its context ends, like a Secret
// read or Prometheus query that never answers. A reconcile that began before
// the request runs on; one that sees the request and calls a gate never
// lands.
type hangingGates struct {
	calls atomic.Int32
}

func (g *hangingGates) wait(ctx context.Context, ro *rolloutsv1.ModelRollout) {
	if ro.Annotations[rolloutsv1.AnnotationAbort] != "" {
		g.calls.Add(1)
		<-ctx.Done()
	}
}

func (g *hangingGates) Validate(ctx context.Context, ro *rolloutsv1.ModelRollout) (*plan.Problem, error) {
	g.wait(ctx, ro)
	return nil, nil
}

func (g *hangingGates) Evaluate(ctx context.Context, ro *rolloutsv1.ModelRollout, now time.Time) *plan.GateRound {
	g.wait(ctx, ro)
	round := &plan.GateRound{}
	for _, gate := range ro.Spec.Analysis.Gates {
		round.Gates = append(round.Gates, rolloutsv1.GateStatus{Name: gate.Name, Verdict: rolloutsv1.VerdictPass, LastEvaluatedAt: &metav1.Time{Time: now}})
	}
	return round
}

// writeLog records the kinds the operator writes, in order.
type writeLog struct {
	client.Client
	// ns, when set, limits the log to writes in that namespace: the
	// operator of a spec also reconciles the rollouts earlier specs left.
	ns  string
	mu  sync.Mutex
	log []string
	// patches holds each write's patch, for failure messages.
	patches []string
}

func (w *writeLog) add(obj client.Object, s string) { w.addPatch(obj, s, "") }

func (w *writeLog) addPatch(obj client.Object, s, patch string) {
	if w.ns != "" && obj.GetNamespace() != w.ns {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = append(w.log, s)
	w.patches = append(w.patches, s+" "+patch)
}

// since describes the writes from entry i on, with their patches.
func (w *writeLog) since(i int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if i > len(w.patches) {
		return ""
	}
	return strings.Join(w.patches[i:], "\n")
}

func (w *writeLog) entries() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.log...)
}

func writeKind(o client.Object) string {
	switch o.(type) {
	case *gatewayv1.HTTPRoute:
		return "HTTPRoute"
	case *rolloutsv1.ModelRollout:
		return "ModelRollout"
	}
	return "other"
}

func (w *writeLog) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	w.add(obj, writeKind(obj))
	return w.Client.Patch(ctx, obj, patch, opts...)
}

func (w *writeLog) Status() client.SubResourceWriter {
	return &statusLog{SubResourceWriter: w.Client.Status(), w: w}
}

type statusLog struct {
	client.SubResourceWriter
	w *writeLog
}

func (s *statusLog) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	data, _ := patch.Data(obj)
	s.w.addPatch(obj, writeKind(obj)+"/status", string(data))
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

var _ = Describe("Abort fast path", func() {
	var (
		ns string
		op *operator
	)
	BeforeEach(func() { ns = newNamespace() })
	AfterEach(func() {
		if op != nil {
			op.stop()
			op = nil
		}
	})

	// Every gate and Secret call for the rollout hangs once it carries the
	// abort: if the abort waited on one, it would never land. (Hanging from
	// a point in time instead let a reconcile already running before the
	// abort hang, holding the rollout's worker, so the abort waited on it.)
	It("writes the routes before the status and never waits on gates or Secrets", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		gates := &hangingGates{}
		var writes *writeLog
		op = startOperator(func(r *ModelRolloutReconciler, _ ctrl.Manager) {
			writes = &writeLog{Client: r.Client, ns: ns}
			r.Client = writes
			r.Gates = gates
		})
		ro := newRollout(ns, step(25, "1h"), step(100, "1h"))
		ro.Spec.Analysis = &rolloutsv1.Analysis{Interval: "1m", Gates: []rolloutsv1.Gate{{Name: "errors", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-error-ratio", Max: ptr.To(0.05)}}}}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(25)))
		Eventually(func() *rolloutsv1.MicroTime { return getRollout(ns, "gpt4").Status.StepStartedAt }).ShouldNot(BeNil())

		before := len(writes.entries())
		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationAbort: "now", rolloutsv1.AnnotationAbortReason: "bad answers"})
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		Consistently(func() []string { return writes.entries()[before:] }).Should(Equal([]string{"HTTPRoute", "ModelRollout/status"}),
			func() string {
				return "routes first, then the status that records the token; nothing more:\n" + writes.since(before)
			})
		Expect(getRollout(ns, "gpt4").Status.LastHandledAbort).To(Equal("now"))
		Expect(getRollout(ns, "gpt4").Status.Rollback.Message).To(Equal("bad answers"))
	})
})
