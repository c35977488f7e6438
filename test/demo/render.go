package demo

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Columns of `kubectl get modelrollouts` (the CRD's printer columns).
var tableHeader = []string{"NAME", "ROUTE", "CANARY", "WEIGHT", "STEP", "PHASE", "AGE"}

// tableRow renders a rollout the way `kubectl get modelrollouts` does.
func tableRow(ro *rolloutsv1.ModelRollout, now time.Time) []string {
	route, canary := "", ""
	if len(ro.Spec.Routes) > 0 {
		route = ro.Spec.Routes[0].Name
	}
	if ro.Spec.Canary != nil {
		canary = ro.Spec.Canary.Name
	}
	age := "<unknown>"
	if !ro.CreationTimestamp.IsZero() {
		age = duration.HumanDuration(now.Sub(ro.CreationTimestamp.Time))
	}
	return []string{ro.Name, route, canary, strconv.Itoa(int(ro.Status.CanaryWeight)), ro.Status.Step, string(ro.Status.Phase), age}
}

// columnWidths fit the header and the demo's values, with kubectl's
// padding of three spaces.
var columnWidths = []int{len(RolloutName), len(RouteName), len(GoodCanary), len("WEIGHT"), len("STEP"), len("Progressing"), 3}

func formatRow(cells []string) string {
	var b strings.Builder
	for i, c := range cells {
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		w := max(columnWidths[i], len(tableHeader[i]), len(c))
		b.WriteString(c)
		b.WriteString(strings.Repeat(" ", w-len(c)+3))
	}
	return b.String()
}

// stepsLine renders the schedule with the current position, e.g.
// "✔ 10% 10s   ▶ 25% 10s   · 50% 10s".
func stepsLine(ro *rolloutsv1.ModelRollout) string {
	steps := ro.Spec.EffectiveSteps()
	cur := -1
	if ro.Status.CurrentStepIndex != nil {
		cur = int(*ro.Status.CurrentStepIndex)
	}
	var parts []string
	for i, st := range steps {
		mark := "·"
		switch {
		case ro.Status.Phase == rolloutsv1.PhaseSucceeded && i <= cur:
			mark = "✔"
		case ro.Status.Phase == rolloutsv1.PhaseRolledBack && i == cur:
			mark = "✖"
		case i < cur:
			mark = "✔"
		case i == cur:
			mark = "▶"
		}
		pause := "promote"
		if st.Pause != nil {
			pause = string(*st.Pause)
		}
		weight := fmt.Sprintf("%d%%", st.Weight)
		if st.Match != nil {
			weight += " +" + st.Match.String()
		}
		parts = append(parts, fmt.Sprintf("%s %s %s", mark, weight, pause))
	}
	return strings.Join(parts, "   ")
}

// gateLines renders the latest evaluation of every gate.
func gateLines(ro *rolloutsv1.ModelRollout) []string {
	var out []string
	for _, g := range ro.Status.Gates {
		v := g.Value
		if v == "" {
			v = "-"
		}
		line := fmt.Sprintf("%-15s %-10s %-9s %s", g.Name, v, g.Threshold, g.Verdict)
		if g.Verdict != rolloutsv1.VerdictPass && g.Message != "" {
			line += "  " + truncateText(g.Message, 90)
		}
		out = append(out, line)
	}
	return out
}

// gatesCompact renders the gates on one line: "errors 0 ✔, latency 0.23 ✔".
func gatesCompact(ro *rolloutsv1.ModelRollout) string {
	var parts []string
	for _, g := range ro.Status.Gates {
		v := g.Value
		if v == "" {
			v = "-"
		}
		mark := "?"
		switch g.Verdict {
		case rolloutsv1.VerdictPass:
			mark = "✔"
		case rolloutsv1.VerdictFail:
			mark = "✖"
		case rolloutsv1.VerdictNoData:
			mark = "… no data"
		case rolloutsv1.VerdictError:
			mark = "! error"
		}
		parts = append(parts, fmt.Sprintf("%s %s %s %s", g.Name, v, g.Threshold, mark))
	}
	return strings.Join(parts, "   ")
}

// weightsLine renders route weights in a stable order.
func weightsLine(w map[string]int32) string {
	if len(w) == 1 {
		for k := range w {
			return k + " (its only backend: all traffic)"
		}
	}
	var parts []string
	for _, k := range sortedKeys(w) {
		parts = append(parts, fmt.Sprintf("%s %d", k, w[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// splitLine renders the share of each backend: "vllm-gpt4-v1 90% (134)".
func splitLine(t Tally) string {
	total := t.Total()
	if total == 0 {
		return "no responses"
	}
	var parts []string
	for _, k := range t.Backends() {
		c := t[k]
		s := fmt.Sprintf("%s %.0f%% (%d", k, 100*float64(c.Total())/float64(total), c.Total())
		if c.Failed > 0 {
			s += fmt.Sprintf(", %d failed", c.Failed)
		}
		parts = append(parts, s+")")
	}
	return strings.Join(parts, "   ")
}

// splitBars renders the share of each backend as bars.
func splitBars(w io.Writer, t Tally, width int) {
	total := t.Total()
	if total == 0 {
		fmt.Fprintln(w, "  (no responses yet)")
		return
	}
	for _, k := range t.Backends() {
		c := t[k]
		share := float64(c.Total()) / float64(total)
		n := int(math.Round(share * float64(width)))
		fail := ""
		if c.Failed > 0 {
			fail = fmt.Sprintf("  %d failed", c.Failed)
		}
		fmt.Fprintf(w, "  %-22s %s%s %5.1f%% %5d%s\n", k, strings.Repeat("█", n), strings.Repeat("░", width-n), 100*share, c.Total(), fail)
	}
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// shortDuration renders a duration for people: 850ms, 9.8s, 1m12s.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return d.Round(time.Second).String()
	}
}

// clock renders an elapsed time as m:ss.
func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

func eventLine(e eventsv1.Event, start time.Time) string {
	t := eventTime(e)
	rel := "    "
	if !t.IsZero() && !start.IsZero() {
		rel = clock(t.Sub(start))
	}
	return fmt.Sprintf("%s  %-7s %-16s %s", rel, e.Type, e.Reason, truncateText(e.Note, 110))
}
