package plugin

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Event is one Kubernetes Event about a rollout, from events.k8s.io/v1 or
// core v1, reduced to what the status view shows.
type Event struct {
	// Time is when the event was last seen.
	Time   time.Time
	Type   string
	Reason string
	Note   string
	// Count is how many times it was seen (1 when unknown).
	Count int32
}

// maxEvents is how many of the latest events the status view shows.
const maxEvents = 5

// labelWidth is the width of the label column of the status view.
const labelWidth = 9

// lineWidth is where the steps line wraps.
const lineWidth = 110

// RenderStatus writes the detailed view of one rollout, as
// `kubectl modelrollout status` shows it, with relative times taken from now.
func RenderStatus(w io.Writer, ro *rolloutsv1.ModelRollout, events []Event, now time.Time, style Style) error {
	v := &statusView{ro: ro, st: &ro.Status, now: now, style: style, steps: ro.WalkedSteps()}
	v.render(events)
	_, err := io.WriteString(w, strings.Join(v.lines, "\n")+"\n")
	return err
}

type statusView struct {
	ro    *rolloutsv1.ModelRollout
	st    *rolloutsv1.ModelRolloutStatus
	now   time.Time
	style Style
	steps []rolloutsv1.Step
	lines []string
}

// add appends a labelled section: the label on the first line, the others
// indented under it.
func (v *statusView) add(label string, lines ...string) {
	for i, l := range lines {
		prefix := strings.Repeat(" ", labelWidth)
		if i == 0 {
			prefix = padRight(v.style.paint(colorBold, label), labelWidth-1) + " "
		}
		v.lines = append(v.lines, strings.TrimRight(prefix+l, " "))
	}
}

func (v *statusView) render(events []Event) {
	v.lines = append(v.lines, v.header())
	v.add("Traffic", v.traffic())
	if hr := v.st.HeaderRoute; hr != nil {
		v.add("Match", fmt.Sprintf("every request with %s -> canary %s   via HTTPRoute %s",
			hr.Match.String(), canaryName(v.ro), strings.Join(hr.Routes, ", ")))
	}
	if steps := v.timeline(); len(steps) > 0 {
		v.add("Steps", steps...)
	}
	if v.st.Phase == rolloutsv1.PhaseRolledBack && v.st.Rollback != nil {
		rb := v.st.Rollback
		v.add("Reason", v.style.paint(colorRed, rb.Reason)+": "+rb.Message)
	}
	if msg := v.message(); msg != "" {
		v.add("Message", msg)
	}
	if gates := v.gates(); len(gates) > 0 {
		v.add("Gates", gates...)
	}
	if hooks := v.webhooks(); len(hooks) > 0 {
		v.add("Webhooks", hooks...)
	}
	if issues := v.issues(); len(issues) > 0 {
		v.add("Issues", issues...)
	}
	if ov := v.overrides(); len(ov) > 0 {
		v.add("Override", ov...)
	}
	if pending := v.pending(); len(pending) > 0 {
		v.add("Pending", pending...)
	}
	if len(v.st.Removing) > 0 {
		names := make([]string, 0, len(v.st.Removing))
		for _, b := range v.st.Removing {
			names = append(names, backendName(b))
		}
		v.add("Finish", "removing the backendRef of "+strings.Join(names, ", ")+" from the managed rules")
	}
	if hand := v.handoffs(); len(hand) > 0 {
		v.add("Handoff", hand...)
	}
	if v.st.ObservedGeneration != 0 && v.st.ObservedGeneration < v.ro.Generation {
		v.add("Note", fmt.Sprintf("the controller has not acted on the latest spec yet (generation %d; status is for generation %d)",
			v.ro.Generation, v.st.ObservedGeneration))
	}
	if evs := v.events(events); len(evs) > 0 {
		v.add("Events", evs...)
	} else {
		v.add("Events", "<none>")
	}
	if next := v.next(); next != "" {
		v.add("Next", next)
	}
}

// canaryName is the canary's display name.
func canaryName(ro *rolloutsv1.ModelRollout) string {
	switch {
	case ro.Spec.Canary != nil:
		return backendName(*ro.Spec.Canary)
	case ro.Status.Canary != nil:
		return backendName(*ro.Status.Canary)
	}
	return "<none>"
}

// backendName is the name of a backend, with its kind when it is not a
// Service.
func backendName(b rolloutsv1.BackendRef) string {
	if b.KindOrDefault() != rolloutsv1.BackendKindService {
		return string(b.KindOrDefault()) + "/" + b.Name
	}
	return b.Name
}

// currentStep is the index into the steps of the step in force, if any.
func currentStep(ro *rolloutsv1.ModelRollout, steps []rolloutsv1.Step) (int, bool) {
	if ro.Status.CurrentStepIndex == nil || len(steps) == 0 {
		return 0, false
	}
	i := int(*ro.Status.CurrentStepIndex)
	if i >= len(steps) {
		i = len(steps) - 1
	}
	if i < 0 {
		i = 0
	}
	return i, true
}

// stepLabel is "2/5", from status or from the index.
func (v *statusView) stepLabel() string {
	if v.st.Step != "" {
		return v.st.Step
	}
	if i, ok := currentStep(v.ro, v.steps); ok {
		return fmt.Sprintf("%d/%d", i+1, len(v.steps))
	}
	return ""
}

// pauseCause says why a rollout holds by request: "spec.paused", "the
// paused annotation", or "" when it does not.
func pauseCause(ro *rolloutsv1.ModelRollout) string {
	switch {
	case ro.Spec.Paused:
		return "spec.paused"
	case ro.Annotations[rolloutsv1.AnnotationPaused] == "true":
		return "the paused annotation"
	}
	return ""
}

// awaitingPromote is true when the current step has no pause and waits for
// a manual promote.
func awaitingPromote(ro *rolloutsv1.ModelRollout, steps []rolloutsv1.Step) bool {
	i, ok := currentStep(ro, steps)
	return ok && steps[i].Pause == nil && !ro.Status.Promoted
}

// remaining is the time left in the current step's pause; ok is false when
// the step has no pause or has not started.
func (v *statusView) remaining() (time.Duration, bool) {
	i, ok := currentStep(v.ro, v.steps)
	if !ok || v.st.StepStartedAt == nil || v.steps[i].Pause == nil {
		return 0, false
	}
	pause, err := v.steps[i].Pause.Parse()
	if err != nil {
		return 0, false
	}
	return v.st.StepStartedAt.Add(pause).Sub(v.now), true
}

func (v *statusView) header() string {
	st := v.st
	phase := string(st.Phase)
	if phase == "" {
		phase = "Pending"
	}
	head := fmt.Sprintf("Rollout %s: %s", v.style.paint(colorBold, v.ro.Name), v.style.paint(phaseColor(phase), phase))
	canary := canaryName(v.ro)
	var note string
	switch st.Phase {
	case "":
		head += fmt.Sprintf(", canary %s", canary)
		note = "no status yet: is the modelrollout controller running?"
	case rolloutsv1.PhaseIdle:
		head += ", no canary declared"
		note = "routes are left as they are"
	case rolloutsv1.PhaseWaiting:
		head += fmt.Sprintf(", canary %s at %d%%", canary, st.CanaryWeight)
		if st.WaitingSince != nil {
			note = "waiting " + short(v.now.Sub(st.WaitingSince.Time)) + " for preconditions"
		} else {
			note = "starting"
		}
	case rolloutsv1.PhaseProgressing, rolloutsv1.PhasePaused:
		head += fmt.Sprintf(", step %s, canary %s at %d%%", v.stepLabel(), canary, st.CanaryWeight)
		note = v.due()
	case rolloutsv1.PhaseSucceeded:
		head += fmt.Sprintf(", canary %s at %d%%", canary, st.CanaryWeight)
		if t := lastEnded(st.StepHistory); t != nil {
			note = "succeeded " + short(v.now.Sub(t.Time)) + " ago"
		}
	case rolloutsv1.PhaseRolledBack:
		if s := v.stepLabel(); s != "" {
			head = fmt.Sprintf("Rollout %s: %s at step %s", v.style.paint(colorBold, v.ro.Name), v.style.paint(phaseColor(phase), phase), s)
		}
		head += fmt.Sprintf(", canary %s at %d%%", canary, st.CanaryWeight)
		if st.Rollback != nil {
			if st.Rollback.FromWeight > 0 {
				head += fmt.Sprintf(" (was %d%%)", st.Rollback.FromWeight)
			}
			note = "rolled back " + short(v.now.Sub(st.Rollback.At.Time)) + " ago"
		}
	default:
		head += fmt.Sprintf(", canary %s at %d%%", canary, st.CanaryWeight)
	}
	if note != "" {
		head += "   (" + note + ")"
	}
	return head
}

// due says when the next step is due, for a Progressing or Paused rollout.
func (v *statusView) due() string {
	st := v.st
	i, ok := currentStep(v.ro, v.steps)
	if !ok {
		return ""
	}
	last := i == len(v.steps)-1
	next := "next step"
	if last {
		next = "succeeds"
	}
	if st.Phase == rolloutsv1.PhasePaused {
		if pauseCause(v.ro) != "" {
			return "paused"
		}
		if awaitingPromote(v.ro, v.steps) {
			return "waiting for promote"
		}
		return "paused"
	}
	if st.WaitingSince != nil {
		return "held: preconditions unmet for " + short(v.now.Sub(st.WaitingSince.Time))
	}
	if st.Promoted {
		if last {
			return "promoted; succeeds once the gates pass"
		}
		return "promoted; next step once the gates pass"
	}
	left, ok := v.remaining()
	switch {
	case !ok:
		return ""
	case left > 0 && last:
		return "succeeds in " + short(left)
	case left > 0:
		return "next step in " + short(left)
	case v.ro.Spec.Analysis != nil:
		return next + " once the gates pass"
	}
	return next + " due now"
}

func lastEnded(h []rolloutsv1.StepRecord) *metav1.Time {
	if n := len(h); n > 0 && h[n-1].EndedAt != nil {
		return &metav1.Time{Time: h[n-1].EndedAt.Time}
	}
	return nil
}

func (v *statusView) traffic() string {
	spec := &v.ro.Spec
	stableW := 100 - v.st.CanaryWeight
	parts := []string{fmt.Sprintf("stable %s %d%%", backendName(spec.Stable), stableW)}
	if spec.Canary != nil || v.st.Canary != nil {
		parts = append(parts, fmt.Sprintf("canary %s %d%%", canaryName(v.ro), v.st.CanaryWeight))
	}
	routes := make([]string, 0, len(spec.Routes))
	for _, r := range spec.Routes {
		name := r.Name
		if len(r.Rules) > 0 {
			rules := make([]string, len(r.Rules))
			for i, rule := range r.Rules {
				rules[i] = string(rule)
			}
			name += "[" + strings.Join(rules, ",") + "]"
		}
		routes = append(routes, name)
	}
	if len(routes) > 0 {
		label := "route"
		if len(routes) > 1 {
			label = "routes"
		}
		parts = append(parts, label+" "+strings.Join(routes, ", "))
	}
	return strings.Join(parts, "   ")
}

// pauseText is a step's configured pause: "30m", or "manual" when it waits
// for a promote.
func pauseText(s rolloutsv1.Step) string {
	if s.Pause == nil {
		return "manual"
	}
	return string(*s.Pause)
}

// timeline renders the steps: done, current and pending.
func (v *statusView) timeline() []string {
	st := v.st
	if st.Phase == rolloutsv1.PhaseIdle {
		return nil
	}
	cur, started := currentStep(v.ro, v.steps)
	items := make([]string, 0, len(v.steps))
	for i, s := range v.steps {
		var rec *rolloutsv1.StepRecord
		if i < len(st.StepHistory) {
			rec = &st.StepHistory[i]
		}
		took := ""
		if rec != nil && rec.EndedAt != nil {
			took = short(rec.EndedAt.Sub(rec.StartedAt.Time))
		}
		weight := fmt.Sprintf("%d%%", s.Weight)
		if s.Match != nil {
			weight += "+match"
		}
		var item string
		switch {
		case !started || i > cur:
			item = v.style.paint(colorDim, v.style.mark(markPending)+" "+weight+" "+pauseText(s))
		case i < cur || st.Phase == rolloutsv1.PhaseSucceeded:
			item = v.style.paint(colorGreen, v.style.mark(markDone)) + " " + weight
			if took != "" {
				item += " " + took
			}
		case st.Phase == rolloutsv1.PhaseRolledBack:
			item = v.style.paint(colorRed, v.style.mark(markFail)) + " " + weight
			if took != "" {
				item += " " + took
			}
			item += " (rolled back)"
		default:
			item = v.style.paint(colorCyan, v.style.mark(markCurrent)) + " " + weight + " " + pauseText(s)
			if d := v.currentDetail(); d != "" {
				item += " (" + d + ")"
			}
		}
		items = append(items, item)
	}
	return wrapItems(items, "   ", lineWidth, strings.Repeat(" ", labelWidth))
}

// currentDetail is the parenthesised detail of the current step.
func (v *statusView) currentDetail() string {
	left, timed := v.remaining()
	switch {
	case v.st.Phase == rolloutsv1.PhasePaused && pauseCause(v.ro) != "":
		if timed && left > 0 {
			return "paused, " + short(left) + " left"
		}
		return "paused"
	case v.st.Phase == rolloutsv1.PhasePaused && awaitingPromote(v.ro, v.steps):
		return "waiting for promote"
	case v.st.Promoted:
		return "promoted"
	case timed && left > 0:
		return short(left) + " left"
	case timed:
		return "baked"
	}
	return ""
}

// message is status.message when it says more than the header.
func (v *statusView) message() string {
	st := v.st
	if st.Message == "" {
		return ""
	}
	switch st.Phase {
	case rolloutsv1.PhaseWaiting, rolloutsv1.PhasePaused, "":
		return st.Message
	case rolloutsv1.PhaseProgressing:
		if left, ok := v.remaining(); st.WaitingSince != nil || st.Promoted || (ok && left <= 0) {
			return st.Message
		}
	}
	return ""
}

// unit is the unit suffix of a gate's values: "s" for latency presets.
func unit(g rolloutsv1.Gate) string {
	p := string(g.Preset)
	if strings.Contains(p, "latency") || strings.HasSuffix(p, "-ttft-p99") || strings.HasSuffix(p, "-itl-p99") {
		return "s"
	}
	return ""
}

// threshold renders a gate's passing range with its unit: "≤ 0.05",
// "≥ 0.9", "[1s, 2s]".
func (v *statusView) threshold(g rolloutsv1.Gate, gs *rolloutsv1.GateStatus) string {
	u := unit(g)
	num := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) + u }
	switch {
	case g.Min != nil && g.Max != nil:
		return "[" + num(*g.Min) + ", " + num(*g.Max) + "]"
	case g.Max != nil:
		return v.style.mark(markLE) + " " + num(*g.Max)
	case g.Min != nil:
		return v.style.mark(markGE) + " " + num(*g.Min)
	case gs != nil && gs.Threshold != "":
		t := gs.Threshold
		t = strings.Replace(t, "<=", v.style.mark(markLE), 1)
		return strings.Replace(t, ">=", v.style.mark(markGE), 1)
	}
	return ""
}

// gates renders the latest evaluation of every gate against its threshold.
func (v *statusView) gates() []string {
	a := v.ro.Spec.Analysis
	if a == nil || len(a.Gates) == 0 {
		return nil
	}
	byName := map[string]*rolloutsv1.GateStatus{}
	for i := range v.st.Gates {
		byName[v.st.Gates[i].Name] = &v.st.Gates[i]
	}
	rows := make([][]string, 0, len(a.Gates))
	for _, g := range a.Gates {
		gs := byName[g.Name]
		value, mark, when, detail := "-", v.style.paint(colorDim, v.style.mark(markHold)), "", "not evaluated yet"
		if gs != nil {
			if gs.Value != "" {
				value = gs.Value + unit(g)
			}
			if gs.LastEvaluatedAt != nil {
				when = age(v.now, gs.LastEvaluatedAt.Time) + " ago"
			}
			detail = ""
			switch gs.Verdict {
			case rolloutsv1.VerdictPass:
				mark = v.style.paint(colorGreen, v.style.mark(markDone))
			case rolloutsv1.VerdictFail:
				mark = v.style.paint(colorRed, v.style.mark(markFail))
				detail = "Fail"
				// The limit in force, as the evaluation recorded it (a
				// template's when the gate sets none).
				limit := gs.FailureLimit
				if limit == 0 {
					limit = g.FailureLimit
				}
				if limit > 1 {
					detail += fmt.Sprintf(" (%d of %d failures in a row)", gs.ConsecutiveFailures, limit)
				}
			case "":
				detail = "not evaluated yet"
			default:
				mark = v.style.paint(colorYellow, v.style.mark(markHold))
				detail = string(gs.Verdict)
				if gs.ConsecutiveInconclusive > 1 {
					detail += fmt.Sprintf(" (%d in a row)", gs.ConsecutiveInconclusive)
				}
			}
			if gs.Verdict != rolloutsv1.VerdictPass && gs.Message != "" {
				detail += ": " + gs.Message
			}
			if gs.LastEvaluatedAt != nil && v.st.StepStartedAt != nil && gs.LastEvaluatedAt.Time.Before(v.st.StepStartedAt.Time) &&
				(v.st.Phase == rolloutsv1.PhaseProgressing || v.st.Phase == rolloutsv1.PhasePaused) {
				if detail != "" {
					detail += " "
				}
				detail += "(before this step)"
			}
		}
		if g.DryRun {
			detail = strings.TrimSpace(detail + " (dry run: never holds or rolls back)")
		}
		rest := when
		if detail != "" {
			if rest != "" {
				rest += "   "
			}
			rest += detail
		}
		rows = append(rows, []string{g.Name, value, v.threshold(g, gs), mark, rest})
	}
	return append(columns(rows, 3), v.gateQueries(a)...)
}

// gateQueries shows, under --query-tenancy, how it applied to each gate and
// the query exactly as it was sent.
func (v *statusView) gateQueries(a *rolloutsv1.Analysis) []string {
	var lines []string
	for _, g := range a.Gates {
		for _, gs := range v.st.Gates {
			if gs.Name != g.Name || gs.Tenancy == "" {
				continue
			}
			l := g.Name + " query tenancy " + gs.Tenancy
			if gs.Query != "" {
				l += ", sent: " + gs.Query
			}
			lines = append(lines, v.style.paint(colorDim, l))
		}
	}
	return lines
}

// conditionOK says whether a condition is in its normal state.
func conditionOK(c metav1.Condition) bool {
	switch c.Type {
	case rolloutsv1.ConditionStalled:
		return c.Status != metav1.ConditionTrue
	case rolloutsv1.ConditionReconciling:
		return true
	}
	return c.Status != metav1.ConditionFalse
}

func isPhase(s string) bool {
	switch rolloutsv1.Phase(s) {
	case rolloutsv1.PhaseIdle, rolloutsv1.PhaseWaiting, rolloutsv1.PhaseProgressing, rolloutsv1.PhasePaused,
		rolloutsv1.PhaseSucceeded, rolloutsv1.PhaseRolledBack:
		return true
	}
	return false
}

// issues lists the conditions that are not OK, except those the header
// already says: Ready=False with the phase as reason, and Stalled after a
// rollback, whose reason is shown.
func (v *statusView) issues() []string {
	var rows [][]string
	for _, c := range v.st.Conditions {
		if conditionOK(c) {
			continue
		}
		if c.Type == rolloutsv1.ConditionReady && isPhase(c.Reason) {
			// Ready is False in every phase but Succeeded and Idle, with
			// the phase as reason: the header says it already.
			continue
		}
		if c.Type == rolloutsv1.ConditionStalled && v.st.Phase == rolloutsv1.PhaseRolledBack {
			continue
		}
		since := ""
		if !c.LastTransitionTime.IsZero() {
			since = "for " + age(v.now, c.LastTransitionTime.Time)
		}
		rows = append(rows, []string{
			v.style.paint(colorYellow, c.Type+"="+string(c.Status)), c.Reason, since, c.Message,
		})
	}
	return columns(rows, 3)
}

// pending lists actions requested through annotations that the controller
// has not handled yet.
func (v *statusView) pending() []string {
	a := v.ro.Annotations
	st := v.st
	var out []string
	add := func(what, token, handled, extra string) {
		if token == "" || token == handled {
			return
		}
		s := what + " requested"
		if t, err := time.Parse(time.RFC3339Nano, token); err == nil {
			s += " " + age(v.now, t) + " ago"
		}
		s += extra + ", not handled by the controller yet"
		out = append(out, s)
	}
	add("promote", a[rolloutsv1.AnnotationPromote], st.LastHandledPromote, "")
	reason := ""
	if r := a[rolloutsv1.AnnotationAbortReason]; r != "" {
		reason = fmt.Sprintf(" (%q)", r)
	}
	add("abort", a[rolloutsv1.AnnotationAbort], st.LastHandledAbort, reason)
	add("retry", a[rolloutsv1.AnnotationRetry], st.LastHandledRetry, "")
	add("full promote", a[rolloutsv1.AnnotationPromoteFull], st.LastHandledPromoteFull, "")
	add("skip of the gates", a[rolloutsv1.AnnotationSkipGates], st.LastHandledSkipGates, "")
	return out
}

// maxOverridesShown bounds the overrides the status view lists.
const maxOverridesShown = 3

// overrides lists the latest overrides applied to this revision, oldest
// first: when, what, who asked and why, and what it did.
func (v *statusView) overrides() []string {
	var out []string
	for _, o := range v.st.Overrides {
		if o.Revision != "" && o.Revision != v.st.Revision {
			continue
		}
		s := fmt.Sprintf("%s ago   %s at step %s", age(v.now, o.At.Time), o.Kind, o.Step)
		if o.RequestedBy != "" {
			s += " by " + o.RequestedBy
		}
		if o.Reason != "" {
			s += fmt.Sprintf(": %q", o.Reason)
		}
		if o.Message != "" {
			s += " (" + o.Message + ")"
		}
		out = append(out, s)
	}
	if len(out) > maxOverridesShown {
		out = out[len(out)-maxOverridesShown:]
	}
	return out
}

// webhooks renders the blocking webhooks of the current attempt: name,
// type, state, calls and the latest answer.
func (v *statusView) webhooks() []string {
	rows := make([][]string, 0, len(v.st.Webhooks))
	for _, w := range v.st.Webhooks {
		mark := v.style.paint(colorYellow, v.style.mark(markHold))
		switch w.State {
		case rolloutsv1.WebhookPassed:
			mark = v.style.paint(colorGreen, v.style.mark(markDone))
		case rolloutsv1.WebhookFailed:
			mark = v.style.paint(colorRed, v.style.mark(markFail))
		}
		detail := fmt.Sprintf("%s, %d call", w.State, w.Calls)
		if w.Calls != 1 {
			detail += "s"
		}
		if w.LastCallAt != nil {
			detail += ", last " + age(v.now, w.LastCallAt.Time) + " ago"
		}
		if w.Message != "" {
			detail += ": " + w.Message
		}
		rows = append(rows, []string{w.Name, string(w.Type), mark, detail})
	}
	return columns(rows, 3)
}

// handoffs renders the pending workload actions (status.workloads).
func (v *statusView) handoffs() []string {
	out := make([]string, 0, len(v.st.Workloads))
	for _, a := range v.st.Workloads {
		w := a.WorkloadRef.Kind + "/" + a.WorkloadRef.Name
		what := "scale " + w + " to 0"
		if a.Action == rolloutsv1.WorkloadRestore {
			what = "restore the replicas of " + w
		}
		when := "now"
		if a.At.After(v.now) {
			when = "in " + age(a.At.Time, v.now)
		}
		line := fmt.Sprintf("%s %s", what, when)
		if a.Why != "" {
			line += " (" + a.Why + ")"
		}
		out = append(out, line)
	}
	return out
}

// events renders the latest events, oldest first.
func (v *statusView) events(events []Event) []string {
	evs := append([]Event(nil), events...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	if len(evs) > maxEvents {
		evs = evs[len(evs)-maxEvents:]
	}
	rows := make([][]string, 0, len(evs))
	for _, e := range evs {
		typ := e.Type
		if typ == "Warning" {
			typ = v.style.paint(colorRed, typ)
		}
		note := e.Note
		if e.Count > 1 {
			note += fmt.Sprintf(" (x%d)", e.Count)
		}
		rows = append(rows, []string{age(v.now, e.Time), typ, e.Reason, note})
	}
	return columns(rows, 3)
}

// next says what the user can do next, when there is something to do.
func (v *statusView) next() string {
	ro := v.ro
	cmd := func(verb string) string {
		return fmt.Sprintf("kubectl modelrollout %s %s -n %s", verb, ro.Name, ro.Namespace)
	}
	switch ro.Status.Phase {
	case rolloutsv1.PhasePaused:
		switch {
		case ro.Spec.Paused:
			return "set spec.paused to false in Git to resume (the plugin does not write spec)"
		case pauseCause(ro) != "":
			return "resume with: " + cmd("resume")
		case awaitingPromote(ro, v.steps):
			return "promote with: " + cmd("promote") + "   (the step ends once its gates pass)"
		}
	case rolloutsv1.PhaseRolledBack:
		return "fix the canary and change spec.canary in Git, or retry from step 1: " + cmd("retry")
	case rolloutsv1.PhaseSucceeded:
		return fmt.Sprintf("make %s the stable: %s   (under GitOps, commit the output of %s --print)", canaryName(ro), cmd("finish"), cmd("finish"))
	}
	return ""
}

// Table columns, as `kubectl get modelrollouts` prints them.
var tableHeader = []string{"NAME", "ROUTE", "CANARY", "WEIGHT", "STEP", "PHASE", "AGE"}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// tableRow is the row of one rollout, with the namespace first when
// allNamespaces.
func tableRow(ro *rolloutsv1.ModelRollout, now time.Time, allNamespaces bool) []string {
	route := ""
	if len(ro.Spec.Routes) > 0 {
		route = ro.Spec.Routes[0].Name
	}
	canary := ""
	if ro.Spec.Canary != nil {
		canary = ro.Spec.Canary.Name
	}
	row := []string{
		ro.Name, orNone(route), orNone(canary), strconv.Itoa(int(ro.Status.CanaryWeight)),
		orNone(ro.Status.Step), orNone(string(ro.Status.Phase)), age(now, ro.CreationTimestamp.Time),
	}
	if allNamespaces {
		row = append([]string{ro.Namespace}, row...)
	}
	return row
}

// tablePrinter prints rows aligned with the widths of the rows printed
// before, so that rows added by --watch stay in their columns.
type tablePrinter struct {
	w      io.Writer
	widths []int
}

func (t *tablePrinter) print(rows ...[]string) error {
	for _, r := range rows {
		for i, c := range r {
			if i >= len(t.widths) {
				t.widths = append(t.widths, 0)
			}
			if n := visibleWidth(c); n > t.widths[i] {
				t.widths[i] = n
			}
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(padRight(c, t.widths[i]+3))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(t.w, b.String())
	return err
}

// RenderTable writes rollouts as `kubectl get modelrollouts` does.
func RenderTable(w io.Writer, ros []rolloutsv1.ModelRollout, now time.Time, allNamespaces bool) error {
	header := tableHeader
	if allNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
	}
	rows := [][]string{header}
	for i := range ros {
		rows = append(rows, tableRow(&ros[i], now, allNamespaces))
	}
	tp := &tablePrinter{w: w}
	return tp.print(rows...)
}
