package alerts

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

const time2h = 2 * time.Hour

func timeZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.FixedZone("UTC+1", 3600)
	}
	return loc
}

func TestAbortReason(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{gpt4Labels, `alert HighErrorRate{model="gpt-4",severity="critical"} firing`},
		{map[string]string{"alertname": "HighErrorRate"}, `alert HighErrorRate firing`},
		{map[string]string{"severity": "page"}, `alert ""{severity="page"} firing`},
		{nil, `alert "" firing`},
		{map[string]string{"alertname": "job:errors:rate5m_high", "b": "2", "a": "1"}, `alert job:errors:rate5m_high{a="1",b="2"} firing`},
		{map[string]string{"alertname": "Bad name", "path": `/v1/"chat"` + "\n", "odd-label": "ü"}, `alert "Bad name"{"odd-label"="ü",path="/v1/\"chat\"\n"} firing`},
		{map[string]string{"alertname": "X", "bin": "\xff\xfe"}, `alert X{bin="\xff\xfe"} firing`},
	} {
		a := firing("fp", tc.labels)
		if got := AbortReason(&a); got != tc.want {
			t.Errorf("AbortReason(%v) = %s, want %s", tc.labels, got, tc.want)
		}
	}
}

func TestAbortReasonBounded(t *testing.T) {
	many := map[string]string{"alertname": "HighErrorRate"}
	for i := range 100 {
		many[fmt.Sprintf("label_%03d", i)] = strings.Repeat("é", 20)
	}
	cases := map[string]map[string]string{
		"many labels":   many,
		"one huge":      {"alertname": "A", "x": strings.Repeat("€", 2000)},
		"huge name":     {"alertname": strings.Repeat("A", 5000), "x": "1"},
		"huge odd name": {"alertname": strings.Repeat("€", 5000)},
		"huge key":      {"alertname": "A", strings.Repeat("k", 5000): "v"},
	}
	for name, labels := range cases {
		a := firing("fp", labels)
		got := AbortReason(&a)
		if len(got) > MaxReasonBytes || !utf8.ValidString(got) {
			t.Errorf("%s: %d bytes, valid UTF-8 %v", name, len(got), utf8.ValidString(got))
		}
		if !strings.HasPrefix(got, "alert ") || !strings.HasSuffix(got, " firing") || !strings.Contains(got, "…") {
			t.Errorf("%s: %q", name, got)
		}
	}
	a := firing("fp", many)
	got := AbortReason(&a)
	if !strings.HasPrefix(got, `alert HighErrorRate{label_000="éééééééééééééééééééé",label_001=`) || !strings.HasSuffix(got, ",…} firing") {
		t.Errorf("many labels: %q", got)
	}
}

func TestAbortToken(t *testing.T) {
	a := firing("c4a7e0b1f2d3a4b5", gpt4Labels)
	tok := AbortToken(&a)
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != len(TokenPrefix)+16 {
		t.Fatalf("token %q", tok)
	}
	same := a
	same.StartsAt = a.StartsAt.In(time.FixedZone("X", -5*3600))
	same.Labels = map[string]string{"other": "labels"} // the fingerprint stands for them
	same.Status = StatusResolved
	if AbortToken(&same) != tok {
		t.Error("the same instant in another zone gives another token")
	}
	later := a
	later.StartsAt = a.StartsAt.Add(time.Nanosecond)
	other := a
	other.Fingerprint = "c4a7e0b1f2d3a4b6"
	if AbortToken(&later) == tok || AbortToken(&other) == tok {
		t.Error("different alerts share a token")
	}

	// Without a fingerprint, the labels identify the alert, in any order.
	n1 := firing("", map[string]string{"a": "1", "b": "2"})
	n2 := firing("", map[string]string{"b": "2", "a": "1"})
	n3 := firing("", map[string]string{"a": "1", "b": "3"})
	n4 := firing("", map[string]string{"a": "1\xff", "b": "2"}) // separator confusion
	if AbortToken(&n1) != AbortToken(&n2) || AbortToken(&n1) == AbortToken(&n3) || AbortToken(&n1) == AbortToken(&n4) {
		t.Error("label fingerprint")
	}
	// A token fits status.lastHandledAbort (256 characters).
	if len(tok) > 256 {
		t.Error("token too long")
	}
}

func TestIndexMatch(t *testing.T) {
	items := []rolloutsv1.ModelRollout{
		*rollout("ns", "z", rolloutsv1.PhaseProgressing, map[string]string{"team": "ml"}),
		*rollout("ns", "a", rolloutsv1.PhaseProgressing, map[string]string{"team": "ml"}),
		*rollout("ns", "b", rolloutsv1.PhaseProgressing, map[string]string{"a": "1", "team": "ml"}),
		*rollout("ns", "direct", rolloutsv1.PhaseProgressing, map[string]string{"team": "ml"}),
		*rollout("ns", "nil", rolloutsv1.PhaseProgressing, nil),
	}
	ix := newIndex(items)
	var names []string
	for _, ro := range ix.match(map[string]string{"team": "ml", "modelrollout": "direct", "namespace": "ns"}) {
		names = append(names, ro.Name)
	}
	// Direct first, then the selector matches sorted, each once.
	if got := strings.Join(names, ","); got != "direct,a,z" {
		t.Errorf("matched %s", got)
	}
	names = nil
	for _, ro := range ix.match(map[string]string{"team": "ml", "a": "1"}) {
		names = append(names, ro.Name)
	}
	if got := strings.Join(names, ","); got != "a,b,direct,z" {
		t.Errorf("matched %s", got)
	}
}
