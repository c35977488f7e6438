package plan

import (
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Pre-traffic gates (gate.preTraffic; the default of prompt gates) are
// evaluated before the first step, with the canary at weight 0, once every
// other precondition of the first step holds. Step 1's weight goes out only
// once each of them passed in this rollout (since status.startedAt). A
// failure (failureLimit reached) or inconclusiveLimit rolls back with no
// traffic moved; no data or an error holds and is evaluated again after
// analysis.interval. This is part of the pure decision (plan); the
// reconciler starts a round when preTrafficDue says so.

// preTrafficHolds takes the pre-traffic round of this decision, if any,
// and says whether the first step must wait for the pre-traffic gates: it
// returns true while one has not passed, and after rolling back on a
// failure.
func (p *planner) preTrafficHolds() bool {
	a := p.ro.Spec.Analysis
	if !hasPreTrafficGates(a) {
		return false
	}
	st := p.st
	g := p.obs.Gates
	if g != nil {
		st.Gates = g.Gates
		if g.Rollback != nil {
			p.rollback(g.Rollback.Reason, "canary failed its pre-traffic checks, before any user traffic: "+g.Rollback.Message)
			return true
		}
	}
	holds := preTrafficPending(a, st)
	if len(holds) == 0 {
		if g != nil {
			p.emit(false, "PreTrafficChecksPassed", "Canary %s passed its pre-traffic checks", p.ro.Spec.Canary.Name)
		}
		return false
	}
	st.Phase = rolloutsv1.PhaseWaiting
	st.Message = Truncate("Before step 1, canary at 0%: "+holds[0], 1024)
	if next := nextPreTrafficAt(a, st); next.IsZero() {
		p.requeue(time.Second) // the first round starts at the next reconcile
	} else {
		p.requeue(next.Sub(p.obs.Now))
	}
	return true
}

// hasPreTrafficGates says whether a gate of the analysis runs pre-traffic.
func hasPreTrafficGates(a *rolloutsv1.Analysis) bool {
	return a != nil && slices.ContainsFunc(a.Gates, rolloutsv1.Gate.RunsPreTraffic)
}

// preTrafficPending says, for every pre-traffic gate that has not passed in
// this rollout, why.
func preTrafficPending(a *rolloutsv1.Analysis, st *rolloutsv1.ModelRolloutStatus) []string {
	byName := map[string]rolloutsv1.GateStatus{}
	for _, gs := range st.Gates {
		byName[gs.Name] = gs
	}
	var holds []string
	for _, g := range a.Gates {
		if !g.RunsPreTraffic() || g.DryRun {
			continue
		}
		gs, ok := byName[g.Name]
		switch {
		case !ok || !evaluatedSince(gs, st.StartedAt):
			holds = append(holds, fmt.Sprintf("waiting for pre-traffic gate %q to be evaluated", g.Name))
		case gs.Verdict == rolloutsv1.VerdictPass:
		case gs.Verdict == rolloutsv1.VerdictNoData && NoDataPassed(g, gs):
		default:
			msg := gs.Message
			if msg == "" {
				msg = string(gs.Verdict)
			}
			holds = append(holds, fmt.Sprintf("pre-traffic gate %q holds: %s", g.Name, msg))
		}
	}
	return holds
}

// evaluatedSince says whether the gate was evaluated at or after t (the
// rollout's start; status times have one-second precision).
func evaluatedSince(gs rolloutsv1.GateStatus, t *metav1.Time) bool {
	if gs.LastEvaluatedAt == nil {
		return false
	}
	return t == nil || !gs.LastEvaluatedAt.Time.Before(t.Time.Truncate(time.Second))
}

// nextPreTrafficAt is when the pre-traffic gates are due again: one
// interval after their latest evaluation in this rollout, or the zero time
// when they were not evaluated yet (due now).
func nextPreTrafficAt(a *rolloutsv1.Analysis, st *rolloutsv1.ModelRolloutStatus) time.Time {
	var last time.Time
	for _, gs := range st.Gates {
		if i := slices.IndexFunc(a.Gates, func(g rolloutsv1.Gate) bool { return g.Name == gs.Name }); i < 0 || !a.Gates[i].RunsPreTraffic() {
			continue
		}
		if evaluatedSince(gs, st.StartedAt) && gs.LastEvaluatedAt.After(last) {
			last = gs.LastEvaluatedAt.Time
		}
	}
	if last.IsZero() {
		return last
	}
	return last.Add(AnalysisInterval(a))
}

// preTrafficDue says whether the pre-traffic gates must be evaluated now:
// the rollout waits for its first step, a pre-traffic gate has not passed
// yet, and the interval since their last evaluation has passed. The
// reconciler asks only once the canary is available.
func PreTrafficDue(ro *rolloutsv1.ModelRollout, now time.Time) bool {
	st := &ro.Status
	a := ro.Spec.Analysis
	if ro.Spec.Canary == nil || st.Revision != ro.Spec.Revision() || st.CurrentStepIndex != nil ||
		st.Phase != rolloutsv1.PhaseWaiting || !hasPreTrafficGates(a) {
		return false
	}
	if len(preTrafficPending(a, st)) == 0 {
		return false
	}
	return !now.Before(nextPreTrafficAt(a, st))
}
