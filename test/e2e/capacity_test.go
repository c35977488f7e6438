package e2e

import (
	"fmt"
	"math"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// A capacity-aware step at the gateway: the stable Service has four ready
// endpoints, the canary one ready and one not (a pod still loading its
// weights). With capacityFactor 1, 25 % needs ceil(4 × 25 % × 1) = 1 ready
// canary endpoint and 50 % needs 2: the promote to 50 % must hold at 25 %,
// at the gateway too, until the second endpoint becomes ready. (The
// slices are hand-made because they point at the simulators; the same hold
// against real Deployments, kube-controller-manager and kwok is in
// test/workloads.)
var _ = Describe("A capacity-aware step at the gateway", func() {
	It("holds the canary at 25% while it has one ready endpoint of the two that 50% needs, and moves when the second becomes ready", func(ctx SpecContext) {
		Expect(stack.SetEndpoints(ctx, demo.Stable, true, true, true, true)).To(Succeed())
		Expect(stack.SetEndpoints(ctx, demo.GoodCanary, true, false)).To(Succeed())
		ro := stack.NewRollout("gpt4-capacity", step(25, ""), step(50, ""), step(100, ""))
		ro.Spec.CapacityFactor = ptr.To(1.0)
		stack.Apply(ctx, ro)

		const n = 400
		share := func() float64 {
			GinkgoHelper()
			tally, err := demo.RunBatch(ctx, stack.GatewayURL, n, 16, 0)
			Expect(err).NotTo(HaveOccurred())
			Expect(tally[demo.GoodCanary].OK+tally[demo.Stable].OK).To(Equal(n), "every request answered by the canary or the stable: %s", tally)
			return float64(tally[demo.GoodCanary].OK) / n
		}
		expectShare := func(what string, p float64) {
			GinkgoHelper()
			got, tol := share(), binomialTolerance(p, n, sigmas)
			AddReportEntry(what, fmt.Sprintf("%.4f to the canary (expected %.2f ± %.4f)", got, p, tol))
			Expect(math.Abs(got-p)).To(BeNumerically("<=", tol), "%s: canary share %.4f, expected %.2f", what, got, p)
		}

		By("step 1/3: 25% needs 1 ready canary endpoint, and the canary has one")
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "1/3", 25)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 75, demo.GoodCanary: 25})

		By("promoted to 50%, which needs 2: the rollout holds at 25% and says why")
		Expect(stack.Annotate(ctx, ro.Name, map[string]string{rolloutsv1.AnnotationPromote: time.Now().UTC().Format(time.RFC3339Nano)})).To(Succeed())
		held := stack.AwaitRollout(ctx, ro.Name, rolloutsv1.PhaseProgressing, func(g Gomega, ro *rolloutsv1.ModelRollout) {
			g.Expect(ro.Status.Capacity).NotTo(BeNil(), "message: %s", ro.Status.Message)
		})
		Expect(*held.Status.Capacity).To(Equal(rolloutsv1.CapacityStatus{
			Since: held.Status.Capacity.Since, Weight: 50, ReadyStable: 4, ReadyCanary: 1, Required: 2}))
		Expect(held.Status.Message).To(Equal("Step 1/3: canary at 25%, waiting for capacity: 50% needs 2 ready canary endpoints (ceil(4 ready stable × 50% × 1)), 1 ready"))
		Expect(held.Status.CanaryWeight).To(BeEquivalentTo(25))
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 75, demo.GoodCanary: 25})
		expectShare("held at 25% for capacity", 0.25)
		Expect(stack.Rollout(ctx, ro.Name)).To(HaveField("Status.Capacity", Not(BeNil())), "still held after the traffic was measured")
		Eventually(ctx, eventReasons(ro.Name)).Should(ContainElement(rolloutsv1.ReasonWaitingForCapacity))

		By("the canary's second endpoint becomes ready: the hold lifts and step 2/3 starts")
		Expect(stack.SetEndpoints(ctx, demo.GoodCanary, true, true)).To(Succeed())
		moved := stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "2/3", 50)
		Expect(moved.Status.Capacity).To(BeNil())
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 50, demo.GoodCanary: 50})
		expectShare("after the hold lifted, at 50%", 0.50)
		Eventually(ctx, eventReasons(ro.Name)).Should(ContainElement("CapacityMet"))
	}, SpecTimeout(10*time.Minute))
})

// eventReasons returns the reasons of the rollout's Events.
func eventReasons(name string) func(SpecContext) []string {
	return func(ctx SpecContext) []string {
		evs, err := stack.Events(ctx, name)
		Expect(err).NotTo(HaveOccurred())
		var out []string
		for _, e := range evs {
			out = append(out, e.Reason)
		}
		return out
	}
}
