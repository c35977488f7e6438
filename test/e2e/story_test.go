package e2e

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// The demo's story, asserted: the manifests of test/testdata/demo, gates on
// vLLM's and the gateway's metrics through a real Prometheus, load through
// the gateway.
var _ = Describe("The demo's story", func() {
	It("walks the good canary to Succeeded, rolls the bad one back, then catches the wrong one before any traffic, moving only the gpt4 weights", func(ctx SpecContext) {
		load := startLoad(ctx)
		Eventually(ctx, func() int { return load.Total()[demo.Stable].OK }).Should(BeNumerically(">=", 20), "the stable serves the load")

		By("rollout 1: vllm-gpt4-v1 -> vllm-gpt4-v2, a dark launch on x-ab-test-group: canary, then 10/25/50/75/100, with 10s pauses and three gates")
		good := stack.ManifestRollout(demo.GoodRolloutFile)
		stack.Apply(ctx, good)
		// Each step bakes 10s and needs an evaluation of every gate at its
		// weight; the whole schedule takes about a minute.
		ro := stack.ExpectState(ctx, demo.RolloutName, rolloutsv1.PhaseSucceeded, "6/6", 100)

		By("its status records every step, each held at least for its pause, and every gate passing")
		var weights []int32
		for _, s := range ro.Status.StepHistory {
			weights = append(weights, s.Weight)
			Expect(s.EndedAt).NotTo(BeNil(), "step %d%% ended", s.Weight)
			Expect(s.EndedAt.Sub(s.StartedAt.Time)).To(BeNumerically(">=", 10*time.Second-time.Second/10), "step %d%% baked for its pause", s.Weight)
		}
		Expect(weights).To(Equal([]int32{0, 10, 25, 50, 75, 100}))

		By("during the dark launch, every request with x-ab-test-group: canary reached v2 and every other one v1")
		// The whole seconds inside the step, with a margin for the gateway
		// to see the header route come and the weights change.
		dark := ro.Status.StepHistory[0]
		all, tagged := load.Between(dark.StartedAt.Add(2*time.Second), dark.EndedAt.Add(-time.Second))
		untagged := demo.Tally{}
		for backend, c := range all {
			untagged[backend] = demo.BackendCount{OK: c.OK - tagged[backend].OK, Failed: c.Failed - tagged[backend].Failed}
			if untagged[backend].Total() == 0 {
				delete(untagged, backend)
			}
		}
		AddReportEntry("dark launch at weight 0", fmt.Sprintf("with the header: %s; without: %s", tagged, untagged))
		Expect(tagged.Backends()).To(Equal([]string{demo.GoodCanary}), "with the header: %s", tagged)
		Expect(tagged[demo.GoodCanary].OK).To(BeNumerically(">=", 10), "with the header: %s", tagged)
		Expect(untagged.Backends()).To(Equal([]string{demo.Stable}), "without the header: %s", untagged)
		Expect(ro.Status.HeaderRoute).To(BeNil(), "the header route ended with its step")
		Expect(ro.Status.Gates).To(HaveLen(3))
		for _, g := range ro.Status.Gates {
			Expect(g.Verdict).To(Equal(rolloutsv1.VerdictPass), "gate %s: %s", g.Name, g.Message)
		}
		Expect(ro.Status.Rollback).To(BeNil())

		By("the route sends all gpt-4 traffic to v2, and nothing else of the route changed")
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 0, demo.GoodCanary: 100})
		expectRestOfRouteUntouched(ctx)
		expectOnlyServedBy(ctx, demo.GoodCanary, 40)
		Expect(load.Total()[demo.GoodCanary].OK).To(BeNumerically(">", 0))

		By("rollout 2: v2 becomes the stable in Git and v3, which fails a quarter of its requests, the canary")
		bad := stack.ManifestRollout(demo.BadRolloutFile)
		Expect(bad.Name).To(Equal(good.Name), "the same rollout, edited as in Git")
		stack.Apply(ctx, bad)
		ro = stack.ExpectPhase(ctx, demo.RolloutName, rolloutsv1.PhaseRolledBack)
		Expect(ro.Status.CanaryWeight).To(BeZero())
		Expect(ro.Status.Revision).To(Equal(bad.Spec.Revision()))
		Expect(ro.Status.Rollback).NotTo(BeNil())
		// Whichever is first: a gate's evaluation or the HighErrorRate
		// alert through Alertmanager and the operator's receiver.
		Expect(ro.Status.Rollback.Reason).To(BeElementOf(rolloutsv1.ReasonGateFailed, rolloutsv1.ReasonAlertFiring))
		Expect(ro.Status.Rollback.FromWeight).To(BeNumerically(">", 0))
		Expect(ro.Status.Rollback.Message).To(Or(ContainSubstring("errors"), ContainSubstring(demo.AlertName)))
		AddReportEntry("bad canary caught by", ro.Status.Rollback.Reason+": "+ro.Status.Rollback.Message)

		By("the route sends all gpt-4 traffic back to v2; naming v2 stable finished rollout 1, so v1's backendRef is gone, and the other rules are untouched")
		stack.ExpectWeights(ctx, map[string]int32{demo.GoodCanary: 100, demo.BadCanary: 0})
		expectRestOfRouteUntouched(ctx)
		expectOnlyServedBy(ctx, demo.GoodCanary, 40)

		By("rollout 3: v4, fast and error-free but answering wrongly, is caught by its prompt gate before the first step")
		wrong := stack.ManifestRollout(demo.WrongRolloutFile)
		stack.LocalPromptGates(wrong)
		stack.Apply(ctx, wrong)
		ro = stack.ExpectPhase(ctx, demo.RolloutName, rolloutsv1.PhaseRolledBack)
		Expect(ro.Status.Revision).To(Equal(wrong.Spec.Revision()))
		Expect(ro.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonGateFailed))
		Expect(ro.Status.Rollback.FromWeight).To(BeZero())
		Expect(ro.Status.Rollback.Message).To(HavePrefix(`canary failed its pre-traffic checks, before any user traffic: gate "answers" value 0 outside >= 1`))
		Expect(ro.Status.StepHistory).To(BeEmpty())
		AddReportEntry("wrong canary caught by", ro.Status.Rollback.Message)
		stack.ExpectWeights(ctx, map[string]int32{demo.GoodCanary: 100, demo.BadCanary: 0})
		expectRestOfRouteUntouched(ctx)
		Expect(load.Total()[demo.WrongCanary].Total()).To(BeZero(), "no user request reached v4")
	}, SpecTimeout(10*time.Minute))
})
