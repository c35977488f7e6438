package traefik

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// A rollback changes weights, which decide where NEW requests go; the
// operator relies on a streamed completion already flowing from the canary
// running to its end, as it does through the test gateway (test/e2e).
const (
	streamTokens = 150 // at 100ms per token: a 15s stream
	streamITL    = `{"tokens": 200, "itl": "100ms", "jitter": 0}`
)

// canaryStreamAttempts bounds the streams opened at 50% until one reaches
// the canary.
const canaryStreamAttempts = 20

var _ = Describe("An abort with a stream in flight through Traefik", func() {
	It("lets the canary's streamed response run to its end while new requests go to the stable", func(ctx SpecContext) {
		ro := stack.NewRollout("gpt4-stream", step(50, ""), step(100, ""))
		stack.Apply(ctx, ro)
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "1/2", 50)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 50, demo.GoodCanary: 50})
		Expect(stack.SetSimulator(ctx, demo.GoodCanary, streamITL)).To(Succeed())
		stream := stack.OpenCanaryStream(ctx, streamTokens, canaryStreamAttempts)
		DeferCleanup(stream.Close)

		By("aborting the rollout while the stream is in flight")
		Expect(stack.Annotate(ctx, ro.Name, map[string]string{
			rolloutsv1.AnnotationAbort:       time.Now().UTC().Format(time.RFC3339Nano),
			rolloutsv1.AnnotationAbortReason: "traefik suite: abort with a stream in flight",
		})).To(Succeed())
		stack.ExpectPhase(ctx, ro.Name, rolloutsv1.PhaseRolledBack)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 100, demo.GoodCanary: 0})
		atSwitch := stream.Chunks()
		tally, _ := batch(ctx, 40, nil)
		Expect(tally).To(Equal(demo.Tally{demo.Stable: {OK: 40}}), "new requests go to the stable")

		By("the stream runs to its end with [DONE]")
		Eventually(ctx, stream.Done()).WithTimeout(2 * time.Minute).Should(BeClosed())
		sawDone, err := stream.Result()
		AddReportEntry("stream chunks before / after the switch", []int64{atSwitch, stream.Chunks() - atSwitch})
		Expect(err).NotTo(HaveOccurred(), "the stream was cut after %d chunks (%d at the switch)", stream.Chunks(), atSwitch)
		Expect(sawDone).To(BeTrue(), "the stream ended without data: [DONE]")
		Expect(stream.Chunks()).To(BeNumerically("==", streamTokens+1))
	}, SpecTimeout(6*time.Minute))
})
