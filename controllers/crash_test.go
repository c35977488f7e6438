package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Durable intent (issue 9): every transition of a rollout is a sequence of
// writes (status patch, route patch, finalizer patch). Whatever write fails,
// and whether the operator then goes on or dies with it, the next operator
// must bring the routes to exactly what status says, and status to where
// the transition leads: no weight on a backend that is neither stable nor
// the current canary, every retired backend at 0, and no failed write of
// the rollout's own mistaken for another writer's drift.
//
// For each transition the suite first counts the writes it makes without a
// fault (C), then, for every N from 1 to min(C, crashMaxWrites):
//   (a) fails the N-th write with an API error; the operator goes on;
//   (b) fails the N-th write and cancels the operator's manager (a crash);
//   (c) lets the N-th write land but answers it with an error, as when the
//       response is lost (a timeout); the operator goes on;
// and finally starts a clean operator and checks every case.
//
// To keep the run short, all cases of one transition live side by side in
// their own namespaces: one operator sets them all up, one measures the
// fault-free count and runs every (a) and (c) case at once (each namespace
// faults at its own N), and each (b) case gets its own crashing operator
// that sees only its namespace. One clean operator then recovers them all.
// A write number that a run does not reach (the fault-free count included a
// write from a stale read) is reported, not failed.

// crashMaxWrites caps the N of the injected fault.
const crashMaxWrites = 6

// errInjected is what a faulted write returns: what a client sees when the
// API server is unavailable.
func errInjected(desc string) error {
	return apierrors.NewServiceUnavailable("injected fault at write " + desc)
}

// faultPlan counts the reconciler's writes per namespace and fails the N-th
// write of an armed namespace; in crash mode it then cancels the operator
// and fails every later write, as a dead process writes nothing.
type faultPlan struct {
	mu sync.Mutex
	// only, when set, hides every ModelRollout outside that namespace from
	// the operator, so that a crashing operator touches only its own case.
	only string
	// crashMode turns a fault into a crash.
	crashMode bool
	crash     func()
	crashed   bool
	target    map[string]int
	// lost lists the namespaces whose faulted write lands (variant c).
	lost map[string]bool
	// unreached lists the namespaces whose transition settled with fewer
	// writes than their N in this run (a stale read that did not recur).
	unreached map[string]bool
	last      time.Time
	counts    map[string]int
	fired     map[string]string
	writes    map[string][]string
}

func newFaultPlan() *faultPlan {
	return &faultPlan{target: map[string]int{}, lost: map[string]bool{}, unreached: map[string]bool{}, counts: map[string]int{}, fired: map[string]string{}, writes: map[string][]string{}}
}

// arm fails the n-th write in namespace ns (counted from the operator's
// start); with lost, the write lands first.
func (f *faultPlan) arm(ns string, n int, lost bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target[ns] = n
	f.lost[ns] = lost
}

// onCrash sets what a crash calls (in its own goroutine).
func (f *faultPlan) onCrash(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crash = fn
	if f.crashed {
		go fn()
	}
}

func (f *faultPlan) count(ns string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[ns]
}

// quiet is how long no write has been made.
func (f *faultPlan) quiet() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Since(f.last)
}

func (f *faultPlan) log(ns string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.writes[ns])
}

// unfired lists the namespaces whose fault has not fired yet. A namespace
// whose transition settled, quiet for a second, with fewer writes than its
// N counts as unreached instead: its write count varied from the fault-free
// run by a stale read.
func (f *faultPlan) unfired(nss []string, t crashTransition) func() []string {
	return func() []string {
		var out []string
		for _, ns := range nss {
			f.mu.Lock()
			_, fired := f.fired[ns]
			n, count, log := f.target[ns], f.counts[ns], slices.Clone(f.writes[ns])
			quiet := time.Since(f.last)
			f.mu.Unlock()
			if fired {
				continue
			}
			if count < n && quiet >= time.Second && crashCheck(ns, t.after, t.deleted) == nil {
				f.mu.Lock()
				f.unreached[ns] = true
				f.mu.Unlock()
				continue
			}
			out = append(out, fmt.Sprintf("%s (armed at %d, %d writes so far: %v)", ns, n, count, log))
		}
		return out
	}
}

func (f *faultPlan) wasUnreached(ns string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unreached[ns]
}

// write runs one write of the reconciler through the plan.
func (f *faultPlan) write(obj client.Object, what string, do func() error) error {
	ns := obj.GetNamespace()
	f.mu.Lock()
	if f.crashed {
		f.mu.Unlock()
		return errInjected("after the crash: " + what)
	}
	f.counts[ns]++
	f.last = time.Now()
	n := f.counts[ns]
	desc := fmt.Sprintf("%d %s", n, what)
	f.writes[ns] = append(f.writes[ns], desc)
	if t, ok := f.target[ns]; ok && t == n && f.lost[ns] {
		f.fired[ns] = desc + " (landed)"
		f.mu.Unlock()
		if err := do(); err != nil {
			return err
		}
		return errInjected(desc + " (the write landed; its response is lost)")
	}
	if t, ok := f.target[ns]; ok && t == n {
		f.fired[ns] = desc
		if f.crashMode {
			f.crashed = true
			if f.crash != nil {
				go f.crash() // never block the reconciler on the manager's shutdown
			}
		}
		f.mu.Unlock()
		return errInjected(desc)
	}
	f.mu.Unlock()
	return do()
}

func describeWrite(verb string, obj client.Object, sub string) string {
	kind := fmt.Sprintf("%T", obj)
	kind = kind[strings.LastIndex(kind, ".")+1:]
	if sub != "" {
		return fmt.Sprintf("%s %s/%s %s", verb, kind, obj.GetName(), sub)
	}
	return fmt.Sprintf("%s %s/%s", verb, kind, obj.GetName())
}

// withWatch lends the manager's client the Watch method the interceptor
// wants; the reconciler never watches through its client.
type withWatch struct{ client.Client }

func (withWatch) Watch(context.Context, client.ObjectList, ...client.ListOption) (watch.Interface, error) {
	return nil, errors.New("watch is not available through the reconciler's client")
}

// option installs the plan around the reconciler's client.
func (f *faultPlan) option(r *ModelRolloutReconciler, mgr ctrl.Manager) {
	r.Client = interceptor.NewClient(withWatch{mgr.GetClient()}, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*rolloutsv1.ModelRollout); ok && f.only != "" && key.Namespace != f.only {
				return apierrors.NewNotFound(schema.GroupResource{Group: rolloutsv1.GroupVersion.Group, Resource: "modelrollouts"}, key.Name)
			}
			return c.Get(ctx, key, obj, opts...)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			return f.write(obj, describeWrite("create", obj, ""), func() error { return c.Create(ctx, obj, opts...) })
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			return f.write(obj, describeWrite("update", obj, ""), func() error { return c.Update(ctx, obj, opts...) })
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			return f.write(obj, describeWrite("patch", obj, ""), func() error { return c.Patch(ctx, obj, patch, opts...) })
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			return f.write(obj, describeWrite("delete", obj, ""), func() error { return c.Delete(ctx, obj, opts...) })
		},
		SubResourceCreate: func(ctx context.Context, c client.Client, sub string, obj client.Object, subObj client.Object, opts ...client.SubResourceCreateOption) error {
			return f.write(obj, describeWrite("create", obj, sub), func() error { return c.SubResource(sub).Create(ctx, obj, subObj, opts...) })
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			return f.write(obj, describeWrite("update", obj, sub), func() error { return c.SubResource(sub).Update(ctx, obj, opts...) })
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			return f.write(obj, describeWrite("patch", obj, sub), func() error { return c.SubResource(sub).Patch(ctx, obj, patch, opts...) })
		},
	})
}

// crashState is where a rollout must stand: its status and what the managed
// rule gpt4 carries.
type crashState struct {
	phase  rolloutsv1.Phase
	step   string
	canary string // "" when status.canary must be unset
	weight int32
	route  map[string]int32
	// headerRoute says whether status.headerRoute is set (a step with a
	// match); the header routes must then be in place, and otherwise gone.
	headerRoute bool
}

// headerRoutesAgree checks that the header routes in ns are exactly those
// status.headerRoute asks for, as desiredHeaderRoutes builds them; with a
// deleted rollout (ro nil), that none is left.
func headerRoutesAgree(ns string, ro *rolloutsv1.ModelRollout, route *gatewayv1.HTTPRoute, rules []int) error {
	list := &gatewayv1.HTTPRouteList{}
	if err := k8sClient.List(suiteCtx, list, client.InNamespace(ns), client.MatchingLabels{rolloutsv1.LabelHeaderRouteOf: "gpt4"}); err != nil {
		return err
	}
	if ro == nil {
		if len(list.Items) > 0 {
			return fmt.Errorf("INVARIANT: the deleted rollout left its header route %s", list.Items[0].Name)
		}
		return nil
	}
	want, _ := plan.DesiredHeaderRoutes(ro, &ro.Status, []plan.ManagedRoute{{Route: route, Rules: rules}})
	for _, live := range list.Items {
		if _, ok := want[live.Name]; !ok {
			return fmt.Errorf("header route %s left behind (status.headerRoute %v, phase %s step %s)", live.Name, ro.Status.HeaderRoute, ro.Status.Phase, ro.Status.Step)
		}
	}
	for name, w := range want {
		i := slices.IndexFunc(list.Items, func(r gatewayv1.HTTPRoute) bool { return r.Name == name })
		if i < 0 {
			return fmt.Errorf("header route %s missing (status.headerRoute %v)", name, ro.Status.HeaderRoute)
		}
		if !plan.HeaderRouteUpToDate(&list.Items[i], w) {
			return fmt.Errorf("header route %s differs from what status derives", name)
		}
	}
	return nil
}

type crashTransition struct {
	steps []rolloutsv1.Step
	// v3 creates the vllm-gpt4-v3 backend.
	v3 bool
	// ready and prepare lead to before when set: wait for ready, then prepare.
	ready   *crashState
	prepare func(ns string)
	before  crashState
	trigger func(ns string, t crashTransition)
	// after is the state once the transition is done; deleted means the
	// rollout is gone and after.route is what it left behind.
	after   crashState
	deleted bool
}

const (
	crashRoute  = "model-header-routing"
	crashRule   = "gpt4"
	crashStable = "vllm-gpt4-v1"
)

// crashCheck returns nil when the rollout in ns is settled in the wanted
// state with routes and status in agreement, and what is wrong otherwise.
// Messages starting with "INVARIANT" name a broken guarantee, the others a
// state not reached (yet).
func crashCheck(ns string, want crashState, deleted bool) error {
	route := getRoute(ns, crashRoute)
	got := ruleWeights(route, crashRule)
	ro := &rolloutsv1.ModelRollout{}
	err := k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: "gpt4"}, ro)
	if deleted {
		switch {
		case err == nil:
			return fmt.Errorf("rollout not deleted yet (finalizers %v, phase %s); route %v", ro.Finalizers, ro.Status.Phase, got)
		case !apierrors.IsNotFound(err):
			return err
		}
		if !maps.Equal(got, want.route) {
			return fmt.Errorf("INVARIANT: the deleted rollout left rule %s at %v, want %v", crashRule, got, want.route)
		}
		if owner, ok := plan.RuleOwners(route)[crashRule]; ok && owner == "gpt4" {
			return fmt.Errorf("INVARIANT: the deleted rollout still owns rule %s (annotation %q)", crashRule, route.Annotations[rolloutsv1.AnnotationRuleOwners])
		}
		return headerRoutesAgree(ns, nil, route, nil)
	}
	if err != nil {
		return err
	}
	st := &ro.Status
	stable := ro.Spec.Stable
	if st.Stable != nil {
		stable = *st.Stable
	}
	started := st.CurrentStepIndex != nil || st.Phase == rolloutsv1.PhaseSucceeded || st.Phase == rolloutsv1.PhaseRolledBack
	canary := ""
	if st.Canary != nil {
		canary = st.Canary.Name
	}
	for _, rule := range ro.Spec.Routes[0].Rules {
		w := ruleWeights(route, string(rule))
		for _, name := range slices.Sorted(maps.Keys(w)) {
			if w[name] > 0 && name != stable.Name && name != canary {
				return fmt.Errorf("INVARIANT: rule %s gives %s weight %d, but it is neither stable %s nor canary %q (status %s %s canaryWeight %d, rule %v)",
					rule, name, w[name], stable.Name, canary, st.Phase, st.Step, st.CanaryWeight, w)
			}
		}
		for _, b := range st.Retiring {
			if w[b.Name] != 0 {
				return fmt.Errorf("rule %s: retiring %s still at %d (rule %v)", rule, b.Name, w[b.Name], w)
			}
		}
		if started && st.Canary != nil {
			cw, has := w[canary]
			if w[stable.Name] != 100-st.CanaryWeight || (has && cw != st.CanaryWeight) || (!has && st.CanaryWeight != 0) {
				return fmt.Errorf("rule %s carries %v, status says %s=%d %s=%d (%s %s)", rule, w, stable.Name, 100-st.CanaryWeight, canary, st.CanaryWeight, st.Phase, st.Step)
			}
		}
	}
	idx, problems := plan.ManagedRules(route, ro.Spec.Routes[0], stable, ro.Name)
	if len(problems) > 0 {
		return fmt.Errorf("managed rules do not resolve: %v", problems)
	}
	if err := headerRoutesAgree(ns, ro, route, idx); err != nil {
		return err
	}
	if (st.HeaderRoute != nil) != want.headerRoute {
		return fmt.Errorf("status.headerRoute is %v, want set: %v", st.HeaderRoute, want.headerRoute)
	}
	if ops, changes := plan.WeightOps(route, idx, plan.IntentOf(st)); len(ops) > 0 {
		return fmt.Errorf("route does not carry intentOf(status) %s: %s", plan.DescribeIntent(plan.IntentOf(st)), plan.DescribeChanges(changes))
	}
	if plan.IntentOf(st).Holds() && !meta.IsStatusConditionTrue(st.Conditions, rolloutsv1.ConditionRoutesApplied) {
		return fmt.Errorf("RoutesApplied is not True: %+v", meta.FindStatusCondition(st.Conditions, rolloutsv1.ConditionRoutesApplied))
	}
	if st.ObservedGeneration != ro.Generation {
		return fmt.Errorf("observedGeneration %d, generation %d", st.ObservedGeneration, ro.Generation)
	}
	if st.Phase != want.phase || st.Step != want.step || canary != want.canary || st.CanaryWeight != want.weight {
		return fmt.Errorf("status is %s step %q canary %q weight %d, want %s step %q canary %q weight %d (message %q)",
			st.Phase, st.Step, canary, st.CanaryWeight, want.phase, want.step, want.canary, want.weight, st.Message)
	}
	if len(st.Retiring) > 0 {
		return fmt.Errorf("still retiring %s", plan.BackendList(st.Retiring))
	}
	if (st.Phase == rolloutsv1.PhaseProgressing || st.Phase == rolloutsv1.PhasePaused) && st.StepStartedAt == nil {
		return errors.New("the step's clock has not started")
	}
	if !maps.Equal(got, want.route) {
		return fmt.Errorf("rule %s carries %v, want %v", crashRule, got, want.route)
	}
	owner := plan.RuleOwners(route)[crashRule]
	if plan.IntentOf(st).Holds() != (owner == "gpt4") {
		return fmt.Errorf("rule-owners annotation %q does not match intent %s", route.Annotations[rolloutsv1.AnnotationRuleOwners], plan.DescribeIntent(plan.IntentOf(st)))
	}
	if h := ruleWeights(route, "health"); !maps.Equal(h, map[string]int32{crashStable: 1}) {
		return fmt.Errorf("INVARIANT: unmanaged rule health changed: %v", h)
	}
	return nil
}

// crashCase is one namespace of a transition's run.
type crashCase struct {
	ns    string
	label string
	plan  *faultPlan
}

// settled lists what is still wrong in the cases (empty when all settled).
func settled(cases []crashCase, want crashState, deleted bool) func() []string {
	return func() []string {
		var out []string
		for _, c := range cases {
			if err := crashCheck(c.ns, want, deleted); err != nil {
				msg := fmt.Sprintf("%s [%s]: %v", c.label, c.ns, err)
				if c.plan != nil {
					msg += fmt.Sprintf("; faulty operator's writes: %v", c.plan.log(c.ns))
				}
				out = append(out, msg)
			}
		}
		return out
	}
}

func patchRollout(ns, body string) {
	ro := getRollout(ns, "gpt4")
	Expect(k8sClient.Patch(suiteCtx, ro, client.RawPatch(types.MergePatchType, []byte(body)))).To(Succeed())
}

func runCrashTransition(t crashTransition) {
	var running *operator
	DeferCleanup(func() {
		if running != nil {
			running.stop()
		}
	})
	start := func(opts ...func(*ModelRolloutReconciler, ctrl.Manager)) *operator {
		running = startOperator(opts...)
		return running
	}
	stop := func() {
		running.stop()
		running = nil
	}

	By("setting up 1 + 3x" + fmt.Sprint(crashMaxWrites) + " rollouts in the state before the transition")
	nss := make([]string, 1+3*crashMaxWrites)
	all := make([]crashCase, len(nss))
	for i := range nss {
		nss[i] = newNamespace()
		all[i] = crashCase{ns: nss[i]}
		createRoute(nss[i], "header-routing.yaml")
		createBackend(nss[i], "vllm-gpt4-v2", true)
		if t.v3 {
			createBackend(nss[i], "vllm-gpt4-v3", true)
		}
		Expect(k8sClient.Create(suiteCtx, newRollout(nss[i], t.steps...))).To(Succeed())
	}
	start()
	if t.ready != nil {
		Eventually(settled(all, *t.ready, false)).Should(BeEmpty())
		for _, ns := range nss {
			t.prepare(ns)
		}
	}
	Eventually(settled(all, t.before, false)).Should(BeEmpty())
	stop()
	// Drift reported while setting up, before any fault, is a product bug
	// too; it is told apart in the final report.
	setupDrift := map[string]bool{}
	for _, ns := range nss {
		setupDrift[ns] = slices.Contains(eventReasons(ns, "gpt4")(), "WeightDriftCorrected")
	}

	measure, aNs, bNs, cNs := nss[0], nss[1:1+crashMaxWrites], nss[1+crashMaxWrites:1+2*crashMaxWrites], nss[1+2*crashMaxWrites:]

	By("counting the writes of the transition without a fault")
	fa := newFaultPlan()
	start(fa.option)
	t.trigger(measure, t)
	Eventually(settled([]crashCase{{ns: measure, label: "fault-free", plan: fa}}, t.after, t.deleted)).Should(BeEmpty())
	// A reconcile from a stale cache may still write (and fail) once.
	Eventually(fa.quiet).Should(BeNumerically(">=", time.Second), "the transition is over once it settled")
	c := fa.count(measure)
	Expect(c).To(BeNumerically(">", 0), "the transition writes something")
	k := min(c, crashMaxWrites)
	AddReportEntry("fault-free writes", fmt.Sprintf("%d: %v", c, fa.log(measure)), ReportEntryVisibilityAlways)

	By(fmt.Sprintf("(a) failing, (c) losing the response of write N of the transition, N = 1..%d, the operator going on", k))
	cases := []crashCase{{ns: measure, label: "fault-free", plan: fa}}
	var armed []string
	for n := 1; n <= k; n++ {
		fa.arm(aNs[n-1], n, false)
		fa.arm(cNs[n-1], n, true)
		armed = append(armed, aNs[n-1], cNs[n-1])
		cases = append(cases,
			crashCase{ns: aNs[n-1], label: fmt.Sprintf("(a) failed write N=%d", n), plan: fa},
			crashCase{ns: cNs[n-1], label: fmt.Sprintf("(c) write N=%d landed, response lost", n), plan: fa})
	}
	for _, ns := range armed {
		t.trigger(ns, t)
	}
	Eventually(fa.unfired(armed, t)).Should(BeEmpty())
	stop()

	for n := 1; n <= k; n++ {
		By(fmt.Sprintf("(b) crashing the operator at write N=%d", n))
		ns := bNs[n-1]
		fb := newFaultPlan()
		fb.only = ns
		fb.crashMode = true
		fb.arm(ns, n, false)
		op := start(fb.option)
		fb.onCrash(op.cancel)
		t.trigger(ns, t)
		Eventually(fb.unfired([]string{ns}, t)).Should(BeEmpty())
		if !fb.wasUnreached(ns) {
			Eventually(op.done).Should(BeClosed(), "the crash stops the manager")
		}
		stop()
		cases = append(cases, crashCase{ns: ns, label: fmt.Sprintf("(b) crash at write N=%d", n), plan: fb})
	}

	By("recovering with a clean operator")
	start()
	Eventually(settled(cases, t.after, t.deleted), "30s").Should(BeEmpty())
	// Once more: what settled stays settled.
	Expect(settled(cases, t.after, t.deleted)()).To(BeEmpty())
	var drift []string
	for _, cs := range cases {
		if slices.Contains(eventReasons(cs.ns, "gpt4")(), "WeightDriftCorrected") {
			when := "after the fault"
			if setupDrift[cs.ns] {
				when = "already during the fault-free setup, before the transition"
			}
			drift = append(drift, fmt.Sprintf("%s [%s]: WeightDriftCorrected %s; writes %v", cs.label, cs.ns, when, cs.plan.log(cs.ns)))
		}
	}
	Expect(drift).To(BeEmpty(), "the rollout's own writes, retried or not, are not drift")
	stop()
	var unreached []string
	for _, cs := range cases {
		if cs.plan.wasUnreached(cs.ns) {
			unreached = append(unreached, cs.label)
		}
	}
	AddReportEntry("cases", fmt.Sprintf("%d (N = 1..%d; failed write, crash, lost response); write N not reached in this run: %v", 3*k, k, unreached), ReportEntryVisibilityAlways)
}

var _ = Describe("Durable intent: crash injection", func() {
	stepsAt50 := []rolloutsv1.Step{step(50, "1h"), step(100, "1h")}
	at50 := crashState{phase: rolloutsv1.PhaseProgressing, step: "1/2", canary: "vllm-gpt4-v2", weight: 50,
		route: map[string]int32{crashStable: 50, "vllm-gpt4-v2": 50}}
	rolledBack := func(step string) crashState {
		return crashState{phase: rolloutsv1.PhaseRolledBack, step: step, canary: "vllm-gpt4-v2", weight: 0,
			route: map[string]int32{crashStable: 100, "vllm-gpt4-v2": 0}}
	}
	annotateWith := func(key, value string) func(string, crashTransition) {
		return func(ns string, _ crashTransition) { annotate(ns, "gpt4", map[string]string{key: value}) }
	}

	DescribeTable("recovers a transition whose N-th write fails, or crashes the operator",
		runCrashTransition,
		Entry("step advance 10% -> 50% (the step's pause ends)", crashTransition{
			steps:  []rolloutsv1.Step{step(10, "1h"), step(50, "1h"), step(100, "1h")},
			before: crashState{phase: rolloutsv1.PhaseProgressing, step: "1/3", canary: "vllm-gpt4-v2", weight: 10, route: map[string]int32{crashStable: 90, "vllm-gpt4-v2": 10}},
			// The pause ends now: it is shortened to 0s.
			trigger: func(ns string, t crashTransition) {
				steps := slices.Clone(t.steps)
				steps[0].Pause = durationOf("0s")
				body, err := json.Marshal(map[string]any{"spec": map[string]any{"steps": steps}})
				Expect(err).NotTo(HaveOccurred())
				patchRollout(ns, string(body))
			},
			after: crashState{phase: rolloutsv1.PhaseProgressing, step: "2/3", canary: "vllm-gpt4-v2", weight: 50, route: map[string]int32{crashStable: 50, "vllm-gpt4-v2": 50}},
		}),
		Entry("canary v2 at 50% replaced by v3", crashTransition{
			steps: stepsAt50, v3: true, before: at50,
			trigger: func(ns string, _ crashTransition) { patchRollout(ns, `{"spec":{"canary":{"name":"vllm-gpt4-v3"}}}`) },
			after: crashState{phase: rolloutsv1.PhaseProgressing, step: "1/2", canary: "vllm-gpt4-v3", weight: 50,
				route: map[string]int32{crashStable: 50, "vllm-gpt4-v2": 0, "vllm-gpt4-v3": 50}},
		}),
		Entry("canary removed at 50%", crashTransition{
			steps: stepsAt50, before: at50,
			trigger: func(ns string, _ crashTransition) { patchRollout(ns, `{"spec":{"canary":null}}`) },
			after:   crashState{phase: rolloutsv1.PhaseIdle, route: map[string]int32{crashStable: 100, "vllm-gpt4-v2": 0}},
		}),
		Entry("finish after success: stable names the canary, the old stable's backendRef is removed", crashTransition{
			steps:  []rolloutsv1.Step{step(100, "0s")},
			before: crashState{phase: rolloutsv1.PhaseSucceeded, step: "1/1", canary: "vllm-gpt4-v2", weight: 100, route: map[string]int32{crashStable: 0, "vllm-gpt4-v2": 100}},
			trigger: func(ns string, _ crashTransition) {
				patchRollout(ns, `{"spec":{"stable":{"name":"vllm-gpt4-v2","port":8000},"canary":null}}`)
			},
			after: crashState{phase: rolloutsv1.PhaseIdle, route: map[string]int32{"vllm-gpt4-v2": 100}},
		}),
		Entry("rollback by the abort annotation at 50%", crashTransition{
			steps: stepsAt50, before: at50,
			trigger: annotateWith(rolloutsv1.AnnotationAbort, "crash-abort"),
			after:   rolledBack("1/2"),
		}),
		Entry("promote of a step without pause, 10% -> 50%", crashTransition{
			steps:   []rolloutsv1.Step{step(10, ""), step(50, "1h"), step(100, "1h")},
			before:  crashState{phase: rolloutsv1.PhasePaused, step: "1/3", canary: "vllm-gpt4-v2", weight: 10, route: map[string]int32{crashStable: 90, "vllm-gpt4-v2": 10}},
			trigger: annotateWith(rolloutsv1.AnnotationPromote, "crash-promote"),
			after:   crashState{phase: rolloutsv1.PhaseProgressing, step: "2/3", canary: "vllm-gpt4-v2", weight: 50, route: map[string]int32{crashStable: 50, "vllm-gpt4-v2": 50}},
		}),
		Entry("full promote override, 10% -> 100% past step 2", crashTransition{
			steps:   []rolloutsv1.Step{step(10, "1h"), step(50, "1h"), step(100, "1h")},
			before:  crashState{phase: rolloutsv1.PhaseProgressing, step: "1/3", canary: "vllm-gpt4-v2", weight: 10, route: map[string]int32{crashStable: 90, "vllm-gpt4-v2": 10}},
			trigger: annotateWith(rolloutsv1.AnnotationPromoteFull, "crash-full"),
			after:   crashState{phase: rolloutsv1.PhaseProgressing, step: "3/3", canary: "vllm-gpt4-v2", weight: 100, route: map[string]int32{crashStable: 0, "vllm-gpt4-v2": 100}},
		}),
		// The setup's abort once produced a false WeightDriftCorrected: the
		// reconcile that the rollback's own route patch triggered read a
		// cached rollout without the RolledBack status. checkDrift now
		// confirms the rollout is current before it reports drift.
		Entry("retry after a rollback", crashTransition{
			steps:   []rolloutsv1.Step{step(10, "1h"), step(100, "1h")},
			ready:   &crashState{phase: rolloutsv1.PhaseProgressing, step: "1/2", canary: "vllm-gpt4-v2", weight: 10, route: map[string]int32{crashStable: 90, "vllm-gpt4-v2": 10}},
			prepare: func(ns string) { annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationAbort: "setup-abort"}) },
			before:  rolledBack("1/2"),
			trigger: annotateWith(rolloutsv1.AnnotationRetry, "crash-retry"),
			after:   crashState{phase: rolloutsv1.PhaseProgressing, step: "1/2", canary: "vllm-gpt4-v2", weight: 10, route: map[string]int32{crashStable: 90, "vllm-gpt4-v2": 10}},
		}),
		Entry("a dark-launch step gives way to 10% (the header route is deleted)", crashTransition{
			steps:  []rolloutsv1.Step{withPause(darkLaunch(), "1h"), step(10, "1h"), step(100, "1h")},
			before: crashState{phase: rolloutsv1.PhaseProgressing, step: "1/3", canary: "vllm-gpt4-v2", weight: 0, route: map[string]int32{crashStable: 100}, headerRoute: true},
			trigger: func(ns string, t crashTransition) {
				steps := slices.Clone(t.steps)
				steps[0].Pause = durationOf("0s")
				body, err := json.Marshal(map[string]any{"spec": map[string]any{"steps": steps}})
				Expect(err).NotTo(HaveOccurred())
				patchRollout(ns, string(body))
			},
			after: crashState{phase: rolloutsv1.PhaseProgressing, step: "2/3", canary: "vllm-gpt4-v2", weight: 10, route: map[string]int32{crashStable: 90, "vllm-gpt4-v2": 10}},
		}),
		Entry("promote into an A/B step at 20% (the header route is created)", crashTransition{
			steps:   []rolloutsv1.Step{step(10, ""), withWeight(withPause(darkLaunch(), "1h"), 20), step(100, "1h")},
			before:  crashState{phase: rolloutsv1.PhasePaused, step: "1/3", canary: "vllm-gpt4-v2", weight: 10, route: map[string]int32{crashStable: 90, "vllm-gpt4-v2": 10}},
			trigger: annotateWith(rolloutsv1.AnnotationPromote, "crash-promote"),
			after: crashState{phase: rolloutsv1.PhaseProgressing, step: "2/3", canary: "vllm-gpt4-v2", weight: 20,
				route: map[string]int32{crashStable: 80, "vllm-gpt4-v2": 20}, headerRoute: true},
		}),
		Entry("abort during a dark-launch step (the header route is deleted)", crashTransition{
			steps:   []rolloutsv1.Step{withPause(darkLaunch(), "1h"), step(100, "1h")},
			before:  crashState{phase: rolloutsv1.PhaseProgressing, step: "1/2", canary: "vllm-gpt4-v2", weight: 0, route: map[string]int32{crashStable: 100}, headerRoute: true},
			trigger: annotateWith(rolloutsv1.AnnotationAbort, "crash-abort"),
			after:   crashState{phase: rolloutsv1.PhaseRolledBack, step: "1/2", canary: "vllm-gpt4-v2", weight: 0, route: map[string]int32{crashStable: 100}},
		}),
		Entry("rollout deleted during a dark-launch step: the finalizer deletes the header route", crashTransition{
			steps:  []rolloutsv1.Step{withPause(darkLaunch(), "1h"), step(100, "1h")},
			before: crashState{phase: rolloutsv1.PhaseProgressing, step: "1/2", canary: "vllm-gpt4-v2", weight: 0, route: map[string]int32{crashStable: 100}, headerRoute: true},
			trigger: func(ns string, _ crashTransition) {
				Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "gpt4"))).To(Succeed())
			},
			after:   crashState{route: map[string]int32{crashStable: 100}},
			deleted: true,
		}),
		Entry("rollout deleted at 50%: the finalizer returns the traffic to stable", crashTransition{
			steps: stepsAt50, before: at50,
			trigger: func(ns string, _ crashTransition) {
				Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "gpt4"))).To(Succeed())
			},
			after:   crashState{route: map[string]int32{crashStable: 100, "vllm-gpt4-v2": 0}},
			deleted: true,
		}),
	)
})
