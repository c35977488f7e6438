package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
