package controllers

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// acquireAsync asks for a slot in the background; the channel yields the
// release function once granted (nil when ctx ended first).
func acquireAsync(ctx context.Context, f *fairShare, ns string) <-chan func() {
	got := make(chan func(), 1)
	go func() {
		release, ok := f.acquire(ctx, ns)
		if !ok {
			release = nil
		}
		got <- release
	}()
	return got
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFairShareCapsANamespace(t *testing.T) {
	ctx := context.Background()
	f := newFairShare("test", 4, 2, nil)
	var held []func()
	for range 2 {
		r, ok := f.acquire(ctx, "a")
		if !ok {
			t.Fatal("a's first two calls must get a slot")
		}
		held = append(held, r)
	}
	third := acquireAsync(ctx, f, "a")
	waitFor(t, "a's third call to queue", func() bool { return f.waiting("a") == 1 })

	// b is not held up by a's queue: two slots are free for it.
	for range 2 {
		if _, ok := f.acquire(ctx, "b"); !ok {
			t.Fatal("b must get a slot while a waits")
		}
	}
	if len(third) > 0 {
		t.Fatal("a's third call got a slot beyond its cap")
	}
	// One of a's slots back: its next call runs.
	held[0]()
	held[0]() // a second release is a no-op
	waitFor(t, "a's third call to get a slot", func() bool { return f.waiting("a") == 0 })
	if r := <-third; r == nil {
		t.Fatal("a's third call was refused")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running != 4 || f.active["a"] != 2 || f.active["b"] != 2 {
		t.Fatalf("running %d, active %v; want 4, a=2 b=2", f.running, f.active)
	}
}

func TestFairShareTakesTurns(t *testing.T) {
	ctx := context.Background()
	f := newFairShare("test", 2, 2, nil)
	r1, _ := f.acquire(ctx, "a")
	r2, _ := f.acquire(ctx, "a")
	// a queues five more, then b one: the pool is full.
	var as []<-chan func()
	for i := range 5 {
		as = append(as, acquireAsync(ctx, f, "a"))
		waitFor(t, "a's call to queue", func() bool { return f.waiting("a") == i+1 })
	}
	b := acquireAsync(ctx, f, "b")
	waitFor(t, "b's call to queue", func() bool { return f.waiting("b") == 1 })

	// The first freed slot goes to a's oldest call (a's turn came first),
	// the second to b, ahead of a's four other calls.
	r1()
	waitFor(t, "a's oldest call to run", func() bool { return f.waiting("a") == 4 })
	if r := <-as[0]; r == nil {
		t.Fatal("a's oldest call was refused")
	}
	r2()
	waitFor(t, "b's call to run", func() bool { return f.waiting("b") == 0 })
	if r := <-b; r == nil {
		t.Fatal("b's call was refused")
	}
	if f.waiting("a") != 4 {
		t.Fatalf("a has %d calls waiting, want 4: b's turn must not take one of a's", f.waiting("a"))
	}
}

func TestFairShareCancelledWaiterLeavesTheQueue(t *testing.T) {
	reg := prometheus.NewRegistry()
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "depth"}, []string{"pool", "namespace"})
	reg.MustRegister(depth)
	f := newFairShare("webhook", 1, 1, depth)
	release, _ := f.acquire(context.Background(), "a")

	ctx, cancel := context.WithCancel(context.Background())
	waiting := acquireAsync(ctx, f, "b")
	other := acquireAsync(context.Background(), f, "b")
	waitFor(t, "b's calls to queue", func() bool { return f.waiting("b") == 2 })
	if got := testutil.ToFloat64(depth.WithLabelValues("webhook", "b")); got != 2 {
		t.Fatalf("queue depth of b = %v, want 2", got)
	}
	cancel()
	if r := <-waiting; r != nil {
		t.Fatal("a cancelled call got a slot")
	}
	if got := testutil.ToFloat64(depth.WithLabelValues("webhook", "b")); got != 1 {
		t.Fatalf("queue depth of b = %v after a cancel, want 1", got)
	}
	release()
	if r := <-other; r == nil {
		t.Fatal("b's remaining call was refused")
	}
	// The queue is empty: no series is left for b (nor a, which never waited).
	if n := testutil.CollectAndCount(depth); n != 0 {
		t.Fatalf("%d queue-depth series left, want 0", n)
	}
}

func TestFairShareDefaults(t *testing.T) {
	f := newFairShare("test", 0, 0, nil)
	if f.total != DefaultWebhookConcurrency || f.perNS != DefaultWebhookConcurrency {
		t.Fatalf("total %d perNS %d", f.total, f.perNS)
	}
	f = newFairShare("test", 4, 10, nil)
	if f.perNS != 4 {
		t.Fatalf("perNS %d, want it capped at the pool's 4", f.perNS)
	}
}

// blockingGates is a GateEvaluator whose rounds wait until released and
// record which rollouts they judged.
type blockingGates struct {
	mu      sync.Mutex
	started []string
	release chan struct{}
}

func (b *blockingGates) Validate(context.Context, *rolloutsv1.ModelRollout) (*plan.Problem, error) {
	return nil, nil
}

func (b *blockingGates) Evaluate(ctx context.Context, ro *rolloutsv1.ModelRollout, _ time.Time) *plan.GateRound {
	b.mu.Lock()
	b.started = append(b.started, ro.Namespace+"/"+ro.Name)
	b.mu.Unlock()
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return &plan.GateRound{}
}

func (b *blockingGates) judged() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.started...)
}

func TestGateRoundsFairShare(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gates := &blockingGates{release: make(chan struct{})}
	defer close(gates.release)
	r := &ModelRolloutReconciler{GateConcurrency: 2, Shares: FairShares{GateConcurrencyPerNamespace: 1}}
	r.background = newBackgroundGates(ctx, gates, r.GateConcurrency, time.Hour)
	r.shareSlots()
	rollout := func(ns, name string) *rolloutsv1.ModelRollout {
		return &rolloutsv1.ModelRollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	now := time.Now()
	r.background.take(ctx, rollout("a", "one"), now)
	r.background.take(ctx, rollout("a", "two"), now)
	waitFor(t, "a's second round to wait", func() bool { return r.background.slots.waiting("a") == 1 })
	// The pool has room for two rounds, but a holds its one: b's round runs.
	r.background.take(ctx, rollout("b", "one"), now)
	waitFor(t, "b's round to run", func() bool { return slices.Contains(gates.judged(), "b/one") })
	if got := gates.judged(); len(got) != 2 {
		t.Fatalf("rounds started: %v, want a's first and b's", got)
	}
}

func TestPromptGatesFairShare(t *testing.T) {
	g := &PrometheusGates{PromptConcurrency: 4, PromptConcurrencyPerNamespace: 1}
	release, ok := g.promptSlot(context.Background(), "a")
	if !ok {
		t.Fatal("a's first prompt gate got no slot")
	}
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	second := acquireAsync(ctx, g.promptShares, "a")
	waitFor(t, "a's second prompt gate to wait", func() bool { return g.promptShares.waiting("a") == 1 })
	if _, ok := g.promptSlot(context.Background(), "b"); !ok {
		t.Fatal("b's prompt gate got no slot while a waits")
	}
	cancel()
	if r := <-second; r != nil {
		t.Fatal("a's second prompt gate got a slot beyond its share")
	}
}
