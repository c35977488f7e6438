package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// The on-call engineer's verbs, through the kubectl plugin binary built from
// cmd/kubectl-modelrollout.
var _ = Describe("Steering a rollout with the kubectl plugin", func() {
	BeforeEach(func() {
		if stack.PluginPath == "" {
			Skip("the kubectl plugin is not available: " + stack.PluginMissing)
		}
	})

	It("promotes, pauses, resumes, aborts with a reason and retries", func(ctx SpecContext) {
		// Step 1 waits for a promote; step 2 bakes for 30 minutes, so that
		// nothing moves unless the plugin moves it; step 3 waits again.
		ro := stack.NewRollout("gpt4-manual", step(10, ""), step(50, "30m"), step(100, ""))
		stack.Apply(ctx, ro)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "1/3", 10)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 90, demo.GoodCanary: 10})

		By("get and status show it")
		out, err := plugin(ctx, "get")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(ro.Name))
		Expect(out).To(ContainSubstring("Paused"))
		out, err = plugin(ctx, "status", ro.Name)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(ro.Name))
		Expect(out).To(ContainSubstring(demo.GoodCanary))

		By("promote: step 2 at 50%")
		out, err = plugin(ctx, "promote", ro.Name, "--wait")
		Expect(err).NotTo(HaveOccurred(), out)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhaseProgressing, "2/3", 50)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 50, demo.GoodCanary: 50})

		By("pause and resume")
		out, err = plugin(ctx, "pause", ro.Name)
		Expect(err).NotTo(HaveOccurred(), out)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "2/3", 50)
		out, err = plugin(ctx, "resume", ro.Name)
		Expect(err).NotTo(HaveOccurred(), out)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhaseProgressing, "2/3", 50)

		By(`abort --reason "bad outputs": the canary leaves the route`)
		out, err = plugin(ctx, "abort", ro.Name, "--reason", "bad outputs", "--wait")
		Expect(err).NotTo(HaveOccurred(), out)
		got := stack.ExpectPhase(ctx, ro.Name, rolloutsv1.PhaseRolledBack)
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonAborted))
		Expect(got.Status.Rollback.Message).To(ContainSubstring("bad outputs"))
		Expect(got.Status.Rollback.FromWeight).To(Equal(int32(50)))
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 100, demo.GoodCanary: 0})
		expectOnlyServedBy(ctx, demo.Stable, 20)
		out, err = plugin(ctx, "status", ro.Name)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("bad outputs"))

		By("retry: back to step 1")
		out, err = plugin(ctx, "retry", ro.Name, "--wait")
		Expect(err).NotTo(HaveOccurred(), out)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "1/3", 10)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 90, demo.GoodCanary: 10})

		By("promote through the schedule to Succeeded")
		out, err = plugin(ctx, "promote", ro.Name, "--wait")
		Expect(err).NotTo(HaveOccurred(), out)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhaseProgressing, "2/3", 50)
		// A promote ends the 30 minute pause early.
		out, err = plugin(ctx, "promote", ro.Name, "--wait")
		Expect(err).NotTo(HaveOccurred(), out)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "3/3", 100)
		out, err = plugin(ctx, "promote", ro.Name, "--wait")
		Expect(err).NotTo(HaveOccurred(), out)
		stack.ExpectPhase(ctx, ro.Name, rolloutsv1.PhaseSucceeded)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 0, demo.GoodCanary: 100})
		expectRestOfRouteUntouched(ctx)
		expectOnlyServedBy(ctx, demo.GoodCanary, 20)
	}, SpecTimeout(10*time.Minute))
})
