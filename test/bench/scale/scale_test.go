package scale

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the whole benchmark small, so that it never rots: every
// phase runs end to end against a real API server and a manager process,
// and every row of the table is produced. It asserts no timing: the
// figures are measurements for `make bench-scale`, not thresholds.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{
		Rollouts: 20, Steps: 2, Pause: 2 * time.Second, Namespaces: 2,
		IdleWindow: 5 * time.Second, Resident: 40,
		Failover: true, FailoverRollouts: 5,
		LeaseDuration: 6 * time.Second, RenewDeadline: 5 * time.Second, RetryPeriod: time.Second,
		CeilingPatches: 200, CeilingWorkers: 4,
		Gates: 2, GateInterval: time.Second,
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.Table())

	rows := rep.Rows()
	want := []string{"write ceiling", "apply", "step lag", "step baked", "Succeeded", "manager RSS", "writes per step",
		"gate evaluations", "idle writes", "idle Prometheus", "resident", "failover"}
	for _, w := range want {
		found := false
		for _, r := range rows {
			if strings.Contains(r.Measure, w) {
				found = true
				if r.Goal == "" || r.Measured == "" || strings.HasPrefix(r.Measured, "skipped") {
					t.Errorf("row %q has no measurement: %+v", w, r)
				}
			}
		}
		if !found {
			t.Errorf("no row for %q", w)
		}
	}
	if len(rep.StepLags) != 20*(2-1) {
		t.Errorf("step lags observed for %d transitions, want %d (%d not observed)", len(rep.StepLags), 20, rep.LagMissing)
	}
	if rep.Transitions != 60 || rep.MainWrites.total() == 0 || rep.RouteWrites == 0 || rep.StatusWrites == 0 {
		t.Errorf("writes not counted: %d transitions, %+v, %d route writes, %d status writes", rep.Transitions, rep.MainWrites, rep.RouteWrites, rep.StatusWrites)
	}
	if len(rep.GateLate) == 0 || len(rep.GateSeenLate) != len(rep.GateLate) {
		t.Errorf("gate evaluations not observed: %d started, %d seen", len(rep.GateLate), len(rep.GateSeenLate))
	}
	if rep.IdleQueries != 0 {
		t.Errorf("settled rollouts queried Prometheus %v times in the idle window", rep.IdleQueries)
	}
	if rep.FinalizerWrites != 20 {
		t.Errorf("finalizer writes: %d, want one per rollout (20)", rep.FinalizerWrites)
	}
	if rep.PeakRSS == 0 || rep.ResidentRSS == 0 {
		t.Errorf("RSS not read: peak %d, resident %d", rep.PeakRSS, rep.ResidentRSS)
	}
	if !rep.FailoverRan || rep.FailoverAll == 0 {
		t.Errorf("failover not measured")
	}
}
