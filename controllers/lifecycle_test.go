package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// routeWriteCounter wraps the operator's client and counts its HTTPRoute
// patches.
type routeWriteCounter struct {
	client.Client
	patches atomic.Int32
}

func (c *routeWriteCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	if _, ok := obj.(*gatewayv1.HTTPRoute); ok {
		c.patches.Add(1)
	}
	return c.Client.Patch(ctx, obj, patch, opts...)
}

func withRouteWriteCounter(c **routeWriteCounter) func(*ModelRolloutReconciler, ctrl.Manager) {
	return func(r *ModelRolloutReconciler, _ ctrl.Manager) {
		*c = &routeWriteCounter{Client: r.Client}
		r.Client = *c
	}
}

func conditionOf(ns, name, t string) func() *metav1.Condition {
	return func() *metav1.Condition {
		return meta.FindStatusCondition(getRollout(ns, name).Status.Conditions, t)
	}
}

// conditionText is a condition's "Reason: Message", or "" while absent.
func conditionText(ns, name, t string) func() string {
	return func() string {
		c := conditionOf(ns, name, t)()
		if c == nil {
			return ""
		}
		return c.Reason + ": " + c.Message
	}
}

func rolloutGone(ns, name string) func() bool {
	return func() bool {
		err := k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, &rolloutsv1.ModelRollout{})
		return apierrors.IsNotFound(err)
	}
}

func ownersOf(ns, route string) map[string]string { return plan.RuleOwners(getRoute(ns, route)) }

// mergePatchRollout applies a JSON merge patch to a rollout's spec, as
// `kubectl patch --type merge` or a Git sync would.
func mergePatchRollout(ns, name string, patch map[string]any) {
	body, err := json.Marshal(patch)
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Patch(suiteCtx, getRollout(ns, name), client.RawPatch(types.MergePatchType, body))).To(Succeed())
}

// denyRoutePolicy installs a ValidatingAdmissionPolicy, bound to one
// namespace, that rejects HTTPRoutes failing expr, and waits until the API
// server enforces it.
func denyRoutePolicy(ns, expr, message string) {
	name := "deny-" + ns
	Expect(k8sClient.Create(suiteCtx, &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{"gateway.networking.k8s.io"}, APIVersions: []string{"*"}, Resources: []string{"httproutes"}},
				},
			}}},
			Validations: []admissionv1.Validation{{Expression: expr, Message: message}},
		},
	})).To(Succeed())
	Expect(k8sClient.Create(suiteCtx, &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		},
	})).To(Succeed())
	DeferCleanup(func() {
		_ = k8sClient.Delete(suiteCtx, &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: name}})
		_ = k8sClient.Delete(suiteCtx, &admissionv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}})
	})
}

var _ = Describe("Rollout lifecycle edges", func() {
	var (
		ns string
		op *operator
	)
	BeforeEach(func() { ns = newNamespace() })
	AfterEach(func() {
		if op != nil {
			op.stop()
			op = nil
		}
	})

	Context("one owner per rule", func() {
		It("makes a second rollout on the same rule wait with RouteConflict, then start once the rule is free", func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			createBackend(ns, "vllm-gpt4-v3", true)
			gen0 := getRoute(ns, "model-header-routing").Generation
			op = startOperator()

			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "2s"), step(100, "2s")))).To(Succeed())
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
			Expect(ownersOf(ns, "model-header-routing")).To(Equal(map[string]string{"gpt4": "gpt4"}), "the owner is visible on the route")
			// Ownership lives on the route, not in the operator's memory.
			op.stop()
			op = startOperator()

			second := newRollout(ns, step(10, "1h"), step(100, "1h"))
			second.Name = "gpt4-other"
			second.Spec.Canary.Name = "vllm-gpt4-v3"
			Expect(k8sClient.Create(suiteCtx, second)).To(Succeed())
			Eventually(conditionText(ns, "gpt4-other", rolloutsv1.ConditionRoutesApplied)).Should(And(HavePrefix(rolloutsv1.ReasonRouteConflict), ContainSubstring("ModelRollout gpt4")))
			Expect(getRollout(ns, "gpt4-other").Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))

			Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded))
			route := getRoute(ns, "model-header-routing")
			Expect(ruleWeights(route, "gpt4")).To(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}), "the second rollout never wrote")
			Expect(route.Generation-gen0).To(BeEquivalentTo(2), "the route changed only for the first rollout's two steps")
			Consistently(func() rolloutsv1.Phase { return getRollout(ns, "gpt4-other").Status.Phase }).Should(Equal(rolloutsv1.PhaseWaiting))

			// Deleting the finished owner frees the rule without changing a
			// weight; the waiting rollout then starts by itself.
			Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "gpt4"))).To(Succeed())
			Eventually(rolloutGone(ns, "gpt4")).Should(BeTrue())
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v3", int32(10)))
			Expect(ownersOf(ns, "model-header-routing")).To(Equal(map[string]string{"gpt4": "gpt4-other"}))
			// The routes are written before the status: the status follows.
			Eventually(func() string { return getRollout(ns, "gpt4-other").Status.Step }).Should(Equal("1/2"))
		})
	})

	Context("an alert about the previous revision", func() {
		It("never rolls the next revision back; an alert about the running one does", func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			createBackend(ns, "vllm-gpt4-v3", true)
			op = startOperator()
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
			// The routes are written before the status: the revision
			// follows.
			Eventually(func() string { return getRollout(ns, "gpt4").Status.Revision }).Should(HaveSuffix("vllm-gpt4-v2:8000"))
			first := getRollout(ns, "gpt4").Status.Revision

			// The user names a new canary; the old canary's alert lands
			// once the new revision runs, as the receiver wrote it.
			mergePatchRollout(ns, "gpt4", map[string]any{"spec": map[string]any{"canary": map[string]any{"name": "vllm-gpt4-v3"}}})
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v3", int32(10)))
			Eventually(func() string { return getRollout(ns, "gpt4").Status.Revision }).Should(HaveSuffix("vllm-gpt4-v3:8000"))
			second := getRollout(ns, "gpt4").Status.Revision
			Expect(second).NotTo(Equal(first))
			annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationAbort: "alert-00000000000000a1",
				rolloutsv1.AnnotationAbortReason: `alert HighErrorRate{service="vllm-gpt4-v2"} firing`, rolloutsv1.AnnotationAbortRevision: first})
			Eventually(func() string { return getRollout(ns, "gpt4").Status.LastHandledAbort }).Should(Equal("alert-00000000000000a1"))
			Eventually(eventReasons(ns, "gpt4")).Should(ContainElement("AbortIgnored"))
			ro := getRollout(ns, "gpt4")
			Expect(ro.Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
			Expect(ro.Status.Revision).To(Equal(second))
			Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(HaveKeyWithValue("vllm-gpt4-v3", int32(10)), "the new canary keeps its traffic")

			// An alert about the running revision rolls it back at once.
			annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationAbort: "alert-00000000000000a2",
				rolloutsv1.AnnotationAbortReason: `alert HighErrorRate{service="vllm-gpt4-v3"} firing`, rolloutsv1.AnnotationAbortRevision: second})
			Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
			Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(HaveKeyWithValue("vllm-gpt4-v3", int32(0)))
		})
	})

	Context("a writer that keeps changing the weights back", func() {
		It("backs off, names the other field manager once per episode, and resumes when it stops", func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			var writes *routeWriteCounter
			op = startOperator(withRouteWriteCounter(&writes))
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "3s"), step(100, "1h")))).To(Succeed())
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
			Eventually(func() *rolloutsv1.MicroTime { return getRollout(ns, "gpt4").Status.StepStartedAt }).ShouldNot(BeNil())
			Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionRoutesApplied)).Should(HaveField("Status", metav1.ConditionTrue))

			// A GitOps tool re-applies the Git weights (v1 100, v2 0) every
			// 100ms for 12 seconds.
			before := writes.patches.Load()
			start := time.Now()
			git := 0
			tick := time.NewTicker(100 * time.Millisecond) // the other tool's sync cadence
			defer tick.Stop()
			for ; time.Since(start) < 12*time.Second; <-tick.C {
				route := getRoute(ns, "model-header-routing")
				w := ruleWeights(route, "gpt4")
				if w["vllm-gpt4-v1"] == 100 && w["vllm-gpt4-v2"] == 0 {
					continue
				}
				for j, ref := range route.Spec.Rules[0].BackendRefs {
					switch ref.Name {
					case "vllm-gpt4-v1":
						route.Spec.Rules[0].BackendRefs[j].Weight = ptr.To[int32](100)
					case "vllm-gpt4-v2":
						route.Spec.Rules[0].BackendRefs[j].Weight = ptr.To[int32](0)
					}
				}
				if err := k8sClient.Update(suiteCtx, route, client.FieldOwner("argocd-controller")); err == nil {
					git++
				}
			}
			elapsed := time.Since(start)
			corrections := writes.patches.Load() - before
			perMinute := float64(corrections) / elapsed.Minutes()
			AddReportEntry("route writes by the operator during the fight", fmt.Sprintf("%d in %s (%.0f per minute) against %d writes by the other manager", corrections, elapsed.Round(time.Second), perMinute, git))
			fmt.Fprintf(GinkgoWriter, "fight: operator wrote the route %d times in %s (%.0f/min); the other manager wrote it %d times\n", corrections, elapsed.Round(time.Second), perMinute, git)
			Expect(corrections).To(BeNumerically("<=", 8), "corrections back off exponentially: 0, 1, 2, 4, 8 s apart")
			Expect(corrections).To(BeNumerically(">=", 2), "the operator kept correcting")

			c := conditionOf(ns, "gpt4", rolloutsv1.ConditionRoutesApplied)()
			Expect(c).NotTo(BeNil())
			Expect(c.Reason).To(Equal(rolloutsv1.ReasonContended))
			Expect(c.Message).To(ContainSubstring(`field manager "argocd-controller"`))
			Expect(getRollout(ns, "gpt4").Status.Step).To(Equal("1/2"), "the step clock does not run while the routes do not carry its weight")
			drift := 0
			for _, r := range eventReasons(ns, "gpt4")() {
				if r == "WeightDriftCorrected" {
					drift++
				}
			}
			Expect(drift).To(Equal(1), "one Event per episode, not one per write")

			// The loop stopped: the next correction sticks and the rollout
			// goes on.
			Eventually(routeWeights(ns, "model-header-routing", "gpt4"), 90*time.Second).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
			Eventually(func() string { return getRollout(ns, "gpt4").Status.Step }, 90*time.Second).Should(Equal("2/2"))
			Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionRoutesApplied)).Should(HaveField("Status", metav1.ConditionTrue))
		})
	})

	Context("safe removal", func() {
		It("returns a removed canary's share to stable before reporting Idle, and releases the rule", func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			op = startOperator()
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(50, "1h"), step(100, "1h")))).To(Succeed())
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 50, "vllm-gpt4-v2": 50}))

			mergePatchRollout(ns, "gpt4", map[string]any{"spec": map[string]any{"canary": nil}})
			Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseIdle))
			Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}), "Idle only once the route is back on stable")
			Eventually(func() map[string]string { return ownersOf(ns, "model-header-routing") }).Should(BeEmpty())
			Expect(getRollout(ns, "gpt4").Status.Retiring).To(BeEmpty())
		})

		It("returns a deleted rollout's traffic to stable through its finalizer", func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			op = startOperator()
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(50, "1h"), step(100, "1h")))).To(Succeed())
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 50, "vllm-gpt4-v2": 50}))
			Expect(getRollout(ns, "gpt4").Finalizers).To(ContainElement(rolloutsv1.FinalizerRoutes))

			Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "gpt4"))).To(Succeed())
			Eventually(rolloutGone(ns, "gpt4")).Should(BeTrue())
			Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
			Expect(ownersOf(ns, "model-header-routing")).To(BeEmpty())
		})

		It("keeps the weights of a deleted rollout with deletionPolicy KeepWeights", func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			op = startOperator()
			ro := newRollout(ns, step(50, "1h"), step(100, "1h"))
			ro.Spec.DeletionPolicy = rolloutsv1.DeletionKeepWeights
			Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 50, "vllm-gpt4-v2": 50}))
			gen := getRoute(ns, "model-header-routing").Generation

			Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "gpt4"))).To(Succeed())
			Eventually(rolloutGone(ns, "gpt4")).Should(BeTrue())
			route := getRoute(ns, "model-header-routing")
			Expect(ruleWeights(route, "gpt4")).To(Equal(map[string]int32{"vllm-gpt4-v1": 50, "vllm-gpt4-v2": 50}))
			Expect(route.Generation).To(Equal(gen))
		})

		It("changes no weight when a Succeeded rollout is deleted", func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			op = startOperator()
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(100, "1s")))).To(Succeed())
			Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded))
			gen := getRoute(ns, "model-header-routing").Generation

			Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "gpt4"))).To(Succeed())
			Eventually(rolloutGone(ns, "gpt4")).Should(BeTrue())
			route := getRoute(ns, "model-header-routing")
			Expect(ruleWeights(route, "gpt4")).To(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
			Expect(route.Generation).To(Equal(gen), "no spec change")
		})

		It("never blocks deletion when the routes are gone", func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			op = startOperator()
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(50, "1h"), step(100, "1h")))).To(Succeed())
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(50)))
			Expect(k8sClient.Delete(suiteCtx, getRoute(ns, "model-header-routing"))).To(Succeed())
			Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "gpt4"))).To(Succeed())
			Eventually(rolloutGone(ns, "gpt4")).Should(BeTrue())
		})

		It("never blocks deletion while the namespace is being deleted, even when route patches are refused", func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			op = startOperator()
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(50, "1h"), step(100, "1h")))).To(Succeed())
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(50)))
			denyRoutePolicy(ns, "false", "routes are frozen")
			Eventually(func() error {
				route := getRoute(ns, "model-header-routing")
				route.Labels["probe"] = "x"
				return k8sClient.Update(suiteCtx, route, client.DryRunAll)
			}).Should(MatchError(ContainSubstring("routes are frozen")))

			Expect(k8sClient.Delete(suiteCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
			// envtest runs no namespace controller: delete the rollout as it
			// would.
			Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "gpt4"))).To(Succeed())
			Eventually(rolloutGone(ns, "gpt4")).Should(BeTrue())
		})
	})

	Context("no swing after success", func() {
		It("moves no traffic for a new canary while the old one holds 100%, until spec.stable names it", func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			createBackend(ns, "vllm-gpt4-v3", true)
			op = startOperator()
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(50, "1s"), step(100, "1s")))).To(Succeed())
			Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded))

			mergePatchRollout(ns, "gpt4", map[string]any{"spec": map[string]any{"canary": map[string]any{"name": "vllm-gpt4-v3"}}})
			Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionStalled)).Should(And(Not(BeNil()), HaveField("Reason", rolloutsv1.ReasonCanaryHoldsAllTraffic)))
			Expect(getRollout(ns, "gpt4").Status.Message).To(ContainSubstring("set spec.stable to vllm-gpt4-v2"))
			Consistently(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))

			mergePatchRollout(ns, "gpt4", map[string]any{"spec": map[string]any{"stable": map[string]any{"name": "vllm-gpt4-v2"}}})
			// Naming the canary as stable finishes the rollout (the old
			// stable's backendRef goes) and starts the next one.
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v2": 50, "vllm-gpt4-v3": 50}))
			Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionStalled)).Should(BeNil(), "the status follows the routes")
		})

		It("does not send traffic back to the old stable when the canary that holds 100% is removed", func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			op = startOperator()
			Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(100, "1s")))).To(Succeed())
			Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded))
			mergePatchRollout(ns, "gpt4", map[string]any{"spec": map[string]any{"canary": nil}})
			Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionStalled)).Should(And(Not(BeNil()), HaveField("Reason", rolloutsv1.ReasonCanaryHoldsAllTraffic)))
			Consistently(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))

			// Finishing the documented way: stable names the canary.
			mergePatchRollout(ns, "gpt4", map[string]any{"spec": map[string]any{"stable": map[string]any{"name": "vllm-gpt4-v2"}}})
			Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseIdle))
			Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v2": 100}))
		})
	})

	It("rolls back a canary that loses its endpoints after the grace period", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator()
		ro := newRollout(ns, step(25, "1h"), step(100, "1h"))
		ro.Spec.CanaryUnavailableGrace = durationOf("2s")
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(25)))

		setEndpoints(ns, "vllm-gpt4-v2", false)
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonCanaryUnavailable))
		Expect(got.Status.Rollback.Message).To(ContainSubstring("no ready endpoints"))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		Expect(eventReasons(ns, "gpt4")()).To(ContainElement(rolloutsv1.ReasonCanaryUnavailable))
	})

	It("holds when a managed rule stops resolving, and a rollback reverts the rules it still resolves", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator()
		ro := newRollout(ns, step(25, "2s"), step(50, "2s"), step(100, "1h"))
		ro.Spec.Routes[0].Rules = []rolloutsv1.RuleName{"gpt4", "health"}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "health")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(25)))

		// Someone renames the health rule mid-rollout.
		route := getRoute(ns, "model-header-routing")
		route.Spec.Rules[3].Name = ptr.To[gatewayv1.SectionName]("healthz")
		Expect(k8sClient.Update(suiteCtx, route)).To(Succeed())
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionRoutesResolved)).Should(And(Not(BeNil()), HaveField("Reason", rolloutsv1.ReasonRuleNotFound)))
		Consistently(func() string { return getRollout(ns, "gpt4").Status.Step }, 4*time.Second).Should(Equal("1/3"), "no step advances while a rule does not resolve")

		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationAbort: "t1"})
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		Expect(routeWeights(ns, "model-header-routing", "healthz")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 75, "vllm-gpt4-v2": 25}))
		Expect(getRollout(ns, "gpt4").Status.Rollback.Message).To(And(ContainSubstring("not reverted"), ContainSubstring(`no rule named "health"`)))
	})

	It("reports a rejected route patch with the API server's message and counts it toward the deadline", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		denyRoutePolicy(ns, "object.spec.rules.all(r, !has(r.backendRefs) || r.backendRefs.all(b, b.name != 'vllm-gpt4-v2' || !has(b.weight) || b.weight < 50))",
			"canary weight is capped at 49% by policy")
		op = startOperator()
		ro := newRollout(ns, step(10, "1s"), step(50, "1s"), step(100, "1s"))
		ro.Spec.ProgressDeadline = durationOf("6s")
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())

		Eventually(conditionText(ns, "gpt4", rolloutsv1.ConditionRoutesApplied)).Should(And(HavePrefix(rolloutsv1.ReasonPatchRejected), ContainSubstring("capped at 49%")))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		rb := getRollout(ns, "gpt4").Status.Rollback
		Expect(rb.Reason).To(Equal(rolloutsv1.ReasonProgressDeadlineExceeded))
		Expect(rb.Message).To(ContainSubstring("capped at 49%"))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
	})

	It("retires the old backendRef when only the canary's port changes", func() {
		createRoute(ns, "header-routing.yaml")
		Expect(k8sClient.Create(suiteCtx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "vllm-gpt4-v2", Namespace: ns},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8000}, {Name: "alt", Port: 8080}}},
		})).To(Succeed())
		Expect(k8sClient.Create(suiteCtx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "vllm-gpt4-v2-eps", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "vllm-gpt4-v2"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8000)}, {Name: ptr.To("alt"), Port: ptr.To[int32](8080)}},
		})).To(Succeed())
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(25, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(25)))

		mergePatchRollout(ns, "gpt4", map[string]any{"spec": map[string]any{"canary": map[string]any{"port": 8080}}})
		portWeights := func() map[string]int32 {
			out := map[string]int32{}
			for _, b := range getRoute(ns, "model-header-routing").Spec.Rules[0].BackendRefs {
				out[fmt.Sprintf("%s:%d", b.Name, *b.Port)] = *b.Weight
			}
			return out
		}
		Eventually(portWeights).Should(Equal(map[string]int32{"vllm-gpt4-v1:8000": 75, "vllm-gpt4-v2:8000": 0, "vllm-gpt4-v2:8080": 25}))
		// The retirement is dropped from status once the route shows it.
		Eventually(func() []rolloutsv1.BackendRef { return getRollout(ns, "gpt4").Status.Retiring }).Should(BeEmpty())
	})

	It("keeps writing status when a gateway reports a condition message longer than the status allows", func() {
		createRoute(ns, "inference-pool.yaml")
		createInferencePool(ns, "llama3-v1")
		createInferencePool(ns, "llama3-v2")
		// Gateway API allows 32768 characters; multi-byte ones make the
		// byte length larger still.
		setPoolParentStatus(ns, "llama3-v2", metav1.ConditionFalse, "InvalidExtensionRef", strings.Repeat("é", 16000))
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, poolRollout(ns))).To(Succeed())
		Eventually(func() string { return conditionReason(ns, "llama3", rolloutsv1.ConditionCanaryAvailable) }).Should(Equal(rolloutsv1.ReasonBackendNotAccepted))
		ro := getRollout(ns, "llama3")
		Expect(len(ro.Status.Message)).To(BeNumerically("<=", 1024))
		Expect(ro.Status.Message).To(HaveSuffix("..."))

		// Status keeps being written: an abort still lands.
		annotate(ns, "llama3", map[string]string{rolloutsv1.AnnotationAbort: "t1"})
		Eventually(func() string { return getRollout(ns, "llama3").Status.LastHandledAbort }).Should(Equal("t1"))
	})

	It("rolls back a canary InferencePool that goes away mid-rollout, after the grace period", func() {
		createRoute(ns, "inference-pool.yaml")
		createInferencePool(ns, "llama3-v1")
		createInferencePool(ns, "llama3-v2")
		op = startOperator()
		ro := poolRollout(ns)
		ro.Spec.CanaryUnavailableGrace = durationOf("1s")
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(poolRefs(ns)).Should(HaveKeyWithValue("inference.networking.k8s.io/InferencePool/llama3-v2", int32(10)))

		pool := &unstructured.Unstructured{}
		pool.SetAPIVersion(rolloutsv1.InferenceGroup + "/v1")
		pool.SetKind("InferencePool")
		pool.SetNamespace(ns)
		pool.SetName("llama3-v2")
		Expect(k8sClient.Delete(suiteCtx, pool)).To(Succeed())
		Eventually(phaseOf(ns, "llama3")).Should(Equal(rolloutsv1.PhaseRolledBack))
		Expect(getRollout(ns, "llama3").Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonCanaryUnavailable))
		Eventually(poolRefs(ns)).Should(Equal(map[string]int32{
			"inference.networking.k8s.io/InferencePool/llama3-v1": 100,
			"inference.networking.k8s.io/InferencePool/llama3-v2": 0,
		}))
	})
})
