package v1alpha1

import "testing"

func TestActionRules(t *testing.T) {
	all := []Phase{PhaseIdle, PhaseWaiting, PhaseProgressing, PhasePaused, PhaseSucceeded, PhaseRolledBack}
	// The whole table, written out: a change to ActionRules shows here.
	want := map[Action][]Phase{
		ActionPromote:     {PhaseProgressing, PhasePaused},
		ActionPromoteFull: {PhaseProgressing, PhasePaused},
		ActionSkipGates:   {PhaseProgressing, PhasePaused},
		ActionPause:       {PhaseWaiting, PhaseProgressing, PhasePaused},
		ActionResume:      all,
		ActionAbort:       {PhaseWaiting, PhaseProgressing, PhasePaused},
		ActionRetry:       {PhaseRolledBack},
		ActionFinish:      {PhaseSucceeded},
	}
	if len(ActionRules) != len(want) {
		t.Fatalf("%d rules, want %d", len(ActionRules), len(want))
	}
	for a, phases := range want {
		in := map[Phase]bool{}
		for _, p := range phases {
			in[p] = true
		}
		for _, p := range all {
			if got := a.AllowedIn(p); got != in[p] {
				t.Errorf("%s in %s: allowed %v, want %v", a, p, got, in[p])
			}
		}
	}
	for _, a := range []Action{ActionPromote, ActionPromoteFull, ActionSkipGates} {
		if a.Allowed(PhaseProgressing, false) || !a.Allowed(PhaseProgressing, true) {
			t.Errorf("%s needs a current step", a)
		}
	}
	if !ActionAbort.Allowed(PhaseWaiting, false) {
		t.Error("abort acts without a current step")
	}
	if Action("nonsense").AllowedIn(PhaseProgressing) {
		t.Error("an unknown action acts nowhere")
	}
	if OverridePromoteFull.Action() != ActionPromoteFull || OverrideSkipGates.Action() != ActionSkipGates {
		t.Error("override kinds map to their actions")
	}
}

func TestActionRefusal(t *testing.T) {
	for a, want := range map[Action]string{
		ActionPromote:   "only a Progressing or Paused rollout can be promoted",
		ActionSkipGates: "only a Progressing or Paused rollout can be overridden",
		ActionAbort:     "only a Waiting, Progressing or Paused rollout can be aborted",
		ActionRetry:     "only a RolledBack rollout can be retried",
	} {
		if got := a.Refusal(); got != want {
			t.Errorf("%s: %q, want %q", a, got, want)
		}
	}
}

func TestEffectivePhase(t *testing.T) {
	ro := &ModelRollout{Spec: ModelRolloutSpec{Stable: BackendRef{Name: "v1"}}}
	if p := EffectivePhase(ro); p != PhaseIdle {
		t.Errorf("no canary: %s", p)
	}
	ro.Spec.Canary = &BackendRef{Name: "v2"}
	ro.Status.Phase = PhaseSucceeded
	ro.Status.Revision = "old"
	if p := EffectivePhase(ro); p != PhaseWaiting {
		t.Errorf("new revision: %s", p)
	}
	ro.Status.Revision = ro.Spec.Revision()
	if p := EffectivePhase(ro); p != PhaseSucceeded {
		t.Errorf("current revision: %s", p)
	}
}
