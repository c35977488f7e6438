package plan

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// This file holds the rollout's decisions as a pure function: given the
// object (spec and last status), what the reconciler observed and the time,
// it returns the next status. The reconciler observes, calls plan, brings
// the routes to what the status says and then writes the status: a status
// never claims weights the routes do not carry.

// problem is an unmet precondition or an invalid setting.
type Problem struct {
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

// poolRecheck is how often a rollout whose canary InferencePool has traffic
// checks that the pool is still there and accepted, since the operator does
// not watch InferencePools: an unavailable pool is rolled back at most
// poolRecheck after its grace.
const poolRecheck = 10 * time.Second

// gateRound is the result of evaluating every gate once.
type GateRound struct {
	// Gates is the new status of every gate.
	Gates []rolloutsv1.GateStatus
	// Rollback is set when a gate reached its failureLimit or the analysis
	// its inconclusiveLimit.
	Rollback *Problem
	// Holding names the gates that held the step (no data, Prometheus error).
	Holding *Problem
	// DryRun lists what dry-run gates would have done: each entry is the
	// rollback a dry-run gate would have caused in this round, the first
	// time it crosses its limit.
	DryRun []Problem
}

// requests are the manual actions read from annotations.
type Requests struct {
	Promote     string
	Abort       string
	AbortReason string
	// AbortRevision is the revision the abort was raised for; empty for
	// any (see AbortMeantFor).
	AbortRevision string
	Retry         string
	Paused        bool

	// PromoteFull and SkipGates are the override tokens; PromoteReason and
	// RequestedBy go with them.
	PromoteFull   string
	SkipGates     string
	PromoteReason string
	RequestedBy   string
}

// observation is everything the reconciler saw for one decision.
type Observation struct {
	Now time.Time
	// Routes is set when a route is missing or a rule the rollout manages
	// does not resolve; its message names every such route and rule.
	Routes *Problem
	// Found holds every route that exists, with the managed rules that
	// resolve in it, even when Routes names a problem elsewhere.
	Found []ManagedRoute
	// Conflict is set when another live rollout owns a rule this rollout
	// would manage (rule-owners annotation).
	Conflict *Problem
	// OwnsAny is true when this rollout owns a rule of a found route.
	OwnsAny bool
	// Canary is set when the canary backend is missing or has no ready
	// endpoints.
	Canary *Problem
	// Capacity holds the ready endpoints of stable and canary when
	// spec.capacityFactor is set.
	Capacity *Capacity
	// Analysis is set when a gate cannot be rendered or parsed, or its
	// Prometheus settings are unusable.
	Analysis *Problem
	// Gates is the round of gate evaluations done for this decision, if any.
	Gates *GateRound
	// Rejected is set when the API server refused the last route patch:
	// one made for an earlier decision, or, with Refused, this decision's.
	// A decision that writes the routes tries again regardless of an
	// earlier refusal.
	Rejected *Problem
	// Refused is set when the reconciler decides a second time because the
	// API server refused the routes (Rejected) or a header route
	// (HeaderRoute) of the decision it made first: this decision writes no
	// route.
	Refused bool
	// Contended is set while another field manager keeps changing the
	// managed weights back and the next correction waits for its backoff.
	Contended *Problem
	// Requests holds the manual actions.
	Requests Requests
	// Owned holds the HTTPRoutes this rollout created for header-routed
	// steps (label rollouts.modelrollout.io/header-route-of), as cached.
	Owned []*gatewayv1.HTTPRoute
	// HeaderRoute is set when a header route cannot be written: its name
	// is taken by a route the rollout does not own, the API server
	// rejected it, or no managed match can take the step's match.
	HeaderRoute *Problem
	// Handoff holds the results of the workload actions of status.workloads
	// that the reconciler carried out for this decision (handoff.go).
	Handoff []HandoffResult
	// Hooks are the answers of webhook calls made since the last decision.
	Hooks []HookResult
}

// carries says whether every found route carries the weights in every
// managed rule that resolves. With no route found, nothing carries them.
func (o *Observation) Carries(w Weights) bool {
	if len(o.Found) == 0 {
		return false
	}
	for _, m := range o.Found {
		if ops, _ := WeightOps(m.Route, m.Rules, w); len(ops) > 0 {
			return false
		}
	}
	return true
}

// retired says whether no managed rule of a found route gives the backend
// any weight.
func (o *Observation) retired(b rolloutsv1.BackendRef) bool {
	for _, m := range o.Found {
		for _, i := range m.Rules {
			for _, ref := range m.Route.Spec.Rules[i].BackendRefs {
				if refMatches(ref.BackendObjectReference, m.Route.Namespace, b) && refWeight(ref) != 0 {
					return false
				}
			}
		}
	}
	return true
}

// removed says whether no managed rule of a found route references the
// backend any more, or only a rule that has no other backendRef (which the
// finish never empties).
func (o *Observation) removed(b rolloutsv1.BackendRef) bool {
	for _, m := range o.Found {
		for _, i := range m.Rules {
			refs := m.Route.Spec.Rules[i].BackendRefs
			match := func(ref gatewayv1.HTTPBackendRef) bool {
				return refMatches(ref.BackendObjectReference, m.Route.Namespace, b)
			}
			if slices.ContainsFunc(refs, match) && slices.ContainsFunc(refs, func(ref gatewayv1.HTTPBackendRef) bool { return !match(ref) }) {
				return false
			}
		}
	}
	return true
}

// event is a Kubernetes Event to record with the decision.
type Event struct {
	Warning bool
	Reason  string
	Message string
}

// decision is the outcome of plan.
type Decision struct {
	Status rolloutsv1.ModelRolloutStatus
	// Routes is what every managed rule must carry, derived from Status
	// alone (intentOf). Nothing is written when it holds nothing.
	Routes Weights
	Events []Event
	// RequeueAfter is when the decision must be revisited even if nothing
	// changes: a pause ending, a gate evaluation falling due, a deadline.
	RequeueAfter time.Duration
	// Calls are the webhook calls to make once the status is written.
	Calls []HookCall
	// WriteRoutes is the write order: the routes (Routes and the header
	// routes of Status) are written first, and Status only once they
	// landed; a refusal is decided again (Observation.Refused). Unset when
	// another rollout owns a rule, a drift correction waits for its
	// backoff, or the routes were just refused: Status is then written
	// alone, and says why the routes are not written.
	WriteRoutes bool
	// HeaderRoutes are the HTTPRoutes the rollout owns for a header-routed
	// step, by name, as they must be (none outside such a step: the owned
	// routes not named here are deleted). HeaderRouteProblem says why a
	// step's match cannot be routed (no managed match can take it).
	HeaderRoutes       map[string]*gatewayv1.HTTPRoute
	HeaderRouteProblem *Problem
	// ClockOnLanding is the clock policy: this decision starts a step
	// whose weight the routes do not carry yet. The step's clock starts
	// when the route write lands (Landed), not when the decision was made.
	ClockOnLanding bool
}

// Landed records that the decision's route write landed at t: a step whose
// clock the decision started (ClockOnLanding) starts at t, to the
// microsecond, in status.stepStartedAt and in the step's history.
func Landed(d *Decision, t time.Time) {
	st := &d.Status
	if !d.ClockOnLanding || st.StepStartedAt == nil {
		return
	}
	start := rolloutsv1.NewMicroTime(metav1.NewMicroTime(t))
	if n := len(st.StepHistory); n > 0 && st.StepHistory[n-1].EndedAt == nil && st.StepHistory[n-1].StartedAt.Time.Equal(st.StepStartedAt.Time) {
		st.StepHistory[n-1].StartedAt = start
	}
	st.StepStartedAt = &start
	d.ClockOnLanding = false
}

// Drift is a change of the managed weights by another writer.
type Drift struct {
	// Writer names the other writer ("field manager \"argocd\"").
	Writer string
	// Changes describes what it changed.
	Changes string
	// Restores is what the correction writes back.
	Restores Weights
	// BackoffMax bounds the wait between corrections in the episode.
	BackoffMax time.Duration
}

// DriftEvent is the Event that opens an episode of drift corrections. The
// reconciler sends it when it sees the drift, before any write: an episode
// is announced once, so its Event must not wait on a write that may fail.
func DriftEvent(d Drift) Event {
	return Event{Warning: true, Reason: "WeightDriftCorrected", Message: fmt.Sprintf(
		"HTTPRoute weights were changed by %s (%s); restoring %s. Further changes in this episode are corrected with exponential backoff (up to %s)",
		d.Writer, d.Changes, DescribeIntent(d.Restores), d.BackoffMax)}
}

// alertTokenPrefix marks abort tokens written by the Alertmanager receiver.
const alertTokenPrefix = "alert-"

type planner struct {
	ro    *rolloutsv1.ModelRollout
	obs   Observation
	steps []rolloutsv1.Step
	st    *rolloutsv1.ModelRolloutStatus
	d     Decision

	// override is a new promote-full or skip-gates request that progress
	// acts on, or ignores with a Warning event (see overrides.go).
	override *pendingOverride

	// finished is set when this decision finished a rollout (see finish).
	finished bool
	// held is set while the rollout refuses to move traffic off a canary
	// that holds all of it (see holdSwing).
	held *Problem
	// startedClock is set once this decision started a step's clock.
	startedClock bool
	// settling is set while progress runs again on a step this decision
	// started (see settleStep): it may hold or pause, never advance.
	settling bool
	// calls are the webhook calls this decision asks for; hookHold is set
	// while a blocking webhook holds the rollout (plan_webhooks.go).
	calls    []HookCall
	hookHold *Problem
	// capacityWait is set while the canary lacks the ready endpoints the
	// next step needs; capacityStalled once that wait passed the deadline
	// before any traffic moved (plan_capacity.go).
	capacityWait    *Problem
	capacityStalled bool

	// heldAt is the index in steps of a step that an edit of spec.steps
	// removed while it was in force and that still bakes, or -1 (see
	// walkedSteps).
	heldAt int
}

// plan decides the next status of a rollout.
func Plan(ro *rolloutsv1.ModelRollout, obs Observation) Decision {
	p := &planner{ro: ro, obs: obs, steps: ro.Spec.EffectiveSteps(), heldAt: -1}
	p.d.Status = *ro.Status.DeepCopy()
	p.st = &p.d.Status
	p.st.ObservedGeneration = ro.Generation
	p.run()
	p.settleHeaderRoute()
	p.handoff()
	p.d.Routes = IntentOf(p.st)
	p.d.WriteRoutes = p.writes()
	p.d.ClockOnLanding = p.d.WriteRoutes && startsClock(&ro.Status, p.st) && !p.obs.Carries(p.d.Routes)
	p.setConditions()
	ClampStatus(p.st)
	p.d.HeaderRoutes, p.d.HeaderRouteProblem = DesiredHeaderRoutes(ro, p.st, obs.Found)
	p.d.Events = foldRolloutStart(p.d.Events)
	p.d.Calls = p.calls
	return p.d
}

// writes says whether the reconciler writes this decision's routes before
// its status (Decision.WriteRoutes).
func (p *planner) writes() bool {
	o := &p.obs
	return o.Conflict == nil && o.Contended == nil && !o.Refused
}

// rejected is the refusal of a route patch that holds the rollout: none
// while the decision writes the routes again.
func (p *planner) rejected() *Problem {
	if p.writes() {
		return nil
	}
	return p.obs.Rejected
}

// startsClock says whether the decision starts a step's clock the status
// did not have running.
func startsClock(before, after *rolloutsv1.ModelRolloutStatus) bool {
	return after.StepStartedAt != nil && (before.StepStartedAt == nil || !before.StepStartedAt.Time.Equal(after.StepStartedAt.Time))
}

// foldRolloutStart makes a rollout that starts and enters its first step in
// one decision record one Event, not two: one Event per transition.
func foldRolloutStart(evs []Event) []Event {
	for i := 0; i+1 < len(evs); i++ {
		if evs[i].Reason == "RolloutStarted" && evs[i+1].Reason == "StepStarted" {
			evs[i+1].Message += "; " + lowerFirst(evs[i].Message)
			return append(evs[:i], evs[i+1:]...)
		}
	}
	return evs
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// willCarry says whether the routes carry the weights, or will once the
// route patch that precedes this decision's status write lands (the write
// order: a status that follows a refused patch is decided again).
func (p *planner) willCarry(w Weights) bool {
	if p.obs.Carries(w) {
		return true
	}
	return p.writes() && len(p.obs.Found) > 0 && p.obs.Routes == nil
}

func (p *planner) now() metav1.Time { return metav1.NewTime(p.obs.Now) }

// micro is the decision's time as the step history holds it.
func (p *planner) micro() rolloutsv1.MicroTime {
	return rolloutsv1.NewMicroTime(metav1.NewMicroTime(p.obs.Now))
}

func (p *planner) emit(warning bool, reason, format string, args ...any) {
	p.d.Events = append(p.d.Events, Event{Warning: warning, Reason: reason, Message: fmt.Sprintf(format, args...)})
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
	st := p.st
	if st.Stable == nil && st.Revision != "" && st.Revision == spec.Revision() {
		// Written before status recorded the revision's stable backend.
		stable := spec.Stable
		st.Stable = &stable
	}
	p.settleRetiring()

	if spec.Canary == nil {
		p.noCanary()
		return
	}
	if rev := spec.Revision(); st.Revision != rev {
		if p.holdSwing() {
			return
		}
		p.startRevision()
	}

	if p.handleRequests() {
		return
	}
	p.foldWebhookResults()

	switch st.Phase {
	case rolloutsv1.PhaseSucceeded, rolloutsv1.PhaseRolledBack:
		// Terminal: the weights are held (100 or 0) until the canary changes
		// or the user retries.
		return
	}

	if st.CurrentStepIndex == nil {
		p.waitForStart()
		return
	}
	p.progress()
}

// started says whether the rollout holds the canary's weight in the routes:
// its first step has started, or it ended Succeeded or RolledBack.
func (p *planner) started() bool {
	st := p.st
	return st.Canary != nil && (st.CurrentStepIndex != nil || st.Phase == rolloutsv1.PhaseSucceeded || st.Phase == rolloutsv1.PhaseRolledBack)
}

// retire holds a backend that is neither stable nor canary any more at
// weight 0 until the routes show it, unless they already do.
func (p *planner) retire(b rolloutsv1.BackendRef) {
	if p.obs.retired(b) || slices.ContainsFunc(p.st.Retiring, func(r rolloutsv1.BackendRef) bool { return SameRef(r, b) }) {
		return
	}
	p.st.Retiring = append(p.st.Retiring, b)
	if n := len(p.st.Retiring); n > 8 {
		p.st.Retiring = p.st.Retiring[n-8:]
	}
}

// settleRetiring drops retiring backends that the routes no longer give any
// weight, and those that are stable or canary again.
func (p *planner) settleRetiring() {
	spec := &p.ro.Spec
	p.st.Retiring = slices.DeleteFunc(p.st.Retiring, func(b rolloutsv1.BackendRef) bool {
		return p.obs.retired(b) || SameRef(b, spec.Stable) || (spec.Canary != nil && SameRef(b, *spec.Canary))
	})
	if len(p.st.Retiring) == 0 {
		p.st.Retiring = nil
	}
	p.st.Removing = slices.DeleteFunc(p.st.Removing, func(b rolloutsv1.BackendRef) bool {
		return p.obs.removed(b) || SameRef(b, spec.Stable) || (spec.Canary != nil && SameRef(b, *spec.Canary))
	})
	if len(p.st.Removing) == 0 {
		p.st.Removing = nil
	}
}

// finishing says whether spec.stable now names the canary that holds all
// traffic (after success, or while a 100% step bakes) while status still names the old stable: the
// finish of a rollout, which removes the old stable's backendRef from the
// managed rules (see docs/guides/finishing.md).
func (p *planner) finishing() bool {
	st := p.st
	spec := &p.ro.Spec
	return p.started() && st.Stable != nil && st.CanaryWeight == 100 &&
		SameRef(*st.Canary, spec.Stable) && !SameRef(*st.Stable, spec.Stable) &&
		(spec.Canary == nil || !SameRef(*st.Stable, *spec.Canary))
}

// finish records the old stable for removal from the managed rules, with
// one Event.
func (p *planner) finish() {
	st := p.st
	old := *st.Stable
	if slices.ContainsFunc(st.Removing, func(b rolloutsv1.BackendRef) bool { return SameRef(b, old) }) || p.obs.removed(old) {
		p.finished = true
		p.emit(false, "Finished", "Rollout finished: %s is the stable backend", p.ro.Spec.Stable.String())
		return
	}
	p.finished = true
	st.Removing = append(st.Removing, old)
	if n := len(st.Removing); n > 8 {
		st.Removing = st.Removing[n-8:]
	}
	p.emit(false, "Finished", "Rollout finished: %s is the stable backend; removing the backendRef of %s from the managed rules", p.ro.Spec.Stable.String(), old.String())
}

// noCanary handles a rollout without spec.canary: a canary that had traffic
// returns it to stable first, then the rollout is Idle.
func (p *planner) noCanary() {
	st := p.st
	spec := &p.ro.Spec
	if p.finishing() {
		p.finish()
	}
	if p.started() {
		if p.holdSwing() {
			return
		}
		if old := *st.Canary; !SameRef(old, spec.Stable) {
			if st.CanaryWeight > 0 {
				p.emit(true, "CanaryRemoved", "Canary %s removed at weight %d; its traffic returns to stable %s", old.String(), st.CanaryWeight, spec.Stable.String())
			}
			p.retire(old)
		}
	}
	if st.Stable != nil && st.Canary != nil && p.started() && !SameRef(*st.Stable, spec.Stable) {
		p.retire(*st.Stable)
	}
	if len(st.Retiring) > 0 {
		stable := spec.Stable
		st.Stable = &stable
		p.clearRollout()
		st.Phase = rolloutsv1.PhaseWaiting
		st.Message = fmt.Sprintf("No canary declared: returning the traffic of %s to stable %s before going Idle", BackendList(st.Retiring), spec.Stable.String())
		return
	}
	if len(st.Removing) > 0 {
		stable := spec.Stable
		st.Stable = &stable
		p.clearRollout()
		st.Phase = rolloutsv1.PhaseWaiting
		st.Message = fmt.Sprintf("Finishing: removing the backendRef of %s from the managed rules, with all traffic on %s", BackendList(st.Removing), spec.Stable.String())
		return
	}
	p.idle()
}

// holdSwing keeps a canary that holds all traffic where it is when
// spec.canary is replaced or removed while spec.stable still names the old
// stable, which may be scaled down by now. It returns true while it holds.
func (p *planner) holdSwing() bool {
	st := p.st
	spec := &p.ro.Spec
	if spec.AllowStableSwing || !p.started() || st.CanaryWeight < 100 || st.Stable == nil ||
		!SameRef(*st.Stable, spec.Stable) || SameRef(*st.Canary, spec.Stable) {
		return false
	}
	old := st.Canary.String()
	var msg string
	if spec.Canary == nil {
		msg = fmt.Sprintf("Canary %s holds 100%% of traffic and spec.stable still names %s: set spec.stable to %s to finish the rollout (removing the canary would send all traffic back to %s; set spec.allowStableSwing to allow that)",
			old, spec.Stable.String(), st.Canary.Name, spec.Stable.Name)
	} else {
		msg = fmt.Sprintf("Canary %s holds 100%% of traffic and spec.stable still names %s: set spec.stable to %s before starting canary %s (or set spec.allowStableSwing to send traffic back to %s first)",
			old, spec.Stable.String(), st.Canary.Name, spec.Canary.Name, spec.Stable.Name)
	}
	if st.Message != msg {
		p.emit(true, rolloutsv1.ReasonCanaryHoldsAllTraffic, "%s", msg)
	}
	p.held = &Problem{Reason: rolloutsv1.ReasonCanaryHoldsAllTraffic, Message: msg}
	st.Phase = rolloutsv1.PhaseWaiting
	st.Message = msg
	p.ignoreRequests("spec.stable must name the canary that holds all traffic first")
	return true
}

// ignoreRequests records new manual actions as handled without acting on
// them, so that none fires later by surprise.
func (p *planner) ignoreRequests(why string) {
	st := p.st
	req := p.obs.Requests
	if req.Abort != "" && req.Abort != st.LastHandledAbort {
		st.LastHandledAbort = req.Abort
		p.emit(true, "AbortIgnored", "Abort ignored: %s", why)
	}
	if req.Promote != "" && req.Promote != st.LastHandledPromote {
		st.LastHandledPromote = req.Promote
		p.emit(true, "PromoteIgnored", "Promote ignored: %s", why)
	}
	if req.Retry != "" && req.Retry != st.LastHandledRetry {
		st.LastHandledRetry = req.Retry
		p.emit(true, "RetryIgnored", "Retry ignored: %s", why)
	}
	for _, k := range p.takeOverrides() {
		p.ignoreOverride(k, why)
	}
}

func (p *planner) idle() {
	st := p.st
	if p.finished || len(p.ro.Status.Removing) > 0 {
		// The finish announced itself (Finished); its end is quiet.
	} else if st.Phase != rolloutsv1.PhaseIdle && st.Phase != "" {
		// A rollout created without a canary has nothing to announce: its
		// status says Idle. One that leaves a rollout behind does.
		p.emit(false, "Idle", "No canary declared; routes are left as they are")
	}
	p.clearRollout()
	st.Phase = rolloutsv1.PhaseIdle
	st.Stable = nil
	st.Retiring = nil
	st.Removing = nil
	st.Message = "No canary declared"
}

// clearRollout forgets the revision and its run.
func (p *planner) clearRollout() {
	st := p.st
	resetRun(st)
	st.Revision = ""
	st.Canary = nil
	st.StartedAt = nil
}

// resetRun clears everything a run of a revision records: its step and
// weight, the step's clock, the waits, the rollback, the step history, the
// gates, the webhook calls and the capacity wait. It is the one reset path:
// a new revision and a retry (restart) and a rollout going Idle or
// finishing (clearRollout) all go through it, so that no field of an old
// run survives into the next. TestResetRunClearsEveryRunField lists what it
// keeps, and why.
func resetRun(st *rolloutsv1.ModelRolloutStatus) {
	st.CurrentStepIndex = nil
	st.StepWeights = nil
	st.StepPause = nil
	st.Step = ""
	st.CanaryWeight = 0
	st.StepStartedAt = nil
	st.Promoted = false
	st.WaitingSince = nil
	st.CanaryUnavailableSince = nil
	st.Rollback = nil
	st.StepHistory = nil
	st.Gates = nil
	st.Webhooks = nil
	st.Capacity = nil
}

// startRevision resets the status for a new stable and canary pair. A
// previous canary or stable that held traffic is retired.
func (p *planner) startRevision() {
	st := p.st
	spec := &p.ro.Spec
	if p.finishing() {
		p.finish()
	}
	if p.started() {
		if old := *st.Canary; !SameRef(old, spec.Stable) && !SameRef(old, *spec.Canary) {
			if st.CanaryWeight > 0 {
				p.emit(true, "CanaryReplaced", "Canary %s replaced by %s at weight %d; its traffic returns to stable", old.String(), spec.Canary.String(), st.CanaryWeight)
			}
			p.retire(old)
		}
		if st.Stable != nil && !SameRef(*st.Stable, spec.Stable) && !SameRef(*st.Stable, *spec.Canary) {
			p.retire(*st.Stable)
		}
	}
	stable, canary := spec.Stable, *spec.Canary
	st.Revision = spec.Revision()
	st.Stable = &stable
	st.Canary = &canary
	p.restart()
	p.emit(false, "RolloutStarted", "Rollout of %s started", st.Revision)
}

// restart puts the rollout before its first step.
func (p *planner) restart() {
	st := p.st
	now := p.now()
	resetRun(st)
	st.Phase = rolloutsv1.PhaseWaiting
	st.StartedAt = &now
	st.Message = "Starting"
}

// handleRequests acts on new promote, abort and retry tokens. It returns
// true when the decision is complete.
func (p *planner) handleRequests() bool {
	st := p.st
	req := p.obs.Requests

	if req.Retry != "" && req.Retry != st.LastHandledRetry {
		st.LastHandledRetry = req.Retry
		if rolloutsv1.ActionRetry.AllowedIn(st.Phase) {
			p.restart()
			p.emit(false, "Retried", "Rollout of %s restarted at step 1", st.Revision)
		} else {
			p.emit(true, "RetryIgnored", "Retry ignored: %s, this one is %s", rolloutsv1.ActionRetry.Refusal(), st.Phase)
		}
	}

	if req.Abort != "" && req.Abort != st.LastHandledAbort {
		st.LastHandledAbort = req.Abort
		if !AbortMeantFor(req, st.Revision) {
			p.emit(true, "AbortIgnored", "Abort ignored: it was raised for revision %s (%s), not for this one (%s)",
				req.AbortRevision, Truncate(strings.TrimSpace(req.AbortReason), 512), st.Revision)
		} else if rolloutsv1.ActionAbort.AllowedIn(st.Phase) {
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
		}
		p.emit(true, "AbortIgnored", "Abort ignored: the rollout is %s", st.Phase)
	}

	if req.Promote != "" && req.Promote != st.LastHandledPromote {
		st.LastHandledPromote = req.Promote
		if !rolloutsv1.ActionPromote.Allowed(st.Phase, st.CurrentStepIndex != nil) {
			p.emit(true, "PromoteIgnored", "Promote ignored: the rollout is %s", st.Phase)
		} else {
			p.emit(false, "Promoted", "Pause of step %s ended by promote", st.Step)
			st.Promoted = true
		}
	}

	// progress acts on an override once the preconditions are known to hold.
	p.handleOverrides()
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
	return p.ro.Spec.ProgressDeadline.Or(rolloutsv1.DefaultProgressDeadline)
}

// canaryUnavailableGrace is how long a canary with traffic may be
// unavailable before it is rolled back.
func (p *planner) canaryUnavailableGrace() time.Duration {
	return p.ro.Spec.CanaryUnavailableGrace.Or(rolloutsv1.DefaultCanaryUnavailableGrace)
}

// blocked returns the first unmet precondition.
func (p *planner) blocked() *Problem {
	switch {
	case p.obs.Routes != nil:
		return p.obs.Routes
	case p.obs.Conflict != nil:
		return p.obs.Conflict
	case p.rejected() != nil:
		return p.rejected()
	case p.obs.HeaderRoute != nil && p.currentMatch() != nil:
		// The step's match cannot be routed: like a rejected weight, it
		// holds the step and counts toward the progress deadline.
		return p.obs.HeaderRoute
	case p.obs.Analysis != nil:
		return p.obs.Analysis
	case p.obs.Canary != nil:
		return p.obs.Canary
	}
	return nil
}

// waitForStart starts the first step once every precondition holds and
// the pre-traffic gates passed.
func (p *planner) waitForStart() {
	if p.waitOrRollBack() || p.preTrafficHolds() {
		return
	}
	// Before any traffic moves: the PreRollout webhooks, and the
	// ConfirmPromotion ones when the first step is also the last.
	if p.webhooksHold(rolloutsv1.WebhookPreRollout) ||
		(len(p.steps) == 1 && p.webhooksHold(rolloutsv1.WebhookConfirmPromotion)) {
		if p.st.Phase != rolloutsv1.PhaseRolledBack {
			p.st.Phase = rolloutsv1.PhaseWaiting
			p.st.Message = capitalize(p.hookHold.Message)
		}
		return
	}
	if p.capacityHold(p.steps[0].Weight) {
		p.st.Phase = rolloutsv1.PhaseWaiting
		p.st.Message = capitalize(p.capacityWait.Message)
		return
	}
	p.startStep(0)
}

// waitOrRollBack returns true when a precondition is unmet. It then records
// the wait (see wait), and rolls back a canary that has traffic once it has
// been unavailable past its grace or a precondition is unmet past the
// progress deadline. It returns false, clearing a past wait, when every
// precondition holds.
func (p *planner) waitOrRollBack() bool {
	st := p.st
	if p.rollBackUnavailableCanary() {
		return true
	}
	if b := p.blocked(); b != nil {
		p.wait(b)
		return true
	}
	if st.WaitingSince != nil {
		p.emit(false, "PreconditionsMet", "Preconditions met after %s", p.obs.Now.Sub(st.WaitingSince.Time).Round(time.Second))
		st.WaitingSince = nil
	}
	return false
}

// rollBackUnavailableCanary rolls back a canary with traffic that has been
// unavailable for longer than spec.canaryUnavailableGrace, and returns true
// when it did.
func (p *planner) rollBackUnavailableCanary() bool {
	st := p.st
	c := p.obs.Canary
	if c == nil || st.CurrentStepIndex == nil || !canaryServes(st) {
		st.CanaryUnavailableSince = nil
		return false
	}
	grace := p.canaryUnavailableGrace()
	if st.CanaryUnavailableSince == nil {
		now := p.now()
		st.CanaryUnavailableSince = &now
		p.emit(true, rolloutsv1.ReasonCanaryUnavailable, "%s while it has %d%% of traffic; rolling back in %s unless it recovers", c.Message, st.CanaryWeight, grace)
	}
	down := p.obs.Now.Sub(st.CanaryUnavailableSince.Time)
	if down >= grace {
		p.rollback(rolloutsv1.ReasonCanaryUnavailable,
			fmt.Sprintf("%s for %s with %d%% of traffic, past the grace of %s", c.Message, down.Round(time.Second), st.CanaryWeight, grace))
		return true
	}
	p.requeue(grace - down)
	return false
}

// wait records an unmet precondition and schedules the deadline check.
func (p *planner) wait(b *Problem) {
	st := p.st
	if st.WaitingSince == nil {
		now := p.now()
		st.WaitingSince = &now
		p.emit(true, b.Reason, "%s", b.Message)
	}
	if st.CurrentStepIndex == nil || b == p.rejected() || b == p.obs.Conflict {
		// Before the first step, or while the API server or another
		// rollout refuses this rollout's write: the routes carry the step
		// in status, and the rollout waits.
		st.Phase = rolloutsv1.PhaseWaiting
	}
	deadline := p.progressDeadline()
	waited := p.obs.Now.Sub(st.WaitingSince.Time)
	// Past the deadline the rollout rolls back, unless another controller
	// owns a route: the operator may not write it, so a rollback would be
	// one in status only. It stays Stalled (ProgressDeadlineExceeded) at
	// its step instead, and says whose the weights are.
	if st.CurrentStepIndex != nil && waited >= deadline && !OwnedByController(b) {
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
	if n := len(st.StepHistory); n > 0 && st.StepHistory[n-1].EndedAt == nil {
		ended := p.micro()
		st.StepHistory[n-1].EndedAt = &ended
	}
	step := p.steps[i]
	// A step that an edit removed gives way to a step of spec.steps: the
	// rollout walks spec.steps from now on.
	i = p.specIndex(i)
	p.steps = p.ro.Spec.EffectiveSteps()
	p.heldAt = -1
	idx := int32(i)
	st.CurrentStepIndex = &idx
	st.StepWeights = stepWeights(p.steps)
	st.StepPause = step.Pause
	st.Step = fmt.Sprintf("%d/%d", i+1, len(p.steps))
	st.CanaryWeight = step.Weight
	// The step's clock starts once the routes carry its weight (anchor),
	// so that a controller stopped between the status write and the route
	// patch never counts a pause the canary did not serve.
	st.StepStartedAt = nil
	st.Promoted = false
	st.Phase = rolloutsv1.PhaseProgressing
	st.StepHistory = append(st.StepHistory, rolloutsv1.StepRecord{Weight: step.Weight, StartedAt: p.micro()})
	if len(st.StepHistory) > 20 {
		st.StepHistory = st.StepHistory[len(st.StepHistory)-20:]
	}
	st.Message = fmt.Sprintf("Step %s: setting canary weight to %d%%", st.Step, step.Weight)
	if step.Match != nil {
		p.emit(false, "StepStarted", "Step %s: canary %s at %d%%, and every request with %s", st.Step, p.ro.Spec.Canary.Name, step.Weight, step.Match.String())
	} else {
		p.emit(false, "StepStarted", "Step %s: canary %s at %d%%", st.Step, p.ro.Spec.Canary.Name, step.Weight)
	}
	if p.startClockOnceRoutesCarry() {
		p.settleStep()
	}
}

// settleStep runs progress once more on a step whose clock this decision
// started, so that the status written now is the one the step holds until
// its pause ends (its message, a pause or a wait for promote), not one more
// status write later. It never advances: a step reaches the routes before
// the next one starts. The gate round, judged for the previous step, is
// not used again.
func (p *planner) settleStep() {
	if p.settling {
		return
	}
	p.settling = true
	gates := p.obs.Gates
	p.obs.Gates = nil
	p.progress()
	p.obs.Gates = gates
	p.settling = false
}

// startClockOnceRoutesCarry starts the current step's clock (and rewrites
// the step's start in the history) once the routes carry the step's weight,
// and stops it when they no longer do: a step only bakes while its weight
// serves. It returns whether the clock runs.
func (p *planner) startClockOnceRoutesCarry() bool {
	st := p.st
	carries := p.obs.Carries(IntentOf(st)) && p.headerCarried()
	if st.StepStartedAt != nil {
		if carries || p.startedClock {
			return true
		}
		// No Event here: the drift that caused it is recorded once per
		// episode (checkDrift), not once per correction.
		st.StepStartedAt = nil
		st.Message = fmt.Sprintf("Step %s: the routes no longer carry canary weight %d; the step bakes its full pause again once they do", st.Step, st.CanaryWeight)
		return false
	}
	if !carries && (!p.willCarry(IntentOf(st)) || !p.headerWillCarry()) {
		return false
	}
	// Either the routes carry the step, or the reconciler patches them
	// before it writes this status and sets the start to when the patch
	// landed (landClock); should it fail, this status is not written.
	now := rolloutsv1.NewMicroTime(metav1.NewMicroTime(p.obs.Now))
	st.StepStartedAt = &now
	p.startedClock = true
	if n := len(st.StepHistory); n > 0 && st.StepHistory[n-1].EndedAt == nil {
		st.StepHistory[n-1].StartedAt = p.micro()
	}
	step := p.steps[*st.CurrentStepIndex]
	if pause := stepPause(step); pause > 0 {
		p.requeue(pause)
	}
	if p.ro.Spec.Analysis != nil {
		// Evaluate soon at the new weight, at the latest after one interval.
		p.requeue(AnalysisInterval(p.ro.Spec.Analysis))
	}
	return true
}

// rollback takes the canary out of traffic.
func (p *planner) rollback(reason, message string) {
	st := p.st
	now := p.now()
	if n := len(st.StepHistory); n > 0 && st.StepHistory[n-1].EndedAt == nil {
		ended := p.micro()
		st.StepHistory[n-1].EndedAt = &ended
	}
	from := st.CanaryWeight
	if p.obs.Routes != nil {
		message += "; not reverted, since they do not resolve: " + p.obs.Routes.Message
	}
	if c := p.obs.Conflict; c != nil && p.obs.Routes == nil {
		// Nothing is written while a route is another's (writes): the
		// rollback holds in status until the route is handed back.
		message += "; not written to the routes yet: " + c.Message
	}
	st.Rollback = &rolloutsv1.RollbackStatus{Reason: reason, Message: Truncate(message, 1024), FromWeight: from, At: now}
	st.Phase = rolloutsv1.PhaseRolledBack
	st.CanaryWeight = 0
	st.WaitingSince = nil
	st.CanaryUnavailableSince = nil
	// The step history, the gates and the webhooks' answers say why it
	// rolled back and stay; a wait for capacity and a call still pending
	// are over.
	st.Capacity = nil
	st.Webhooks = slices.DeleteFunc(st.Webhooks, func(w rolloutsv1.WebhookStatus) bool { return w.State == rolloutsv1.WebhookPending })
	st.Message = Truncate(fmt.Sprintf("Rolled back: %s; canary weight %d -> 0", message, from), 1024)
	p.emit(true, "RolledBack", "%s; canary weight %d -> 0", message, from)
}

// progress runs a started rollout: gates, pauses and step advances.
func (p *planner) progress() {
	st := p.st
	spec := &p.ro.Spec
	// The steps walked, after an edit of spec.steps (plan_edits.go).
	p.walkedSteps()
	if hr := st.HeaderRoute; hr != nil && st.StepStartedAt != nil {
		if m := p.currentMatch(); m != nil && m.String() != hr.Match.String() {
			// The step's match was edited: the step bakes its full pause
			// and its gates again with the new one.
			st.StepStartedAt = nil
		}
	}
	// An override that this decision did not apply is ignored, not kept.
	defer p.settleOverride()

	if g := p.obs.Gates; g != nil {
		st.Gates = g.Gates
		for _, d := range g.DryRun {
			p.emit(true, "DryRunGateFailed", "Dry run, no action taken: %s", d.Message)
		}
		if g.Rollback != nil {
			p.rollback(g.Rollback.Reason, g.Rollback.Message)
			return
		}
	}

	if p.obs.Conflict != nil && !p.obs.OwnsAny && st.StepStartedAt == nil && *st.CurrentStepIndex == 0 {
		// Another rollout claimed the rule first, before this one's first
		// step reached the routes: nothing of this rollout serves, so it
		// goes back to waiting for its first step.
		st.CurrentStepIndex = nil
		st.StepWeights = nil
		st.StepPause = nil
		st.Step = ""
		st.CanaryWeight = 0
		st.StepHistory = nil
		p.wait(p.obs.Conflict)
		return
	}
	if p.waitOrRollBack() {
		if st.Phase != rolloutsv1.PhaseRolledBack && p.obs.HeaderRoute != nil && p.currentMatch() != nil {
			// The step's header route is not in place: the step's
			// pause is not being served.
			st.StepStartedAt = nil
		}
		if b := p.blocked(); st.Phase != rolloutsv1.PhaseRolledBack && OwnedByController(b) {
			// Another controller took a route over mid-rollout: nothing
			// is written from now on, and the weights in the route are
			// its controller's. The step stays where it is and bakes its
			// full pause, with every gate, once the route is handed back.
			st.StepStartedAt = nil
			st.Message = Truncate(fmt.Sprintf("%s. Writes stopped at step %s (canary weight %d); the step bakes its full pause again once the route is handed back",
				b.Message, st.Step, st.CanaryWeight), MaxMessage)
		}
		return
	}

	i := int(*st.CurrentStepIndex)
	step := p.steps[i]
	if p.applyOverride(i) {
		return
	}

	if spec.Analysis != nil {
		if next := p.nextEvaluation(); next > 0 {
			p.requeue(next)
		}
	}
	if spec.Canary.KindOrDefault() == rolloutsv1.BackendKindInferencePool && canaryServes(st) {
		// No watch announces that a pool went away or was refused by a
		// gateway: look again while the pool has traffic.
		p.requeue(poolRecheck)
	}

	if !p.startClockOnceRoutesCarry() {
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
		st.Message = fmt.Sprintf("Paused at step %s (%s)", st.Step, p.canaryShare())
		return
	}

	pause := stepPause(step)
	if step.Pause == nil && !st.Promoted {
		if st.Phase != rolloutsv1.PhasePaused {
			p.emit(false, "AwaitingPromote", "Step %s holds until promoted", st.Step)
		}
		st.Phase = rolloutsv1.PhasePaused
		st.Message = fmt.Sprintf("Step %s: %s, waiting for promote", st.Step, p.canaryShare())
		return
	}
	if st.Phase == rolloutsv1.PhasePaused {
		p.emit(false, "Resumed", "Rollout resumed at step %s", st.Step)
	}
	st.Phase = rolloutsv1.PhaseProgressing

	if remaining := st.StepStartedAt.Add(pause).Sub(p.obs.Now); remaining > 0 && !st.Promoted {
		st.Message = fmt.Sprintf("Step %s: %s, next step at %s", st.Step, p.canaryShare(), st.StepStartedAt.Add(pause).UTC().Format("15:04:05Z"))
		p.requeue(remaining)
		return
	}

	if hold := p.gatesHold(); hold != "" {
		st.Message = fmt.Sprintf("Step %s: %s, %s", st.Step, p.canaryShare(), hold)
		return
	}

	if p.settling {
		return
	}
	if i == len(p.steps)-1 {
		p.succeedNow()
		return
	}
	if i+1 == len(p.steps)-1 && p.webhooksHold(rolloutsv1.WebhookConfirmPromotion) {
		st.Message = fmt.Sprintf("Step %s: canary at %d%%, %s", st.Step, st.CanaryWeight, p.hookHold.Message)
		return
	}
	if p.capacityHold(p.steps[i+1].Weight) {
		if st.Phase != rolloutsv1.PhaseRolledBack {
			st.Message = fmt.Sprintf("Step %s: canary at %d%%, %s", st.Step, st.CanaryWeight, p.capacityWait.Message)
		}
		return
	}
	p.startStep(i + 1)
}

// gatesHold says why the gates keep the step from advancing, or "" when the
// latest evaluation of every gate in this step passed.
func (p *planner) gatesHold() string {
	if holds := p.gateHolds(); len(holds) > 0 {
		return holds[0]
	}
	return ""
}

// gateHolds says, for every gate whose latest evaluation in this step did
// not pass, why it holds the step.
func (p *planner) gateHolds() []string {
	a := p.ro.Spec.Analysis
	if a == nil {
		return nil
	}
	byName := map[string]rolloutsv1.GateStatus{}
	for _, g := range p.st.Gates {
		byName[g.Name] = g
	}
	var holds []string
	for _, g := range a.Gates {
		if g.DryRun || !g.RunsAtSteps() {
			continue // observed only, or judged before the first step only (pretraffic.go)
		}
		gs, ok := byName[g.Name]
		switch {
		case !ok || gs.LastEvaluatedAt == nil || p.st.StepStartedAt == nil || gs.LastEvaluatedAt.Time.Before(p.st.StepStartedAt.Time):
			holds = append(holds, fmt.Sprintf("waiting for gate %q to be evaluated at this step", g.Name))
		case gs.Verdict == rolloutsv1.VerdictPass:
		case gs.Verdict == rolloutsv1.VerdictNoData && NoDataPassed(g, gs):
		default:
			msg := gs.Message
			if msg == "" {
				msg = string(gs.Verdict)
			}
			holds = append(holds, fmt.Sprintf("gate %q holds: %s", g.Name, msg))
		}
	}
	return holds
}

// nextEvaluation is how long until the gates are due again.
func (p *planner) nextEvaluation() time.Duration {
	if p.st.StepStartedAt == nil {
		return 0 // the step's clock has not started; anchor schedules it
	}
	return nextEvaluationAt(p.st, AnalysisInterval(p.ro.Spec.Analysis)).Sub(p.obs.Now)
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

func AnalysisInterval(a *rolloutsv1.Analysis) time.Duration {
	if a == nil {
		return rolloutsv1.DefaultAnalysisInterval
	}
	if d := a.Interval.Or(rolloutsv1.DefaultAnalysisInterval); d > 0 {
		return d
	}
	return rolloutsv1.DefaultAnalysisInterval
}

// gatesDue says whether the gates must be evaluated now: the canary has
// traffic at the step's weight and the interval since the last evaluation
// has passed.
func GatesDue(ro *rolloutsv1.ModelRollout, now time.Time) bool {
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
	if st.CurrentStepIndex == nil || !canaryServes(st) || st.StepStartedAt == nil {
		return false
	}
	if !slices.ContainsFunc(ro.Spec.Analysis.Gates, rolloutsv1.Gate.RunsAtSteps) {
		return false
	}
	return !now.Before(nextEvaluationAt(st, AnalysisInterval(ro.Spec.Analysis)))
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

// sameRef says whether two backends are the same backendRef: group, kind,
// name and port.
func SameRef(a, b rolloutsv1.BackendRef) bool {
	return a.Group == b.Group && a.KindOrDefault() == b.KindOrDefault() && a.Name == b.Name && DerefPort(a.Port) == DerefPort(b.Port)
}

// backendList renders backends for messages.
func BackendList(bs []rolloutsv1.BackendRef) string {
	names := make([]string, 0, len(bs))
	for _, b := range bs {
		names = append(names, b.String())
	}
	return strings.Join(names, ", ")
}

func Truncate(s string, n int) string { return rolloutsv1.Truncate(s, n) }

// setConditions derives the kstatus conditions from the phase and the
// observations.
func (p *planner) setConditions() {
	st := p.st
	gen := p.ro.Generation
	set := func(t string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: status, Reason: reason, Message: Truncate(msg, 32768), ObservedGeneration: gen,
		})
	}
	msg := st.Message

	stalled := (*Problem)(nil)
	switch {
	case p.held != nil:
		stalled = p.held
	case st.Phase == rolloutsv1.PhaseRolledBack:
		reason := rolloutsv1.ReasonRolledBack
		if st.Rollback != nil {
			reason = st.Rollback.Reason
		}
		stalled = &Problem{Reason: reason, Message: msg}
	case st.Phase == rolloutsv1.PhaseIdle || st.Phase == rolloutsv1.PhaseSucceeded:
	case p.obs.Analysis != nil:
		stalled = p.obs.Analysis
	case p.capacityStalled:
		stalled = &Problem{Reason: rolloutsv1.ReasonWaitingForCapacity, Message: msg}
	case p.deadlineExceeded():
		stalled = &Problem{Reason: rolloutsv1.ReasonProgressDeadlineExceeded,
			Message: fmt.Sprintf("%s (waiting since %s, past the progress deadline of %s)", msg, st.WaitingSince.UTC().Format(time.RFC3339), p.progressDeadline())}
	}

	switch st.Phase {
	case rolloutsv1.PhaseIdle:
		set(rolloutsv1.ConditionReady, metav1.ConditionTrue, rolloutsv1.ReasonIdle, msg)
	case rolloutsv1.PhaseSucceeded:
		set(rolloutsv1.ConditionReady, metav1.ConditionTrue, rolloutsv1.ReasonSucceeded, msg)
	default:
		if p.held != nil {
			set(rolloutsv1.ConditionReady, metav1.ConditionFalse, p.held.Reason, msg)
			break
		}
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
		for _, t := range []string{rolloutsv1.ConditionRoutesResolved, rolloutsv1.ConditionRoutesApplied, rolloutsv1.ConditionCanaryAvailable, rolloutsv1.ConditionGatesPassing, rolloutsv1.ConditionHeaderRouted} {
			meta.RemoveStatusCondition(&st.Conditions, t)
		}
		return
	}
	p.setRoutesAppliedCondition(set)
	p.setHeaderRouteCondition(set)
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
	p.setWebhooksCondition(set)
}

// setRoutesAppliedCondition says whether the routes carry the decision.
func (p *planner) setRoutesAppliedCondition(set func(string, metav1.ConditionStatus, string, string)) {
	st := p.st
	in := IntentOf(st)
	switch {
	case p.obs.Conflict != nil:
		set(rolloutsv1.ConditionRoutesApplied, metav1.ConditionFalse, p.obs.Conflict.Reason, p.obs.Conflict.Message)
	case p.rejected() != nil:
		set(rolloutsv1.ConditionRoutesApplied, metav1.ConditionFalse, p.rejected().Reason, p.rejected().Message)
	case !in.Holds():
		meta.RemoveStatusCondition(&st.Conditions, rolloutsv1.ConditionRoutesApplied)
	case p.obs.Contended != nil:
		set(rolloutsv1.ConditionRoutesApplied, metav1.ConditionFalse, p.obs.Contended.Reason, p.obs.Contended.Message)
	case p.willCarry(in):
		set(rolloutsv1.ConditionRoutesApplied, metav1.ConditionTrue, rolloutsv1.ReasonApplied, "Every managed rule carries "+DescribeIntent(in))
	default:
		set(rolloutsv1.ConditionRoutesApplied, metav1.ConditionFalse, rolloutsv1.ReasonPending, "Writing "+DescribeIntent(in))
	}
}

// describeIntent renders what the routes must carry, e.g.
// "Service/v1:8000=90, Service/v2:8000=10, Service/v0:8000=0".
func DescribeIntent(w Weights) string {
	var parts []string
	switch {
	case w.Canary != nil:
		parts = append(parts, fmt.Sprintf("%s=%d", w.Stable.String(), 100-w.CanaryWeight), fmt.Sprintf("%s=%d", w.Canary.String(), w.CanaryWeight))
	case w.HoldStable:
		parts = append(parts, fmt.Sprintf("%s=100", w.Stable.String()))
	}
	for _, b := range w.Retire {
		parts = append(parts, fmt.Sprintf("%s=0", b.String()))
	}
	for _, b := range w.Remove {
		parts = append(parts, fmt.Sprintf("%s removed", b.String()))
	}
	return strings.Join(parts, ", ")
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

// currentMatch is the match of the step in force, if any.
func (p *planner) currentMatch() *rolloutsv1.StepMatch {
	st := p.st
	if st.CurrentStepIndex == nil || len(p.steps) == 0 {
		return nil
	}
	i := min(int(*st.CurrentStepIndex), len(p.steps)-1)
	return p.steps[i].Match
}

// canaryShare describes what reaches the canary in the current step, e.g.
// "canary at 0% and every request with header x-ab-test-group=canary".
func (p *planner) canaryShare() string {
	share := fmt.Sprintf("canary at %d%%", p.st.CanaryWeight)
	if m := p.currentMatch(); m != nil {
		share += " and every request with " + m.String()
	}
	return share
}

// canaryServes says whether the canary receives traffic: a weight, or a
// header route of the current step.
func canaryServes(st *rolloutsv1.ModelRolloutStatus) bool {
	return st.CanaryWeight > 0 || st.HeaderRoute != nil
}

// settleHeaderRoute sets status.headerRoute from the decision: the current
// step's match while the step runs (Progressing, Paused, or Waiting with a
// step in force), nothing otherwise, so that the owned routes go away when a
// step without a match starts, on rollback, on success and when the canary
// is removed. The routes are derived from it (desiredHeaderRoutes), never
// from memory.
func (p *planner) settleHeaderRoute() {
	st := p.st
	before := st.HeaderRoute
	st.HeaderRoute = nil
	switch st.Phase {
	case rolloutsv1.PhaseWaiting, rolloutsv1.PhaseProgressing, rolloutsv1.PhasePaused:
		if m := p.currentMatch(); m != nil && st.Canary != nil && st.Revision != "" && st.Revision == p.ro.Spec.Revision() {
			st.HeaderRoute = &rolloutsv1.HeaderRouteStatus{Routes: headerRouteNames(p.ro), Match: *m.DeepCopy()}
		}
	}
	switch {
	case before != nil && st.HeaderRoute == nil:
		p.emit(false, "HeaderRouteRemoved", "Requests with %s no longer go to the canary by match: HTTPRoute %s removed", before.Match.String(), strings.Join(before.Routes, ", "))
	case before != nil && before.Match.String() != st.HeaderRoute.Match.String():
		p.emit(false, "HeaderRouteChanged", "Requests with %s go to the canary (was %s)", st.HeaderRoute.Match.String(), before.Match.String())
	}
}

// headerCarried says whether the owned header routes of the current step
// exist (or none is needed). Their content is kept right by the reconciler
// (applyHeaderRoutes); the step's clock only needs them to exist.
func (p *planner) headerCarried() bool {
	if p.currentMatch() == nil {
		return true
	}
	if p.obs.HeaderRoute != nil {
		return false
	}
	for _, m := range p.obs.Found {
		name := headerRouteName(p.ro.Name, m.Route.Name)
		if !slices.ContainsFunc(p.obs.Owned, func(r *gatewayv1.HTTPRoute) bool { return r.Name == name }) {
			return false
		}
	}
	return true
}

// headerWillCarry says whether the header routes exist, or will once the
// writes that precede this decision's status write land.
func (p *planner) headerWillCarry() bool {
	return p.headerCarried() || (p.writes() && p.obs.HeaderRoute == nil)
}

// setHeaderRouteCondition says whether the header routes of a
// header-routed step are in place; absent when the step has no match.
func (p *planner) setHeaderRouteCondition(set func(string, metav1.ConditionStatus, string, string)) {
	st := p.st
	hr := st.HeaderRoute
	switch {
	case hr == nil:
		meta.RemoveStatusCondition(&st.Conditions, rolloutsv1.ConditionHeaderRouted)
	case p.obs.HeaderRoute != nil:
		set(rolloutsv1.ConditionHeaderRouted, metav1.ConditionFalse, p.obs.HeaderRoute.Reason, p.obs.HeaderRoute.Message)
	case p.headerWillCarry():
		set(rolloutsv1.ConditionHeaderRouted, metav1.ConditionTrue, rolloutsv1.ReasonApplied,
			fmt.Sprintf("HTTPRoute %s sends every request with %s to the canary", strings.Join(hr.Routes, ", "), hr.Match.String()))
	default:
		set(rolloutsv1.ConditionHeaderRouted, metav1.ConditionFalse, rolloutsv1.ReasonPending,
			fmt.Sprintf("Writing HTTPRoute %s for requests with %s", strings.Join(hr.Routes, ", "), hr.Match.String()))
	}
}

// AbortMeantFor says whether an abort request concerns the revision: one
// raised for another revision (an alert about the previous canary that
// lands once the next one runs) does not.
func AbortMeantFor(req Requests, revision string) bool {
	return req.AbortRevision == "" || req.AbortRevision == revision
}

// IsAlertToken says whether an abort token was written by the Alertmanager
// receiver.
func IsAlertToken(token string) bool { return strings.HasPrefix(token, alertTokenPrefix) }
