package traefik

import (
	"fmt"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// requestsPerStep is a multiple of 100, so that every step's weights give
// whole counts.
const requestsPerStep = 200

var _ = Describe("A rollout through Traefik", func() {
	It("walks 10 -> 100, and Traefik's listener splits every step's requests exactly by the weights", func(ctx SpecContext) {
		schedule := []int32{10, 25, 50, 75, 100}
		var steps []rolloutsv1.Step
		for _, w := range schedule {
			steps = append(steps, step(w, "")) // held until promoted: the weight stays put while it is measured
		}
		ro := stack.NewRollout("gpt4-split", steps...)
		stack.Apply(ctx, ro)
		for i, w := range schedule {
			stepText := fmt.Sprintf("%d/%d", i+1, len(schedule))
			By(fmt.Sprintf("step %s: canary at %d%%", stepText, w))
			stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, stepText, w)
			weights := map[string]int32{demo.Stable: 100 - w, demo.GoodCanary: w}
			stack.ExpectWeights(ctx, weights)
			expectSplit(ctx, requestsPerStep, weights)
			annotate(ctx, ro.Name, rolloutsv1.AnnotationPromote)
		}
		stack.ExpectPhase(ctx, ro.Name, rolloutsv1.PhaseSucceeded)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 0, demo.GoodCanary: 100})
		expectSplit(ctx, requestsPerStep, map[string]int32{demo.Stable: 0, demo.GoodCanary: 100})
	}, SpecTimeout(10*time.Minute))

	It("dark-launches through the rollout's own header route: every request with the header, and only those, reaches the canary", func(ctx SpecContext) {
		match := &rolloutsv1.StepMatch{Headers: []gatewayv1.HTTPHeaderMatch{{Name: demo.ABTestHeader, Value: demo.ABTestCanary}}}
		ro := stack.NewRollout("gpt4-ab",
			rolloutsv1.Step{Weight: 0, Match: match},  // dark launch, held until promoted
			rolloutsv1.Step{Weight: 25, Match: match}, // A/B on top of a 25% split
			step(100, ""))
		stack.Apply(ctx, ro)
		headerRoute := demo.RouteName + "-" + ro.Name + "-match"
		abGroup := http.Header{demo.ABTestHeader: []string{demo.ABTestCanary}}
		served := func() (bool, error) { return stack.GatewayServesRoute(ctx, headerRoute) }

		By("step 1/3: the canary at weight 0 in the user's route, the header route at Traefik")
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "1/3", 0)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 100})
		Eventually(ctx, served).Should(BeTrue(), "Traefik serves the header route %s", headerRoute)
		expectSplit(ctx, requestsPerStep, map[string]int32{demo.Stable: 100})
		tally, counted := batch(ctx, requestsPerStep, abGroup)
		AddReportEntry("dark launch, with the header", fmt.Sprintf("answered: %s; Traefik counted: %v", tally, counted))
		Expect(tally).To(Equal(demo.Tally{demo.GoodCanary: {OK: requestsPerStep}}), "every request with the header reaches the canary")
		Expect(counted).To(Equal(map[string]float64{demo.GoodCanary: requestsPerStep}))

		By("step 2/3: a 25% split, and every request with the header to the canary")
		annotate(ctx, ro.Name, rolloutsv1.AnnotationPromote)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "2/3", 25)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 75, demo.GoodCanary: 25})
		expectSplit(ctx, requestsPerStep, map[string]int32{demo.Stable: 75, demo.GoodCanary: 25})
		tally, _ = batch(ctx, requestsPerStep, abGroup)
		Expect(tally).To(Equal(demo.Tally{demo.GoodCanary: {OK: requestsPerStep}}), "every request with the header reaches the canary")

		By("step 3/3 has no match: the header route leaves Traefik")
		annotate(ctx, ro.Name, rolloutsv1.AnnotationPromote)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "3/3", 100)
		Eventually(ctx, served).Should(BeFalse(), "the header route left Traefik")
		Expect(stack.Rollout(ctx, ro.Name)).To(HaveField("Status.HeaderRoute", BeNil()))
	}, SpecTimeout(10*time.Minute))

	It("puts drifted weights right at Traefik, then an abort sends everything back to the stable", func(ctx SpecContext) {
		ro := stack.NewRollout("gpt4-drift", step(25, ""), step(100, ""))
		stack.Apply(ctx, ro)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "1/2", 25)
		want := map[string]int32{demo.Stable: 75, demo.GoodCanary: 25}
		stack.ExpectWeights(ctx, want)

		By("someone edits the route's weights by hand to 50/50")
		Eventually(ctx, func(g Gomega) {
			route, err := stack.Route(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			for i := range route.Spec.Rules {
				r := &route.Spec.Rules[i]
				if r.Name == nil || string(*r.Name) != demo.RuleName {
					continue
				}
				for j := range r.BackendRefs {
					r.BackendRefs[j].Weight = ptr.To[int32](50)
				}
			}
			g.Expect(stack.Client.Update(ctx, route, client.FieldOwner("kubectl-edit"))).To(Succeed())
		}).Should(Succeed())

		By("the operator puts 75/25 back, at the route and at Traefik, and says so")
		stack.ExpectWeights(ctx, want)
		Eventually(ctx, func(g Gomega) {
			evs, err := stack.Events(ctx, ro.Name)
			g.Expect(err).NotTo(HaveOccurred())
			var reasons []string
			for _, e := range evs {
				reasons = append(reasons, e.Reason)
			}
			g.Expect(reasons).To(ContainElement("WeightDriftCorrected"))
		}).Should(Succeed())
		expectSplit(ctx, requestsPerStep, want)

		By("an abort: the rollout rolls back and Traefik sends every request to the stable")
		Expect(stack.Annotate(ctx, ro.Name, map[string]string{
			rolloutsv1.AnnotationAbort:       time.Now().UTC().Format(time.RFC3339Nano),
			rolloutsv1.AnnotationAbortReason: "traefik suite: abort",
		})).To(Succeed())
		got := stack.ExpectPhase(ctx, ro.Name, rolloutsv1.PhaseRolledBack)
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonAborted))
		Expect(got.Status.Rollback.FromWeight).To(Equal(int32(25)))
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 100, demo.GoodCanary: 0})
		expectSplit(ctx, requestsPerStep, map[string]int32{demo.Stable: 100, demo.GoodCanary: 0})
	}, SpecTimeout(10*time.Minute))
})
