package v1alpha1

import "strings"

// Action is a manual action on a rollout: what `kubectl modelrollout`, the
// Argo CD custom actions and the Alertmanager receiver ask for, and what the
// controller acts on. ActionRules says in which phases each one acts; the
// controller, the receiver, the plugin and the generated Argo CD scripts all
// read it from there.
type Action string

const (
	// ActionPromote ends the current step's pause.
	ActionPromote Action = "promote"
	// ActionPromoteFull moves the canary to the last step now (an override).
	ActionPromoteFull Action = "promote-full"
	// ActionSkipGates advances the current step past its pause and gates
	// once (an override).
	ActionSkipGates Action = "skip-gates"
	// ActionPause holds the rollout at its current step (the paused
	// annotation).
	ActionPause Action = "pause"
	// ActionResume removes the paused annotation.
	ActionResume Action = "resume"
	// ActionAbort rolls the canary back now.
	ActionAbort Action = "abort"
	// ActionRetry restarts a rolled-back rollout at its first step.
	ActionRetry Action = "retry"
	// ActionFinish makes the canary that holds all traffic the new stable
	// (a spec change: spec.stable becomes the canary, spec.canary goes).
	ActionFinish Action = "finish"
)

// ActionRule is where an action acts.
//
// +kubebuilder:object:generate=false
type ActionRule struct {
	// Action is the action's name.
	Action Action
	// Phases are the phases in which the controller acts on it; nil means
	// every phase (resume: the paused annotation can always be removed).
	Phases []Phase
	// NeedsStep is true when the action also needs a current step
	// (status.currentStepIndex).
	NeedsStep bool
	// Annotation is the token annotation that asks for the action; empty
	// for pause and resume (the paused annotation holds a value, not a
	// token) and finish (a spec change).
	Annotation string
	// Handled is the JSON name of the status field that records the last
	// token the controller handled.
	Handled string
	// Done completes "only a <phases> rollout can be ...", e.g. "promoted".
	Done string
	// Summary says what the action does, for docs and menus.
	Summary string
}

// active are the phases in which a canary is being rolled out.
var active = []Phase{PhaseWaiting, PhaseProgressing, PhasePaused}

// stepped are the phases in which a rollout has a step to act on.
var stepped = []Phase{PhaseProgressing, PhasePaused}

// ActionRules is the one table of which action acts in which phase, in the
// order Argo CD lists the actions. The phase is the one the controller acts
// in: see EffectivePhase.
var ActionRules = []ActionRule{
	{Action: ActionPromote, Phases: stepped, NeedsStep: true, Annotation: AnnotationPromote, Handled: "lastHandledPromote", Done: "promoted",
		Summary: "Ends the current step's pause; the step advances once its gates pass."},
	{Action: ActionPromoteFull, Phases: stepped, NeedsStep: true, Annotation: AnnotationPromoteFull, Handled: "lastHandledPromoteFull", Done: "overridden",
		Summary: "Override: moves the canary to the last step (100%) now, past pauses and gates. Needs a step before the last and no hold (spec.paused or the paused annotation)."},
	{Action: ActionSkipGates, Phases: stepped, NeedsStep: true, Annotation: AnnotationSkipGates, Handled: "lastHandledSkipGates", Done: "overridden",
		Summary: "Override: advances the current step now, past its pause and its gates' verdicts, once. Needs no hold (spec.paused or the paused annotation)."},
	{Action: ActionPause, Phases: active, Done: "paused",
		Summary: "Holds the rollout at its current step (the paused annotation). Gates keep being evaluated; a failing gate still rolls back."},
	{Action: ActionResume, Done: "resumed",
		Summary: "Removes the paused annotation; it cannot undo spec.paused, which belongs to Git."},
	{Action: ActionAbort, Phases: active, Annotation: AnnotationAbort, Handled: "lastHandledAbort", Done: "aborted",
		Summary: "Rolls the canary back now (weight 0). Also what a firing alert matched by spec.rollbackOnAlerts asks for."},
	{Action: ActionRetry, Phases: []Phase{PhaseRolledBack}, Annotation: AnnotationRetry, Handled: "lastHandledRetry", Done: "retried",
		Summary: "Restarts a rolled-back rollout at its first step."},
	{Action: ActionFinish, Phases: []Phase{PhaseSucceeded}, Done: "finished",
		Summary: "Makes the canary that holds all traffic the new stable (kubectl modelrollout finish; not an Argo CD action, Git owns the spec)."},
}

// Action is the action that asks for the override.
func (k OverrideKind) Action() Action {
	if k == OverridePromoteFull {
		return ActionPromoteFull
	}
	return ActionSkipGates
}

// Rule returns the action's rule; an unknown action acts in no phase.
func (a Action) Rule() ActionRule {
	for _, r := range ActionRules {
		if r.Action == a {
			return r
		}
	}
	return ActionRule{Action: a, Phases: []Phase{}}
}

// AllowedIn says whether the controller acts on the action in the phase.
func (a Action) AllowedIn(p Phase) bool {
	r := a.Rule()
	if r.Phases == nil {
		return true
	}
	for _, q := range r.Phases {
		if q == p {
			return true
		}
	}
	return false
}

// Allowed says whether the controller acts on the action in the phase,
// with or without a current step.
func (a Action) Allowed(p Phase, hasStep bool) bool {
	return a.AllowedIn(p) && (hasStep || !a.Rule().NeedsStep)
}

// Refusal is the rule in words, e.g. "only a Progressing or Paused rollout
// can be promoted".
func (a Action) Refusal() string {
	r := a.Rule()
	return "only a " + PhaseList(r.Phases) + " rollout can be " + r.Done
}

// PhaseList renders phases as "Waiting, Progressing or Paused".
func PhaseList(ps []Phase) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// EffectivePhase is the phase the controller acts in when it next handles
// the rollout: Idle without a canary, Waiting when the canary or stable
// changed (a new rollout starts before requests are handled) or no status
// was written yet, else the phase in status.
func EffectivePhase(ro *ModelRollout) Phase {
	switch {
	case ro.Spec.Canary == nil:
		return PhaseIdle
	case ro.Status.Revision != ro.Spec.Revision(), ro.Status.Phase == "":
		return PhaseWaiting
	}
	return ro.Status.Phase
}
