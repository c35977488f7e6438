package argocdupstream

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const (
	rolloutKey      = "rollouts.modelrollout.io/ModelRollout"
	annPaused       = "rollouts.modelrollout.io/paused"
	annPromote      = "rollouts.modelrollout.io/promote"
	annPromoteFull  = "rollouts.modelrollout.io/promote-full"
	annSkipGates    = "rollouts.modelrollout.io/skip-gates"
	annAbort        = "rollouts.modelrollout.io/abort"
	annAbortReason  = "rollouts.modelrollout.io/abort-reason"
	annRetry        = "rollouts.modelrollout.io/retry"
	annReason       = "rollouts.modelrollout.io/promote-reason"
	annRequestedBy  = "rollouts.modelrollout.io/requested-by"
	stableName      = "vllm-gpt4-v1"
	canaryName      = "vllm-gpt4-v2"
	luaRouteName    = "model-route"
	luaRolloutName  = "gpt4"
	allActionsCount = 7
)

// TestArgoCDConfigMapHoldsTheScripts checks that what Argo CD reads from
// argocd-cm after the README's kubectl patch is config/argocd/health.lua and
// every action under config/argocd/actions/, so that running the overrides
// runs those files.
func TestArgoCDConfigMapHoldsTheScripts(t *testing.T) {
	cluster(t)
	o, ok := resourceOverrides(t)[rolloutKey]
	if !ok {
		t.Fatalf("Argo CD has no resource override for %s; it has %v", rolloutKey, slices.Sorted(maps.Keys(resourceOverrides(t))))
	}
	read := func(parts ...string) string {
		b, err := os.ReadFile(filepath.Join(append([]string{root, "config", "argocd"}, parts...)...))
		must(t, err)
		return string(b)
	}
	if o.HealthLua != read("health.lua") {
		t.Errorf("the health check in argocd-cm is not config/argocd/health.lua")
	}
	actions, err := o.GetActions()
	must(t, err)
	if actions.ActionDiscoveryLua != read("actions", "discovery.lua") {
		t.Errorf("the action discovery in argocd-cm is not config/argocd/actions/discovery.lua")
	}
	entries, err := os.ReadDir(filepath.Join(root, "config", "argocd", "actions"))
	must(t, err)
	var dirs, defined []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	for _, d := range actions.Definitions {
		defined = append(defined, d.Name)
		if d.ActionLua != read("actions", d.Name, "action.lua") {
			t.Errorf("action %s in argocd-cm is not config/argocd/actions/%s/action.lua", d.Name, d.Name)
		}
	}
	sort.Strings(defined)
	if !slices.Equal(dirs, defined) {
		t.Errorf("argocd-cm defines the actions %v; config/argocd/actions/ has %v", defined, dirs)
	}
	if len(dirs) != allActionsCount {
		t.Errorf("%d actions under config/argocd/actions/, these tests expect %d", len(dirs), allActionsCount)
	}
}

// rolloutScenario creates, in a namespace of its own, the route, the stable
// and canary Services and a ModelRollout gpt4 with the given spec lines
// (steps and more); canaryReady says whether the canary has a ready
// endpoint. It returns the namespace and the rollout as the API server
// answered its creation.
func rolloutScenario(t *testing.T, canaryReady bool, spec string) (string, *unstructured.Unstructured) {
	t.Helper()
	ns := namespace(t, "lua")
	backend(t, ns, stableName, 8000, true)
	backend(t, ns, canaryName, 8000, canaryReady)
	create(t, ns, fromYAML(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: model-route}
spec:
  parentRefs: [{name: gw}]
  rules:
  - name: gpt4
    backendRefs:
    - {name: vllm-gpt4-v1, port: 8000, weight: 100}
`))
	ro := create(t, ns, fromYAML(t, `
apiVersion: rollouts.modelrollout.io/v1alpha1
kind: ModelRollout
metadata: {name: gpt4}
spec:
  routes: [{name: model-route}]
  stable: {name: vllm-gpt4-v1, port: 8000}
  canary: {name: vllm-gpt4-v2, port: 8000}
`+spec))
	return ns, ro
}

// expectHealth checks Argo CD's health of a live rollout; message "" means
// status.message.
func expectHealth(t *testing.T, obj *unstructured.Unstructured, status, message string) {
	t.Helper()
	if message == "" {
		message = stateOf(obj).Message
		if message == "" {
			t.Errorf("the rollout has no status.message: %s", stateOf(obj))
		}
	}
	hs := argoHealth(t, obj)
	if string(hs.Status) != status || hs.Message != message {
		t.Errorf("Argo CD health of %s: %s %q, want %s %q", stateOf(obj), hs.Status, hs.Message, status, message)
	}
}

// expectActions checks that Argo CD lists all actions for a live rollout and
// enables exactly the given ones.
func expectActions(t *testing.T, obj *unstructured.Unstructured, enabled ...string) {
	t.Helper()
	got := argoActions(t, obj)
	if len(got) != allActionsCount {
		t.Errorf("Argo CD lists %d actions, want %d: %v", len(got), allActionsCount, got)
	}
	var on []string
	for name, e := range got {
		if e {
			on = append(on, name)
		}
	}
	sort.Strings(on)
	sort.Strings(enabled)
	if !slices.Equal(on, enabled) {
		t.Errorf("Argo CD enables %v for %s, want %v", on, stateOf(obj), enabled)
	}
}

// act runs an action through Argo CD and returns the annotations its patch
// wrote; the patch must touch annotations only.
func act(t *testing.T, ns, action string) map[string]any {
	t.Helper()
	patch, err := runAction(t, rolloutGVR, ns, luaRolloutName, action)
	if err != nil {
		t.Fatalf("action %s: %v", action, err)
	}
	meta, _ := patch["metadata"].(map[string]any)
	if len(patch) != 1 || len(meta) != 1 || meta["annotations"] == nil {
		t.Fatalf("action %s patches more than annotations: %v", action, patch)
	}
	return meta["annotations"].(map[string]any)
}

// refused runs an action Argo CD's Lua refuses and checks that nothing was
// written.
func refused(t *testing.T, ns, action, want string) {
	t.Helper()
	// The operator may write status meanwhile; the action would write
	// metadata or spec.
	written := func() string {
		obj := live(t, rolloutGVR, ns, luaRolloutName)
		return fmt.Sprint(obj.GetAnnotations(), obj.GetLabels(), obj.GetGeneration())
	}
	before := written()
	_, err := runAction(t, rolloutGVR, ns, luaRolloutName, action)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("action %s: error %v, want one saying %q", action, err, want)
	}
	if after := written(); after != before {
		t.Errorf("the refused action %s wrote the rollout: %s, was %s", action, after, before)
	}
}

// weightsOf returns name=weight of the backendRefs of a rule of a route.
func weightsOf(obj *unstructured.Unstructured, rule string) map[string]int64 {
	out := map[string]int64{}
	rules, _, _ := unstructured.NestedSlice(obj.Object, "spec", "rules")
	for _, r := range rules {
		rm, _ := r.(map[string]any)
		if rm["name"] != rule {
			continue
		}
		refs, _ := rm["backendRefs"].([]any)
		for _, ref := range refs {
			b, _ := ref.(map[string]any)
			w := int64(1)
			switch x := b["weight"].(type) {
			case int64:
				w = x
			case float64:
				w = int64(x)
			}
			out[b["name"].(string)] = w
		}
	}
	return out
}

// waitWeights waits until the rule of the route holds the weights.
func waitWeights(t *testing.T, ns, route, rule string, want map[string]int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("route %s rule %s at %v", route, rule, want), func() (bool, string) {
		got := weightsOf(live(t, routeGVR, ns, route), rule)
		return maps.Equal(got, want), fmt.Sprint(got)
	})
}

func split(canary int64) map[string]int64 {
	return map[string]int64{stableName: 100 - canary, canaryName: canary}
}

func annotationOf(obj *unstructured.Unstructured, key string) string {
	return obj.GetAnnotations()[key]
}

func statusString(obj *unstructured.Unstructured, field string) string {
	s, _, _ := unstructured.NestedString(obj.Object, "status", field)
	return s
}

// TestActionsMoveTheRollout walks one rollout through every step by Argo
// CD's actions: pause, resume, promote, skip-gates, promote-full; each
// action's result is patched onto the live rollout and the operator acts on
// it as docs/reference/actions.md says.
func TestActionsMoveTheRollout(t *testing.T) {
	cluster(t)
	t.Parallel()
	ns, _ := rolloutScenario(t, true, `
  steps:
  - {weight: 10, pause: 1h}
  - {weight: 50}
  - {weight: 75, pause: 1h}
  - {weight: 100, pause: 0s}
`)
	// Progressing: a timed step.
	ro := waitRollout(t, ns, luaRolloutName, "Progressing", 0)
	waitWeights(t, ns, luaRouteName, "gpt4", split(10))
	expectHealth(t, ro, "Progressing", "")
	expectActions(t, ro, "promote", "pause", "abort", "promote-full", "skip-gates")

	// pause holds the rollout at its step: Suspended, and the overrides are
	// refused while it holds.
	if a := act(t, ns, "pause"); a[annPaused] != "true" {
		t.Fatalf("pause wrote %v", a)
	}
	ro = waitRollout(t, ns, luaRolloutName, "Paused", 0)
	expectHealth(t, ro, "Suspended", "")
	expectActions(t, ro, "promote", "resume", "abort")
	refused(t, ns, "skip-gates", "an override does not lift a hold")
	refused(t, ns, "promote-full", "an override does not lift a hold")
	waitWeights(t, ns, luaRouteName, "gpt4", split(10))

	// resume removes the annotation: Progressing again at the same step.
	if a := act(t, ns, "resume"); len(a) != 1 || a[annPaused] != nil {
		t.Fatalf("resume wrote %v, want the paused annotation removed", a)
	}
	ro = waitRollout(t, ns, luaRolloutName, "Progressing", 0)
	if _, ok := ro.GetAnnotations()[annPaused]; ok {
		t.Errorf("the paused annotation is still there")
	}
	expectHealth(t, ro, "Progressing", "")

	// promote ends the step's pause; the next step (no pause) waits for a
	// promote: Suspended.
	token := act(t, ns, "promote")[annPromote]
	if token == nil || token == "" {
		t.Fatalf("promote wrote no token")
	}
	ro = waitRollout(t, ns, luaRolloutName, "Paused", 1)
	waitWeights(t, ns, luaRouteName, "gpt4", split(50))
	if got := statusString(ro, "lastHandledPromote"); got != token {
		t.Errorf("status.lastHandledPromote %q, want the action's token %q", got, token)
	}
	expectHealth(t, ro, "Suspended", "")
	expectActions(t, ro, "promote", "pause", "abort", "promote-full", "skip-gates")

	// skip-gates advances the current step now, once, and is recorded as an
	// override.
	a := act(t, ns, "skip-gates")
	if a[annReason] != "skip-gates action from Argo CD" || a[annRequestedBy] == nil || a[annSkipGates] == nil {
		t.Errorf("skip-gates wrote %v", a)
	}
	ro = waitRollout(t, ns, luaRolloutName, "Progressing", 2)
	waitWeights(t, ns, luaRouteName, "gpt4", split(75))
	expectOverride(t, ro, "SkipGates", a[annSkipGates])
	expectHealth(t, ro, "Progressing", "")

	// promote-full moves the canary to the last step; its pause is 0s, so the
	// rollout succeeds.
	a = act(t, ns, "promote-full")
	if a[annReason] != "promote-full action from Argo CD" || a[annPromoteFull] == nil {
		t.Errorf("promote-full wrote %v", a)
	}
	ro = waitRollout(t, ns, luaRolloutName, "Succeeded", -2)
	waitWeights(t, ns, luaRouteName, "gpt4", split(100))
	expectOverride(t, ro, "PromoteFull", a[annPromoteFull])
	expectHealth(t, ro, "Healthy", "")
	expectActions(t, ro)
	refused(t, ns, "promote", "only a Progressing or Paused rollout can be promoted; this one is Succeeded")
	refused(t, ns, "abort", "only a Waiting, Progressing or Paused rollout can be aborted; this one is Succeeded")
	refused(t, ns, "retry", "only a RolledBack rollout can be retried; this one is Succeeded")
}

// expectOverride checks that status.overrides records an override of kind
// with the token.
func expectOverride(t *testing.T, ro *unstructured.Unstructured, kind string, token any) {
	t.Helper()
	records, _, _ := unstructured.NestedSlice(ro.Object, "status", "overrides")
	for _, r := range records {
		m, _ := r.(map[string]any)
		if m["kind"] == kind && m["token"] == token {
			return
		}
	}
	t.Errorf("status.overrides has no %s with token %v: %v", kind, token, records)
}

// TestAbortAndRetry aborts a rollout and retries it through Argo CD's
// actions.
func TestAbortAndRetry(t *testing.T) {
	cluster(t)
	t.Parallel()
	ns, _ := rolloutScenario(t, true, `
  steps:
  - {weight: 10, pause: 1h}
  - {weight: 100, pause: 1h}
`)
	waitRollout(t, ns, luaRolloutName, "Progressing", 0)
	waitWeights(t, ns, luaRouteName, "gpt4", split(10))

	a := act(t, ns, "abort")
	if a[annAbort] == nil || a[annAbortReason] != "aborted from Argo CD" {
		t.Errorf("abort wrote %v", a)
	}
	ro := waitRollout(t, ns, luaRolloutName, "RolledBack", -2)
	waitWeights(t, ns, luaRouteName, "gpt4", split(0))
	if got := statusString(ro, "lastHandledAbort"); got != a[annAbort] {
		t.Errorf("status.lastHandledAbort %q, want the action's token %v", got, a[annAbort])
	}
	expectHealth(t, ro, "Degraded", "")
	expectActions(t, ro, "retry")
	refused(t, ns, "promote", "only a Progressing or Paused rollout can be promoted; this one is RolledBack")

	a = act(t, ns, "retry")
	if a[annRetry] == nil {
		t.Errorf("retry wrote %v", a)
	}
	ro = waitRollout(t, ns, luaRolloutName, "Progressing", 0)
	waitWeights(t, ns, luaRouteName, "gpt4", split(10))
	expectHealth(t, ro, "Progressing", "")
	expectActions(t, ro, "promote", "pause", "abort", "promote-full", "skip-gates")
}

// TestWaitingAndStalled checks a rollout whose canary has no ready endpoint:
// before the controller wrote any status, while it waits, with a pause
// requested, and once its progress deadline passed.
func TestWaitingAndStalled(t *testing.T) {
	cluster(t)
	t.Parallel()
	ns, created := rolloutScenario(t, false, `
  steps:
  - {weight: 10, pause: 1h}
  - {weight: 100, pause: 1h}
`)
	// The object as the API server created it has no status yet.
	expectHealth(t, created, "Progressing", "Waiting for the controller to report status")
	expectActions(t, created, "pause", "abort")

	ro := waitRollout(t, ns, luaRolloutName, "Waiting", -2)
	expectHealth(t, ro, "Progressing", "")
	expectActions(t, ro, "pause", "abort")
	refused(t, ns, "promote", "only a Progressing or Paused rollout can be promoted; this one is Waiting")

	// A pause asked for while waiting: Suspended at once.
	act(t, ns, "pause")
	ro = live(t, rolloutGVR, ns, luaRolloutName)
	if hs := argoHealth(t, ro); hs.Status != "Suspended" {
		t.Errorf("health after pause while Waiting: %s %q, want Suspended", hs.Status, hs.Message)
	}
	expectActions(t, ro, "resume", "abort")
	act(t, ns, "resume")

	// The progress deadline passes while waiting: Degraded.
	mergePatch(t, rolloutGVR, ns, luaRolloutName, `{"spec":{"progressDeadline":"1s"}}`)
	waitFor(t, "Stalled", func() (bool, string) {
		ro = live(t, rolloutGVR, ns, luaRolloutName)
		return stateOf(ro).Settled && conditionTrue(ro, "Stalled"), stateOf(ro).String()
	})
	expectHealth(t, ro, "Degraded", "")
	expectActions(t, ro, "pause", "abort")
}

func conditionTrue(obj *unstructured.Unstructured, condition string) bool {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == condition && m["status"] == "True" {
			return true
		}
	}
	return false
}

// TestIdleAndSpecPaused checks a rollout without a canary and one paused by
// spec.paused (Git's hold, which resume cannot lift).
func TestIdleAndSpecPaused(t *testing.T) {
	cluster(t)
	t.Parallel()
	ns, _ := rolloutScenario(t, true, `
  paused: true
  steps:
  - {weight: 10, pause: 1h}
  - {weight: 100, pause: 1h}
`)
	ro := waitRollout(t, ns, luaRolloutName, "Paused", -2)
	expectHealth(t, ro, "Suspended", "")
	expectActions(t, ro, "promote", "pause", "abort")
	refused(t, ns, "resume", "not paused by the rollouts.modelrollout.io/paused annotation")
	refused(t, ns, "skip-gates", "paused by spec.paused")

	// Without a canary: Idle, Healthy, nothing to do.
	mergePatch(t, rolloutGVR, ns, luaRolloutName, `{"spec":{"canary":null,"paused":false}}`)
	ro = waitRollout(t, ns, luaRolloutName, "Idle", -2)
	expectHealth(t, ro, "Healthy", "")
	expectActions(t, ro)
	refused(t, ns, "abort", "this one is Idle")
}
