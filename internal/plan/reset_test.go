package plan

import (
	"reflect"
	"testing"
	"time"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// keptByReset are the status fields resetRun leaves, each with the reason.
// A new status field must be reset or added here.
var keptByReset = map[string]string{
	"ObservedGeneration":     "set by every decision",
	"Phase":                  "set by the caller (Waiting, Idle)",
	"Revision":               "the revision's identity: set or cleared by the caller",
	"Stable":                 "the stable in force: outlives a run",
	"Canary":                 "the revision's identity: set or cleared by the caller",
	"Retiring":               "backends whose traffic still returns to stable: outlive a run",
	"Removing":               "backendRefs a finish still removes: outlive a run",
	"Workloads":              "scheduled scale-downs: outlive a run",
	"HeaderRoute":            "settled after every decision from the current step (settleHeaderRoute)",
	"StartedAt":              "set or cleared by the caller",
	"Message":                "set by the caller",
	"LastHandledPromote":     "request tokens: a token is acted on once, ever",
	"LastHandledAbort":       "request tokens",
	"LastHandledRetry":       "request tokens",
	"LastHandledPromoteFull": "request tokens",
	"LastHandledSkipGates":   "request tokens",
	"Overrides":              "the audit record of overrides: bounded, outlives a run",
	"Conditions":             "set by every decision",
}

// fillNonZero sets every field of v to a non-zero value.
func fillNonZero(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillNonZero(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fillNonZero(v.Index(0))
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(t0))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillNonZero(v.Field(i))
			}
		}
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int32, reflect.Int64, reflect.Int:
		v.SetInt(1)
	case reflect.Float64:
		v.SetFloat(1)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
	}
}

func TestResetRunClearsEveryRunField(t *testing.T) {
	st := &rolloutsv1.ModelRolloutStatus{}
	fillNonZero(reflect.ValueOf(st).Elem())
	resetRun(st)
	v := reflect.ValueOf(st).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		_, kept := keptByReset[name]
		switch {
		case kept && v.Field(i).IsZero():
			t.Errorf("status.%s is listed as kept but resetRun clears it", name)
		case !kept && !v.Field(i).IsZero():
			t.Errorf("status.%s survives resetRun: reset it there, or list it in keptByReset with the reason", name)
		}
	}
}

// An Idle rollout keeps nothing of its last run; a rolled back one keeps
// what explains the rollback and nothing that still waits.
func TestIdleAndRolledBackKeepNoStaleRunState(t *testing.T) {
	ro := atStep(testRollout(), 1, time.Minute)
	ro.Status.Capacity = &rolloutsv1.CapacityStatus{Weight: 50, Required: 2}
	ro.Status.StepHistory = []rolloutsv1.StepRecord{{Weight: 10, StartedAt: *umt(t0.Add(-time.Hour))}, {Weight: 50, StartedAt: *umt(t0.Add(-time.Minute))}}
	ro.Status.Webhooks = []rolloutsv1.WebhookStatus{{Name: "confirm", State: rolloutsv1.WebhookPending}, {Name: "pre", State: rolloutsv1.WebhookPassed}}
	idle := ro.DeepCopy()
	idle.Spec.Canary = nil
	idle.Status.CanaryWeight = 0
	idle.Status.Phase = rolloutsv1.PhaseSucceeded
	d := Plan(idle, Observation{Now: t0, Found: routesAt(0)})
	expect(t, d.Status.Phase, rolloutsv1.PhaseIdle)
	expect(t, d.Status.Capacity == nil, true)
	expect(t, len(d.Status.Webhooks), 0)

	d = Plan(ro, Observation{Now: t0, Found: routesAt(50), Requests: Requests{Abort: "a1"}})
	expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
	expect(t, d.Status.Capacity == nil, true)
	expect(t, len(d.Status.Webhooks), 1)
	expect(t, d.Status.Webhooks[0].Name, "pre")
	expect(t, len(d.Status.StepHistory), 2)
}

// The drift Event names the other writer, what it changed and what is
// restored.
func TestDriftEvent(t *testing.T) {
	ro := atStep(testRollout(), 1, time.Minute)
	e := DriftEvent(Drift{Writer: `field manager "argocd"`, Changes: "v2 50 -> 10", Restores: IntentOf(&ro.Status), BackoffMax: 5 * time.Minute})
	expect(t, e.Reason, "WeightDriftCorrected")
	expect(t, e.Warning, true)
	expect(t, e.Message, `HTTPRoute weights were changed by field manager "argocd" (v2 50 -> 10); restoring `+DescribeIntent(IntentOf(&ro.Status))+
		". Further changes in this episode are corrected with exponential backoff (up to 5m0s)")
}
