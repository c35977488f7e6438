package plan

import (
	"fmt"
	"math"
	"strconv"
	"time"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Capacity-aware steps (spec.capacityFactor): a step may raise the canary's
// weight only once the canary has enough ready endpoints for its share.

// capacity is what the reconciler counted for spec.capacityFactor.
type Capacity struct {
	ReadyStable, ReadyCanary int
}

// capacityRecheck is how often a rollout waiting for the capacity of an
// InferencePool counts its pods again: no watch announces a pod that
// becomes ready (Services have their EndpointSlices watched).
const capacityRecheck = 5 * time.Second

// requiredCanary is ceil(readyStable × weight / 100 × factor).
func requiredCanary(readyStable int, weight int32, factor float64) int {
	need := float64(readyStable) * float64(weight) / 100 * factor
	// Tolerate the float error of e.g. 10 × 30 / 100 × 1.0.
	return int(math.Ceil(need - 1e-9))
}

// capacityHold says whether the canary lacks the ready endpoints a step of
// weight w needs. It records the wait in status.capacity, and when the wait
// passes progressDeadline rolls back a canary that has traffic (or stalls
// one that has none).
func (p *planner) capacityHold(w int32) bool {
	st := p.st
	f := p.ro.Spec.CapacityFactor
	c := p.obs.Capacity
	if f == nil || c == nil {
		st.Capacity = nil
		return false
	}
	need := requiredCanary(c.ReadyStable, w, *f)
	if c.ReadyCanary >= need {
		if st.Capacity != nil {
			p.emit(false, "CapacityMet", "Canary has %d ready endpoints, enough for %d%% (needs %d), after %s",
				c.ReadyCanary, w, need, p.obs.Now.Sub(st.Capacity.Since.Time).Round(time.Second))
			st.Capacity = nil
		}
		return false
	}
	msg := fmt.Sprintf("waiting for capacity: %d%% needs %d ready canary endpoints (ceil(%d ready stable × %d%% × %s)), %d ready",
		w, need, c.ReadyStable, w, strconv.FormatFloat(*f, 'g', -1, 64), c.ReadyCanary)
	if st.Capacity == nil || st.Capacity.Weight != w {
		st.Capacity = &rolloutsv1.CapacityStatus{Since: p.now(), Weight: w}
		p.emit(true, rolloutsv1.ReasonWaitingForCapacity, "%s", capitalize(msg))
	}
	st.Capacity.ReadyStable = int32(c.ReadyStable)
	st.Capacity.ReadyCanary = int32(c.ReadyCanary)
	st.Capacity.Required = int32(need)

	waited := p.obs.Now.Sub(st.Capacity.Since.Time)
	deadline := p.progressDeadline()
	if waited >= deadline {
		msg = fmt.Sprintf("%s for %s, past the progress deadline of %s", msg, waited.Round(time.Second), deadline)
		if st.CurrentStepIndex != nil && canaryServes(st) {
			st.Capacity = nil
			p.rollback(rolloutsv1.ReasonProgressDeadlineExceeded, capitalize(msg))
			return true
		}
		p.capacityStalled = true
	} else {
		p.requeue(deadline - waited)
	}
	if kind := p.ro.Spec.Canary.KindOrDefault(); kind == rolloutsv1.BackendKindInferencePool {
		p.requeue(capacityRecheck)
	}
	p.capacityWait = &Problem{Reason: rolloutsv1.ReasonWaitingForCapacity, Message: msg}
	return true
}

// capacityMatters says whether the rollout may raise the canary's weight:
// it is waiting to start or stepping, for its current revision.
func CapacityMatters(ro *rolloutsv1.ModelRollout) bool {
	st := &ro.Status
	switch st.Phase {
	case rolloutsv1.PhaseSucceeded, rolloutsv1.PhaseRolledBack, rolloutsv1.PhaseIdle:
		return st.Revision != ro.Spec.Revision()
	}
	return true
}
