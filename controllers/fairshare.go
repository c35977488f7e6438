package controllers

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Webhook calls, gate rounds and prompt gate evaluations each share one pool
// of slots among all rollouts. A fairShare hands those slots out so that no
// namespace can hold more than its share: at most perNamespace slots per
// namespace, and when a slot frees up the waiting namespaces take turns
// (round robin), whatever the number of calls each has queued. A namespace
// with many slow calls then waits behind its own calls only.

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
	if len(f.queues[namespace]) == 0 && f.running < f.total && f.active[namespace] < f.perNS {
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
	}
	f.dispatch()
}

// dispatch hands free slots to waiters, one namespace after the other.
// Called with mu held.
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
		ns := f.ring[turn]
		q := f.queues[ns]
		w := q[0]
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
