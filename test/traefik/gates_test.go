package traefik

import (
	"fmt"
	"math"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/common/model"
	"k8s.io/utils/ptr"

	"github.com/modelrollout/modelrollout/analysis"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// The Traefik presets (analysis/presets.go), judged by the real Prometheus
// scraping the real Traefik: the default selector must pick the canary's
// backendRef services by the names Traefik's Gateway provider gives them.
var _ = Describe("Gates on Traefik's own metrics", func() {
	It("roll back a canary that fails a quarter of its requests, by traefik-error-ratio, while traefik-latency-p99 reads its latency", func(ctx SpecContext) {
		load, err := demo.StartLoad(ctx, demo.LoadOptions{
			URL: stack.GatewayURL, Rate: 20, Concurrency: 8, MaxRequests: 20 * 300, MaxDuration: 5 * time.Minute,
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(load.Stop)
		Eventually(ctx, func() int { return load.Total()[demo.Stable].OK }).Should(BeNumerically(">=", 20), "the stable serves the load")

		By("a rollout of vllm-gpt4-v3, which fails 25% of its requests, at 25% for 3 minutes, gated on Traefik's metrics")
		ro := stack.NewRollout("gpt4-traefik-gates", step(25, "3m"), step(100, "0s"))
		ro.Spec.Canary.Name = demo.BadCanary
		ro.Spec.Analysis = &rolloutsv1.Analysis{
			Interval: "5s",
			Gates: []rolloutsv1.Gate{
				{Name: "gateway-errors", GateSpec: rolloutsv1.GateSpec{Preset: "traefik-error-ratio", Max: ptr.To(0.05), MinRequests: ptr.To[int64](10)}},
				{Name: "gateway-latency", GateSpec: rolloutsv1.GateSpec{Preset: "traefik-latency-p99", Max: ptr.To(5.0), MinRequests: ptr.To[int64](10)}},
			},
		}
		stack.Apply(ctx, ro)
		got := stack.ExpectPhase(ctx, ro.Name, rolloutsv1.PhaseRolledBack)
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonGateFailed))
		Expect(got.Status.Rollback.Message).To(ContainSubstring(`gate "gateway-errors"`))
		Expect(got.Status.Rollback.FromWeight).To(Equal(int32(25)))
		Expect(got.Status.Step).To(Equal("1/2"), "the 3 minute pause was not over")
		AddReportEntry("rolled back by", got.Status.Rollback.Message)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 100, demo.BadCanary: 0})
		load.Stop()
		quiesce(ctx)
		expectSplit(ctx, requestsPerStep, map[string]int32{demo.Stable: 100, demo.BadCanary: 0})

		By("the presets' queries, in the real Prometheus: the canary's errors and latency, and none of the stable's errors")
		vars := func(canary string) analysis.Vars {
			return analysis.Vars{Namespace: demo.Namespace, Rollout: ro.Name, Route: demo.RouteName,
				Stable: demo.Stable, Canary: canary, StablePort: demo.BackendPort, CanaryPort: demo.BackendPort,
				Interval: 2 * time.Minute, StepWindow: 5 * time.Minute}
		}
		query := func(preset rolloutsv1.GatePreset, canary string) (value, requests float64) {
			GinkgoHelper()
			r, err := analysis.RenderGate(rolloutsv1.Gate{Name: "q", GateSpec: rolloutsv1.GateSpec{Preset: preset, Max: ptr.To(1.0)}}, vars(canary))
			Expect(err).NotTo(HaveOccurred())
			one := func(q string) float64 {
				v, _, _, err := stack.Prometheus.API().Query(ctx, q, time.Now())
				Expect(err).NotTo(HaveOccurred(), q)
				vec, ok := v.(model.Vector)
				Expect(ok && len(vec) == 1).To(BeTrue(), "%s: one sample, got %s", q, v)
				return float64(vec[0].Value)
			}
			return one(r.Query), one(r.RequestsQuery)
		}
		errRatio, canaryRequests := query("traefik-error-ratio", demo.BadCanary)
		AddReportEntry("traefik-error-ratio of vllm-gpt4-v3", fmt.Sprintf("%.3f over %.0f requests", errRatio, canaryRequests))
		Expect(errRatio).To(BeNumerically(">", 0.05))
		Expect(errRatio).To(BeNumerically("<", 0.75))
		Expect(canaryRequests).To(BeNumerically(">=", 10))
		// The canary's requests Traefik counted, by its backendRef
		// services: what the gateway-errors gate read (within increase()'s
		// extrapolation of the step window).
		stableErr, stableRequests := query("traefik-error-ratio", demo.Stable)
		Expect(stableErr).To(BeZero(), "the stable's selector does not pick the canary's errors")
		Expect(stableRequests).To(BeNumerically(">", canaryRequests))
		p99, _ := query("traefik-latency-p99", demo.BadCanary)
		AddReportEntry("traefik-latency-p99 of vllm-gpt4-v3", strconv.FormatFloat(p99, 'f', 3, 64)+"s")
		Expect(math.IsNaN(p99)).To(BeFalse())
		Expect(p99).To(BeNumerically(">", 0))
		Expect(p99).To(BeNumerically("<=", 10), "within Traefik's buckets")
	}, SpecTimeout(8*time.Minute))
})
