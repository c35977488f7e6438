package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// A canary that goes bad in the middle of a long pause is not judged again
// by any gate for a long time; the HighErrorRate alert of
// test/testdata/demo/alert-rules.yaml, routed by Alertmanager to the
// operator's webhook receiver, rolls it back instead.
var _ = Describe("An alert-triggered rollback", func() {
	It("takes a canary turned faulty mid-pause out of traffic when Alertmanager reports HighErrorRate", func(ctx SpecContext) {
		if stack.AlertReceiverURL == "" {
			Skip("the operator binary has no --alert-receiver-bind-address flag: it cannot receive alerts")
		}
		load := startLoad(ctx)

		By("a rollout at 25% for 30 minutes, without gates, rolled back by alerts about its canary")
		ro := stack.NewRollout("gpt4-alert", step(25, "30m"), step(100, "30m"))
		ro.Spec.RollbackOnAlerts = &rolloutsv1.AlertSelector{MatchLabels: map[string]string{
			"model": demo.ModelID, "service": demo.GoodCanary,
		}}
		stack.Apply(ctx, ro)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhaseProgressing, "1/2", 25)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 75, demo.GoodCanary: 25})
		Eventually(ctx, func() int { return load.Total()[demo.GoodCanary].OK }).Should(BeNumerically(">=", 20), "the canary serves its share")

		By("turning the canary faulty at run time: PUT /control {\"error_rate\":0.5}")
		faulted := time.Now()
		Expect(stack.SetSimulator(ctx, demo.GoodCanary, `{"error_rate":0.5}`)).To(Succeed())

		By("Prometheus fires HighErrorRate, Alertmanager posts it, the operator rolls back")
		got := stack.ExpectPhase(ctx, ro.Name, rolloutsv1.PhaseRolledBack)
		Expect(got.Status.Rollback).NotTo(BeNil())
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonAlertFiring))
		Expect(got.Status.Rollback.Message).To(ContainSubstring(demo.AlertName))
		Expect(got.Status.Rollback.Message).To(ContainSubstring(`service="` + demo.GoodCanary + `"`))
		Expect(got.Status.Rollback.FromWeight).To(Equal(int32(25)))
		Expect(got.Status.Step).To(Equal("1/2"), "the 30 minute pause was not over")
		AddReportEntry("fault injected -> rolled back", got.Status.Rollback.At.Sub(faulted).Round(time.Second).String())
		AddReportEntry("rollback message", got.Status.Rollback.Message)

		By("the route weights return to the stable, at the HTTPRoute and at the gateway")
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 100, demo.GoodCanary: 0})
		expectRestOfRouteUntouched(ctx)
		expectOnlyServedBy(ctx, demo.Stable, 40)
	}, SpecTimeout(10*time.Minute))
})
