package controllers

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crevent "sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Gate rounds run off the reconcile workers. A reconcile that finds a
// rollout's gates due starts a round in the background and returns at once;
// the round's result comes back through the work queue, and the next
// reconcile of that rollout takes it. A slow or hanging Prometheus then
// delays only the verdict of the rollouts that query it: steps, aborts and
// rollbacks of every other rollout keep their workers.

// Defaults of the background evaluator.
const (
	// DefaultGateConcurrency bounds the gate rounds running at once.
	DefaultGateConcurrency = 32
	// DefaultGateRoundTimeout bounds one round of a rollout's gates (each
	// query has its own, shorter timeout: spec.analysis.prometheus.timeout).
	DefaultGateRoundTimeout = 2 * time.Minute
)

type roundResult struct {
	key   plan.RoundKey
	round *plan.GateRound
}

// gateRun is one round in flight. Superseded (another round for the
// rollout, a decision that moved it past the round's step, its deletion),
// it is cancelled through its context and its result dropped.
type gateRun struct {
	key    plan.RoundKey
	cancel context.CancelFunc
	// gone runs once the cancelled round of a deleted rollout has
	// returned: whatever the round recorded meanwhile (gate series) goes.
	gone func()
}

// backgroundGates runs gate rounds with bounded concurrency.
type backgroundGates struct {
	gates        GateEvaluator
	roundTimeout time.Duration
	slots        *fairShare
	notify       chan crevent.TypedGenericEvent[client.Object]
	base         context.Context

	mu sync.Mutex
	// inflight holds at most one round per rollout: starting another
	// cancels it.
	inflight map[types.NamespacedName]*gateRun
	// done holds at most one result per rollout, until the next reconcile
	// takes it.
	done map[types.NamespacedName]roundResult
}

func newBackgroundGates(ctx context.Context, gates GateEvaluator, concurrency int, roundTimeout time.Duration) *backgroundGates {
	if concurrency <= 0 {
		concurrency = DefaultGateConcurrency
	}
	if roundTimeout <= 0 {
		roundTimeout = DefaultGateRoundTimeout
	}
	return &backgroundGates{
		gates:        gates,
		roundTimeout: roundTimeout,
		slots:        newFairShare(poolGates, concurrency, DefaultGateConcurrencyPerNamespace, nil),
		notify:       make(chan crevent.TypedGenericEvent[client.Object], 1024),
		base:         ctx,
		inflight:     map[types.NamespacedName]*gateRun{},
		done:         map[types.NamespacedName]roundResult{},
	}
}

// take returns the finished round for the rollout's current step, or starts
// one and returns nil. A round finished for another step is dropped; one
// running for another step is cancelled.
func (b *backgroundGates) take(ctx context.Context, ro *rolloutsv1.ModelRollout, now time.Time) *plan.GateRound {
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	want := plan.RoundKeyOf(ro)
	b.mu.Lock()
	defer b.mu.Unlock()
	if res, ok := b.done[key]; ok {
		delete(b.done, key)
		if res.key == want {
			return res.round
		}
	}
	if run := b.inflight[key]; run != nil {
		if run.key == want {
			return nil
		}
		run.cancel()
	}
	rctx, cancel := context.WithCancel(b.base)
	run := &gateRun{key: want, cancel: cancel}
	b.inflight[key] = run
	snapshot := ro.DeepCopy()
	go func() {
		defer cancel()
		release, ok := b.slots.acquire(rctx, key.Namespace)
		if !ok {
			// Cancelled while it waited for a slot.
			b.finish(ctx, key, run, nil, snapshot, now)
			return
		}
		tctx, tcancel := context.WithTimeout(rctx, b.roundTimeout)
		round := b.gates.Evaluate(tctx, snapshot, now)
		tcancel()
		release()
		if rctx.Err() != nil {
			round = nil
		}
		b.finish(ctx, key, run, round, snapshot, now)
	}()
	return nil
}

// finish keeps the result of a round that is still the rollout's current
// one and announces it; a superseded round (nil, or no longer current) is
// dropped: the reconcile that cancelled it has started the round that
// counts, or the rollout is gone.
func (b *backgroundGates) finish(ctx context.Context, key types.NamespacedName, run *gateRun, round *plan.GateRound, snapshot *rolloutsv1.ModelRollout, now time.Time) {
	b.mu.Lock()
	current := b.inflight[key] == run
	if current {
		delete(b.inflight, key)
		if round != nil {
			b.done[key] = roundResult{key: run.key, round: round}
		}
	}
	gone := run.gone
	b.mu.Unlock()
	if gone != nil {
		gone()
	}
	logger := log.FromContext(ctx)
	if !current || round == nil {
		logger.V(1).Info("Gate round cancelled", "after", time.Since(now).Round(time.Millisecond))
		return
	}
	logger.V(1).Info("Gate round finished", "took", time.Since(now).Round(time.Millisecond))
	select {
	case b.notify <- crevent.TypedGenericEvent[client.Object]{Object: snapshot}:
	case <-b.base.Done():
	}
}

// supersede cancels the rollout's round in flight when the status written
// for it (st, at the spec's generation) no longer judges the round's step:
// a new revision, a rollback, another step, an edited spec, a finished
// rollout. Its result could never be taken.
func (b *backgroundGates) supersede(ro *rolloutsv1.ModelRollout, st *rolloutsv1.ModelRolloutStatus) {
	if b == nil {
		return
	}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	want := plan.RoundKeyFor(ro.Generation, st)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch st.Phase {
	case rolloutsv1.PhaseIdle, rolloutsv1.PhaseSucceeded, rolloutsv1.PhaseRolledBack:
		delete(b.done, key)
	default:
		if run := b.inflight[key]; run == nil || run.key == want {
			return
		}
	}
	if run := b.inflight[key]; run != nil {
		run.cancel()
		delete(b.inflight, key)
	}
}

// cancel cancels the rollout's round in flight, if any, and leaves it in
// inflight until it returns: forget, later, then runs its gone once it has.
func (b *backgroundGates) cancel(key types.NamespacedName) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if run := b.inflight[key]; run != nil {
		run.cancel()
	}
}

// forget cancels the round of a deleted rollout and drops what is known of
// it. gone, if not nil, runs once a cancelled round has returned (at once
// when none runs).
func (b *backgroundGates) forget(key types.NamespacedName, gone func()) {
	if b == nil {
		if gone != nil {
			gone()
		}
		return
	}
	b.mu.Lock()
	delete(b.done, key)
	run := b.inflight[key]
	delete(b.inflight, key)
	if run != nil {
		run.gone = gone
		run.cancel()
	}
	b.mu.Unlock()
	if run == nil && gone != nil {
		gone()
	}
}

// sizes counts the entries of each map, for tests and docs/performance/memory.md.
func (b *backgroundGates) sizes(into map[string]int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	into["gates.inflight"] = len(b.inflight)
	into["gates.done"] = len(b.done)
}
