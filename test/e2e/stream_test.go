package e2e

import (
	"context"
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

var _ = Describe("A rollback with a stream in flight", func() {
	It("lets the canary finish its streamed response and sends new requests to the stable", func(ctx SpecContext) {
		ro := newRollout("gpt4-stream", step(50, ""), step(100, ""))
		apply(ctx, ro)
		expectState(ctx, ro.Name, rolloutsv1.PhasePaused, "1/2", 50)
		expectWeights(ctx, map[string]int32{demo.Stable: 50, demo.GoodCanary: 50})

		By("slowing the canary's tokens so that a long completion streams for about 45 seconds")
		Expect(stack.SetSimulator(ctx, demo.GoodCanary, streamITL)).To(Succeed())
		stream := openCanaryStream(ctx)
		DeferCleanup(stream.Close)

		By("aborting the rollout while the stream is in flight")
		Expect(stack.Annotate(ctx, ro.Name, map[string]string{
			rolloutsv1.AnnotationAbort:       time.Now().UTC().Format(time.RFC3339Nano),
			rolloutsv1.AnnotationAbortReason: "e2e: abort with a stream in flight",
		})).To(Succeed())
		got := expectPhase(ctx, ro.Name, rolloutsv1.PhaseRolledBack)
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonAborted))
		Expect(got.Status.Rollback.Message).To(ContainSubstring("stream in flight"))
		expectWeights(ctx, map[string]int32{demo.Stable: 100, demo.GoodCanary: 0})
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

// openCanaryStream opens long streams through the gateway until one is
// served by the canary (the weights are 50/50) and delivers tokens.
func openCanaryStream(ctx context.Context) *demo.Stream {
	GinkgoHelper()
	for attempt := 1; attempt <= 40; attempt++ {
		s, err := demo.OpenStream(ctx, stack.GatewayURL, streamTokens)
		Expect(err).NotTo(HaveOccurred())
		if s.Status != 200 || s.Backend != demo.GoodCanary {
			s.Close()
			continue
		}
		// Tokens flowing prove the stream is established end to end. (The
		// test gateway can cut a stream right after its headers: Go's
		// reverse proxy closes the upstream connection when the upstream
		// answers before the proxy saw the request body's EOF. Then another
		// stream is tried.)
		Eventually(ctx, func() bool {
			select {
			case <-s.Done():
				return true
			default:
				return s.Chunks() >= 3
			}
		}).WithTimeout(time.Minute).Should(BeTrue())
		if s.Chunks() >= 3 {
			return s
		}
		s.Close()
	}
	Fail("no stream reached the canary in 40 attempts at 50%")
	return nil
}
