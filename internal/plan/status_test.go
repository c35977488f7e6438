package plan

import (
	"strings"
	"testing"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

func TestClampStatusCutsEveryStringToItsBound(t *testing.T) {
	long := strings.Repeat("é", 40000) // 2 bytes a character
	st := rolloutsv1.ModelRolloutStatus{
		Message: long, Revision: long, Step: long,
		LastHandledAbort: long, LastHandledPromote: long, LastHandledRetry: long,
		LastHandledPromoteFull: long, LastHandledSkipGates: long,
		Overrides:  []rolloutsv1.OverrideRecord{{Token: long, Revision: long, Step: long, Reason: long, RequestedBy: long, Message: long}},
		Rollback:   &rolloutsv1.RollbackStatus{Reason: long, Message: long},
		Conditions: []metav1.Condition{{Type: "Ready", Message: long}},
		Gates: []rolloutsv1.GateStatus{{Name: long, Value: long, Threshold: long, Message: long,
			History: []rolloutsv1.GateMeasurement{{Value: long, Message: long}}}},
	}
	ClampStatus(&st)
	for _, c := range []struct {
		s   string
		max int
	}{
		{st.Message, MaxMessage}, {st.Revision, maxRevision}, {st.Step, maxStep},
		{st.LastHandledAbort, MaxToken}, {st.LastHandledPromote, MaxToken}, {st.LastHandledRetry, MaxToken},
		{st.LastHandledPromoteFull, MaxToken}, {st.LastHandledSkipGates, MaxToken},
		{st.Overrides[0].Token, MaxToken}, {st.Overrides[0].Revision, maxRevision}, {st.Overrides[0].Step, maxStep}, {st.Overrides[0].Reason, maxOverrideReason},
		{st.Overrides[0].RequestedBy, maxRequestedBy}, {st.Overrides[0].Message, MaxMessage},
		{st.Rollback.Reason, maxRollbackReason}, {st.Rollback.Message, MaxMessage},
		{st.Conditions[0].Message, MaxConditionMessage},
		{st.Gates[0].Name, maxGateName}, {st.Gates[0].Value, maxGateValue}, {st.Gates[0].Threshold, maxGateThreshold},
		{st.Gates[0].Message, maxGateMessage}, {st.Gates[0].History[0].Value, maxGateValue}, {st.Gates[0].History[0].Message, maxMeasureMessage},
	} {
		if len(c.s) > c.max || !utf8.ValidString(c.s) || len(c.s) < c.max-8 {
			t.Fatalf("clamped to %d bytes (bound %d), valid UTF-8 %v", len(c.s), c.max, utf8.ValidString(c.s))
		}
	}
	if got := rolloutsv1.Truncate("short", 1024); got != "short" {
		t.Fatalf("a short string is kept: %q", got)
	}
	if got := rolloutsv1.Truncate("héllo", 2); got != "h" {
		t.Fatalf("a bound below the ellipsis still cuts on a rune: %q", got)
	}
}
