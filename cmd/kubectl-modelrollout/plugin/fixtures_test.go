package plugin

import (
	"regexp"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// now is the fixed clock of the unit tests.
var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) *metav1.Time {
	t := metav1.NewTime(now.Add(-d))
	return &t
}

func f64(v float64) *float64 { return &v }
func i32(v int32) *int32     { return &v }

// fixture is the rollout of the user story, before the controller ran.
func fixture() *rolloutsv1.ModelRollout {
	port := int32(8000)
	return &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{
			Name: "gpt4", Namespace: "ai-gateway", Generation: 1,
			CreationTimestamp: *ago(41 * time.Minute),
		},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{{Name: "model-header-routing"}},
			Stable: rolloutsv1.BackendRef{Name: "vllm-gpt4-v1", Port: &port},
			Canary: &rolloutsv1.BackendRef{Name: "vllm-gpt4-v2", Port: &port},
			Steps:  rolloutsv1.DefaultSteps(),
			Analysis: &rolloutsv1.Analysis{
				Interval: "1m",
				Gates: []rolloutsv1.Gate{
					{Name: "errors", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-error-ratio", Max: f64(0.05), FailureLimit: 1}},
					{Name: "latency", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-e2e-latency-p99", Max: f64(30), FailureLimit: 1}},
					{Name: "ttft", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-ttft-p99", Max: f64(2), FailureLimit: 1}},
				},
			},
		},
	}
}

func passing(name, value, threshold string, at *metav1.Time) rolloutsv1.GateStatus {
	return rolloutsv1.GateStatus{Name: name, Verdict: rolloutsv1.VerdictPass, Value: value, Threshold: threshold, LastEvaluatedAt: at}
}

// progressing is the rollout at step 2/5, 12 minutes into its 30 minute
// pause, every gate passing.
func progressing() *rolloutsv1.ModelRollout {
	ro := fixture()
	ro.Status = rolloutsv1.ModelRolloutStatus{
		ObservedGeneration: 1,
		Phase:              rolloutsv1.PhaseProgressing,
		Revision:           ro.Spec.Revision(),
		Canary:             ro.Spec.Canary.DeepCopy(),
		CurrentStepIndex:   i32(1),
		Step:               "2/5",
		CanaryWeight:       25,
		StepStartedAt:      micro(ago(12 * time.Minute)),
		StartedAt:          ago(41 * time.Minute),
		Message:            "Step 2/5: canary at 25%, next step in 18m",
		StepHistory: []rolloutsv1.StepRecord{
			{Weight: 10, StartedAt: *mago(41 * time.Minute), EndedAt: mago(12 * time.Minute)},
			{Weight: 25, StartedAt: *mago(12 * time.Minute)},
		},
		Gates: []rolloutsv1.GateStatus{
			passing("errors", "0.004", "<= 0.05", ago(40*time.Second)),
			passing("latency", "11.2", "<= 30", ago(40*time.Second)),
			passing("ttft", "0.61", "<= 2", ago(40*time.Second)),
		},
		Conditions: []metav1.Condition{
			{Type: rolloutsv1.ConditionReady, Status: metav1.ConditionFalse, Reason: "Progressing", LastTransitionTime: *ago(41 * time.Minute)},
			{Type: rolloutsv1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: "Progressing", LastTransitionTime: *ago(41 * time.Minute)},
			{Type: rolloutsv1.ConditionRoutesResolved, Status: metav1.ConditionTrue, Reason: "Resolved", LastTransitionTime: *ago(41 * time.Minute)},
			{Type: rolloutsv1.ConditionCanaryAvailable, Status: metav1.ConditionTrue, Reason: "Available", LastTransitionTime: *ago(41 * time.Minute)},
			{Type: rolloutsv1.ConditionGatesPassing, Status: metav1.ConditionTrue, Reason: "GatesPassed", LastTransitionTime: *ago(40 * time.Minute)},
		},
	}
	return ro
}

func storyEvents() []Event {
	return []Event{
		{Time: now.Add(-41 * time.Minute), Type: "Normal", Reason: "StepStarted", Note: "Step 1/5: canary vllm-gpt4-v2 at 10%; rollout of Service/vllm-gpt4-v1:8000 -> Service/vllm-gpt4-v2:8000 started", Count: 1},
		{Time: now.Add(-12 * time.Minute), Type: "Normal", Reason: "StepStarted", Note: "Step 2/5: canary vllm-gpt4-v2 at 25%", Count: 1},
	}
}

// waiting is a rollout whose canary has no ready endpoints yet.
func waiting() *rolloutsv1.ModelRollout {
	ro := fixture()
	ro.Status = rolloutsv1.ModelRolloutStatus{
		ObservedGeneration: 1,
		Phase:              rolloutsv1.PhaseWaiting,
		Revision:           ro.Spec.Revision(),
		Canary:             ro.Spec.Canary.DeepCopy(),
		StartedAt:          ago(3 * time.Minute),
		WaitingSince:       ago(3 * time.Minute),
		Message:            "Service vllm-gpt4-v2 has no ready endpoints",
		Conditions: []metav1.Condition{
			{Type: rolloutsv1.ConditionReady, Status: metav1.ConditionFalse, Reason: "Waiting", LastTransitionTime: *ago(3 * time.Minute)},
			{Type: rolloutsv1.ConditionRoutesResolved, Status: metav1.ConditionTrue, Reason: "Resolved", LastTransitionTime: *ago(3 * time.Minute)},
			{Type: rolloutsv1.ConditionCanaryAvailable, Status: metav1.ConditionFalse, Reason: "NoReadyEndpoints",
				Message: "Service vllm-gpt4-v2 has no ready endpoints", LastTransitionTime: *ago(3 * time.Minute)},
		},
	}
	return ro
}

// awaitingPromoteFixture is at step 3/5, whose step has no pause.
func awaitingPromoteFixture() *rolloutsv1.ModelRollout {
	ro := progressing()
	ro.Spec.Steps[2].Pause = nil
	st := &ro.Status
	st.Phase = rolloutsv1.PhasePaused
	st.CurrentStepIndex = i32(2)
	st.Step = "3/5"
	st.CanaryWeight = 50
	st.StepStartedAt = micro(ago(5 * time.Minute))
	st.Message = "Step 3/5: canary at 50%, waiting for promote"
	st.StepHistory = []rolloutsv1.StepRecord{
		{Weight: 10, StartedAt: *mago(65 * time.Minute), EndedAt: mago(35 * time.Minute)},
		{Weight: 25, StartedAt: *mago(35 * time.Minute), EndedAt: mago(5 * time.Minute)},
		{Weight: 50, StartedAt: *mago(5 * time.Minute)},
	}
	return ro
}

// succeeded has baked every step.
func succeeded() *rolloutsv1.ModelRollout {
	ro := progressing()
	st := &ro.Status
	st.Phase = rolloutsv1.PhaseSucceeded
	st.CurrentStepIndex = i32(4)
	st.Step = "5/5"
	st.CanaryWeight = 100
	st.Message = "Canary vllm-gpt4-v2 holds 100% of traffic"
	var h []rolloutsv1.StepRecord
	start := 5 * time.Hour
	for _, s := range ro.Spec.Steps {
		d, _ := s.Pause.Parse()
		h = append(h, rolloutsv1.StepRecord{Weight: s.Weight, StartedAt: *mago(start), EndedAt: mago(start - d - time.Minute)})
		start -= d + time.Minute
	}
	st.StepHistory = h
	st.Conditions = []metav1.Condition{
		{Type: rolloutsv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Succeeded", LastTransitionTime: *ago(time.Hour)},
	}
	return ro
}

// rolledBack was rolled back at step 2/5 by a firing alert.
func rolledBack() *rolloutsv1.ModelRollout {
	ro := progressing()
	st := &ro.Status
	msg := `alert HighErrorRate{model="gpt-4",severity="critical"} firing`
	st.Phase = rolloutsv1.PhaseRolledBack
	st.CanaryWeight = 0
	st.Rollback = &rolloutsv1.RollbackStatus{Reason: rolloutsv1.ReasonAlertFiring, Message: msg, FromWeight: 25, At: *ago(11 * time.Minute)}
	st.StepHistory[1].EndedAt = mago(11 * time.Minute)
	st.Message = "Rolled back: " + msg + "; canary weight 25 -> 0"
	st.Conditions = []metav1.Condition{
		{Type: rolloutsv1.ConditionReady, Status: metav1.ConditionFalse, Reason: "RolledBack", LastTransitionTime: *ago(11 * time.Minute)},
		{Type: rolloutsv1.ConditionStalled, Status: metav1.ConditionTrue, Reason: "AlertFiring", Message: st.Message, LastTransitionTime: *ago(11 * time.Minute)},
	}
	return ro
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

func corev1ObjectReference(name, ns string) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: rolloutsv1.GroupVersion.String(), Kind: "ModelRollout", Name: name, Namespace: ns}
}

// micro is the time as status.stepStartedAt holds it.
func micro(t *metav1.Time) *rolloutsv1.MicroTime {
	m := rolloutsv1.NewMicroTime(metav1.NewMicroTime(t.Time))
	return &m
}

// mago is ago as the step history holds it.
func mago(d time.Duration) *rolloutsv1.MicroTime { return micro(ago(d)) }
