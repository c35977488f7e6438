package plan

import (
	"fmt"
	"strings"
	"time"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Overrides: a person or tool asks, through a token annotation, to pass over
// what normally holds a step.
//
//   - promote-full moves the canary to the last step (100%) now, past the
//     current step's pause and gates and every step in between. The last step
//     then runs as usual: it bakes its pause, its gates are evaluated at 100%,
//     and a failing gate still rolls back.
//   - skip-gates advances the current step now, past its pause and the
//     verdicts of its gates (a gate that holds, has not been evaluated in this
//     step, or failed fewer times in a row than its failureLimit), once. The
//     next step is judged as usual. Skipping the last step ends the rollout
//     Succeeded.
//
// Neither passes over an explicit hold (spec.paused or the paused
// annotation), an unmet precondition (a route that does not resolve, another
// rollout's rule, a rejected patch, an invalid gate, an unavailable canary),
// nor a rollback: a gate that reached its failureLimit in the same decision
// rolls back, and the override is ignored. An override acts in the decision
// that first sees its token or never: one that cannot act is recorded as
// handled with a Warning event, so that it never fires later by surprise.
// Gate failure counts start again at 0 after an override, as after a step
// whose gates passed.

// maxOverrides bounds status.overrides.
const maxOverrides = 10

// pendingOverride is a new override token that progress acts on.
type pendingOverride struct {
	Kind rolloutsv1.OverrideKind
	// why is set when progress found a reason not to act on it.
	why string
}

// takeOverrides records new promote-full and skip-gates tokens as handled
// and returns the overrides they ask for, a full promote first.
func (p *planner) takeOverrides() []rolloutsv1.OverrideKind {
	st := p.st
	req := p.obs.Requests
	var out []rolloutsv1.OverrideKind
	if req.PromoteFull != "" && req.PromoteFull != st.LastHandledPromoteFull {
		st.LastHandledPromoteFull = req.PromoteFull
		out = append(out, rolloutsv1.OverridePromoteFull)
	}
	if req.SkipGates != "" && req.SkipGates != st.LastHandledSkipGates {
		st.LastHandledSkipGates = req.SkipGates
		out = append(out, rolloutsv1.OverrideSkipGates)
	}
	return out
}

// handleOverrides takes new override tokens: in a phase with a current
// step, the first (a full promote when both are asked at once) is left for
// progress to act on; the others are ignored.
func (p *planner) handleOverrides() {
	st := p.st
	ks := p.takeOverrides()
	if len(ks) == 0 {
		return
	}
	if !ks[0].Action().Allowed(st.Phase, st.CurrentStepIndex != nil) {
		for _, k := range ks {
			p.ignoreOverride(k, fmt.Sprintf("the rollout is %s", st.Phase))
		}
		return
	}
	for _, k := range ks[1:] {
		p.ignoreOverride(k, "a full promote was requested at the same time and goes further")
	}
	p.override = &pendingOverride{Kind: ks[0]}
}

// overrideWords names an override in messages and its events.
func overrideWords(k rolloutsv1.OverrideKind) (name, applied, ignored string) {
	if k == rolloutsv1.OverridePromoteFull {
		return "Full promote", "PromotedFull", "PromoteFullIgnored"
	}
	return "Skip of the gates", "GatesSkipped", "SkipGatesIgnored"
}

// requester says who asked and why, for events: ` requested by alice:
// "eval harness checked"`.
func (p *planner) requester() string {
	req := p.obs.Requests
	who := req.RequestedBy
	if who == "" {
		who = "an unnamed requester (no " + rolloutsv1.AnnotationRequestedBy + " annotation)"
	}
	s := " requested by " + who
	if req.PromoteReason != "" {
		s += fmt.Sprintf(": %q", Truncate(req.PromoteReason, maxOverrideReason))
	} else {
		s += " (no reason given)"
	}
	return s
}

// ignoreOverride records that an override was not acted on, and why.
func (p *planner) ignoreOverride(k rolloutsv1.OverrideKind, why string) {
	name, _, reason := overrideWords(k)
	p.emit(true, reason, "%s%s ignored: %s", name, p.requester(), why)
}

// settleOverride ignores an override that this decision did not apply.
func (p *planner) settleOverride() {
	o := p.override
	if o == nil {
		return
	}
	p.override = nil
	why := o.why
	if why == "" {
		st := p.st
		switch b := p.blocked(); {
		case st.Phase == rolloutsv1.PhaseRolledBack && st.Rollback != nil:
			why = "the rollout rolled back: " + st.Rollback.Message
		case b != nil:
			why = "a precondition is unmet: " + b.Message
		default:
			why = fmt.Sprintf("the rollout is %s", st.Phase)
		}
	}
	p.ignoreOverride(o.Kind, why)
}

// applyOverride acts on a pending override at step i, once the rollout is
// known to be neither rolled back nor blocked. It returns true when it did,
// and the decision is complete.
func (p *planner) applyOverride(i int) bool {
	o := p.override
	if o == nil {
		return false
	}
	st := p.st
	switch {
	case p.ro.Spec.Paused:
		o.why = "the rollout is paused by spec.paused; an override does not lift a hold: set spec.paused to false first"
		return false
	case p.obs.Requests.Paused:
		o.why = "the rollout is paused by the " + rolloutsv1.AnnotationPaused + " annotation; an override does not lift a hold: resume it first"
		return false
	}
	last := len(p.steps) - 1
	if o.Kind == rolloutsv1.OverridePromoteFull && i == last {
		o.why = fmt.Sprintf("the canary is already at the last step %s (%d%%); a promote ends its pause, a skip of the gates passes over its gates", st.Step, st.CanaryWeight)
		return false
	}

	passed := p.passedOver(i)
	if o.Kind == rolloutsv1.OverridePromoteFull {
		// The steps between the current one and the last, 1-based.
		switch first, end := i+2, last; {
		case first == end:
			passed = append(passed, fmt.Sprintf("step %d/%d", first, len(p.steps)))
		case first < end:
			passed = append(passed, fmt.Sprintf("steps %d/%d to %d/%d", first, len(p.steps), end, len(p.steps)))
		}
	}
	fromStep, from := st.Step, st.CanaryWeight
	for j := range st.Gates {
		st.Gates[j].ConsecutiveFailures = 0
		st.Gates[j].ConsecutiveInconclusive = 0
	}
	p.override = nil

	name, reason, _ := overrideWords(o.Kind)
	switch {
	case o.Kind == rolloutsv1.OverridePromoteFull:
		p.startStep(last)
	case i == last:
		p.succeedNow()
	default:
		p.startStep(i + 1)
	}
	what := fmt.Sprintf("canary weight %d -> %d", from, st.CanaryWeight)
	if st.Phase == rolloutsv1.PhaseSucceeded {
		what = fmt.Sprintf("the rollout Succeeded at canary weight %d", st.CanaryWeight)
	} else if st.Step != "" {
		what += " (step " + st.Step + ")"
	}
	msg := what
	if len(passed) > 0 {
		msg += "; passed over: " + strings.Join(passed, "; ")
	}
	req := p.obs.Requests
	token := req.PromoteFull
	if o.Kind == rolloutsv1.OverrideSkipGates {
		token = req.SkipGates
	}
	st.Overrides = append(st.Overrides, rolloutsv1.OverrideRecord{
		At: p.now(), Kind: o.Kind, Token: token, Revision: st.Revision, Step: fromStep, FromWeight: from, ToWeight: st.CanaryWeight,
		Reason: req.PromoteReason, RequestedBy: req.RequestedBy, Message: Truncate(msg, MaxMessage),
	})
	if n := len(st.Overrides); n > maxOverrides {
		st.Overrides = st.Overrides[n-maxOverrides:]
	}
	p.emit(false, reason, "%s at step %s%s: %s", name, fromStep, p.requester(), msg)
	return true
}

// succeedNow ends the last step: the canary holds all traffic. progress
// calls it once the last step has baked and its gates passed, a skip of
// the last step's gates at once.
func (p *planner) succeedNow() {
	st := p.st
	if n := len(st.StepHistory); n > 0 && st.StepHistory[n-1].EndedAt == nil {
		ended := p.micro()
		st.StepHistory[n-1].EndedAt = &ended
	}
	st.Phase = rolloutsv1.PhaseSucceeded
	st.Message = fmt.Sprintf("Canary %s holds 100%% of traffic", p.ro.Spec.Canary.Name)
	p.emit(false, "Succeeded", "Rollout of %s succeeded", st.Revision)
	p.d.RequeueAfter = 0
}

// passedOver lists what held step i when an override ended it: the pause
// left, a missing promote, the gates that did not pass.
func (p *planner) passedOver(i int) []string {
	st := p.st
	step := p.steps[i]
	var out []string
	switch pause := stepPause(step); {
	case st.StepStartedAt == nil:
		out = append(out, "the step's weight was not on the routes yet")
	case step.Pause == nil && !st.Promoted:
		out = append(out, "the step waited for a promote")
	case !st.Promoted:
		if left := st.StepStartedAt.Add(pause).Sub(p.obs.Now); left > 0 {
			out = append(out, fmt.Sprintf("pause of %s with %s left", string(*step.Pause), left.Round(time.Second)))
		}
	}
	if st.StepStartedAt != nil {
		out = append(out, p.gateHolds()...)
	}
	return out
}
