package controllers

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// These specs run config/argocd/health.lua and the custom actions in
// config/argocd/actions the way Argo CD runs resource customizations from
// argocd-cm: a Lua VM without the standard libraries (Argo CD opens them
// only for its built-in scripts or with resource.customizations.useOpenLibs),
// so only package, base and table, plus a reduced os module (time and date)
// reachable through require("os"); the live object as the global table
// `obj`; and the script's return value read back. The objects come from the
// API server while the controller drives them through every phase.

// argoDir is the folder of the Argo CD customizations.
var argoDir = filepath.Join("..", "config", "argocd")

func readLua(rel string) string {
	b, err := os.ReadFile(filepath.Join(argoDir, rel))
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

// newArgoLuaState opens what Argo CD gives custom resource scripts.
func newArgoLuaState() *lua.LState {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	open := func(name string, fn lua.LGFunction) {
		L.Push(L.NewFunction(fn))
		L.Push(lua.LString(name))
		L.Call(1, 0)
	}
	open(lua.LoadLibName, lua.OpenPackage)
	open(lua.BaseLibName, lua.OpenBase)
	open(lua.TabLibName, lua.OpenTable)

	// The os module offers time and date only, and only through
	// require("os"): there is no os global, no execute, exit, getenv,
	// remove, rename or tmpname.
	open(lua.OsLibName, lua.OpenOs)
	full := L.GetGlobal(lua.OsLibName).(*lua.LTable)
	safe := map[string]lua.LValue{"time": full.RawGetString("time"), "date": full.RawGetString("date")}
	L.SetGlobal(lua.OsLibName, lua.LNil)
	loaded := L.GetField(L.Get(lua.RegistryIndex), "_LOADED").(*lua.LTable)
	loaded.RawSetString(lua.OsLibName, lua.LNil)
	L.PreloadModule(lua.OsLibName, func(L *lua.LState) int {
		mod := L.NewTable()
		for name, fn := range safe {
			mod.RawSetString(name, fn)
		}
		L.Push(mod)
		return 1
	})
	return L
}

// toLua converts a JSON-like value (an unstructured object) to Lua: objects
// and arrays become tables (arrays indexed from 1), numbers LNumber.
func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case int64:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case json.Number:
		f, err := x.Float64()
		Expect(err).NotTo(HaveOccurred())
		return lua.LNumber(f)
	case map[string]any:
		t := L.NewTable()
		for k, sub := range x {
			t.RawSetString(k, toLua(L, sub))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, sub := range x {
			t.Append(toLua(L, sub))
		}
		return t
	}
	Fail(fmt.Sprintf("cannot convert %T to Lua", v))
	return lua.LNil
}

// fromLua converts a Lua value back to JSON-like Go values. A table with
// only the keys 1..n is an array; an empty table takes the shape of the
// value it replaces (orig), an object when there was none.
func fromLua(v lua.LValue, orig any) any {
	switch x := v.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		return bool(x)
	case lua.LString:
		return string(x)
	case lua.LNumber:
		f := float64(x)
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f)
		}
		return f
	case *lua.LTable:
		n := x.MaxN()
		count := 0
		x.ForEach(func(lua.LValue, lua.LValue) { count++ })
		origSlice, origIsSlice := orig.([]any)
		if (n > 0 && n == count) || (count == 0 && origIsSlice) {
			out := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				var o any
				if i-1 < len(origSlice) {
					o = origSlice[i-1]
				}
				out = append(out, fromLua(x.RawGetInt(i), o))
			}
			return out
		}
		origMap, _ := orig.(map[string]any)
		out := map[string]any{}
		x.ForEach(func(k, val lua.LValue) {
			key := k.String()
			out[key] = fromLua(val, origMap[key])
		})
		return out
	}
	Fail(fmt.Sprintf("cannot convert Lua %s to Go", v.Type()))
	return nil
}

// runLua runs a script with obj set to the object and returns its result.
func runLua(script string, obj map[string]any) (lua.LValue, error) {
	L := newArgoLuaState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return nil, err
	}
	return L.Get(-1), nil
}

type argoHealth struct {
	Status  string
	Message string
}

// health runs health.lua on an object.
func health(obj map[string]any) argoHealth {
	ret, err := runLua(readLua("health.lua"), obj)
	Expect(err).NotTo(HaveOccurred())
	t, ok := ret.(*lua.LTable)
	Expect(ok).To(BeTrue(), "health.lua must return a table, returned %s", ret.Type())
	h := argoHealth{Status: lua.LVAsString(t.RawGetString("status")), Message: lua.LVAsString(t.RawGetString("message"))}
	Expect(h.Status).To(BeElementOf("Healthy", "Progressing", "Suspended", "Degraded", "Missing", "Unknown"))
	return h
}

// enabledActions runs actions/discovery.lua and lists the enabled actions.
func enabledActions(obj map[string]any) []string {
	ret, err := runLua(readLua(filepath.Join("actions", "discovery.lua")), obj)
	Expect(err).NotTo(HaveOccurred())
	t, ok := ret.(*lua.LTable)
	Expect(ok).To(BeTrue(), "discovery.lua must return a table")
	var enabled, all []string
	t.ForEach(func(k, v lua.LValue) {
		name := k.String()
		all = append(all, name)
		action, ok := v.(*lua.LTable)
		Expect(ok).To(BeTrue(), "action %s must be a table", name)
		if !lua.LVAsBool(action.RawGetString("disabled")) {
			enabled = append(enabled, name)
		}
	})
	sort.Strings(all)
	Expect(all).To(Equal([]string{"abort", "pause", "promote", "promote-full", "resume", "retry", "skip-gates"}))
	for _, name := range all {
		_, err := os.Stat(filepath.Join(argoDir, "actions", name, "action.lua"))
		Expect(err).NotTo(HaveOccurred(), "discovery lists %s but it has no action.lua", name)
	}
	sort.Strings(enabled)
	return enabled
}

// runAction runs actions/<name>/action.lua on an object and returns the
// object it returns.
func runAction(name string, obj map[string]any) (map[string]any, error) {
	ret, err := runLua(readLua(filepath.Join("actions", name, "action.lua")), obj)
	if err != nil {
		return nil, err
	}
	out, ok := fromLua(ret, obj).(map[string]any)
	Expect(ok).To(BeTrue(), "action %s must return the object", name)
	return out, nil
}

// liveRollout reads a rollout from the API server as unstructured, the
// form in which Argo CD hands live objects to Lua.
func liveRollout(ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(rolloutsv1.GroupVersion.WithKind("ModelRollout"))
	Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, u)).To(Succeed())
	return u
}

// applyAction runs an action on the live rollout and applies the result as
// Argo CD does: a JSON merge patch from the live object to the returned one.
// It returns the patch, which must touch nothing but annotations.
func applyAction(ns, name, action string) map[string]any {
	live := liveRollout(ns, name)
	out, err := runAction(action, live.Object)
	Expect(err).NotTo(HaveOccurred())
	before, err := json.Marshal(live.Object)
	Expect(err).NotTo(HaveOccurred())
	after, err := json.Marshal(out)
	Expect(err).NotTo(HaveOccurred())
	patch, err := jsonpatch.CreateMergePatch(before, after)
	Expect(err).NotTo(HaveOccurred())
	var p map[string]any
	Expect(json.Unmarshal(patch, &p)).To(Succeed())
	Expect(p).To(HaveLen(1), "action %s changes only metadata.annotations, got %s", action, patch)
	Expect(p["metadata"]).To(HaveLen(1), "action %s changes only metadata.annotations, got %s", action, patch)
	Expect(p["metadata"]).To(HaveKey("annotations"))
	Expect(k8sClient.Patch(suiteCtx, live, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
	return p["metadata"].(map[string]any)["annotations"].(map[string]any)
}

// conditionReasonOf is the reason of a condition of a live rollout, "" when
// it is absent.
func conditionReasonOf(ns, name, conditionType string) string {
	c := meta.FindStatusCondition(getRollout(ns, name).Status.Conditions, conditionType)
	if c == nil {
		return ""
	}
	return c.Reason
}

func healthOf(ns, name string) func() argoHealth {
	return func() argoHealth { return health(liveRollout(ns, name).Object) }
}

// liveScenario drives a fresh rollout into one phase.
type liveScenario struct {
	name  string
	phase rolloutsv1.Phase
	setup func(ns string)
	// ready is an extra condition on the live rollout, e.g. a Stalled
	// condition that comes a moment after the phase.
	ready func(ns string) bool
}

// liveScenarios are the phases the health check and kstatus are tested in,
// each on a rollout named gpt4 that the controller drove there.
func liveScenarios() []liveScenario {
	return []liveScenario{
		{name: "Waiting: the canary has no ready endpoints", phase: rolloutsv1.PhaseWaiting, setup: func(ns string) {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", false)
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		}, ready: func(ns string) bool {
			return conditionReasonOf(ns, "gpt4", rolloutsv1.ConditionCanaryAvailable) == rolloutsv1.ReasonNoReadyEndpoints
		}},
		{name: "Progressing: a timed step", phase: rolloutsv1.PhaseProgressing, setup: func(ns string) {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		}},
		{name: "Paused: a step without pause waits for a promote", phase: rolloutsv1.PhasePaused, setup: func(ns string) {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, ""), step(100, "1h")))).To(Succeed())
		}},
		{name: "Paused: spec.paused", phase: rolloutsv1.PhasePaused, setup: func(ns string) {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
			ro.Spec.Paused = true
			Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		}},
		{name: "Succeeded", phase: rolloutsv1.PhaseSucceeded, setup: func(ns string) {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(50, "1s"), step(100, "1s")))).To(Succeed())
		}},
		{name: "Idle: no canary", phase: rolloutsv1.PhaseIdle, setup: func(ns string) {
			createRoute(ns, "header-routing.yaml")
			ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
			ro.Spec.Canary = nil
			Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		}},
		{name: "RolledBack: aborted", phase: rolloutsv1.PhaseRolledBack, setup: func(ns string) {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
			Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseProgressing))
			annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationAbort: "a1", rolloutsv1.AnnotationAbortReason: "bad outputs"})
		}},
		{name: "Stalled: the progress deadline passed while waiting", phase: rolloutsv1.PhaseWaiting, setup: func(ns string) {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", false)
			ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
			deadline := rolloutsv1.Duration("1s")
			ro.Spec.ProgressDeadline = &deadline
			Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		}, ready: func(ns string) bool { return conditionReasonOf(ns, "gpt4", rolloutsv1.ConditionStalled) != "" }},
	}
}

// reach runs a scenario and waits until the controller has settled the
// rollout in its phase, for the current generation.
func (s liveScenario) reach(ns string) *unstructured.Unstructured {
	s.setup(ns)
	Eventually(func(g Gomega) {
		ro := getRollout(ns, "gpt4")
		g.Expect(ro.Status.Phase).To(Equal(s.phase))
		g.Expect(ro.Status.ObservedGeneration).To(Equal(ro.Generation))
		if s.ready != nil {
			g.Expect(s.ready(ns)).To(BeTrue())
		}
	}).Should(Succeed())
	return liveRollout(ns, "gpt4")
}

// withGenerationLag returns a copy of a live object whose spec the
// controller has not observed yet, as right after `kubectl apply`.
func withGenerationLag(u *unstructured.Unstructured) map[string]any {
	c := u.DeepCopy()
	c.SetGeneration(c.GetGeneration() + 1)
	return c.Object
}

var _ = Describe("Argo CD health check and actions", func() {
	var (
		ns string
		op *operator
	)
	BeforeEach(func() {
		ns = newNamespace()
		op = startOperator()
	})
	AfterEach(func() {
		op.stop()
	})

	want := map[string]string{
		"Waiting: the canary has no ready endpoints":          "Progressing",
		"Progressing: a timed step":                           "Progressing",
		"Paused: a step without pause waits for a promote":    "Suspended",
		"Paused: spec.paused":                                 "Suspended",
		"Succeeded":                                           "Healthy",
		"Idle: no canary":                                     "Healthy",
		"RolledBack: aborted":                                 "Degraded",
		"Stalled: the progress deadline passed while waiting": "Degraded",
	}
	for _, s := range liveScenarios() {
		It("reports "+want[s.name]+" when "+s.name, func() {
			live := s.reach(ns)
			h := health(live.Object)
			Expect(h.Status).To(Equal(want[s.name]))
			msg, _, _ := unstructured.NestedString(live.Object, "status", "message")
			Expect(msg).NotTo(BeEmpty())
			Expect(h.Message).To(Equal(msg), "the message is status.message")

			// Whatever the phase, a spec the controller has not observed yet
			// is Progressing.
			lag := health(withGenerationLag(live))
			Expect(lag.Status).To(Equal("Progressing"))
			Expect(lag.Message).To(ContainSubstring("observe generation"))
		})
	}

	It("reports Progressing before the controller wrote any status, and Suspended as soon as a pause is requested", func() {
		op.stop()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Expect(health(liveRollout(ns, "gpt4").Object).Status).To(Equal("Progressing"))
		op = startOperator()

		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseProgressing))
		requested := liveRollout(ns, "gpt4").DeepCopy()
		requested.SetAnnotations(map[string]string{rolloutsv1.AnnotationPaused: "true"})
		Expect(health(requested.Object).Status).To(Equal("Suspended"))
	})

	It("offers each action only in the phases where it applies", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
		ro.Spec.Canary = nil
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseIdle))
		Expect(enabledActions(liveRollout(ns, "gpt4").Object)).To(BeEmpty(), "nothing to steer while Idle")
		for _, a := range []string{"promote", "promote-full", "skip-gates", "pause", "abort", "retry"} {
			_, err := runAction(a, liveRollout(ns, "gpt4").Object)
			Expect(err).To(MatchError(ContainSubstring("Idle")), "action %s refuses an Idle rollout", a)
		}

		// A new canary the controller has not started yet counts as Waiting.
		op.stop()
		ro = getRollout(ns, "gpt4")
		ro.Spec.Canary = &rolloutsv1.BackendRef{Name: "vllm-gpt4-v2", Port: ro.Spec.Stable.Port}
		Expect(k8sClient.Update(suiteCtx, ro)).To(Succeed())
		Expect(enabledActions(liveRollout(ns, "gpt4").Object)).To(Equal([]string{"abort", "pause"}))
		op = startOperator()

		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseProgressing))
		Expect(enabledActions(liveRollout(ns, "gpt4").Object)).To(Equal([]string{"abort", "pause", "promote", "promote-full", "skip-gates"}))
		_, err := runAction("retry", liveRollout(ns, "gpt4").Object)
		Expect(err).To(MatchError(ContainSubstring("only a RolledBack rollout can be retried")))
		_, err = runAction("resume", liveRollout(ns, "gpt4").Object)
		Expect(err).To(HaveOccurred())
	})

	It("promotes a step that waits for a promote", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, ""), step(50, ""), step(100, "1h")))).To(Succeed())
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhasePaused))
		Expect(enabledActions(liveRollout(ns, "gpt4").Object)).To(Equal([]string{"abort", "pause", "promote", "promote-full", "skip-gates"}))

		set := applyAction(ns, "gpt4", "promote")
		token, _ := set[rolloutsv1.AnnotationPromote].(string)
		Expect(token).To(MatchRegexp(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`), "an RFC 3339 UTC timestamp")
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 50, "vllm-gpt4-v2": 50}))
		Eventually(func() string { return getRollout(ns, "gpt4").Status.LastHandledPromote }).Should(Equal(token))
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhasePaused))
		Expect(getRollout(ns, "gpt4").Status.Step).To(Equal("2/3"))

		// A second promote, even within the same second, is a new token.
		second := applyAction(ns, "gpt4", "promote")[rolloutsv1.AnnotationPromote]
		Expect(second).NotTo(Equal(token))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Step }).Should(Equal("3/3"))
	})

	It("skips a step's gates and promotes full, recording who asked and why; neither is offered while paused or where it has nothing to do", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, ""), step(25, ""), step(50, ""), step(100, "1h")))).To(Succeed())
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhasePaused))

		set := applyAction(ns, "gpt4", "skip-gates")
		Expect(set).To(HaveKeyWithValue(rolloutsv1.AnnotationPromoteReason, "skip-gates action from Argo CD"))
		Expect(set).To(HaveKeyWithValue(rolloutsv1.AnnotationRequestedBy, "an Argo CD user (see the Application's ResourceActionRan event)"))
		token, _ := set[rolloutsv1.AnnotationSkipGates].(string)
		Expect(token).To(MatchRegexp(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 75, "vllm-gpt4-v2": 25}))
		Eventually(func() []rolloutsv1.OverrideRecord { return getRollout(ns, "gpt4").Status.Overrides }).Should(HaveLen(1))
		o := getRollout(ns, "gpt4").Status.Overrides[0]
		Expect([]any{o.Kind, o.Token, o.Step, o.Reason}).To(Equal([]any{rolloutsv1.OverrideSkipGates, token, "1/4", "skip-gates action from Argo CD"}))
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElement("GatesSkipped"))

		// Held by the paused annotation: no override is offered, and the
		// scripts refuse.
		applyAction(ns, "gpt4", "pause")
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Message }).Should(HavePrefix("Paused at step 2/4"))
		Expect(enabledActions(liveRollout(ns, "gpt4").Object)).To(Equal([]string{"abort", "promote", "resume"}))
		for _, a := range []string{"promote-full", "skip-gates"} {
			_, err := runAction(a, liveRollout(ns, "gpt4").Object)
			Expect(err).To(MatchError(ContainSubstring("an override does not lift a hold")), a)
		}
		applyAction(ns, "gpt4", "resume")
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhasePaused), "step 2 waits for a promote")
		Eventually(func() []string { return enabledActions(liveRollout(ns, "gpt4").Object) }).Should(Equal([]string{"abort", "pause", "promote", "promote-full", "skip-gates"}))

		set = applyAction(ns, "gpt4", "promote-full")
		Expect(set).To(HaveKeyWithValue(rolloutsv1.AnnotationPromoteReason, "promote-full action from Argo CD"))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
		Eventually(func() string { return getRollout(ns, "gpt4").Status.LastHandledPromoteFull }).Should(Equal(set[rolloutsv1.AnnotationPromoteFull]))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Step).To(Equal("4/4"))
		Expect(got.Status.Overrides).To(HaveLen(2))
		Expect(got.Status.Overrides[1].Kind).To(Equal(rolloutsv1.OverridePromoteFull))

		// At the last step there is nothing to promote fully to.
		Expect(enabledActions(liveRollout(ns, "gpt4").Object)).To(Equal([]string{"abort", "pause", "promote", "skip-gates"}))
		_, err := runAction("promote-full", liveRollout(ns, "gpt4").Object)
		Expect(err).To(MatchError(ContainSubstring("already at the last step")))
	})

	It("pauses and resumes through the paused annotation", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseProgressing))

		Expect(applyAction(ns, "gpt4", "pause")).To(Equal(map[string]any{rolloutsv1.AnnotationPaused: "true"}))
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhasePaused))
		Eventually(healthOf(ns, "gpt4")).Should(HaveField("Status", "Suspended"))
		Expect(enabledActions(liveRollout(ns, "gpt4").Object)).To(Equal([]string{"abort", "promote", "resume"}))

		Expect(applyAction(ns, "gpt4", "resume")).To(Equal(map[string]any{rolloutsv1.AnnotationPaused: nil}))
		Expect(getRollout(ns, "gpt4").Annotations).NotTo(HaveKey(rolloutsv1.AnnotationPaused))
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseProgressing))
		Eventually(healthOf(ns, "gpt4")).Should(HaveField("Status", "Progressing"))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
	})

	It("aborts, then retries from step 1", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))

		set := applyAction(ns, "gpt4", "abort")
		Expect(set).To(HaveKeyWithValue(rolloutsv1.AnnotationAbortReason, "aborted from Argo CD"))
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonAborted))
		Expect(got.Status.Rollback.Message).To(Equal("aborted from Argo CD"))
		Expect(got.Status.LastHandledAbort).To(Equal(set[rolloutsv1.AnnotationAbort]))
		Eventually(healthOf(ns, "gpt4")).Should(HaveField("Status", "Degraded"))
		Expect(enabledActions(liveRollout(ns, "gpt4").Object)).To(Equal([]string{"retry"}))

		set = applyAction(ns, "gpt4", "retry")
		Eventually(func() string { return getRollout(ns, "gpt4").Status.LastHandledRetry }).Should(Equal(set[rolloutsv1.AnnotationRetry]))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseProgressing))
		Expect(getRollout(ns, "gpt4").Status.Step).To(Equal("1/2"))
		Eventually(healthOf(ns, "gpt4")).Should(HaveField("Status", "Progressing"))
	})
})

var _ = Describe("Argo CD Lua sandbox", func() {
	It("is as strict as Argo CD's for argocd-cm scripts", func() {
		obj := map[string]any{"metadata": map[string]any{"name": "x"}}
		_, err := runLua(`return string.format("%d", 1)`, obj)
		Expect(err).To(HaveOccurred(), "no string library")
		_, err = runLua(`return math.floor(1.5)`, obj)
		Expect(err).To(HaveOccurred(), "no math library")
		_, err = runLua(`return os.date("!%Y")`, obj)
		Expect(err).To(HaveOccurred(), "no os global")
		ret, err := runLua(`local os = require("os"); return {os.date("!%Y"), os.execute == nil, os.getenv == nil}`, obj)
		Expect(err).NotTo(HaveOccurred())
		Expect(fromLua(ret, nil)).To(Equal([]any{time.Now().UTC().Format("2006"), true, true}))
		ret, err = runLua(`return obj.metadata.name .. tostring(8000)`, obj)
		Expect(err).NotTo(HaveOccurred())
		Expect(ret.String()).To(Equal("x8000"))
	})
})
