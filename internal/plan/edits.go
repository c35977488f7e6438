package plan

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// This file decides what an edit of spec.steps does to a rollout whose step
// is in force (docs/concepts/edits.md). The rule: no edit raises the canary's weight
// before the weight in force has baked (its pause and its gates); the
// rollout then goes on with the first step of the new list whose weight is
// above it. A lowered weight applies at once. status.stepWeights records the
// steps being walked, so that an edit is seen, and announced once
// (StepsChanged), however many decisions it spans.

// stepWeights lists the weights of the steps.
func stepWeights(steps []rolloutsv1.Step) []int32 {
	out := make([]int32, len(steps))
	for i, s := range steps {
		out[i] = s.Weight
	}
	return out
}

// weightList renders weights as "10/25/50".
func weightList(ws []int32) string {
	if len(ws) == 0 {
		return "(unrecorded)"
	}
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = strconv.Itoa(int(w))
	}
	return strings.Join(parts, "/")
}

// walkedSteps sets p.steps to the steps the rollout walks, with the step in
// force at status.currentStepIndex, and adopts an edit of spec.steps.
// Steps are strictly increasing (CRD validation), so a weight names at most
// one step of a list.
func (p *planner) walkedSteps() {
	st := p.st
	spec := p.ro.Spec.EffectiveSteps()
	specW := stepWeights(spec)
	p.steps = spec
	p.heldAt = -1
	if st.CurrentStepIndex == nil {
		return
	}
	i := int(*st.CurrentStepIndex)
	w := st.CanaryWeight
	old := st.StepWeights
	inForce := i < len(spec) && spec[i].Weight == w
	switch {
	case inForce && (old == nil || slices.Equal(old, specW)):
		// Unchanged (or recorded by a version without stepWeights).
		st.StepWeights = specW
	case i < len(old) && old[i] == w && !slices.Contains(specW, w) &&
		slices.Equal(slices.Delete(slices.Clone(old), i, i+1), specW):
		// A step an earlier edit removed still bakes; announced then.
		p.hold(i)
	default:
		p.adoptEdit(old, spec)
	}
	if p.heldAt < 0 {
		st.StepPause = p.steps[*st.CurrentStepIndex].Pause
	}
	st.Step = fmt.Sprintf("%d/%d", *st.CurrentStepIndex+1, len(p.steps))
}

// hold keeps the weight in force as a step of its own at index j of the
// walked steps, before the first step of spec.steps above it, with the
// pause it started with and no match.
func (p *planner) hold(j int) {
	st := p.st
	held := rolloutsv1.Step{Weight: st.CanaryWeight}
	if st.StepPause != nil {
		pause := *st.StepPause
		held.Pause = &pause
	}
	p.steps = slices.Insert(slices.Clone(p.steps), j, held)
	p.heldAt = j
	idx := int32(j)
	st.CurrentStepIndex = &idx
	st.StepWeights = stepWeights(p.steps)
}

// adoptEdit applies an edit of spec.steps to the step in force.
func (p *planner) adoptEdit(old []int32, spec []rolloutsv1.Step) {
	st := p.st
	i := int(*st.CurrentStepIndex)
	w := st.CanaryWeight
	specW := stepWeights(spec)
	change := fmt.Sprintf("spec.steps changed from %s to %s", weightList(old), weightList(specW))
	setIndex := func(c int) {
		idx := int32(c)
		st.CurrentStepIndex = &idx
		st.StepWeights = specW
	}
	switch c := slices.Index(specW, w); {
	case c >= 0:
		// The weight in force is a step of the new list: it goes on baking
		// as that step, with that step's pause and match.
		setIndex(c)
		next := "the rollout then succeeds"
		if c+1 < len(spec) {
			next = fmt.Sprintf("then step %d/%d (%d%%)", c+2, len(spec), spec[c+1].Weight)
		}
		p.emit(false, "StepsChanged", "%s: canary stays at %d%%, now step %d/%d, until it has baked; %s", change, w, c+1, len(spec), next)
	case i < len(spec) && spec[i].Weight < w:
		// The step in force now has a lower weight: it applies at once
		// and bakes its full pause.
		setIndex(i)
		p.lowerTo(spec[i].Weight)
		p.emit(false, "StepsChanged", "%s: canary lowered from %d%% to %d%% at once, as step %d/%d, which bakes its full pause", change, w, spec[i].Weight, i+1, len(spec))
	default:
		// The weight in force is no step of the new list: it stays, as a
		// step of its own, until it has baked.
		j := slices.IndexFunc(specW, func(x int32) bool { return x > w })
		if j < 0 {
			// Unreachable: the last step has weight 100.
			j = len(spec)
		}
		p.hold(j)
		next := "the rollout then succeeds"
		if j < len(spec) {
			next = fmt.Sprintf("then the rollout goes on with step %d/%d (%d%%)", j+1, len(spec), spec[j].Weight)
		}
		p.emit(false, "StepsChanged", "%s: canary stays at %d%% (step %d/%d of %s) until it has baked its pause and gates; %s", change, w, j+1, len(p.steps), weightList(st.StepWeights), next)
	}
}

// lowerTo sets a lower canary weight for the step in force: its record in
// the history ends and a new one starts, and its clock starts again once
// the routes carry it.
func (p *planner) lowerTo(weight int32) {
	st := p.st
	now := p.micro()
	if n := len(st.StepHistory); n > 0 && st.StepHistory[n-1].EndedAt == nil {
		st.StepHistory[n-1].EndedAt = &now
	}
	st.StepHistory = append(st.StepHistory, rolloutsv1.StepRecord{Weight: weight, StartedAt: now})
	if len(st.StepHistory) > 20 {
		st.StepHistory = st.StepHistory[len(st.StepHistory)-20:]
	}
	st.CanaryWeight = weight
	st.StepStartedAt = nil
	st.Promoted = false
}

// specIndex maps an index of the walked steps to one of spec.steps.
func (p *planner) specIndex(i int) int {
	if p.heldAt >= 0 && i > p.heldAt {
		return i - 1
	}
	return i
}
