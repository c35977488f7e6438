package analysis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelrollout/modelrollout/api/v1alpha1"
)

// fakeQuerier answers queries from a map.
type fakeQuerier struct {
	answers map[string]fakeAnswer
	asked   []string
}

type fakeAnswer struct {
	s   Sample
	err error
}

func (f *fakeQuerier) Query(_ context.Context, q string, _ time.Time) (Sample, error) {
	f.asked = append(f.asked, q)
	a, ok := f.answers[q]
	if !ok {
		return Sample{}, fmt.Errorf("%w: unexpected query %q", ErrQueryFailed, q)
	}
	return a.s, a.err
}

func num(v float64) fakeAnswer { return fakeAnswer{s: Sample{Value: v}} }

func TestEvaluateGateThresholds(t *testing.T) {
	r := RenderedGate{Name: "g", Query: "q"}
	tests := []struct {
		name     string
		min, max *float64
		value    float64
		want     v1alpha1.GateVerdict
		message  string
	}{
		{"below max", nil, f64(0.05), 0.004, v1alpha1.VerdictPass, "0.004 is within <= 0.05"},
		{"at max is inclusive", nil, f64(0.05), 0.05, v1alpha1.VerdictPass, "0.05 is within <= 0.05"},
		{"above max", nil, f64(0.05), 0.0501, v1alpha1.VerdictFail, "0.0501 is outside <= 0.05"},
		{"at min is inclusive", f64(0.9), nil, 0.9, v1alpha1.VerdictPass, "0.9 is within >= 0.9"},
		{"below min", f64(0.9), nil, 0.89, v1alpha1.VerdictFail, "0.89 is outside >= 0.9"},
		{"in range", f64(0.1), f64(0.5), 0.3, v1alpha1.VerdictPass, "0.3 is within [0.1, 0.5]"},
		{"range low edge", f64(0.1), f64(0.5), 0.1, v1alpha1.VerdictPass, ""},
		{"range high edge", f64(0.1), f64(0.5), 0.5, v1alpha1.VerdictPass, ""},
		{"below range", f64(0.1), f64(0.5), 0.0999, v1alpha1.VerdictFail, ""},
		{"above range", f64(0.1), f64(0.5), 0.5001, v1alpha1.VerdictFail, ""},
		{"negative", nil, f64(0), -1, v1alpha1.VerdictPass, ""},
		{"compact value", nil, f64(30), 11.23456, v1alpha1.VerdictPass, "11.23 is within <= 30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeQuerier{answers: map[string]fakeAnswer{"q": num(tt.value)}}
			ev := EvaluateGate(context.Background(), q, v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Min: tt.min, Max: tt.max}}, r, time.Now())
			if ev.Verdict != tt.want {
				t.Errorf("verdict %s, want %s (%s)", ev.Verdict, tt.want, ev.Message)
			}
			if ev.Value == nil || *ev.Value != tt.value {
				t.Errorf("value %v, want %v", ev.Value, tt.value)
			}
			if tt.message != "" && ev.Message != tt.message {
				t.Errorf("message %q, want %q", ev.Message, tt.message)
			}
		})
	}
}

func TestEvaluateGateNoDataAndErrors(t *testing.T) {
	r := RenderedGate{Name: "g", Query: "q"}
	g := v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Max: f64(1)}}
	tests := []struct {
		name    string
		answer  fakeAnswer
		want    v1alpha1.GateVerdict
		message string
	}{
		{"empty", fakeAnswer{s: Sample{NoData: true, Reason: "empty vector: no series matched"}}, v1alpha1.VerdictNoData, "no data: empty vector: no series matched"},
		{"nan", fakeAnswer{s: Sample{NoData: true, Reason: "NaN: nothing to measure"}}, v1alpha1.VerdictNoData, "no data: NaN: nothing to measure"},
		{"transport", fakeAnswer{err: fmt.Errorf("%w: connection refused", ErrQueryFailed)}, v1alpha1.VerdictError, "prometheus query failed: connection refused"},
		{"multi", fakeAnswer{err: fmt.Errorf("%w: 2 series", ErrMultipleSeries)}, v1alpha1.VerdictError, "query returned several series: 2 series"},
		{"type", fakeAnswer{err: fmt.Errorf("%w: a string", ErrUnexpectedType)}, v1alpha1.VerdictError, "query returned an unexpected type: a string"},
		{"warnings kept", fakeAnswer{s: Sample{Value: 0.5, Reason: "prometheus warnings: w"}}, v1alpha1.VerdictPass, "0.5 is within <= 1; prometheus warnings: w"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeQuerier{answers: map[string]fakeAnswer{"q": tt.answer}}
			ev := EvaluateGate(context.Background(), q, g, r, time.Now())
			if ev.Verdict != tt.want || ev.Message != tt.message {
				t.Errorf("got %s %q, want %s %q", ev.Verdict, ev.Message, tt.want, tt.message)
			}
			if tt.want != v1alpha1.VerdictPass && ev.Value != nil {
				t.Errorf("value %v set without a number", *ev.Value)
			}
		})
	}
}

func TestEvaluateGateMinRequests(t *testing.T) {
	fifty := int64(50)
	zero := int64(0)
	r := RenderedGate{Name: "g", Query: "q", RequestsQuery: "reqs"}
	g := v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Max: f64(0.05), MinRequests: &fifty}}
	tests := []struct {
		name     string
		gate     v1alpha1.Gate
		reqs     fakeAnswer
		want     v1alpha1.GateVerdict
		message  string
		askedQ   bool
		requests float64
	}{
		{"too few", g, num(3), v1alpha1.VerdictNoData, "canary served 3 of 50 required requests in this step", false, 3},
		{"extrapolated just under", g, num(49.4), v1alpha1.VerdictNoData, "canary served 49 of 50 required requests in this step", false, 49.4},
		{"extrapolated rounds up", g, num(49.6), v1alpha1.VerdictPass, "0.01 is within <= 0.05 (50 requests in this step)", true, 49.6},
		{"enough", g, num(120), v1alpha1.VerdictPass, "0.01 is within <= 0.05 (120 requests in this step)", true, 120},
		{"no data", g, fakeAnswer{s: Sample{NoData: true, Reason: "empty vector: no series matched"}}, v1alpha1.VerdictNoData,
			"canary served no countable requests in this step (50 required): empty vector: no series matched", false, -1},
		{"error", g, fakeAnswer{err: fmt.Errorf("%w: boom", ErrQueryFailed)}, v1alpha1.VerdictError, "requests query: prometheus query failed: boom", false, -1},
		{"minRequests 0 is unset", v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Max: f64(0.05), MinRequests: &zero}}, num(0), v1alpha1.VerdictPass, "0.01 is within <= 0.05", true, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeQuerier{answers: map[string]fakeAnswer{"reqs": tt.reqs, "q": num(0.01)}}
			ev := EvaluateGate(context.Background(), q, tt.gate, r, time.Now())
			if ev.Verdict != tt.want || ev.Message != tt.message {
				t.Errorf("got %s %q, want %s %q", ev.Verdict, ev.Message, tt.want, tt.message)
			}
			if tt.askedQ != slices.Contains(q.asked, "q") || len(q.asked) > 2 {
				t.Errorf("queries asked: %v", q.asked)
			}
			if tt.requests >= 0 && (ev.Requests == nil || *ev.Requests != tt.requests) {
				t.Errorf("requests %v, want %v", ev.Requests, tt.requests)
			}
			if tt.requests < 0 && ev.Requests != nil {
				t.Errorf("requests %v, want none", *ev.Requests)
			}
		})
	}

	// minRequests without a requests query is an error, never a pass.
	ev := EvaluateGate(context.Background(), &fakeQuerier{}, g, RenderedGate{Name: "g", Query: "q"}, time.Now())
	if ev.Verdict != v1alpha1.VerdictError {
		t.Errorf("missing requests query: %s %q", ev.Verdict, ev.Message)
	}
}

var (
	evPass   = Evaluation{Verdict: v1alpha1.VerdictPass, Value: f64(0.01), Message: "pass"}
	evFail   = Evaluation{Verdict: v1alpha1.VerdictFail, Value: f64(0.2), Message: "fail"}
	evNoData = Evaluation{Verdict: v1alpha1.VerdictNoData, Message: "no data"}
	evError  = Evaluation{Verdict: v1alpha1.VerdictError, Message: "error"}
)

type step struct {
	ev       Evaluation
	want     Outcome
	failures int32
	inconcl  int32
}

func runSteps(t *testing.T, g v1alpha1.Gate, inconclusiveLimit int32, steps []step) v1alpha1.GateStatus {
	t.Helper()
	st := v1alpha1.GateStatus{Name: g.Name}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, s := range steps {
		var out Outcome
		st, out = Record(st, g, s.ev, 25, inconclusiveLimit, at.Add(time.Duration(i)*time.Minute))
		if out != s.want || st.ConsecutiveFailures != s.failures || st.ConsecutiveInconclusive != s.inconcl {
			t.Fatalf("evaluation %d (%s): outcome %s failures %d inconclusive %d; want %s %d %d (message %q)",
				i+1, s.ev.Verdict, out, st.ConsecutiveFailures, st.ConsecutiveInconclusive, s.want, s.failures, s.inconcl, st.Message)
		}
	}
	return st
}

func TestRecordFailureLimit(t *testing.T) {
	tests := []struct {
		name  string
		limit int32
		steps []step
	}{
		{"absent limit fails at the 1st failure", 0, []step{
			{evPass, OutcomePass, 0, 0},
			{evFail, OutcomeFail, 1, 0},
		}},
		{"limit 1 fails at the 1st failure", 1, []step{
			{evFail, OutcomeFail, 1, 0},
		}},
		{"limit 3 fails at the 3rd consecutive failure", 3, []step{
			{evFail, OutcomeHold, 1, 0},
			{evFail, OutcomeHold, 2, 0},
			{evFail, OutcomeFail, 3, 0},
		}},
		{"a pass in between resets", 3, []step{
			{evFail, OutcomeHold, 1, 0},
			{evFail, OutcomeHold, 2, 0},
			{evPass, OutcomePass, 0, 0},
			{evFail, OutcomeHold, 1, 0},
			{evFail, OutcomeHold, 2, 0},
			{evFail, OutcomeFail, 3, 0},
		}},
		{"inconclusive neither resets nor extends failures", 3, []step{
			{evFail, OutcomeHold, 1, 0},
			{evNoData, OutcomeHold, 1, 1},
			{evError, OutcomeHold, 1, 2},
			{evFail, OutcomeHold, 2, 0},
			{evFail, OutcomeFail, 3, 0},
		}},
		{"failing beyond the limit keeps failing", 2, []step{
			{evFail, OutcomeHold, 1, 0},
			{evFail, OutcomeFail, 2, 0},
			{evFail, OutcomeFail, 3, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Max: f64(0.05), FailureLimit: tt.limit}}, 0, tt.steps)
		})
	}
}

func TestRecordNoDataPolicies(t *testing.T) {
	tests := []struct {
		name   string
		policy v1alpha1.NoDataPolicy
		limit  int32
		steps  []step
	}{
		{"default is Hold", "", 1, []step{
			{evNoData, OutcomeHold, 0, 1},
			{evNoData, OutcomeHold, 0, 2},
			{evPass, OutcomePass, 0, 0},
		}},
		{"Hold", v1alpha1.NoDataHold, 1, []step{
			{evNoData, OutcomeHold, 0, 1},
		}},
		{"Fail counts as a failure", v1alpha1.NoDataFail, 2, []step{
			{evNoData, OutcomeHold, 1, 0},
			{evNoData, OutcomeFail, 2, 0},
		}},
		{"Fail resets inconclusive", v1alpha1.NoDataFail, 3, []step{
			{evError, OutcomeHold, 0, 1},
			{evNoData, OutcomeHold, 1, 0},
			{evFail, OutcomeHold, 2, 0},
			{evNoData, OutcomeFail, 3, 0},
		}},
		{"Pass counts as a pass", v1alpha1.NoDataPass, 2, []step{
			{evFail, OutcomeHold, 1, 0},
			{evNoData, OutcomePass, 0, 0},
			{evError, OutcomeHold, 0, 1},
			{evNoData, OutcomePass, 0, 0},
		}},
		{"errors never pass, whatever the policy", v1alpha1.NoDataPass, 1, []step{
			{evError, OutcomeHold, 0, 1},
			{evError, OutcomeHold, 0, 2},
		}},
		{"errors are not failures under noData Fail", v1alpha1.NoDataFail, 1, []step{
			{evError, OutcomeHold, 0, 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Max: f64(0.05), FailureLimit: tt.limit, NoData: tt.policy}}, 0, tt.steps)
		})
	}
}

func TestRecordInconclusiveLimit(t *testing.T) {
	g := v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Max: f64(0.05), FailureLimit: 3}}
	st := runSteps(t, g, 3, []step{
		{evNoData, OutcomeHold, 0, 1},
		{evError, OutcomeHold, 0, 2},
		{evPass, OutcomePass, 0, 0},
		{evError, OutcomeHold, 0, 1},
		{evFail, OutcomeHold, 1, 0},
		{evNoData, OutcomeHold, 1, 1},
		{evNoData, OutcomeHold, 1, 2},
		{evError, OutcomeInconclusiveLimit, 1, 3},
	})
	if !strings.Contains(st.Message, "inconclusive 3 of 3") {
		t.Errorf("message %q does not explain the limit", st.Message)
	}
	// 0 holds forever.
	steps := make([]step, 50)
	for i := range steps {
		steps[i] = step{evNoData, OutcomeHold, 0, int32(i + 1)}
	}
	runSteps(t, g, 0, steps)
	// A noData: Pass gate never reaches the limit through no data.
	runSteps(t, v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Max: f64(1), NoData: v1alpha1.NoDataPass}}, 1, []step{
		{evNoData, OutcomePass, 0, 0},
		{evError, OutcomeInconclusiveLimit, 0, 1},
	})
	// Unknown verdicts count as errors.
	st, out := Record(v1alpha1.GateStatus{}, g, Evaluation{Message: "?"}, 10, 1, time.Now())
	if out != OutcomeInconclusiveLimit || st.Verdict != v1alpha1.VerdictError {
		t.Errorf("empty verdict: %s %s", out, st.Verdict)
	}
}

func TestRecordStatusFields(t *testing.T) {
	g := v1alpha1.Gate{Name: "errors", GateSpec: v1alpha1.GateSpec{Max: f64(0.05), FailureLimit: 3}}
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	prev := v1alpha1.GateStatus{Name: "errors", History: []v1alpha1.GateMeasurement{{Verdict: v1alpha1.VerdictPass}}}
	st, out := Record(prev, g, Evaluation{Verdict: v1alpha1.VerdictFail, Value: f64(0.123456), Message: "0.1235 is outside <= 0.05"}, 25, 0, at)
	if out != OutcomeHold {
		t.Errorf("outcome %s", out)
	}
	if st.Name != "errors" || st.Verdict != v1alpha1.VerdictFail || st.Value != "0.1235" || st.Threshold != "<= 0.05" {
		t.Errorf("status %+v", st)
	}
	if st.LastEvaluatedAt == nil || !st.LastEvaluatedAt.Time.Equal(at) {
		t.Errorf("lastEvaluatedAt %v", st.LastEvaluatedAt)
	}
	if st.Message != "0.1235 is outside <= 0.05 (failure 1 of 3 in a row)" {
		t.Errorf("message %q", st.Message)
	}
	if len(st.History) != 2 {
		t.Fatalf("history %+v", st.History)
	}
	m := st.History[1]
	if !m.At.Time.Equal(at) || m.Weight != 25 || m.Value != "0.1235" || m.Verdict != v1alpha1.VerdictFail || m.Message != st.Message {
		t.Errorf("measurement %+v", m)
	}
	// Record is pure.
	if len(prev.History) != 1 || prev.ConsecutiveFailures != 0 {
		t.Errorf("prev was modified: %+v", prev)
	}
	// A value disappears with a verdict without one.
	st, _ = Record(st, g, evNoData, 25, 0, at)
	if st.Value != "" || st.History[2].Value != "" {
		t.Errorf("value kept without data: %q", st.Value)
	}
}

func TestRecordHistoryBound(t *testing.T) {
	g := v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Max: f64(1)}}
	st := v1alpha1.GateStatus{}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 25 {
		st, _ = Record(st, g, Evaluation{Verdict: v1alpha1.VerdictPass, Value: f64(float64(i))}, int32(i), 0, at.Add(time.Duration(i)*time.Minute))
		if want := min(i+1, MaxHistory); len(st.History) != want {
			t.Fatalf("after %d evaluations history has %d entries, want %d", i+1, len(st.History), want)
		}
	}
	for j, m := range st.History {
		if want := int32(15 + j); m.Weight != want {
			t.Errorf("history[%d] weight %d, want %d (oldest first)", j, m.Weight, want)
		}
	}
	// An over-long history from an older version is cut too.
	long := v1alpha1.GateStatus{History: make([]v1alpha1.GateMeasurement, 30)}
	st, _ = Record(long, g, evPass, 1, 0, at)
	if len(st.History) != MaxHistory || st.History[MaxHistory-1].Weight != 1 {
		t.Errorf("long history: %d entries", len(st.History))
	}
}

func TestRecordBoundsMessages(t *testing.T) {
	g := v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Max: f64(1)}}
	msg := strings.Repeat("é", 1000) // 2 bytes each
	st, _ := Record(v1alpha1.GateStatus{}, g, Evaluation{Verdict: v1alpha1.VerdictError, Message: msg}, 1, 0, time.Now())
	if len(st.Message) > MaxStatusMessage || !utf8.ValidString(st.Message) || !strings.HasSuffix(st.Message, "...") {
		t.Errorf("status message: %d bytes, valid %v", len(st.Message), utf8.ValidString(st.Message))
	}
	if m := st.History[0].Message; len(m) > MaxMeasurementMessage || !utf8.ValidString(m) {
		t.Errorf("measurement message: %d bytes", len(m))
	}
	st, _ = Record(v1alpha1.GateStatus{}, g, Evaluation{Verdict: v1alpha1.VerdictPass, Value: f64(-1.2345678901234567e-300)}, 1, 0, time.Now())
	if len(st.Value) > MaxValue || st.Value != "-1.235e-300" {
		t.Errorf("value %q", st.Value)
	}
}

func TestThreshold(t *testing.T) {
	tests := []struct {
		min, max *float64
		want     string
	}{
		{nil, f64(0.05), "<= 0.05"},
		{f64(0.9), nil, ">= 0.9"},
		{f64(0.1), f64(0.5), "[0.1, 0.5]"},
		{nil, f64(30), "<= 30"},
		{nil, f64(1e-7), "<= 1e-07"},
		{nil, nil, ""},
	}
	for _, tt := range tests {
		if got := Threshold(v1alpha1.Gate{GateSpec: v1alpha1.GateSpec{Min: tt.min, Max: tt.max}}); got != tt.want {
			t.Errorf("Threshold = %q, want %q", got, tt.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	tests := map[float64]string{0.004123: "0.004123", 11.23456: "11.23", 1234567: "1.235e+06", 0: "0", 30: "30", 0.05: "0.05"}
	for v, want := range tests {
		if got := FormatValue(v); got != want {
			t.Errorf("FormatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestDue(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(d)); return &t }
	tests := []struct {
		name     string
		last     *metav1.Time
		interval time.Duration
		due      bool
		wait     time.Duration
	}{
		{"never evaluated", nil, time.Minute, true, 0},
		{"zero time", &metav1.Time{}, time.Minute, true, 0},
		{"just evaluated", at(0), time.Minute, false, time.Minute},
		{"part way", at(-40 * time.Second), time.Minute, false, 20 * time.Second},
		{"exactly due", at(-time.Minute), time.Minute, true, 0},
		{"overdue", at(-time.Hour), time.Minute, true, 0},
		{"no interval", at(0), 0, true, 0},
		{"clock went back", at(time.Hour), time.Minute, false, time.Hour + time.Minute},
	}
	for _, tt := range tests {
		due, wait := Due(tt.last, tt.interval, now)
		if due != tt.due || wait != tt.wait {
			t.Errorf("%s: Due = %v, %s; want %v, %s", tt.name, due, wait, tt.due, tt.wait)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{OutcomePass: "Pass", OutcomeHold: "Hold", OutcomeFail: "Fail", OutcomeInconclusiveLimit: "InconclusiveLimit", Outcome(9): "Outcome(9)"} {
		if got := o.String(); got != want {
			t.Errorf("%d: %q", int(o), got)
		}
	}
}

func TestEvaluateWithRealClient(t *testing.T) {
	// End to end through RenderGate, Client and Record against the fake API.
	v := Vars{Namespace: "ai", Canary: "v2", Interval: time.Minute, StepWindow: 10 * time.Minute}
	fifty := int64(50)
	g := v1alpha1.Gate{Name: "errors", GateSpec: v1alpha1.GateSpec{Preset: "vllm-error-ratio", Max: f64(0.05), MinRequests: &fifty}}
	r, err := RenderGate(g, v)
	if err != nil {
		t.Fatal(err)
	}
	_, srv := newFakeProm(t, map[string]string{r.RequestsQuery: vector("120"), r.Query: vector("0.1")})
	c, err := NewClient(ClientConfig{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ev := EvaluateGate(context.Background(), c, g, r, time.Now())
	if ev.Verdict != v1alpha1.VerdictFail || *ev.Value != 0.1 || *ev.Requests != 120 {
		t.Fatalf("evaluation %+v", ev)
	}
	st, out := Record(v1alpha1.GateStatus{}, g, ev, 10, 0, time.Now())
	if out != OutcomeFail || st.Message != "0.1 is outside <= 0.05 (120 requests in this step)" {
		t.Errorf("record: %s %q", out, st.Message)
	}
}
