package controllers

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// This file holds the rollout's decisions as a pure function: given the
// object (spec and last status), what the reconciler observed and the time,
// it returns the next status. The reconciler observes, calls plan, writes the
// status and then holds the routes at status.canaryWeight.

// problem is an unmet precondition or an invalid setting.
type problem struct {
	Reason  string
	Message string
	// Unwatched is set when no watch of the operator announces that the
	// problem is gone (an InferencePool, read without an informer since its
	// CRD may not be installed): the rollout then checks again every
	// unwatchedRecheck while it waits.
	Unwatched bool
}

// unwatchedRecheck is how often a rollout waiting on an Unwatched problem
// checks again.
const unwatchedRecheck = 5 * time.Second

// gateRound is the result of evaluating every gate once.
type gateRound struct {
	// Gates is the new status of every gate.
	Gates []rolloutsv1.GateStatus
	// Rollback is set when a gate reached its failureLimit or the analysis
	// its inconclusiveLimit.
	Rollback *problem
	// Holding names the gates that held the step (no data, Prometheus error).
	Holding *problem
}

// requests are the manual actions read from annotations.
type requests struct {
	Promote     string
	Abort       string
	AbortReason string
	Retry       string
	Paused      bool
}

// observation is everything the reconciler saw for one decision.
type observation struct {
	Now time.Time
	// Routes is set when a route or rule is missing or has no stable backend.
	Routes *problem
	// Canary is set when the canary backend is missing or has no ready
	// endpoints.
	Canary *problem
	// Analysis is set when a gate cannot be rendered or parsed, or its
	// Prometheus settings are unusable.
	Analysis *problem
	// Gates is the round of gate evaluations done for this decision, if any.
	Gates *gateRound
	// Requests holds the manual actions.
	Requests requests
	// RouteWeights holds, for every managed rule of every route found, the
	// canary weight it carries when the stable backend has the rest (100 -
	// canary), or -1 when the rule is in no such state.
	RouteWeights []int32
}

// event is a Kubernetes Event to record with the decision.
type event struct {
	Warning bool
	Reason  string
	Message string
}

// decision is the outcome of plan.
type decision struct {
	Status rolloutsv1.ModelRolloutStatus
	// ManageRoutes is false when the routes must not be touched (Idle).
	ManageRoutes bool
	// Retire lists backends (a replaced canary) whose weight must be set to 0.
	Retire []rolloutsv1.BackendRef
	Events []event
	// RequeueAfter is when the decision must be revisited even if nothing
	// changes: a pause ending, a gate evaluation falling due, a deadline.
	RequeueAfter time.Duration
}

// alertTokenPrefix marks abort tokens written by the Alertmanager receiver.
const alertTokenPrefix = "alert-"

type planner struct {
	ro    *rolloutsv1.ModelRollout
	obs   observation
	steps []rolloutsv1.Step
	st    *rolloutsv1.ModelRolloutStatus
	d     decision
}

// plan decides the next status of a rollout.
func plan(ro *rolloutsv1.ModelRollout, obs observation) decision {
	p := &planner{ro: ro, obs: obs, steps: ro.Spec.EffectiveSteps()}
	p.d.Status = *ro.Status.DeepCopy()
	p.st = &p.d.Status
	p.st.ObservedGeneration = ro.Generation
	p.run()
	p.setConditions()
	return p.d
}

func (p *planner) now() metav1.Time { return metav1.NewTime(p.obs.Now) }

func (p *planner) emit(warning bool, reason, format string, args ...any) {
	p.d.Events = append(p.d.Events, event{Warning: warning, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// requeue keeps the earliest positive deadline.
func (p *planner) requeue(after time.Duration) {
	if after <= 0 {
		after = time.Second
	}
	if p.d.RequeueAfter == 0 || after < p.d.RequeueAfter {
		p.d.RequeueAfter = after
	}
}

func (p *planner) run() {
	spec := &p.ro.Spec
	if spec.Canary == nil {
		p.idle()
		return
	}
	p.d.ManageRoutes = true

	if rev := spec.Revision(); p.st.Revision != rev {
		p.startRevision()
	}

	if p.handleRequests() {
		return
	}

	switch p.st.Phase {
	case rolloutsv1.PhaseSucceeded, rolloutsv1.PhaseRolledBack:
		// Terminal: the weights are held (100 or 0) until the canary changes
		// or the user retries.
		return
	}

	if p.st.CurrentStepIndex == nil {
		p.waitForStart()
		return
	}
	p.progress()
}

func (p *planner) idle() {
	st := p.st
	if st.Phase != rolloutsv1.PhaseIdle {
		p.emit(false, "Idle", "No canary declared; routes are left as they are")
	}
	st.Phase = rolloutsv1.PhaseIdle
	st.Revision = ""
	st.Canary = nil
	st.CurrentStepIndex = nil
	st.Step = ""
	st.CanaryWeight = 0
	st.StepStartedAt = nil
	st.Promoted = false
	st.StartedAt = nil
	st.WaitingSince = nil
	st.Rollback = nil
	st.StepHistory = nil
	st.Gates = nil
	st.Message = "No canary declared"
}

// startRevision resets the status for a new stable and canary pair. A
// previous canary that still had traffic is retired.
func (p *planner) startRevision() {
	st := p.st
	spec := &p.ro.Spec
	if st.Canary != nil && st.CanaryWeight > 0 && !sameBackend(*st.Canary, spec.Stable) && !sameBackend(*st.Canary, *spec.Canary) {
		p.d.Retire = append(p.d.Retire, *st.Canary)
		p.emit(true, "CanaryReplaced", "Canary %s replaced by %s at weight %d; its traffic returns to stable", st.Canary.String(), spec.Canary.String(), st.CanaryWeight)
	}
	canary := *spec.Canary
	st.Revision = spec.Revision()
	st.Canary = &canary
	p.restart()
	p.emit(false, "RolloutStarted", "Rollout of %s started", st.Revision)
}

// restart puts the rollout before its first step.
func (p *planner) restart() {
	st := p.st
	now := p.now()
	st.Phase = rolloutsv1.PhaseWaiting
	st.CurrentStepIndex = nil
	st.Step = ""
	st.CanaryWeight = 0
	st.StepStartedAt = nil
	st.Promoted = false
	st.StartedAt = &now
	st.WaitingSince = nil
	st.Rollback = nil
	st.StepHistory = nil
	st.Gates = nil
	st.Message = "Starting"
}

// handleRequests acts on new promote, abort and retry tokens. It returns
// true when the decision is complete.
func (p *planner) handleRequests() bool {
	st := p.st
	req := p.obs.Requests

	if req.Retry != "" && req.Retry != st.LastHandledRetry {
		st.LastHandledRetry = req.Retry
		if st.Phase == rolloutsv1.PhaseRolledBack {
			p.restart()
			p.emit(false, "Retried", "Rollout of %s restarted at step 1", st.Revision)
		} else {
			p.emit(true, "RetryIgnored", "Retry ignored: only a RolledBack rollout can be retried, this one is %s", st.Phase)
		}
	}

	if req.Abort != "" && req.Abort != st.LastHandledAbort {
		st.LastHandledAbort = req.Abort
		switch st.Phase {
		case rolloutsv1.PhaseWaiting, rolloutsv1.PhaseProgressing, rolloutsv1.PhasePaused:
			reason := rolloutsv1.ReasonAborted
			msg := strings.TrimSpace(req.AbortReason)
			if strings.HasPrefix(req.Abort, alertTokenPrefix) {
				reason = rolloutsv1.ReasonAlertFiring
			}
			if msg == "" {
				msg = "aborted by user"
			}
			p.rollback(reason, msg)
			return true
		default:
			p.emit(true, "AbortIgnored", "Abort ignored: the rollout is %s", st.Phase)
		}
	}

	if req.Promote != "" && req.Promote != st.LastHandledPromote {
		st.LastHandledPromote = req.Promote
		if st.CurrentStepIndex == nil || (st.Phase != rolloutsv1.PhaseProgressing && st.Phase != rolloutsv1.PhasePaused) {
			p.emit(true, "PromoteIgnored", "Promote ignored: the rollout is %s", st.Phase)
		} else {
			p.emit(false, "Promoted", "Pause of step %s ended by promote", st.Step)
			st.Promoted = true
		}
	}
	return false
}

// stepPause is the step's pause, or 0 when it waits for a promote.
func stepPause(s rolloutsv1.Step) time.Duration {
	if s.Pause == nil {
		return 0
	}
	d, err := s.Pause.Parse()
	if err != nil {
		return 0
	}
	return d
}

func (p *planner) progressDeadline() time.Duration {
	if p.ro.Spec.ProgressDeadline != nil {
		if d, err := p.ro.Spec.ProgressDeadline.Parse(); err == nil {
			return d
		}
	}
	return 10 * time.Minute
}

// blocked returns the first unmet precondition.
func (p *planner) blocked() *problem {
	switch {
	case p.obs.Routes != nil:
		return p.obs.Routes
	case p.obs.Analysis != nil:
		return p.obs.Analysis
	case p.obs.Canary != nil:
		return p.obs.Canary
	}
	return nil
}

// waitForStart starts the first step once every precondition holds.
func (p *planner) waitForStart() {
	if p.preconditionsHold() {
		p.startStep(0)
	}
}

// preconditionsHold records an unmet precondition (see wait) and returns
// false, or clears a past wait and returns true. A started rollout keeps its
// canary's share while it waits; past the deadline the canary is rolled back.
func (p *planner) preconditionsHold() bool {
	st := p.st
	if b := p.blocked(); b != nil {
		p.wait(b)
		return false
	}
	if st.WaitingSince != nil {
		p.emit(false, "PreconditionsMet", "Preconditions met after %s", p.obs.Now.Sub(st.WaitingSince.Time).Round(time.Second))
		st.WaitingSince = nil
	}
	return true
}

// wait records an unmet precondition and schedules the deadline check.
func (p *planner) wait(b *problem) {
	st := p.st
	if st.WaitingSince == nil {
		now := p.now()
		st.WaitingSince = &now
		p.emit(true, b.Reason, "%s", b.Message)
	}
	if st.CurrentStepIndex == nil {
		st.Phase = rolloutsv1.PhaseWaiting
	}
	deadline := p.progressDeadline()
	waited := p.obs.Now.Sub(st.WaitingSince.Time)
	if st.CurrentStepIndex != nil && waited >= deadline {
		p.rollback(rolloutsv1.ReasonProgressDeadlineExceeded,
			fmt.Sprintf("%s for %s, past the progress deadline of %s", b.Message, waited.Round(time.Second), deadline))
		return
	}
	st.Message = b.Message
	if waited < deadline {
		p.requeue(deadline - waited)
	}
	if b.Unwatched {
		p.requeue(unwatchedRecheck)
	}
}

func (p *planner) deadlineExceeded() bool {
	st := p.st
	return st.WaitingSince != nil && p.obs.Now.Sub(st.WaitingSince.Time) >= p.progressDeadline()
}

func (p *planner) startStep(i int) {
	st := p.st
	now := p.now()
	if n := len(st.StepHistory); n > 0 && st.StepHistory[n-1].EndedAt == nil {
		st.StepHistory[n-1].EndedAt = &now
	}
	idx := int32(i)
	step := p.steps[i]
	st.CurrentStepIndex = &idx
	st.Step = fmt.Sprintf("%d/%d", i+1, len(p.steps))
	st.CanaryWeight = step.Weight
	// The step's clock starts once the routes carry its weight (anchor),
	// so that a controller stopped between the status write and the route
	// patch never counts a pause the canary did not serve.
	st.StepStartedAt = nil
	st.Promoted = false
	st.Phase = rolloutsv1.PhaseProgressing
	st.StepHistory = append(st.StepHistory, rolloutsv1.StepRecord{Weight: step.Weight, StartedAt: now})
	if len(st.StepHistory) > 20 {
		st.StepHistory = st.StepHistory[len(st.StepHistory)-20:]
	}
	st.Message = fmt.Sprintf("Step %s: setting canary weight to %d%%", st.Step, step.Weight)
	p.emit(false, "StepStarted", "Step %s: canary %s at %d%%", st.Step, p.ro.Spec.Canary.Name, step.Weight)
	p.anchor()
}

// routesAt says whether every managed rule already carries canary weight w.
func (p *planner) routesAt(w int32) bool {
	if len(p.obs.RouteWeights) == 0 {
		return false
	}
	for _, got := range p.obs.RouteWeights {
		if got != w {
			return false
		}
	}
	return true
}

// anchor starts the current step's clock when the routes carry its weight.
func (p *planner) anchor() bool {
	st := p.st
	if st.StepStartedAt != nil {
		return true
	}
	if !p.routesAt(st.CanaryWeight) {
		return false
	}
	now := p.now()
	st.StepStartedAt = &now
	if n := len(st.StepHistory); n > 0 && st.StepHistory[n-1].EndedAt == nil {
		st.StepHistory[n-1].StartedAt = now
	}
	step := p.steps[*st.CurrentStepIndex]
	if pause := stepPause(step); pause > 0 {
		p.requeue(pause)
	}
	if p.ro.Spec.Analysis != nil {
		// Evaluate soon at the new weight, at the latest after one interval.
		p.requeue(analysisInterval(p.ro.Spec.Analysis))
	}
	return true
}

// rollback takes the canary out of traffic.
func (p *planner) rollback(reason, message string) {
	st := p.st
	now := p.now()
	if n := len(st.StepHistory); n > 0 && st.StepHistory[n-1].EndedAt == nil {
		st.StepHistory[n-1].EndedAt = &now
	}
	from := st.CanaryWeight
	st.Rollback = &rolloutsv1.RollbackStatus{Reason: reason, Message: truncate(message, 1024), FromWeight: from, At: now}
	st.Phase = rolloutsv1.PhaseRolledBack
	st.CanaryWeight = 0
	st.WaitingSince = nil
	st.Message = truncate(fmt.Sprintf("Rolled back: %s; canary weight %d -> 0", message, from), 1024)
	p.emit(true, "RolledBack", "%s; canary weight %d -> 0", message, from)
}

// progress runs a started rollout: gates, pauses and step advances.
func (p *planner) progress() {
	st := p.st
	spec := &p.ro.Spec

	if g := p.obs.Gates; g != nil {
		st.Gates = g.Gates
		if g.Rollback != nil {
			p.rollback(g.Rollback.Reason, g.Rollback.Message)
			return
		}
	}

	if !p.preconditionsHold() {
		return
	}

	i := int(*st.CurrentStepIndex)
	if i >= len(p.steps) {
		// The schedule was shortened under a running rollout: continue from
		// its last step, which has weight 100.
		i = len(p.steps) - 1
		idx := int32(i)
		st.CurrentStepIndex = &idx
	}
	step := p.steps[i]
	if st.CanaryWeight != step.Weight {
		// The step's weight was edited: apply the new one and bake it for
		// the step's full pause.
		st.CanaryWeight = step.Weight
		st.Step = fmt.Sprintf("%d/%d", i+1, len(p.steps))
		st.StepStartedAt = nil
	}

	if spec.Analysis != nil {
		if next := p.nextEvaluation(); next > 0 {
			p.requeue(next)
		}
	}

	if !p.anchor() {
		// The routes do not carry the step's weight yet; the route patch
		// that follows this decision brings a watch event, and the step's
		// clock starts then.
		st.Message = fmt.Sprintf("Step %s: setting canary weight to %d%%", st.Step, st.CanaryWeight)
		return
	}

	if spec.Paused || p.obs.Requests.Paused {
		if st.Phase != rolloutsv1.PhasePaused {
			p.emit(false, "Paused", "Rollout paused at step %s", st.Step)
		}
		st.Phase = rolloutsv1.PhasePaused
		st.Message = fmt.Sprintf("Paused at step %s (canary at %d%%)", st.Step, st.CanaryWeight)
		return
	}

	pause := stepPause(step)
	if step.Pause == nil && !st.Promoted {
		if st.Phase != rolloutsv1.PhasePaused {
			p.emit(false, "AwaitingPromote", "Step %s holds until promoted", st.Step)
		}
		st.Phase = rolloutsv1.PhasePaused
		st.Message = fmt.Sprintf("Step %s: canary at %d%%, waiting for promote", st.Step, st.CanaryWeight)
		return
	}
	if st.Phase == rolloutsv1.PhasePaused {
		p.emit(false, "Resumed", "Rollout resumed at step %s", st.Step)
	}
	st.Phase = rolloutsv1.PhaseProgressing

	if remaining := st.StepStartedAt.Add(pause).Sub(p.obs.Now); remaining > 0 && !st.Promoted {
		st.Message = fmt.Sprintf("Step %s: canary at %d%%, next step at %s", st.Step, st.CanaryWeight, st.StepStartedAt.Add(pause).UTC().Format("15:04:05Z"))
		p.requeue(remaining)
		return
	}

	if hold := p.gatesHold(); hold != "" {
		st.Message = fmt.Sprintf("Step %s: canary at %d%%, %s", st.Step, st.CanaryWeight, hold)
		return
	}

	if i == len(p.steps)-1 {
		now := p.now()
		if n := len(st.StepHistory); n > 0 && st.StepHistory[n-1].EndedAt == nil {
			st.StepHistory[n-1].EndedAt = &now
		}
		st.Phase = rolloutsv1.PhaseSucceeded
		st.Message = fmt.Sprintf("Canary %s holds 100%% of traffic", spec.Canary.Name)
		p.emit(false, "Succeeded", "Rollout of %s succeeded", st.Revision)
		p.d.RequeueAfter = 0
		return
	}
	p.startStep(i + 1)
}

// gatesHold says why the gates keep the step from advancing, or "" when the
// latest evaluation of every gate in this step passed.
func (p *planner) gatesHold() string {
	a := p.ro.Spec.Analysis
	if a == nil {
		return ""
	}
	byName := map[string]rolloutsv1.GateStatus{}
	for _, g := range p.st.Gates {
		byName[g.Name] = g
	}
	for _, g := range a.Gates {
		gs, ok := byName[g.Name]
		switch {
		case !ok || gs.LastEvaluatedAt == nil || gs.LastEvaluatedAt.Before(p.st.StepStartedAt):
			return fmt.Sprintf("waiting for gate %q to be evaluated at this step", g.Name)
		case gs.Verdict == rolloutsv1.VerdictPass:
		case gs.Verdict == rolloutsv1.VerdictNoData && g.NoData == rolloutsv1.NoDataPass:
		default:
			msg := gs.Message
			if msg == "" {
				msg = string(gs.Verdict)
			}
			return fmt.Sprintf("gate %q holds: %s", g.Name, msg)
		}
	}
	return ""
}

// nextEvaluation is how long until the gates are due again.
func (p *planner) nextEvaluation() time.Duration {
	if p.st.StepStartedAt == nil {
		return 0 // the step's clock has not started; anchor schedules it
	}
	return nextEvaluationAt(p.st, analysisInterval(p.ro.Spec.Analysis)).Sub(p.obs.Now)
}

// lastEvaluation is the time of the latest gate evaluation, if any.
func lastEvaluation(gates []rolloutsv1.GateStatus) *metav1.Time {
	var last *metav1.Time
	for i := range gates {
		t := gates[i].LastEvaluatedAt
		if t != nil && (last == nil || last.Before(t)) {
			last = t
		}
	}
	return last
}

func analysisInterval(a *rolloutsv1.Analysis) time.Duration {
	if a != nil && a.Interval != "" {
		if d, err := a.Interval.Parse(); err == nil && d > 0 {
			return d
		}
	}
	return time.Minute
}

// gatesDue says whether the gates must be evaluated now: the canary has
// traffic at the step's weight and the interval since the last evaluation
// has passed.
func gatesDue(ro *rolloutsv1.ModelRollout, now time.Time) bool {
	st := &ro.Status
	if ro.Spec.Analysis == nil || ro.Spec.Canary == nil || st.Revision != ro.Spec.Revision() {
		return false
	}
	if st.Phase != rolloutsv1.PhaseProgressing && st.Phase != rolloutsv1.PhasePaused {
		return false
	}
	// A step whose clock has not started is written in status but not yet
	// carried by the routes: whatever the canary served so far was not
	// this step's traffic (at the first step, not this rollout's at all).
	if st.CurrentStepIndex == nil || st.CanaryWeight == 0 || st.StepStartedAt == nil {
		return false
	}
	return !now.Before(nextEvaluationAt(st, analysisInterval(ro.Spec.Analysis)))
}

// nextEvaluationAt is when the gates are due: one interval after the last
// evaluation, and never before one interval into the step, so that the
// query window [interval] holds only traffic at the step's weight.
func nextEvaluationAt(st *rolloutsv1.ModelRolloutStatus, interval time.Duration) time.Time {
	var at time.Time
	if last := lastEvaluation(st.Gates); last != nil {
		at = last.Add(interval)
	}
	if st.StepStartedAt != nil {
		if first := st.StepStartedAt.Add(interval); first.After(at) {
			at = first
		}
	}
	return at
}

func sameBackend(a, b rolloutsv1.BackendRef) bool {
	return a.Group == b.Group && a.KindOrDefault() == b.KindOrDefault() && a.Name == b.Name
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// setConditions derives the kstatus conditions from the phase and the
// observations.
func (p *planner) setConditions() {
	st := p.st
	gen := p.ro.Generation
	set := func(t string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: status, Reason: reason, Message: truncate(msg, 32768), ObservedGeneration: gen,
		})
	}
	msg := st.Message

	stalled := (*problem)(nil)
	switch {
	case st.Phase == rolloutsv1.PhaseRolledBack:
		reason := rolloutsv1.ReasonRolledBack
		if st.Rollback != nil {
			reason = st.Rollback.Reason
		}
		stalled = &problem{Reason: reason, Message: msg}
	case st.Phase == rolloutsv1.PhaseIdle || st.Phase == rolloutsv1.PhaseSucceeded:
	case p.obs.Analysis != nil:
		stalled = p.obs.Analysis
	case p.deadlineExceeded():
		stalled = &problem{Reason: rolloutsv1.ReasonProgressDeadlineExceeded,
			Message: fmt.Sprintf("%s (waiting since %s, past the progress deadline of %s)", msg, st.WaitingSince.UTC().Format(time.RFC3339), p.progressDeadline())}
	}

	switch st.Phase {
	case rolloutsv1.PhaseIdle:
		set(rolloutsv1.ConditionReady, metav1.ConditionTrue, rolloutsv1.ReasonIdle, msg)
	case rolloutsv1.PhaseSucceeded:
		set(rolloutsv1.ConditionReady, metav1.ConditionTrue, rolloutsv1.ReasonSucceeded, msg)
	default:
		set(rolloutsv1.ConditionReady, metav1.ConditionFalse, string(st.Phase), msg)
	}
	if stalled != nil {
		set(rolloutsv1.ConditionStalled, metav1.ConditionTrue, stalled.Reason, stalled.Message)
		meta.RemoveStatusCondition(&st.Conditions, rolloutsv1.ConditionReconciling)
	} else {
		meta.RemoveStatusCondition(&st.Conditions, rolloutsv1.ConditionStalled)
		switch st.Phase {
		case rolloutsv1.PhaseWaiting, rolloutsv1.PhaseProgressing, rolloutsv1.PhasePaused:
			set(rolloutsv1.ConditionReconciling, metav1.ConditionTrue, string(st.Phase), msg)
		default:
			meta.RemoveStatusCondition(&st.Conditions, rolloutsv1.ConditionReconciling)
		}
	}

	if st.Phase == rolloutsv1.PhaseIdle {
		for _, t := range []string{rolloutsv1.ConditionRoutesResolved, rolloutsv1.ConditionCanaryAvailable, rolloutsv1.ConditionGatesPassing} {
			meta.RemoveStatusCondition(&st.Conditions, t)
		}
		return
	}
	if r := p.obs.Routes; r != nil {
		set(rolloutsv1.ConditionRoutesResolved, metav1.ConditionFalse, r.Reason, r.Message)
	} else {
		set(rolloutsv1.ConditionRoutesResolved, metav1.ConditionTrue, rolloutsv1.ReasonResolved, "All routes resolved")
	}
	if c := p.obs.Canary; c != nil {
		set(rolloutsv1.ConditionCanaryAvailable, metav1.ConditionFalse, c.Reason, c.Message)
	} else {
		set(rolloutsv1.ConditionCanaryAvailable, metav1.ConditionTrue, rolloutsv1.ReasonAvailable, "Canary has ready endpoints")
	}
	p.setGatesCondition(set)
}

func (p *planner) setGatesCondition(set func(string, metav1.ConditionStatus, string, string)) {
	st := p.st
	if p.ro.Spec.Analysis == nil {
		meta.RemoveStatusCondition(&st.Conditions, rolloutsv1.ConditionGatesPassing)
		return
	}
	switch {
	case p.obs.Analysis != nil:
		set(rolloutsv1.ConditionGatesPassing, metav1.ConditionFalse, p.obs.Analysis.Reason, p.obs.Analysis.Message)
	case st.Rollback != nil && (st.Rollback.Reason == rolloutsv1.ReasonGateFailed || st.Rollback.Reason == rolloutsv1.ReasonInconclusive):
		set(rolloutsv1.ConditionGatesPassing, metav1.ConditionFalse, st.Rollback.Reason, st.Rollback.Message)
	case p.obs.Gates != nil && p.obs.Gates.Holding != nil:
		set(rolloutsv1.ConditionGatesPassing, metav1.ConditionFalse, p.obs.Gates.Holding.Reason, p.obs.Gates.Holding.Message)
	case p.obs.Gates != nil:
		set(rolloutsv1.ConditionGatesPassing, metav1.ConditionTrue, rolloutsv1.ReasonGatesPassed, "The latest evaluation of every gate passed")
	case meta.FindStatusCondition(st.Conditions, rolloutsv1.ConditionGatesPassing) == nil:
		set(rolloutsv1.ConditionGatesPassing, metav1.ConditionUnknown, rolloutsv1.ReasonAwaitingEvaluation, "Gates are evaluated once the canary has traffic")
	}
}
