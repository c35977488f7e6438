package e2e

import (
	"fmt"
	"math"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// A header-routed step, measured at the gateway: the rollout's own
// HTTPRoute (its header route) must take every request that carries the
// step's header, and only those, by Gateway API precedence alone.
var _ = Describe("A header-routed step at the gateway", func() {
	It("sends every request with x-ab-test-group: canary to the canary, at weight 0 and on top of a split, and stops when the step ends", func(ctx SpecContext) {
		match := &rolloutsv1.StepMatch{Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-ab-test-group", Value: "canary"}}}
		ro := stack.NewRollout("gpt4-ab",
			rolloutsv1.Step{Weight: 0, Match: match},  // dark launch, held until promoted
			rolloutsv1.Step{Weight: 25, Match: match}, // A/B on top of a 25% split
			step(100, ""))
		stack.Apply(ctx, ro)
		const n = 400
		headerRoute := demo.RouteName + "-" + ro.Name + "-match"
		abGroup := http.Header{"X-Ab-Test-Group": []string{"canary"}}
		inGateway := func() bool {
			for _, r := range stack.Gateway.Table().Rules() {
				if r.RouteNamespace == demo.Namespace && r.RouteName == headerRoute {
					return true
				}
			}
			return false
		}
		shares := func(header http.Header) (canary, stable int) {
			GinkgoHelper()
			tally, err := demo.RunBatchWithHeader(ctx, stack.GatewayURL, n, 16, 0, header)
			Expect(err).NotTo(HaveOccurred())
			Expect(tally[demo.GoodCanary].OK+tally[demo.Stable].OK).To(Equal(n), "every request answered by the canary or the stable: %s", tally)
			return tally[demo.GoodCanary].OK, tally[demo.Stable].OK
		}

		By("step 1/3: dark launch, canary at 0% in the user's route")
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "1/3", 0)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 100})
		Eventually(ctx, inGateway).Should(BeTrue(), "the gateway serves the header route %s", headerRoute)
		canary, _ := shares(abGroup)
		AddReportEntry("dark launch, with the header", fmt.Sprintf("%d of %d to the canary", canary, n))
		Expect(canary).To(Equal(n), "every request with the header reaches the canary")
		canary, _ = shares(nil)
		AddReportEntry("dark launch, without the header", fmt.Sprintf("%d of %d to the canary", canary, n))
		Expect(canary).To(Equal(0), "no request without the header reaches the canary")
		expectRestOfRouteUntouched(ctx)

		By("step 2/3: 25% split, and every request with the header to the canary")
		Expect(stack.Annotate(ctx, ro.Name, map[string]string{rolloutsv1.AnnotationPromote: time.Now().UTC().Format(time.RFC3339Nano)})).To(Succeed())
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "2/3", 25)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 75, demo.GoodCanary: 25})
		canary, _ = shares(abGroup)
		Expect(canary).To(Equal(n), "every request with the header reaches the canary")
		canary, _ = shares(nil)
		share := float64(canary) / n
		tol := binomialTolerance(0.25, n, sigmas)
		AddReportEntry("A/B step, without the header", fmt.Sprintf("%.4f to the canary (expected 0.25 ± %.4f)", share, tol))
		Expect(math.Abs(share-0.25)).To(BeNumerically("<=", tol), "the other requests follow the 25%% split")

		By("step 3/3 has no match: the header route goes away")
		Expect(stack.Annotate(ctx, ro.Name, map[string]string{rolloutsv1.AnnotationPromote: time.Now().UTC().Format(time.RFC3339Nano)})).To(Succeed())
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "3/3", 100)
		Eventually(ctx, inGateway).Should(BeFalse(), "the header route left the gateway")
		Expect(stack.Rollout(ctx, ro.Name)).To(HaveField("Status.HeaderRoute", BeNil()))
	}, SpecTimeout(10*time.Minute))
})
