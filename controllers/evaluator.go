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

// roundKey identifies what a round judged: a round is used only for the
// step (and weight) it was started for. A pre-traffic round (before the
// first step) is never taken for step 1, nor for another start of the same
// revision (a retry).
type roundKey struct {
	revision   string
	started    time.Time
	preTraffic bool
	step       int32
	weight     int32
	stepStart  time.Time
}

func roundKeyOf(ro *rolloutsv1.ModelRollout) roundKey {
	k := roundKey{revision: ro.Status.Revision, weight: ro.Status.CanaryWeight, preTraffic: ro.Status.CurrentStepIndex == nil}
	if ro.Status.StartedAt != nil {
		k.started = ro.Status.StartedAt.Time
	}
	if ro.Status.CurrentStepIndex != nil {
		k.step = *ro.Status.CurrentStepIndex
	}
	if ro.Status.StepStartedAt != nil {
		k.stepStart = ro.Status.StepStartedAt.Time
	}
	return k
}

type roundResult struct {
	key   roundKey
	round *gateRound
}

// backgroundGates runs gate rounds with bounded concurrency.
type backgroundGates struct {
	gates        GateEvaluator
	roundTimeout time.Duration
	slots        *fairShare
	notify       chan crevent.TypedGenericEvent[client.Object]
	base         context.Context

	mu       sync.Mutex
	inflight map[types.NamespacedName]roundKey
	done     map[types.NamespacedName]roundResult
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
		inflight:     map[types.NamespacedName]roundKey{},
		done:         map[types.NamespacedName]roundResult{},
	}
}

// take returns the finished round for the rollout's current step, or starts
// one and returns nil. A round finished for another step is dropped.
func (b *backgroundGates) take(ctx context.Context, ro *rolloutsv1.ModelRollout, now time.Time) *gateRound {
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	want := roundKeyOf(ro)
	b.mu.Lock()
	defer b.mu.Unlock()
	if res, ok := b.done[key]; ok {
		delete(b.done, key)
		if res.key == want {
			return res.round
		}
	}
	if k, running := b.inflight[key]; running && k == want {
		return nil
	}
	b.inflight[key] = want
	snapshot := ro.DeepCopy()
	logger := log.FromContext(ctx)
	go func() {
		release, ok := b.slots.acquire(b.base, key.Namespace)
		if !ok {
			return
		}
		rctx, cancel := context.WithTimeout(b.base, b.roundTimeout)
		round := b.gates.Evaluate(rctx, snapshot, now)
		cancel()
		release()
		b.mu.Lock()
		current, running := b.inflight[key]
		if current == want {
			delete(b.inflight, key)
		}
		if !running || current == want {
			// A round for a newer step may be running: keep only its result.
			b.done[key] = roundResult{key: want, round: round}
		}
		b.mu.Unlock()
		logger.V(1).Info("Gate round finished", "took", time.Since(now).Round(time.Millisecond))
		select {
		case b.notify <- crevent.TypedGenericEvent[client.Object]{Object: snapshot}:
		case <-b.base.Done():
		}
	}()
	return nil
}

// forget drops what is known of a deleted rollout.
func (b *backgroundGates) forget(key types.NamespacedName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.done, key)
	delete(b.inflight, key)
}
