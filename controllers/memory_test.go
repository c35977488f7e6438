package controllers

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Route writes are remembered until the cache shows them, until the rollout
// that sent them goes, or writtenMaxAge at the latest (a deleted route).
func TestRouteWritesPruned(t *testing.T) {
	var w writeState
	a := types.NamespacedName{Namespace: "ai", Name: "a"}
	b := types.NamespacedName{Namespace: "ai", Name: "b"}
	w.wroteAt(a, "route-1", 5, epoch)
	if !w.stale("route-1", 4) {
		t.Fatal("a cached route older than the write is stale")
	}
	if w.stale("route-1", 5) {
		t.Fatal("the cache at the written generation is not stale")
	}
	if n := len(w.written); n != 0 {
		t.Fatalf("once the cache shows the write it is forgotten; %d entries left", n)
	}
	if w.stale("route-1", 4) {
		t.Fatal("the cache never goes back: nothing to wait for")
	}

	w.wroteAt(a, "route-1", 7, epoch)
	w.wroteAt(b, "route-2", 3, epoch)
	w.forget(a)
	if w.stale("route-1", 6) {
		t.Fatal("the deleted rollout's write is forgotten")
	}
	if !w.stale("route-2", 2) {
		t.Fatal("another rollout's write is kept")
	}

	// route-2 is deleted: no cache read comes. A later write elsewhere
	// sweeps it once it is older than writtenMaxAge.
	w.wroteAt(b, "route-3", 1, epoch.Add(writtenMaxAge+time.Minute))
	if _, ok := w.written["route-2"]; ok {
		t.Fatal("a write no cache showed within writtenMaxAge is swept")
	}
	if !w.stale("route-3", 0) {
		t.Fatal("the fresh write is kept")
	}
}

// A header route write the cache caught up with leaves no empty map behind.
func TestHeaderWritesPruned(t *testing.T) {
	var w writeState
	key := types.NamespacedName{Namespace: "ai", Name: "gpt4"}
	w.wroteHeader(key, "gpt4-header", 2, epoch)
	if !w.headerStale(key, nil, epoch) {
		t.Fatal("a header route the cache lacks is stale")
	}
	if w.headerStale(key, nil, epoch.Add(headerLagMax+time.Second)) {
		t.Fatal("past headerLagMax the write is forgotten")
	}
	sizes := map[string]int{}
	w.sizes(sizes)
	if sizes["writes.headerWritten"] != 0 {
		t.Fatalf("sizes %v: the rollout's entry must go with its last header write", sizes)
	}
}

// ctxBlockingGates is a GateEvaluator whose rounds last until their context
// ends; it records each round's context.
type ctxBlockingGates struct {
	mu     sync.Mutex
	rounds []context.Context
	calls  atomic.Int32
}

func (g *ctxBlockingGates) Validate(context.Context, *rolloutsv1.ModelRollout) (*plan.Problem, error) {
	return nil, nil
}

func (g *ctxBlockingGates) Evaluate(ctx context.Context, _ *rolloutsv1.ModelRollout, _ time.Time) *plan.GateRound {
	g.mu.Lock()
	g.rounds = append(g.rounds, ctx)
	g.mu.Unlock()
	g.calls.Add(1)
	<-ctx.Done()
	return &plan.GateRound{}
}

func (g *ctxBlockingGates) round(i int) context.Context {
	g.mu.Lock()
	defer g.mu.Unlock()
	if i >= len(g.rounds) {
		return nil
	}
	return g.rounds[i]
}

func roundDone(g *ctxBlockingGates, i int) func() bool {
	return func() bool {
		ctx := g.round(i)
		return ctx != nil && ctx.Err() != nil
	}
}

func memGatedRollout() *rolloutsv1.ModelRollout {
	ro := &rolloutsv1.ModelRollout{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "gpt4", Generation: 1}}
	ro.Status = rolloutsv1.ModelRolloutStatus{Phase: rolloutsv1.PhaseProgressing, Revision: "r1", CanaryWeight: 10,
		CurrentStepIndex: ptr.To[int32](0), StartedAt: metaTime(epoch), StepStartedAt: microTime(epoch)}
	return ro
}

// A gate round is cancelled through its context when a newer step, a
// rollback, an edited spec or the rollout's deletion supersedes it, and its
// result is never kept.
func TestSupersededGateRoundsCancelled(t *testing.T) {
	g := &ctxBlockingGates{}
	bg := newBackgroundGates(context.Background(), g, 4, time.Hour)
	key := types.NamespacedName{Namespace: "ai", Name: "gpt4"}
	ro := memGatedRollout()

	if bg.take(context.Background(), ro, epoch) != nil {
		t.Fatal("the first take starts a round")
	}
	waitFor(t, "round 0 starts", func() bool { return g.round(0) != nil })
	if bg.take(context.Background(), ro, epoch) != nil || g.round(0).Err() != nil {
		t.Fatal("taking again for the same step waits for the same round")
	}

	By := func(what string, change func(), round int) {
		t.Helper()
		change()
		waitFor(t, what+" cancels the round in flight", roundDone(g, round))
	}
	// The next step: the round judged the one before.
	By("a new step", func() {
		ro.Status.CurrentStepIndex, ro.Status.CanaryWeight, ro.Status.StepStartedAt = ptr.To[int32](1), 25, microTime(epoch.Add(time.Minute))
		bg.take(context.Background(), ro, epoch)
	}, 0)
	waitFor(t, "round 1 starts", func() bool { return g.round(1) != nil })
	// An edited spec, seen by the decision written after it.
	By("an edited spec", func() {
		next := ro.DeepCopy()
		next.Generation = 2
		bg.supersede(next, &next.Status)
	}, 1)
	ro.Generation = 2
	bg.take(context.Background(), ro, epoch)
	waitFor(t, "round 2 starts", func() bool { return g.round(2) != nil })
	// A new revision.
	By("a new revision", func() {
		st := ro.Status.DeepCopy()
		st.Revision, st.CurrentStepIndex, st.StartedAt = "r2", nil, metaTime(epoch.Add(time.Hour))
		bg.supersede(ro, st)
	}, 2)
	bg.take(context.Background(), ro, epoch)
	waitFor(t, "round 3 starts", func() bool { return g.round(3) != nil })
	// A rollback at the same step and weight.
	By("a rollback", func() {
		st := ro.Status.DeepCopy()
		st.Phase = rolloutsv1.PhaseRolledBack
		bg.supersede(ro, st)
	}, 3)
	bg.take(context.Background(), ro, epoch)
	waitFor(t, "round 4 starts", func() bool { return g.round(4) != nil })
	// A decision that keeps the step keeps the round.
	bg.supersede(ro, &ro.Status)
	if g.round(4).Err() != nil {
		t.Fatal("a decision at the round's step must not cancel it")
	}
	// Deletion.
	gone := make(chan struct{})
	By("the rollout's deletion", func() { bg.forget(key, func() { close(gone) }) }, 4)
	select {
	case <-gone:
	case <-time.After(30 * time.Second):
		t.Fatal("forget's gone runs once the cancelled round returned")
	}
	waitFor(t, "every map empties", func() bool {
		s := map[string]int{}
		bg.sizes(s)
		return s["gates.inflight"] == 0 && s["gates.done"] == 0
	})
	if n := g.calls.Load(); n != 5 {
		t.Fatalf("%d rounds evaluated, want 5", n)
	}
}

// A round waiting for a slot is cancelled too, and never evaluates.
func TestQueuedGateRoundCancelled(t *testing.T) {
	g := &ctxBlockingGates{}
	bg := newBackgroundGates(context.Background(), g, 1, time.Hour)
	first, second := memGatedRollout(), memGatedRollout()
	second.Name = "other"
	bg.take(context.Background(), first, epoch)
	waitFor(t, "the first round holds the only slot", func() bool { return g.round(0) != nil })
	bg.take(context.Background(), second, epoch)
	bg.forget(types.NamespacedName{Namespace: "ai", Name: "other"}, nil)
	bg.forget(types.NamespacedName{Namespace: "ai", Name: "gpt4"}, nil)
	waitFor(t, "both rounds end", func() bool {
		s := map[string]int{}
		bg.sizes(s)
		return s["gates.inflight"] == 0 && s["gates.done"] == 0 && bg.slots.inUse() == 0
	})
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("the queued round of a deleted rollout was evaluated: %d rounds", n)
	}
}

// notifyServer records the OnTransition payloads it gets, each answered
// only once release has a token for it.
type notifyServer struct {
	*httptest.Server
	mu      sync.Mutex
	got     []WebhookPayload
	release chan struct{}
}

func newNotifyServer(t *testing.T) *notifyServer {
	s := &notifyServer{release: make(chan struct{}, 1000)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p WebhookPayload
		_ = json.Unmarshal(body, &p)
		select {
		case <-s.release:
		case <-r.Context().Done():
			return
		}
		s.mu.Lock()
		s.got = append(s.got, p)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *notifyServer) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.got {
		out = append(out, p.Message)
	}
	return out
}

func notifyingRollout(url string) *rolloutsv1.ModelRollout {
	ro := &rolloutsv1.ModelRollout{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "gpt4"}}
	ro.Spec.Webhooks = []rolloutsv1.Webhook{{Name: "chat", Type: rolloutsv1.WebhookOnTransition, URL: url, Timeout: "30s"}}
	return ro
}

func loopbackRunner(ctx context.Context) *webhookRunner {
	return newWebhookRunner(ctx, egress.MustNew(nil, []string{"127.0.0.0/8"}), nil, logr.Discard())
}

// The notifications of one rollout leave in the order of its transitions,
// one after another, however slowly the receiver answers.
func TestNotificationsInOrder(t *testing.T) {
	srv := newNotifyServer(t)
	w := loopbackRunner(t.Context())
	ro := notifyingRollout(srv.URL)
	var want []string
	for i := range 12 {
		msg := string(rune('a'+i)) + "-transition"
		want = append(want, msg)
		w.notifyTransition(ro, rolloutsv1.PhaseProgressing, []plan.Event{{Reason: "Step", Message: msg}})
	}
	for range want {
		srv.release <- struct{}{}
	}
	waitFor(t, "every notification arrives", func() bool { return len(srv.messages()) == len(want) })
	if got := srv.messages(); !equalStrings(got, want) {
		t.Fatalf("notifications arrived as %v, want %v", got, want)
	}
	waitFor(t, "the queue goes once it is empty", func() bool {
		s := map[string]int{}
		w.sizes(s)
		return s["hooks.notifications"] == 0
	})
}

// A receiver that does not keep up gets the first notification and the
// latest notifyQueueMax; the ones in between are dropped, each reported.
func TestNotificationQueueBounded(t *testing.T) {
	srv := newNotifyServer(t)
	w := loopbackRunner(t.Context())
	var dropped []string
	var mu sync.Mutex
	w.dropped = func(n notification, waiting int) {
		mu.Lock()
		defer mu.Unlock()
		dropped = append(dropped, n.payload.Message)
		if waiting != notifyQueueMax {
			t.Errorf("%d waiting when one was dropped, want %d", waiting, notifyQueueMax)
		}
	}
	ro := notifyingRollout(srv.URL)
	var all []string
	send := func(i int) {
		msg := "transition-" + string(rune('A'+i))
		all = append(all, msg)
		w.notifyTransition(ro, rolloutsv1.PhaseProgressing, []plan.Event{{Reason: "Step", Message: msg}})
	}
	send(0)
	// The first is on its way (the server holds it); then more than fit.
	waitFor(t, "the first notification is being sent", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.notes[noteKey{rollout: types.NamespacedName{Namespace: "ai", Name: "gpt4"}, hook: "chat"}]) == 0
	})
	extra := 3
	for i := 1; i <= notifyQueueMax+extra; i++ {
		send(i)
	}
	mu.Lock()
	if !equalStrings(dropped, all[1:1+extra]) {
		t.Fatalf("dropped %v, want the oldest waiting %v", dropped, all[1:1+extra])
	}
	mu.Unlock()
	for range 1 + notifyQueueMax {
		srv.release <- struct{}{}
	}
	want := append([]string{all[0]}, all[1+extra:]...)
	waitFor(t, "the kept notifications arrive", func() bool { return len(srv.messages()) == len(want) })
	if got := srv.messages(); !equalStrings(got, want) {
		t.Fatalf("notifications arrived as %v, want %v", got, want)
	}
}

// A blocking call of a deleted rollout, or of an earlier revision, is
// cancelled, and its answer is not kept.
func TestSupersededWebhookCallsCancelled(t *testing.T) {
	var received, cancelled atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read to the end: only then does the server notice the client
		// going away.
		_, _ = io.Copy(io.Discard, r.Body)
		received.Add(1)
		<-r.Context().Done()
		cancelled.Add(1)
	}))
	t.Cleanup(srv.Close)
	w := loopbackRunner(t.Context())
	ro := &rolloutsv1.ModelRollout{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "gpt4"}}
	ro.Status.Revision = "r1"
	hook := rolloutsv1.Webhook{Name: "approve", Type: rolloutsv1.WebhookPreRollout, URL: srv.URL, Timeout: "60s"}
	w.start(ro, []plan.HookCall{{Webhook: hook, Revision: "r1", Call: 1}})
	waitFor(t, "the call reaches the webhook", func() bool { return received.Load() == 1 })
	ro.Status.Revision = "r2"
	w.start(ro, []plan.HookCall{{Webhook: hook, Revision: "r2", Call: 1}})
	waitFor(t, "the call of revision r1 is cancelled", func() bool { return cancelled.Load() == 1 })
	waitFor(t, "the call of revision r2 reaches the webhook", func() bool { return received.Load() == 2 })
	w.forget(types.NamespacedName{Namespace: "ai", Name: "gpt4"})
	waitFor(t, "the deleted rollout's call is cancelled", func() bool { return cancelled.Load() == 2 })
	waitFor(t, "nothing is kept", func() bool {
		s := map[string]int{}
		w.sizes(s)
		return s["hooks.inflight"] == 0 && s["hooks.done"] == 0 && w.slots.inUse() == 0
	})
	if r := w.results(types.NamespacedName{Namespace: "ai", Name: "gpt4"}); len(r) != 0 {
		t.Fatalf("answers of cancelled calls were kept: %v", r)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
