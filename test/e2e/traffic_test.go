package e2e

import (
	"fmt"
	"math"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// Traffic must actually move at the gateway, not only in the HTTPRoute. The
// rollout's steps have no pause, so every step holds until it is promoted:
// the weight is fixed while it is measured, whatever the machine's load.
//
// Measurement: the gateway's Envoy counter envoy_cluster_upstream_rq_total
// is read from its /stats/prometheus before and after n requests sent with
// no other traffic; the deltas of the canary's and the stable's clusters
// give the canary's share. The gateway picks a backend independently for
// every request with probability weight/100, so the canary's count is
// binomial(n, p): its share has mean p and standard deviation
// sigma = sqrt(p(1-p)/n). The share must be within 5 sigma of p, which a
// correct gateway misses with probability 5.7e-7 per step. A broken one,
// e.g. still at the previous step's weight, is caught: with n = 800, sigma
// is at most 1.8 points while consecutive weights differ by 15 to 25 points,
// 8 sigma or more. At 100 percent sigma is 0: every request must reach the
// canary.
const (
	requestsPerStep = 800
	sigmas          = 5.0
)

var _ = Describe("Traffic at the gateway", func() {
	It("follows every step's weight within a binomial tolerance, measured from the gateway's Envoy metrics", func(ctx SpecContext) {
		schedule := []int32{10, 25, 50, 75, 100}
		var steps []rolloutsv1.Step
		for _, w := range schedule {
			steps = append(steps, step(w, "")) // hold until promoted
		}
		ro := stack.NewRollout("gpt4-split", steps...)
		stack.Apply(ctx, ro)

		stableCluster, canaryCluster := demo.ClusterName(demo.Stable), demo.ClusterName(demo.GoodCanary)
		for i, w := range schedule {
			stepText := fmt.Sprintf("%d/%d", i+1, len(schedule))
			By(fmt.Sprintf("step %s: canary at %d%%", stepText, w))
			stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, stepText, w)
			stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 100 - w, demo.GoodCanary: w})

			before, err := stack.ClusterRequests(ctx)
			Expect(err).NotTo(HaveOccurred())
			tally, err := demo.RunBatch(ctx, stack.GatewayURL, requestsPerStep, 16, 0)
			Expect(err).NotTo(HaveOccurred())
			after, err := stack.ClusterRequests(ctx)
			Expect(err).NotTo(HaveOccurred())

			stable := after[stableCluster] - before[stableCluster]
			canary := after[canaryCluster] - before[canaryCluster]
			Expect(stable+canary).To(BeNumerically("==", requestsPerStep),
				"every request reached one of the two clusters (load generator saw: %s)", tally)
			p := float64(w) / 100
			share := canary / (stable + canary)
			tol := binomialTolerance(p, requestsPerStep, sigmas)
			AddReportEntry("canary share at "+strconv.Itoa(int(w))+"%",
				fmt.Sprintf("%.4f over %d requests (expected %.2f ± %.4f, %.1f sigma)", share, requestsPerStep, p, tol, sigmasOff(share, p, requestsPerStep)))
			Expect(math.Abs(share-p)).To(BeNumerically("<=", tol),
				"canary share %.4f at weight %d%%: more than %.0f sigma (%.4f) away", share, w, sigmas, tol)
			// The load generator's own view (x-backend) agrees with the gateway's.
			Expect(float64(tally[demo.GoodCanary].Total())).To(BeNumerically("==", canary), "x-backend counts: %s", tally)

			By("promoting")
			Expect(stack.Annotate(ctx, ro.Name, map[string]string{
				rolloutsv1.AnnotationPromote: time.Now().UTC().Format(time.RFC3339Nano),
			})).To(Succeed())
		}
		stack.ExpectPhase(ctx, ro.Name, rolloutsv1.PhaseSucceeded)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 0, demo.GoodCanary: 100})
	}, SpecTimeout(10*time.Minute))
})

func sigmasOff(share, p float64, n int) float64 {
	sigma := math.Sqrt(p * (1 - p) / float64(n))
	if sigma == 0 {
		return 0
	}
	return math.Abs(share-p) / sigma
}
