package plugin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

func render(t *testing.T, ro *rolloutsv1.ModelRollout, events []Event, style Style) string {
	t.Helper()
	var b bytes.Buffer
	if err := RenderStatus(&b, ro, events, now, style); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// assertContains checks every want is in out, and no notWant is.
func assertContains(t *testing.T, out string, want []string, notWant ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	for _, w := range notWant {
		if strings.Contains(out, w) {
			t.Errorf("output has %q but should not:\n%s", w, out)
		}
	}
}

// The Progressing view is compared whole: it is the user story's picture.
func TestStatusProgressingGolden(t *testing.T) {
	got := render(t, progressing(), storyEvents(), Style{})
	want := `Rollout gpt4: Progressing, step 2/5, canary vllm-gpt4-v2 at 25%   (next step in 18m)
Traffic  stable vllm-gpt4-v1 75%   canary vllm-gpt4-v2 25%   route model-header-routing
Steps    ✔ 10% 29m   ▶ 25% 30m (18m left)   · 50% 1h   · 75% 1h   · 100% 1h
Gates    errors    0.004   ≤ 0.05   ✔   40s ago
         latency   11.2s   ≤ 30s    ✔   40s ago
         ttft      0.61s   ≤ 2s     ✔   40s ago
Events   41m   Normal   StepStarted   Step 1/5: canary vllm-gpt4-v2 at 10%; rollout of Service/vllm-gpt4-v1:8000 -> Service/vllm-gpt4-v2:8000 started
         12m   Normal   StepStarted   Step 2/5: canary vllm-gpt4-v2 at 25%
`
	if got != want {
		t.Errorf("status view differs.\ngot:\n%s\nwant:\n%s", got, want)
	}
}

func TestStatusWaiting(t *testing.T) {
	out := render(t, waiting(), nil, Style{})
	assertContains(t, out, []string{
		"Rollout gpt4: Waiting, canary vllm-gpt4-v2 at 0%   (waiting 3m for preconditions)",
		"Steps    · 10% 30m   · 25% 30m   · 50% 1h   · 75% 1h   · 100% 1h",
		"Message  Service vllm-gpt4-v2 has no ready endpoints",
		"errors    -   ≤ 0.05   …   not evaluated yet",
		"Issues   CanaryAvailable=False   NoReadyEndpoints   for 3m   Service vllm-gpt4-v2 has no ready endpoints",
		"Events   <none>",
	}, "Ready=False", "▶", "✔")
}

func TestStatusProgressingHolds(t *testing.T) {
	ro := progressing()
	ro.Status.StepStartedAt = micro(ago(31 * time.Minute))
	ro.Status.StepHistory[1].StartedAt = *mago(31 * time.Minute)
	ro.Status.Message = `Step 2/5: canary at 25%, gate "ttft" holds: no data`
	ro.Status.Gates[2] = rolloutsv1.GateStatus{Name: "ttft", Verdict: rolloutsv1.VerdictNoData, ConsecutiveInconclusive: 3,
		Threshold: "<= 2", Message: "fewer than 100 requests", LastEvaluatedAt: ago(20 * time.Second)}
	ro.Status.Gates[0] = rolloutsv1.GateStatus{Name: "errors", Verdict: rolloutsv1.VerdictFail, Value: "0.07", ConsecutiveFailures: 1,
		Threshold: "<= 0.05", Message: "0.07 outside <= 0.05", LastEvaluatedAt: ago(20 * time.Second)}
	ro.Spec.Analysis.Gates[0].FailureLimit = 3
	out := render(t, ro, storyEvents(), Style{})
	assertContains(t, out, []string{
		"(next step once the gates pass)",
		"▶ 25% 30m (baked)",
		`Message  Step 2/5: canary at 25%, gate "ttft" holds: no data`,
		"errors    0.07    ≤ 0.05   ✖   20s ago   Fail (1 of 3 failures in a row): 0.07 outside <= 0.05",
		"ttft      -       ≤ 2s     …   20s ago   NoData (3 in a row): fewer than 100 requests",
	})
}

func TestStatusLastStepSucceedsIn(t *testing.T) {
	ro := succeeded()
	ro.Status.Phase = rolloutsv1.PhaseProgressing
	ro.Status.StepStartedAt = micro(ago(10 * time.Minute))
	ro.Status.StepHistory[4].EndedAt = nil
	out := render(t, ro, nil, Style{})
	assertContains(t, out, []string{"step 5/5", "(succeeds in 50m)", "▶ 100% 1h (50m left)", "✔ 75% 1h1m"})
}

func TestStatusPausedAwaitingPromote(t *testing.T) {
	out := render(t, awaitingPromoteFixture(), storyEvents(), Style{})
	assertContains(t, out, []string{
		"Rollout gpt4: Paused, step 3/5, canary vllm-gpt4-v2 at 50%   (waiting for promote)",
		"✔ 10% 30m   ✔ 25% 30m   ▶ 50% manual (waiting for promote)   · 75% 1h   · 100% 1h",
		"Next     promote with: kubectl modelrollout promote gpt4 -n ai-gateway",
	}, "Issues")
}

func TestStatusPausedByAnnotation(t *testing.T) {
	ro := progressing()
	ro.Annotations = map[string]string{rolloutsv1.AnnotationPaused: "true"}
	ro.Status.Phase = rolloutsv1.PhasePaused
	ro.Status.Message = "Paused at step 2/5 (canary at 25%)"
	out := render(t, ro, nil, Style{})
	assertContains(t, out, []string{
		"Rollout gpt4: Paused, step 2/5, canary vllm-gpt4-v2 at 25%   (paused)",
		"▶ 25% 30m (paused, 18m left)",
		"Message  Paused at step 2/5 (canary at 25%)",
		"Next     resume with: kubectl modelrollout resume gpt4 -n ai-gateway",
	})

	ro.Annotations = nil
	ro.Spec.Paused = true
	out = render(t, ro, nil, Style{})
	assertContains(t, out, []string{"(paused)", "Next     set spec.paused to false in Git"})
}

func TestStatusSucceeded(t *testing.T) {
	out := render(t, succeeded(), nil, Style{})
	assertContains(t, out, []string{
		"Rollout gpt4: Succeeded, canary vllm-gpt4-v2 at 100%   (succeeded 55m ago)",
		"Traffic  stable vllm-gpt4-v1 0%   canary vllm-gpt4-v2 100%",
		"✔ 10% 31m   ✔ 25% 31m   ✔ 50% 1h1m   ✔ 75% 1h1m   ✔ 100% 1h1m",
		"Next     make vllm-gpt4-v2 the stable: kubectl modelrollout finish gpt4 -n ai-gateway   (under GitOps, commit the output of kubectl modelrollout finish gpt4 -n ai-gateway --print)",
	}, "▶", "·", "Issues", "Message", "Handoff")

	ro := succeeded()
	ro.Status.Workloads = []rolloutsv1.WorkloadAction{{WorkloadRef: rolloutsv1.WorkloadRef{Group: "apps", Kind: "Deployment", Name: "vllm-gpt4-v1"},
		Action: rolloutsv1.WorkloadScaleDown, At: metav1.NewTime(now.Add(8 * time.Minute)), Why: "old stable vllm-gpt4-v1 after success"}}
	assertContains(t, render(t, ro, nil, Style{}), []string{
		"Handoff  scale Deployment/vllm-gpt4-v1 to 0 in 8m (old stable vllm-gpt4-v1 after success)",
	})
}

func TestStatusRolledBack(t *testing.T) {
	events := append(storyEvents(), Event{Time: now.Add(-11 * time.Minute), Type: "Warning", Reason: "RolledBack",
		Note: `alert HighErrorRate{model="gpt-4",severity="critical"} firing; canary weight 25 -> 0`, Count: 1})
	out := render(t, rolledBack(), events, Style{})
	assertContains(t, out, []string{
		"Rollout gpt4: RolledBack at step 2/5, canary vllm-gpt4-v2 at 0% (was 25%)   (rolled back 11m ago)",
		"✔ 10% 29m   ✖ 25% 1m (rolled back)   · 50% 1h",
		`Reason   AlertFiring: alert HighErrorRate{model="gpt-4",severity="critical"} firing`,
		`11m   Warning   RolledBack    alert HighErrorRate{model="gpt-4",severity="critical"} firing; canary weight 25 -> 0`,
		"Next     fix the canary and change spec.canary in Git, or retry from step 1: kubectl modelrollout retry gpt4 -n ai-gateway",
	}, "Stalled", "▶")
}

func TestStatusIdleAndUnreconciled(t *testing.T) {
	ro := fixture()
	ro.Spec.Canary = nil
	ro.Status.Phase = rolloutsv1.PhaseIdle
	out := render(t, ro, nil, Style{})
	assertContains(t, out, []string{"Rollout gpt4: Idle, no canary declared   (routes are left as they are)",
		"Traffic  stable vllm-gpt4-v1 100%   route model-header-routing"}, "Steps", "canary vllm")

	out = render(t, fixture(), nil, Style{})
	assertContains(t, out, []string{"Rollout gpt4: Pending, canary vllm-gpt4-v2   (no status yet: is the modelrollout controller running?)"})
}

func TestStatusPendingRequestsAndStaleGeneration(t *testing.T) {
	ro := progressing()
	ro.Generation = 3
	ro.Annotations = map[string]string{
		rolloutsv1.AnnotationAbort:       now.Add(-5 * time.Second).Format(time.RFC3339Nano),
		rolloutsv1.AnnotationAbortReason: "bad outputs",
		rolloutsv1.AnnotationPromote:     "handled",
	}
	ro.Status.LastHandledPromote = "handled"
	out := render(t, ro, nil, Style{})
	assertContains(t, out, []string{
		`Pending  abort requested 5s ago ("bad outputs"), not handled by the controller yet`,
		"Note     the controller has not acted on the latest spec yet (generation 3; status is for generation 1)",
	}, "promote requested")
}

func TestStatusEventsKeepsTheLatestFive(t *testing.T) {
	var evs []Event
	for i := 10; i > 0; i-- {
		evs = append(evs, Event{Time: now.Add(-time.Duration(i) * time.Minute), Type: "Normal", Reason: "R" + string(rune('a'+10-i)), Note: "n", Count: 1})
	}
	evs[9].Count = 4
	out := render(t, progressing(), evs, Style{})
	assertContains(t, out, []string{"5m    Normal   Rf", "60s   Normal   Rj   n (x4)"}, "Re ", "6m ")
}

func TestStatusASCIIAndColor(t *testing.T) {
	out := render(t, rolledBack(), nil, Style{ASCII: true})
	assertContains(t, out, []string{"+ 10% 29m   x 25% 1m (rolled back)   - 50% 1h", "errors    0.004   <= 0.05   +"}, "✔", "✖", "·", "≤")

	plain := render(t, progressing(), storyEvents(), Style{})
	colored := render(t, progressing(), storyEvents(), Style{Color: true})
	if !strings.Contains(colored, "\x1b[") {
		t.Fatal("no colour in coloured output")
	}
	stripped := ansi.ReplaceAllString(colored, "")
	if stripped != plain {
		t.Errorf("colour changes the layout.\ncoloured, stripped:\n%s\nplain:\n%s", stripped, plain)
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	ro := progressing()
	other := rolledBack()
	other.Name, other.Namespace = "mixtral", "team-b"
	idle := fixture()
	idle.Name, idle.Spec.Canary = "claude", nil
	if err := RenderTable(&b, []rolloutsv1.ModelRollout{*ro, *other, *idle}, now, true); err != nil {
		t.Fatal(err)
	}
	want := `NAMESPACE    NAME      ROUTE                  CANARY         WEIGHT   STEP     PHASE         AGE
ai-gateway   gpt4      model-header-routing   vllm-gpt4-v2   25       2/5      Progressing   41m
team-b       mixtral   model-header-routing   vllm-gpt4-v2   0        2/5      RolledBack    41m
ai-gateway   claude    model-header-routing   <none>         0        <none>   <none>        41m
`
	if b.String() != want {
		t.Errorf("table differs.\ngot:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestShort(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 45 * time.Second: "45s", 4*time.Minute + 30*time.Second: "4m30s", 18*time.Minute + 20*time.Second: "18m", 17*time.Minute + 59*time.Second + 600*time.Millisecond: "18m",
		59*time.Minute + 40*time.Second: "1h", 9*time.Minute + 59*time.Second + 600*time.Millisecond: "10m",
		time.Hour: "1h", 90 * time.Minute: "1h30m", 51 * time.Hour: "2d3h", -time.Second: "0s",
	} {
		if got := short(d); got != want {
			t.Errorf("short(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestConditionOK(t *testing.T) {
	for _, tt := range []struct {
		c  metav1.Condition
		ok bool
	}{
		{metav1.Condition{Type: "Stalled", Status: "True"}, false},
		{metav1.Condition{Type: "Stalled", Status: "False"}, true},
		{metav1.Condition{Type: "Reconciling", Status: "True"}, true},
		{metav1.Condition{Type: "GatesPassing", Status: "False"}, false},
		{metav1.Condition{Type: "GatesPassing", Status: "Unknown"}, true},
	} {
		if got := conditionOK(tt.c); got != tt.ok {
			t.Errorf("conditionOK(%s=%s) = %v", tt.c.Type, tt.c.Status, got)
		}
	}
}

func TestStatusOverridesAndPendingOverrides(t *testing.T) {
	ro := progressing()
	ro.Annotations = map[string]string{rolloutsv1.AnnotationSkipGates: now.Add(-3 * time.Second).Format(time.RFC3339Nano)}
	at := func(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }
	ro.Status.Overrides = []rolloutsv1.OverrideRecord{
		{At: at(2 * time.Hour), Kind: rolloutsv1.OverridePromoteFull, Revision: "Service/old:8000 -> Service/older:8000", Step: "1/5", RequestedBy: "zed"},
		{At: at(30 * time.Minute), Kind: rolloutsv1.OverrideSkipGates, Revision: ro.Status.Revision, Step: "1/5", RequestedBy: "alice", Reason: "flapping gate",
			Message: "canary weight 10 -> 25 (step 2/5)"},
	}
	out := render(t, ro, nil, Style{})
	assertContains(t, out, []string{
		`Override 30m ago   SkipGates at step 1/5 by alice: "flapping gate" (canary weight 10 -> 25 (step 2/5))`,
		"skip of the gates requested 3s ago, not handled by the controller yet",
	}, "zed")
}

func TestStatusDarkLaunchShowsTheHeaderRoute(t *testing.T) {
	ro := awaitingPromoteFixture()
	ro.Spec.Steps[2].Weight = 0
	ro.Spec.Steps[2].Match = &rolloutsv1.StepMatch{Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-ab-test-group", Value: "canary"}}}
	ro.Status.CanaryWeight = 0
	ro.Status.HeaderRoute = &rolloutsv1.HeaderRouteStatus{Routes: []string{"model-header-routing-gpt4-match"}, Match: *ro.Spec.Steps[2].Match}
	out := render(t, ro, nil, Style{})
	assertContains(t, out, []string{
		"Match    every request with header x-ab-test-group=canary -> canary vllm-gpt4-v2   via HTTPRoute model-header-routing-gpt4-match",
		"▶ 0%+match manual (waiting for promote)",
	})
	ro.Status.HeaderRoute = nil
	assertContains(t, render(t, ro, nil, Style{}), nil, "Match    ")
}

func TestStatusDryRunGate(t *testing.T) {
	ro := progressing()
	ro.Spec.Analysis.Gates[0].DryRun = true
	ro.Status.Gates[0] = rolloutsv1.GateStatus{Name: "errors", Verdict: rolloutsv1.VerdictFail, Value: "0.07", ConsecutiveFailures: 1, DryRun: true,
		Threshold: "<= 0.05", Message: "0.07 outside <= 0.05", LastEvaluatedAt: ago(20 * time.Second)}
	out := render(t, ro, nil, Style{})
	assertContains(t, out, []string{
		"errors    0.07    ≤ 0.05   ✖   20s ago   Fail: 0.07 outside <= 0.05 (dry run: never holds or rolls back)",
	})
}

func TestStatusWebhooks(t *testing.T) {
	ro := progressing()
	ro.Status.Webhooks = []rolloutsv1.WebhookStatus{
		{Name: "eval", Type: rolloutsv1.WebhookPreRollout, State: rolloutsv1.WebhookPassed, Calls: 1, LastCallAt: ago(40 * time.Minute), Message: "HTTP 200: ok"},
		{Name: "approve", Type: rolloutsv1.WebhookConfirmPromotion, State: rolloutsv1.WebhookPending, Calls: 4, LastCallAt: ago(10 * time.Second), Message: "HTTP 403: not yet"},
	}
	out := render(t, ro, nil, Style{})
	assertContains(t, out, []string{
		"Webhooks eval      PreRollout         ✔   Passed, 1 call, last 40m ago: HTTP 200: ok",
		"approve   ConfirmPromotion   …   Pending, 4 calls, last 10s ago: HTTP 403: not yet",
	})
}

func TestStatusQueryTenancy(t *testing.T) {
	ro := progressing()
	ro.Status.Gates[0].Tenancy = `enforced: namespace="ai"`
	ro.Status.Gates[0].Query = `sum(rate(errors_total{namespace="ai"}[1m]))`
	ro.Status.Gates[1].Tenancy = "exempt: preset"
	out := render(t, ro, nil, Style{})
	assertContains(t, out, []string{
		`errors query tenancy enforced: namespace="ai", sent: sum(rate(errors_total{namespace="ai"}[1m]))`,
		ro.Status.Gates[1].Name + " query tenancy exempt: preset",
	})
}
