package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// A rollback changes weights, which only decide where NEW requests go: a
// streamed completion already flowing from the canary must run to its end.
const (
	streamTokens = 450 // at 100ms per token: a 45s stream, within the route's 60s backendRequest timeout
	streamITL    = `{"tokens": 500, "itl": "100ms", "jitter": 0}`
)

// canaryStreamAttempts bounds the streams opened at 50% until one reaches
// the canary.
const canaryStreamAttempts = 40

var _ = Describe("A rollback with a stream in flight", func() {
	It("lets the canary finish its streamed response and sends new requests to the stable", func(ctx SpecContext) {
		ro := stack.NewRollout("gpt4-stream", step(50, ""), step(100, ""))
		stack.Apply(ctx, ro)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "1/2", 50)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 50, demo.GoodCanary: 50})

		By("slowing the canary's tokens so that a long completion streams for about 45 seconds")
		Expect(stack.SetSimulator(ctx, demo.GoodCanary, streamITL)).To(Succeed())
		stream := stack.OpenCanaryStream(ctx, streamTokens, canaryStreamAttempts)
		DeferCleanup(stream.Close)

		By("aborting the rollout while the stream is in flight")
		Expect(stack.Annotate(ctx, ro.Name, map[string]string{
			rolloutsv1.AnnotationAbort:       time.Now().UTC().Format(time.RFC3339Nano),
			rolloutsv1.AnnotationAbortReason: "e2e: abort with a stream in flight",
		})).To(Succeed())
		got := stack.ExpectPhase(ctx, ro.Name, rolloutsv1.PhaseRolledBack)
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonAborted))
		Expect(got.Status.Rollback.Message).To(ContainSubstring("stream in flight"))
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 100, demo.GoodCanary: 0})
		atSwitch := stream.Chunks()

		By("new requests go to the stable while the stream still flows")
		expectOnlyServedBy(ctx, demo.Stable, 40)

		By("the stream runs to its end with [DONE]")
		Eventually(ctx, stream.Done()).WithTimeout(2 * time.Minute).Should(BeClosed())
		sawDone, err := stream.Result()
		Expect(err).NotTo(HaveOccurred(), "the stream was cut")
		Expect(sawDone).To(BeTrue(), "the stream ended without data: [DONE]")
		// One chunk per token and the final chunk with finish_reason.
		Expect(stream.Chunks()).To(BeNumerically("==", streamTokens+1))
		Expect(stream.Chunks()).To(BeNumerically(">", atSwitch),
			"tokens kept flowing after the gateway had switched the weights (%d of %d had arrived then)", atSwitch, streamTokens+1)
		AddReportEntry("stream chunks before / after the switch", []int64{atSwitch, stream.Chunks() - atSwitch})
	}, SpecTimeout(10*time.Minute))
})
