package analysis

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Bounds of the GateStatus fields, from the CRD.
const (
	// MaxHistory is how many measurements GateStatus.history keeps.
	MaxHistory = 10
	// MaxStatusMessage bounds GateStatus.message.
	MaxStatusMessage = 512
	// MaxMeasurementMessage bounds GateMeasurement.message.
	MaxMeasurementMessage = 256
	// MaxValue bounds GateStatus.value and GateMeasurement.value.
	MaxValue = 64
)

// Evaluation is the result of evaluating one gate once.
type Evaluation struct {
	// Verdict of the evaluation.
	Verdict v1alpha1.GateVerdict
	// Value measured by the gate's query, when it returned a number.
	Value *float64
	// Requests counted by the requests query, when minRequests was checked
	// and the query returned a number.
	Requests *float64
	// Message explains the verdict for people.
	Message string
	// StableValue is the stable backend's value, measured for comparison
	// only (prompt gates with compareStable).
	StableValue *float64
}

// EvaluateGate queries Prometheus for one gate at the given time. With
// minRequests set (> 0), the requests query runs first and fewer requests
// than required, or no data, is a NoData verdict; the gate's query is then
// not run. See the package documentation for the verdicts.
func EvaluateGate(ctx context.Context, q Querier, g v1alpha1.Gate, r RenderedGate, at time.Time) Evaluation {
	var ev Evaluation
	if g.MinRequests != nil && *g.MinRequests > 0 {
		need := *g.MinRequests
		if r.RequestsQuery == "" {
			return Evaluation{Verdict: v1alpha1.VerdictError, Message: "minRequests is set but the gate has no requests query"}
		}
		s, err := q.Query(ctx, r.RequestsQuery, at)
		if err != nil {
			return Evaluation{Verdict: v1alpha1.VerdictError, Message: "requests query: " + err.Error()}
		}
		if s.NoData {
			return Evaluation{
				Verdict: v1alpha1.VerdictNoData,
				Message: fmt.Sprintf("canary served no countable requests in this step (%d required): %s", need, s.Reason),
			}
		}
		n := s.Value
		ev.Requests = &n
		// increase() extrapolates; compare whole requests.
		if served := math.Round(n); served < float64(need) {
			ev.Verdict = v1alpha1.VerdictNoData
			ev.Message = fmt.Sprintf("canary served %s of %d required requests in this step", strconv.FormatFloat(max(served, 0), 'f', 0, 64), need)
			return ev
		}
	}

	s, err := q.Query(ctx, r.Query, at)
	if err != nil {
		ev.Verdict = v1alpha1.VerdictError
		ev.Message = err.Error()
		return ev
	}
	if s.NoData {
		ev.Verdict = v1alpha1.VerdictNoData
		ev.Message = "no data: " + s.Reason
		return ev
	}
	v := s.Value
	ev.Value = &v
	threshold := Threshold(g)
	if InRange(v, g.Min, g.Max) {
		ev.Verdict = v1alpha1.VerdictPass
		ev.Message = fmt.Sprintf("%s is within %s", FormatValue(v), threshold)
	} else {
		ev.Verdict = v1alpha1.VerdictFail
		ev.Message = fmt.Sprintf("%s is outside %s", FormatValue(v), threshold)
	}
	if ev.Requests != nil {
		ev.Message += fmt.Sprintf(" (%s requests in this step)", strconv.FormatFloat(math.Round(*ev.Requests), 'f', 0, 64))
	}
	if s.Reason != "" {
		ev.Message += "; " + s.Reason
	}
	return ev
}

// InRange reports whether min <= v <= max; an absent bound is unbounded.
func InRange(v float64, min, max *float64) bool {
	if math.IsNaN(v) {
		return false
	}
	if min != nil && v < *min {
		return false
	}
	if max != nil && v > *max {
		return false
	}
	return true
}

// Outcome is what one recorded evaluation means for the rollout.
type Outcome int

const (
	// OutcomePass: the gate passed (or had no data under noData: Pass).
	OutcomePass Outcome = iota
	// OutcomeHold: no verdict yet, or a failure below failureLimit; the step
	// neither advances nor rolls back.
	OutcomeHold
	// OutcomeFail: failureLimit consecutive failures; roll back now.
	OutcomeFail
	// OutcomeInconclusiveLimit: inconclusiveLimit evaluations in a row
	// without a verdict; roll back.
	OutcomeInconclusiveLimit
)

func (o Outcome) String() string {
	switch o {
	case OutcomePass:
		return "Pass"
	case OutcomeHold:
		return "Hold"
	case OutcomeFail:
		return "Fail"
	case OutcomeInconclusiveLimit:
		return "InconclusiveLimit"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Record folds one evaluation into the gate's status and says what it
// means for the rollout. It is pure: prev is not modified. The accounting is
// described in the package documentation.
func Record(prev v1alpha1.GateStatus, g v1alpha1.Gate, ev Evaluation, weight int32, inconclusiveLimit int32, at time.Time) (v1alpha1.GateStatus, Outcome) {
	st := prev
	st.Name = g.Name
	st.Verdict = ev.Verdict
	st.Value = ""
	if ev.Value != nil {
		st.Value = truncate(FormatValue(*ev.Value), MaxValue)
	}
	st.Threshold = truncate(Threshold(g), 128)
	st.StableValue = ""
	if ev.StableValue != nil {
		st.StableValue = truncate(FormatValue(*ev.StableValue), MaxValue)
	}
	t := metav1.NewTime(at)
	st.LastEvaluatedAt = &t

	pol := EffectivePolicy(g.GateSpec, nil)
	st.NoData, st.FailureLimit = pol.NoData, pol.FailureLimit
	failureLimit := pol.FailureLimit
	msg := ev.Message
	fail := func() Outcome {
		st.ConsecutiveFailures++
		st.ConsecutiveInconclusive = 0
		if st.ConsecutiveFailures >= failureLimit {
			if failureLimit > 1 {
				msg += fmt.Sprintf(" (failure %d of %d in a row)", st.ConsecutiveFailures, failureLimit)
			}
			return OutcomeFail
		}
		msg += fmt.Sprintf(" (failure %d of %d in a row)", st.ConsecutiveFailures, failureLimit)
		return OutcomeHold
	}
	pass := func() Outcome {
		st.ConsecutiveFailures = 0
		st.ConsecutiveInconclusive = 0
		return OutcomePass
	}
	inconclusive := func() Outcome {
		st.ConsecutiveInconclusive++
		if inconclusiveLimit > 0 {
			msg += fmt.Sprintf(" (inconclusive %d of %d in a row)", st.ConsecutiveInconclusive, inconclusiveLimit)
			if st.ConsecutiveInconclusive >= inconclusiveLimit {
				return OutcomeInconclusiveLimit
			}
		}
		return OutcomeHold
	}

	var out Outcome
	switch ev.Verdict {
	case v1alpha1.VerdictPass:
		out = pass()
	case v1alpha1.VerdictFail:
		out = fail()
	case v1alpha1.VerdictNoData:
		switch pol.NoData {
		case v1alpha1.NoDataFail:
			msg = "counted as a failure (noData: Fail): " + msg
			out = fail()
		case v1alpha1.NoDataPass:
			msg = "counted as a pass (noData: Pass): " + msg
			out = pass()
		default:
			out = inconclusive()
		}
	default: // VerdictError, or anything unexpected: never passes.
		if ev.Verdict == "" {
			st.Verdict = v1alpha1.VerdictError
		}
		out = inconclusive()
	}

	st.Message = truncate(msg, MaxStatusMessage)
	m := v1alpha1.GateMeasurement{
		At:      t,
		Weight:  weight,
		Value:   st.Value,
		Verdict: st.Verdict,
		Message: truncate(msg, MaxMeasurementMessage),
	}
	keep := min(len(prev.History), MaxHistory-1)
	hist := make([]v1alpha1.GateMeasurement, 0, keep+1)
	hist = append(hist, prev.History[len(prev.History)-keep:]...)
	st.History = append(hist, m)
	return st, out
}

// Due reports whether a gate last evaluated at last is due at now, and if
// not, how long until it is. A gate never evaluated, or with a non-positive
// interval, is due.
func Due(last *metav1.Time, interval time.Duration, now time.Time) (bool, time.Duration) {
	if last == nil || last.IsZero() || interval <= 0 {
		return true, 0
	}
	next := last.Add(interval)
	if !now.Before(next) {
		return true, 0
	}
	return false, next.Sub(now)
}

// Threshold renders the passing range of a gate: "<= 0.05", ">= 0.9",
// "[0.1, 0.5]", or "" without bounds.
func Threshold(g v1alpha1.Gate) string {
	switch {
	case g.Min != nil && g.Max != nil:
		return "[" + formatFloat(*g.Min) + ", " + formatFloat(*g.Max) + "]"
	case g.Max != nil:
		return "<= " + formatFloat(*g.Max)
	case g.Min != nil:
		return ">= " + formatFloat(*g.Min)
	}
	return ""
}

// FormatValue renders a measured value compactly, with 4 significant
// digits: 0.004123, 11.23, 1.235e+06.
func FormatValue(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// formatFloat renders a threshold as written: the shortest exact form.
func formatFloat(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// truncate is the API's UTF-8-safe truncation, used for every status string.
func truncate(s string, n int) string { return v1alpha1.Truncate(s, n) }
