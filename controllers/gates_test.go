package controllers

import (
	"testing"

	"github.com/modelrollout/modelrollout/analysis"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

func TestDryRunFailureReportedOnceAtTheLimit(t *testing.T) {
	gate := rolloutsv1.Gate{Name: "errors", FailureLimit: 2, DryRun: true}
	cases := []struct {
		name    string
		gs      rolloutsv1.GateStatus
		outcome analysis.Outcome
		want    string
	}{
		{"below the limit", rolloutsv1.GateStatus{ConsecutiveFailures: 1}, analysis.OutcomeHold, ""},
		{"at the limit", rolloutsv1.GateStatus{ConsecutiveFailures: 2, Value: "0.2"}, analysis.OutcomeFail, rolloutsv1.ReasonGateFailed},
		{"past the limit", rolloutsv1.GateStatus{ConsecutiveFailures: 3, Value: "0.2"}, analysis.OutcomeFail, ""},
		{"inconclusive at the limit", rolloutsv1.GateStatus{ConsecutiveInconclusive: 4}, analysis.OutcomeInconclusiveLimit, rolloutsv1.ReasonInconclusive},
		{"inconclusive past the limit", rolloutsv1.GateStatus{ConsecutiveInconclusive: 5}, analysis.OutcomeInconclusiveLimit, ""},
		{"pass", rolloutsv1.GateStatus{}, analysis.OutcomePass, ""},
	}
	for _, c := range cases {
		p := dryRunFailure(gate, c.gs, c.outcome, 4)
		got := ""
		if p != nil {
			got = p.Reason
		}
		if got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
