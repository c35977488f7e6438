package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// ActionOptions are the options shared by promote, abort and retry.
type ActionOptions struct {
	// Wait waits until the controller has handled the request and prints
	// the resulting phase.
	Wait bool
	// Timeout bounds Wait.
	Timeout time.Duration
}

// DefaultWaitTimeout is how long --wait waits by default.
const DefaultWaitTimeout = time.Minute

// effectivePhase is the phase the controller will act in when it next
// handles the rollout (rolloutsv1.EffectivePhase).
func effectivePhase(ro *rolloutsv1.ModelRollout) rolloutsv1.Phase {
	return rolloutsv1.EffectivePhase(ro)
}

// phaseNote explains a phase in a refusal, e.g. "gpt4 is Idle (no
// spec.canary)".
func phaseNote(ro *rolloutsv1.ModelRollout) string {
	phase := effectivePhase(ro)
	s := fmt.Sprintf("%s is %s", ro.Name, phase)
	switch {
	case phase == rolloutsv1.PhaseIdle:
		s += " (no spec.canary)"
	case phase == rolloutsv1.PhaseWaiting && ro.Status.Phase != rolloutsv1.PhaseWaiting:
		s += " (a new rollout of " + ro.Spec.Revision() + " is starting)"
	}
	return s
}

// Annotation values written by the plugin.
const pausedTrue = "true"

// request is one annotation change, checked against the rollout's state
// right before it is written.
type request struct {
	verb string
	// check refuses the request in the rollout's current state.
	check func(ro *rolloutsv1.ModelRollout) error
	// annotations to set; a nil value removes the annotation.
	annotations map[string]*string
}

// apply writes the request's annotations with a JSON merge patch of
// metadata.annotations. The patch carries the resourceVersion the check was
// made on, so a concurrent change makes the API server refuse it and the
// check runs again on the new state.
func (p *Plugin) apply(ctx context.Context, name string, req request) (*rolloutsv1.ModelRollout, error) {
	for attempt := 0; ; attempt++ {
		ro, err := p.get(ctx, name)
		if err != nil {
			return nil, err
		}
		if err := req.check(ro); err != nil {
			return nil, err
		}
		patch := map[string]any{
			"metadata": map[string]any{
				"resourceVersion": ro.ResourceVersion,
				"annotations":     req.annotations,
			},
		}
		data, err := json.Marshal(patch)
		if err != nil {
			return nil, err
		}
		err = p.Client.MergePatch(ctx, ro, data)
		if apierrors.IsConflict(err) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, p.apiError(err, p.Namespace, name)
		}
		return ro, nil
	}
}

// token is a fresh request token: the time, RFC 3339 with nanoseconds.
func (p *Plugin) token() string {
	return p.now().UTC().Format(time.RFC3339Nano)
}

func strPtr(s string) *string { return &s }

// Promote ends the current step's pause: the step advances once its gates
// pass. Only a Progressing or Paused rollout with a current step can be
// promoted.
func (p *Plugin) Promote(ctx context.Context, name string, o ActionOptions) error {
	tok := p.token()
	ro, err := p.apply(ctx, name, request{
		verb: "promote",
		check: func(ro *rolloutsv1.ModelRollout) error {
			phase := effectivePhase(ro)
			if rolloutsv1.ActionPromote.Allowed(phase, ro.Status.CurrentStepIndex != nil) {
				return nil
			}
			msg := phaseNote(ro) + "; " + rolloutsv1.ActionPromote.Refusal()
			switch phase {
			case rolloutsv1.PhaseSucceeded:
				msg += " (the canary already has all traffic)"
			case rolloutsv1.PhaseRolledBack:
				msg += fmt.Sprintf(" (to start again at step 1: kubectl modelrollout retry %s -n %s)", ro.Name, ro.Namespace)
			case rolloutsv1.PhaseWaiting:
				if ro.Status.Message != "" && ro.Status.Revision == ro.Spec.Revision() {
					msg += " (waiting: " + ro.Status.Message + ")"
				}
			}
			return failf("%s", msg)
		},
		annotations: map[string]*string{rolloutsv1.AnnotationPromote: strPtr(tok)},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(p.Out, "modelrollout %q promote requested at step %s (%s=%s)\n", name, ro.Status.Step, rolloutsv1.AnnotationPromote, tok)
	if c := pauseCause(ro); c != "" {
		fmt.Fprintf(p.errOut(), "note: %s is paused by %s; the promote takes effect once it is resumed\n", name, c)
	} else if ro.Spec.Analysis != nil {
		fmt.Fprintf(p.errOut(), "note: the step ends once the latest evaluation of every gate passes\n")
	}
	return p.waitHandled(ctx, name, tok, o, func(st *rolloutsv1.ModelRolloutStatus) string { return st.LastHandledPromote })
}

// OverrideOptions ask for an override with promote: --full or
// --skip-gates, and --reason.
type OverrideOptions struct {
	Full      bool
	SkipGates bool
	Reason    string
}

// Override asks for a full promote (the last step, 100%, at once) or a skip
// of the current step's pause and gates. Only a Progressing or Paused rollout
// with a current step, not held by spec.paused or the paused annotation, can
// be overridden; a full promote needs a step before the last. The request
// names who asks, from a SelfSubjectReview.
func (p *Plugin) Override(ctx context.Context, name string, oo OverrideOptions, o ActionOptions) error {
	reason := strings.TrimSpace(oo.Reason)
	action, key, what, kind := rolloutsv1.ActionSkipGates, rolloutsv1.AnnotationSkipGates, "skip of the gates", rolloutsv1.OverrideSkipGates
	if oo.Full {
		action, key, what, kind = rolloutsv1.ActionPromoteFull, rolloutsv1.AnnotationPromoteFull, "full promote", rolloutsv1.OverridePromoteFull
	}
	who, fallback := p.whoAmI(ctx)
	if fallback != "" {
		fmt.Fprintf(p.errOut(), "note: %s\n", fallback)
	}
	tok := p.token()
	ro, err := p.apply(ctx, name, request{
		verb: what,
		check: func(ro *rolloutsv1.ModelRollout) error {
			phase := effectivePhase(ro)
			if !action.Allowed(phase, ro.Status.CurrentStepIndex != nil) {
				msg := phaseNote(ro) + "; " + action.Refusal()
				if phase == rolloutsv1.PhaseRolledBack {
					msg += fmt.Sprintf(" (to start again at step 1: kubectl modelrollout retry %s -n %s)", ro.Name, ro.Namespace)
				}
				return failf("%s", msg)
			}
			switch {
			case ro.Spec.Paused:
				return failf("%s is paused by spec.paused; an override does not lift a hold: set spec.paused to false in Git first", ro.Name)
			case ro.Annotations[rolloutsv1.AnnotationPaused] == pausedTrue:
				return failf("%s is paused by the %s annotation; an override does not lift a hold: resume it first (kubectl modelrollout resume %s -n %s)",
					ro.Name, rolloutsv1.AnnotationPaused, ro.Name, ro.Namespace)
			}
			if last := len(ro.WalkedSteps()) - 1; oo.Full && int(*ro.Status.CurrentStepIndex) >= last {
				return failf("%s is already at the last step %s (%d%%); promote ends its pause, promote --skip-gates passes over its gates",
					ro.Name, ro.Status.Step, ro.Status.CanaryWeight)
			}
			return nil
		},
		annotations: map[string]*string{
			key:                                strPtr(tok),
			rolloutsv1.AnnotationPromoteReason: strPtr(reason),
			rolloutsv1.AnnotationRequestedBy:   strPtr(who),
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(p.Out, "modelrollout %q %s requested at step %s by %s: %q (%s=%s)\n", name, what, ro.Status.Step, who, reason, key, tok)
	if !o.Wait {
		return nil
	}
	handled := func(st *rolloutsv1.ModelRolloutStatus) string { return st.LastHandledSkipGates }
	if oo.Full {
		handled = func(st *rolloutsv1.ModelRolloutStatus) string { return st.LastHandledPromoteFull }
	}
	if err := p.waitHandled(ctx, name, tok, o, handled); err != nil {
		return err
	}
	// The controller acts at once or never: the record says which.
	ro, err = p.get(ctx, name)
	if err != nil {
		return err
	}
	for _, r := range ro.Status.Overrides {
		if r.Token == tok && r.Kind == kind {
			fmt.Fprintf(p.Out, "applied: %s\n", r.Message)
			return nil
		}
	}
	return failf("the controller did not apply the %s; the reason is in its Warning event: kubectl modelrollout status %s -n %s", what, name, ro.Namespace)
}

// Abort rolls the canary back now. Only a Waiting, Progressing or Paused
// rollout can be aborted.
func (p *Plugin) Abort(ctx context.Context, name, reason string, o ActionOptions) error {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		reason = "aborted by " + p.actor(ctx)
	}
	tok := p.token()
	_, err := p.apply(ctx, name, request{
		verb: "abort",
		check: func(ro *rolloutsv1.ModelRollout) error {
			switch phase := effectivePhase(ro); {
			case rolloutsv1.ActionAbort.AllowedIn(phase):
				return nil
			case phase == rolloutsv1.PhaseSucceeded:
				return failf("%s; a Succeeded rollout is not rolled back; change spec.canary or spec.stable instead", phaseNote(ro))
			case phase == rolloutsv1.PhaseRolledBack:
				return failf("%s already; %s", phaseNote(ro), rolloutsv1.ActionAbort.Refusal())
			default:
				return failf("%s; %s", phaseNote(ro), rolloutsv1.ActionAbort.Refusal())
			}
		},
		annotations: map[string]*string{
			rolloutsv1.AnnotationAbort:       strPtr(tok),
			rolloutsv1.AnnotationAbortReason: strPtr(reason),
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(p.Out, "modelrollout %q abort requested: %q (%s=%s)\n", name, reason, rolloutsv1.AnnotationAbort, tok)
	return p.waitHandled(ctx, name, tok, o, func(st *rolloutsv1.ModelRolloutStatus) string { return st.LastHandledAbort })
}

// Retry restarts a rolled-back rollout at its first step.
func (p *Plugin) Retry(ctx context.Context, name string, o ActionOptions) error {
	tok := p.token()
	_, err := p.apply(ctx, name, request{
		verb: "retry",
		check: func(ro *rolloutsv1.ModelRollout) error {
			if rolloutsv1.ActionRetry.AllowedIn(effectivePhase(ro)) {
				return nil
			}
			return failf("%s; %s", phaseNote(ro), rolloutsv1.ActionRetry.Refusal())
		},
		annotations: map[string]*string{rolloutsv1.AnnotationRetry: strPtr(tok)},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(p.Out, "modelrollout %q retry requested: it restarts at step 1 (%s=%s)\n", name, rolloutsv1.AnnotationRetry, tok)
	return p.waitHandled(ctx, name, tok, o, func(st *rolloutsv1.ModelRolloutStatus) string { return st.LastHandledRetry })
}

// Pause holds the rollout at its current step by setting the paused
// annotation. Gates keep being evaluated and a failing gate still rolls back.
func (p *Plugin) Pause(ctx context.Context, name string) error {
	already := false
	ro, err := p.apply(ctx, name, request{
		verb: "pause",
		check: func(ro *rolloutsv1.ModelRollout) error {
			if !rolloutsv1.ActionPause.AllowedIn(effectivePhase(ro)) {
				return failf("%s; %s", phaseNote(ro), rolloutsv1.ActionPause.Refusal())
			}
			already = ro.Annotations[rolloutsv1.AnnotationPaused] == pausedTrue
			return nil
		},
		annotations: map[string]*string{rolloutsv1.AnnotationPaused: strPtr(pausedTrue)},
	})
	if err != nil {
		return err
	}
	if already {
		fmt.Fprintf(p.Out, "modelrollout %q is already paused (%s=%s)\n", name, rolloutsv1.AnnotationPaused, pausedTrue)
		return nil
	}
	fmt.Fprintf(p.Out, "modelrollout %q paused (%s=%s)\n", name, rolloutsv1.AnnotationPaused, pausedTrue)
	if effectivePhase(ro) == rolloutsv1.PhaseWaiting {
		fmt.Fprintf(p.errOut(), "note: %s has not started yet; it will hold at step 1 once it starts\n", name)
	}
	return nil
}

// Resume removes the paused annotation. It cannot undo spec.paused, which
// belongs to whoever owns the spec (Git).
func (p *Plugin) Resume(ctx context.Context, name string) error {
	ro, err := p.get(ctx, name)
	if err != nil {
		return err
	}
	if ro.Annotations[rolloutsv1.AnnotationPaused] == "" {
		hint := ""
		switch {
		case ro.Spec.Paused:
			return failf("%s is paused by spec.paused, not by the %s annotation; set spec.paused to false in Git", name, rolloutsv1.AnnotationPaused)
		case ro.Status.Phase == rolloutsv1.PhasePaused && awaitingPromote(ro, ro.WalkedSteps()):
			return failf("%s is not paused by the %s annotation: step %s has no pause and waits for a promote (kubectl modelrollout promote %s -n %s)",
				name, rolloutsv1.AnnotationPaused, ro.Status.Step, name, ro.Namespace)
		case ro.Status.Phase == rolloutsv1.PhasePaused:
			hint = " (its status still says Paused; the controller has not caught up yet)"
		}
		fmt.Fprintf(p.Out, "modelrollout %q is not paused%s; nothing to do\n", name, hint)
		return nil
	}
	ro, err = p.apply(ctx, name, request{
		verb:        "resume",
		check:       func(*rolloutsv1.ModelRollout) error { return nil },
		annotations: map[string]*string{rolloutsv1.AnnotationPaused: nil},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(p.Out, "modelrollout %q resumed (%s removed)\n", name, rolloutsv1.AnnotationPaused)
	if ro.Spec.Paused {
		fmt.Fprintf(p.errOut(), "note: spec.paused is also true and keeps %s paused; set it to false in Git\n", name)
	}
	return nil
}

// waitHandled waits, when asked to, until the controller records token as
// handled, then prints the phase it left the rollout in.
func (p *Plugin) waitHandled(ctx context.Context, name, token string, o ActionOptions, handled func(*rolloutsv1.ModelRolloutStatus) string) error {
	if !o.Wait {
		return nil
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	ro, err := p.get(wctx, name)
	if err != nil {
		return err
	}
	done := handled(&ro.Status) == token
	if !done {
		stop := fmt.Errorf("handled")
		err = p.watchRollouts(wctx, false, name, ro.ResourceVersion, func(t watch.EventType, obj *rolloutsv1.ModelRollout) error {
			if t == watch.Deleted {
				return failf("modelrollout %q was deleted while waiting", name)
			}
			if handled(&obj.Status) == token {
				ro = obj
				return stop
			}
			return nil
		})
		switch {
		case errors.Is(err, stop):
		case err != nil:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			return failf("timed out after %s waiting for the controller to handle the request (is the modelrollout controller running?)", timeout)
		}
	}
	msg := ro.Status.Message
	if msg != "" {
		msg = ": " + msg
	}
	step := ""
	if ro.Status.Step != "" && ro.Status.Phase != rolloutsv1.PhaseIdle {
		step = ", step " + ro.Status.Step
	}
	fmt.Fprintf(p.Out, "%s is %s%s%s\n", name, ro.Status.Phase, step, msg)
	return nil
}
