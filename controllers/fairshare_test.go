package controllers

import (
	"context"
	"maps"
	"math/rand/v2"
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
	f := newFairShare("test", 3, 2, nil)
	mustGet(t, f, "b")
	r1, _ := f.acquire(ctx, "a")
	r2, _ := f.acquire(ctx, "a")
	// a queues five more, then b one: the pool is full (and b has a call
	// in flight, so its next one waits too).
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
	releaseA, _ := f.acquire(context.Background(), "a")
	// b's first call runs at once, over the pool's size; its next ones wait.
	release := mustGet(t, f, "b")

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
	releaseA()
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

// queuedCtx tells when acquire has queued its call: acquire looks at Done
// only once the waiter is in the queue (a call granted at once never does).
type queuedCtx struct {
	context.Context
	queued chan struct{}
	once   sync.Once
}

func newQueuedCtx(ctx context.Context) *queuedCtx {
	return &queuedCtx{Context: ctx, queued: make(chan struct{})}
}

func (c *queuedCtx) Done() <-chan struct{} {
	c.once.Do(func() { close(c.queued) })
	return c.Context.Done()
}

// mustQueue asks for a slot that must wait: it returns the channel that
// yields the release function once granted (nil when ctx ended first).
func mustQueue(t *testing.T, ctx context.Context, f *fairShare, ns string) <-chan func() {
	t.Helper()
	qc := newQueuedCtx(ctx)
	got := acquireAsync(qc, f, ns)
	select {
	case <-qc.queued:
	case r := <-got:
		if r != nil {
			r()
		}
		t.Fatalf("%s's call got a slot at once, want it to wait", ns)
	}
	return got
}

// mustGet asks for a slot that must be granted at once.
func mustGet(t *testing.T, f *fairShare, ns string) func() {
	t.Helper()
	qc := newQueuedCtx(context.Background())
	got := acquireAsync(qc, f, ns)
	select {
	case r := <-got:
		if r == nil {
			t.Fatalf("%s's call was refused", ns)
		}
		return r
	case <-qc.queued:
		t.Fatalf("%s's call waits, want a slot at once", ns)
	}
	return nil
}

// checkBound fails unless running stays within total plus the namespaces
// holding exactly one slot, and no namespace with nothing in flight waits.
func checkBound(t *testing.T, f *fairShare) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	sum, ones := 0, 0
	for ns, n := range f.active {
		sum += n
		if n == 1 {
			ones++
		}
		if n > f.perNS {
			t.Fatalf("%s holds %d slots, more than its share %d", ns, n, f.perNS)
		}
	}
	if sum != f.running {
		t.Fatalf("running %d, but the namespaces hold %d (%v)", f.running, sum, f.active)
	}
	if f.running > f.total+ones {
		t.Fatalf("running %d over total %d + %d namespaces with one slot (%v)", f.running, f.total, ones, f.active)
	}
	for ns, q := range f.queues {
		if len(q) > 0 && f.active[ns] == 0 {
			t.Fatalf("%s has %d calls waiting and nothing in flight", ns, len(q))
		}
		if len(q) > 0 && f.running < f.total && f.active[ns] < f.perNS {
			t.Fatalf("%s waits with a free slot under total (running %d) and under its share", ns, f.running)
		}
	}
}

func TestFairShareFirstSlotNeverWaits(t *testing.T) {
	reg := prometheus.NewRegistry()
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "depth"}, []string{"pool", "namespace"})
	reg.MustRegister(depth)
	f := newFairShare("webhook", 4, 2, depth)
	ctx := context.Background()
	// a and b fill the pool with their shares (slow calls, say).
	a1, a2 := mustGet(t, f, "a"), mustGet(t, f, "a")
	b1, b2 := mustGet(t, f, "b"), mustGet(t, f, "b")
	aNext := mustQueue(t, ctx, f, "a")

	// c has nothing in flight: its first call runs at once, over total;
	// so does d's.
	c1 := mustGet(t, f, "c")
	d1 := mustGet(t, f, "d")
	if got := f.inUse(); got != 6 {
		t.Fatalf("%d slots in use, want 6: total 4 + the first slots of c and d", got)
	}
	checkBound(t, f)

	// c holds a slot and the pool is full: its second call waits like
	// anyone's, and so does one it gives up on.
	cNext := mustQueue(t, ctx, f, "c")
	cctx, cancel := context.WithCancel(ctx)
	cGivenUp := mustQueue(t, cctx, f, "c")
	if got := testutil.ToFloat64(depth.WithLabelValues("webhook", "c")); got != 2 {
		t.Fatalf("queue depth of c = %v, want 2", got)
	}
	cancel()
	if r := <-cGivenUp; r != nil {
		t.Fatal("a cancelled call got a slot")
	}
	if got := testutil.ToFloat64(depth.WithLabelValues("webhook", "c")); got != 1 {
		t.Fatalf("queue depth of c = %v after a cancel, want 1", got)
	}
	checkBound(t, f)

	// d's first slot, over total, comes back: 5 still run, nobody's
	// queued call starts.
	d1()
	checkBound(t, f)
	if got := f.inUse(); got != 5 || f.waiting("a") != 1 || f.waiting("c") != 1 {
		t.Fatalf("%d in use, a waits %d, c waits %d; want 5, 1, 1", got, f.waiting("a"), f.waiting("c"))
	}
	// Back to total: still nobody's turn.
	b1()
	checkBound(t, f)
	if got := f.inUse(); got != 4 || f.waiting("a") != 1 || f.waiting("c") != 1 {
		t.Fatalf("%d in use, a waits %d, c waits %d; want 4, 1, 1", got, f.waiting("a"), f.waiting("c"))
	}
	// c gives its only slot back: its queued call is now a first call and
	// runs at once, though the pool is full.
	c1()
	cGot := <-cNext
	if cGot == nil {
		t.Fatal("c's queued call was refused")
	}
	checkBound(t, f)
	// A slot under total, but a holds its share: its call still waits.
	b2()
	checkBound(t, f)
	if got := f.inUse(); got != 3 || f.waiting("a") != 1 {
		t.Fatalf("%d in use, a waits %d; want 3, 1", got, f.waiting("a"))
	}
	// One of a's slots back: its queued call takes it.
	a1()
	aGot := <-aNext
	if aGot == nil {
		t.Fatal("a's queued call was refused")
	}
	checkBound(t, f)
	for _, r := range []func(){a2, aGot, cGot} {
		r()
		checkBound(t, f)
	}
	if got := f.inUse(); got != 0 {
		t.Fatalf("%d slots in use after every release", got)
	}
	if n := testutil.CollectAndCount(depth); n != 0 {
		t.Fatalf("%d queue-depth series left, want 0", n)
	}
}

// TestFairShareRandomCalls runs a fixed pseudo-random mix of calls, releases
// and cancellations over five namespaces and checks after each step that a
// namespace with nothing in flight got its slot at once and any other call
// only under total and its share, that a release hands on only a slot under
// total (or the releasing namespace's first), that running stays within
// total + the namespaces holding one slot, and the queue depths.
func TestFairShareRandomCalls(t *testing.T) {
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "depth"}, []string{"pool", "namespace"})
	f := newFairShare("gate", 4, 2, depth)
	rng := rand.New(rand.NewPCG(1, 2))
	namespaces := []string{"a", "b", "c", "d", "e"}

	type result struct {
		id      int
		release func()
	}
	results := make(chan result)
	type waiter struct {
		ns     string
		cancel context.CancelFunc
	}
	waiters := map[int]waiter{}
	type slot struct {
		ns      string
		release func()
	}
	var held []slot
	nextID := 0
	// state is the pool's count of slots in use, and the namespace's slots
	// and calls waiting.
	state := func(ns string) (running, active, waiting int) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.running, f.active[ns], len(f.queues[ns])
	}
	// collect takes the grants made by the last step: running tells how
	// many slots the test does not hold yet.
	collect := func() {
		for f.inUse() > len(held) {
			r := <-results
			if r.release == nil {
				t.Fatalf("call %d was refused", r.id)
			}
			held = append(held, slot{waiters[r.id].ns, r.release})
			delete(waiters, r.id)
		}
	}
	checkDepth := func() {
		t.Helper()
		series := 0
		for _, ns := range namespaces {
			n := f.waiting(ns)
			if n == 0 {
				continue
			}
			series++
			if got := testutil.ToFloat64(depth.WithLabelValues("gate", ns)); int(got) != n {
				t.Fatalf("queue depth of %s = %v, want %d", ns, got, n)
			}
		}
		if got := testutil.CollectAndCount(depth); got != series {
			t.Fatalf("%d queue-depth series, want %d (one per namespace with calls waiting)", got, series)
		}
	}

	for range 2000 {
		switch op := rng.IntN(10); {
		case op < 5: // a call
			ns := namespaces[rng.IntN(len(namespaces))]
			running, active, waiting := state(ns)
			first := active == 0
			room := waiting == 0 && running < f.total && active < f.perNS
			id := nextID
			nextID++
			ctx, cancel := context.WithCancel(context.Background())
			qc := newQueuedCtx(ctx)
			go func() {
				r, ok := f.acquire(qc, ns)
				if !ok {
					r = nil
				}
				results <- result{id, r}
			}()
			select {
			case r := <-results:
				if r.id != id || r.release == nil {
					t.Fatalf("call %d: got result of %d (%v)", id, r.id, r.release != nil)
				}
				cancel()
				if !first && !room {
					t.Fatalf("%s's call got a slot at once with %d in use and %d of its own", ns, running, active)
				}
				held = append(held, slot{ns, r.release})
			case <-qc.queued:
				if first || room {
					t.Fatalf("%s's call waits with %d in use and %d of its own", ns, running, active)
				}
				waiters[id] = waiter{ns, cancel}
			}
		case op < 9: // a release
			if len(held) == 0 {
				continue
			}
			i := rng.IntN(len(held))
			s := held[i]
			held = slices.Delete(held, i, i+1)
			running, active, waiting := state(s.ns)
			s.release()
			collect()
			// A slot over total hands nothing on, except the releasing
			// namespace's first slot when it gave back its last one.
			after, _, _ := state(s.ns)
			if running-1 >= f.total {
				want := running - 1
				if active == 1 && waiting > 0 {
					want++
				}
				if after != want {
					t.Fatalf("release of %s's slot (%d of its own, %d waiting) at %d in use: %d in use after, want %d",
						s.ns, active, waiting, running, after, want)
				}
			}
		default: // a waiting call gives up
			if len(waiters) == 0 {
				continue
			}
			ids := slices.Sorted(maps.Keys(waiters))
			id := ids[rng.IntN(len(ids))]
			waiters[id].cancel()
			if r := <-results; r.id != id || r.release != nil {
				t.Fatalf("cancelled call %d: got result of %d (%v)", id, r.id, r.release != nil)
			}
			delete(waiters, id)
		}
		checkBound(t, f)
		checkDepth()
	}
	// Everyone finishes: every queued call runs in the end.
	for len(held) > 0 {
		s := held[0]
		held = held[1:]
		s.release()
		collect()
		checkBound(t, f)
	}
	if len(waiters) != 0 || f.inUse() != 0 {
		t.Fatalf("%d calls still wait, %d slots in use", len(waiters), f.inUse())
	}
	if n := testutil.CollectAndCount(depth); n != 0 {
		t.Fatalf("%d queue-depth series left, want 0", n)
	}
}
