package controllers

import (
	"context"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Webhook calls, gate rounds and prompt gate evaluations each share one pool
// of slots among all rollouts. A fairShare hands those slots out so that no
// namespace can hold more than its share: at most perNamespace slots per
// namespace, and when a slot frees up the waiting namespaces take turns
// (round robin), whatever the number of calls each has queued. A namespace
// with many slow calls then waits behind its own calls only, and a namespace
// with nothing in flight gets its first slot at once, even when the slow calls
// of other namespaces fill the pool.

// Defaults of the pools' sizes and per-namespace caps.
const (
	// DefaultWebhookConcurrency bounds the webhook calls in flight.
	DefaultWebhookConcurrency = 32
	// DefaultWebhookConcurrencyPerNamespace bounds the webhook calls in
	// flight for the rollouts of one namespace.
	DefaultWebhookConcurrencyPerNamespace = 8
	// DefaultGateConcurrencyPerNamespace bounds the gate rounds running at
	// once for the rollouts of one namespace.
	DefaultGateConcurrencyPerNamespace = 8
	// DefaultPromptConcurrency bounds the prompt gate evaluations running
	// at once (each sends up to its gate's concurrency of prompts).
	DefaultPromptConcurrency = 32
	// DefaultPromptConcurrencyPerNamespace bounds the prompt gate
	// evaluations running at once for the rollouts of one namespace.
	DefaultPromptConcurrencyPerNamespace = 8
)

// Pools named in the queue-depth series.
const (
	poolWebhooks = "webhook"
	poolGates    = "gate"
	poolPrompts  = "prompt"
)

// fairShare is a counting semaphore with a cap per namespace and round-robin
// hand-over between namespaces.
//
// A namespace with no slot held always gets its first slot at once, even when
// the pool is full: other namespaces that fill the pool (say four with eight
// ten-minute webhooks each, against the default 32 and 8) cannot make it wait.
// So running may exceed total, by at most the number of namespaces holding
// exactly one slot: a slot over total is only ever a namespace's first, and
// the waiters get freed slots only while running is below total, so releases
// bring the pool back under total before anyone else's queued call runs. (A
// namespace giving back its last slot while calls of it wait hands that slot
// to its oldest call, which is then its first.) Every other call of a
// namespace waits for a slot under total and for its namespace's turn.
type fairShare struct {
	pool  string
	total int
	perNS int
	// depth is the queue-depth gauge (labels pool, namespace); optional.
	depth *prometheus.GaugeVec

	mu      sync.Mutex
	running int
	active  map[string]int
	queues  map[string][]*fairWaiter
	// ring lists the namespaces with waiters in the order they get their
	// next turn.
	ring []string
}

type fairWaiter struct {
	ready   chan struct{}
	granted bool
}

// newFairShare returns a pool of total slots (DefaultWebhookConcurrency when
// <= 0) of which one namespace holds at most perNS (total when <= 0 or more).
func newFairShare(pool string, total, perNS int, depth *prometheus.GaugeVec) *fairShare {
	if total <= 0 {
		total = DefaultWebhookConcurrency
	}
	if perNS <= 0 || perNS > total {
		perNS = total
	}
	return &fairShare{
		pool: pool, total: total, perNS: perNS, depth: depth,
		active: map[string]int{},
		queues: map[string][]*fairWaiter{},
	}
}

// acquire waits for a slot for a call of the namespace. It returns the
// function that gives the slot back, or false when ctx ended first.
func (f *fairShare) acquire(ctx context.Context, namespace string) (func(), bool) {
	if ctx.Err() != nil {
		return nil, false
	}
	release := func() { f.release(namespace) }
	f.mu.Lock()
	// A namespace with nothing in flight never has calls waiting (release
	// hands its queue a first slot), so its call runs at once, over total
	// if need be.
	if len(f.queues[namespace]) == 0 &&
		(f.active[namespace] == 0 || f.running < f.total && f.active[namespace] < f.perNS) {
		f.running++
		f.active[namespace]++
		f.mu.Unlock()
		return sync.OnceFunc(release), true
	}
	w := &fairWaiter{ready: make(chan struct{})}
	if len(f.queues[namespace]) == 0 {
		f.ring = append(f.ring, namespace)
	}
	f.queues[namespace] = append(f.queues[namespace], w)
	f.observe(namespace)
	f.mu.Unlock()

	select {
	case <-w.ready:
		if ctx.Err() != nil {
			// Granted and cancelled at once: the caller is gone, so the
			// slot goes to the next waiter.
			release()
			return nil, false
		}
		return sync.OnceFunc(release), true
	case <-ctx.Done():
	}
	f.mu.Lock()
	if w.granted {
		// Granted while ctx ended: hand the slot on.
		f.mu.Unlock()
		release()
		return nil, false
	}
	q := f.queues[namespace]
	for i := range q {
		if q[i] == w {
			f.queues[namespace] = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(f.queues[namespace]) == 0 {
		f.dropFromRing(namespace)
	}
	f.observe(namespace)
	f.mu.Unlock()
	return nil, false
}

func (f *fairShare) release(namespace string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running--
	if f.active[namespace]--; f.active[namespace] <= 0 {
		delete(f.active, namespace)
		// Its last slot is back while calls of it wait: the oldest runs at
		// once, as a new call would, whatever the pool holds.
		if len(f.queues[namespace]) > 0 {
			f.grant(slices.Index(f.ring, namespace))
		}
	}
	// Only slots under total go to waiters: the release of a slot over
	// total (some namespace's first) hands nothing on.
	f.dispatch()
}

// dispatch hands the slots under total to the waiting namespaces, one after
// the other. Called with mu held.
func (f *fairShare) dispatch() {
	for f.running < f.total {
		turn := -1
		for i, ns := range f.ring {
			if f.active[ns] < f.perNS {
				turn = i
				break
			}
		}
		if turn < 0 {
			return
		}
		f.grant(turn)
	}
}

// grant gives a slot to the oldest waiter of the namespace at f.ring[turn],
// which goes to the back of the ring if it has more calls waiting. Called
// with mu held.
func (f *fairShare) grant(turn int) {
	ns := f.ring[turn]
	q := f.queues[ns]
	w := q[0]
	q[0] = nil
	f.queues[ns] = q[1:]
	f.ring = append(f.ring[:turn:turn], f.ring[turn+1:]...)
	if len(f.queues[ns]) > 0 {
		f.ring = append(f.ring, ns) // its next call waits for its next turn
	} else {
		delete(f.queues, ns)
	}
	f.running++
	f.active[ns]++
	w.granted = true
	close(w.ready)
	f.observe(ns)
}

func (f *fairShare) dropFromRing(namespace string) {
	delete(f.queues, namespace)
	for i, ns := range f.ring {
		if ns == namespace {
			f.ring = append(f.ring[:i:i], f.ring[i+1:]...)
			return
		}
	}
}

// observe sets the namespace's queue depth; a namespace with an empty queue
// has no series. Called with mu held.
func (f *fairShare) observe(namespace string) {
	if f.depth == nil {
		return
	}
	if n := len(f.queues[namespace]); n > 0 {
		f.depth.WithLabelValues(f.pool, namespace).Set(float64(n))
		return
	}
	f.depth.DeleteLabelValues(f.pool, namespace)
}

// waiting is the number of calls of the namespace waiting for a slot.
func (f *fairShare) waiting(namespace string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queues[namespace])
}

// FairShares sizes the pools that all rollouts share and caps the share of
// each namespace. Zero values take the defaults.
type FairShares struct {
	// WebhookConcurrency bounds the webhook calls in flight;
	// DefaultWebhookConcurrency when zero.
	WebhookConcurrency int
	// WebhookConcurrencyPerNamespace bounds those of one namespace;
	// DefaultWebhookConcurrencyPerNamespace when zero.
	WebhookConcurrencyPerNamespace int
	// GateConcurrencyPerNamespace bounds the gate rounds of one namespace
	// (the pool is the reconciler's GateConcurrency);
	// DefaultGateConcurrencyPerNamespace when zero.
	GateConcurrencyPerNamespace int
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// shareSlots gives the webhook runner and the gate rounds their fair-share
// pools. Called once the runners exist.
func (r *ModelRolloutReconciler) shareSlots() {
	depth := r.Metrics.queueDepth()
	if r.hooks != nil {
		r.hooks.slots = newFairShare(poolWebhooks, orDefault(r.Shares.WebhookConcurrency, DefaultWebhookConcurrency),
			orDefault(r.Shares.WebhookConcurrencyPerNamespace, DefaultWebhookConcurrencyPerNamespace), depth)
	}
	if r.background != nil {
		r.background.slots = newFairShare(poolGates, orDefault(r.GateConcurrency, DefaultGateConcurrency),
			orDefault(r.Shares.GateConcurrencyPerNamespace, DefaultGateConcurrencyPerNamespace), depth)
	}
}

// promptSlot waits for a slot of the prompt gate pool for a gate of the
// namespace; ok is false when ctx ended first.
func (g *PrometheusGates) promptSlot(ctx context.Context, namespace string) (func(), bool) {
	g.promptSharesOnce.Do(func() {
		g.promptShares = newFairShare(poolPrompts, orDefault(g.PromptConcurrency, DefaultPromptConcurrency),
			orDefault(g.PromptConcurrencyPerNamespace, DefaultPromptConcurrencyPerNamespace), g.Metrics.queueDepth())
	})
	return g.promptShares.acquire(ctx, namespace)
}

// inUse is the number of slots held, for tests.
func (f *fairShare) inUse() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}
