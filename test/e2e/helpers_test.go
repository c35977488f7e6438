package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// manifestRollout reads one of the demo's rollout manifests.
func manifestRollout(file string) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	ro, err := demo.ReadRollout(stack.File(file))
	Expect(err).NotTo(HaveOccurred())
	return ro
}

// newRollout is the demo's good rollout under another name with another
// schedule, without analysis and alert selector unless the spec adds them.
func newRollout(name string, steps ...rolloutsv1.Step) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	ro := manifestRollout(demo.GoodRolloutFile)
	ro.Name = name
	ro.Spec.Steps = steps
	ro.Spec.Analysis = nil
	ro.Spec.RollbackOnAlerts = nil
	return ro
}

// step is a schedule step; an empty pause waits for a promote.
func step(weight int32, pause string) rolloutsv1.Step {
	s := rolloutsv1.Step{Weight: weight}
	if pause != "" {
		s.Pause = ptr.To(rolloutsv1.Duration(pause))
	}
	return s
}

func apply(ctx context.Context, ro *rolloutsv1.ModelRollout) {
	GinkgoHelper()
	Expect(demo.ApplyRollout(ctx, stack.Client, ro)).To(Succeed())
}

// rolloutState is the part of a rollout's status the specs wait on.
type rolloutState struct {
	Revision string
	Phase    rolloutsv1.Phase
	Step     string
	Weight   int32
}

func (s rolloutState) String() string {
	return fmt.Sprintf("%s step %s weight %d (%s)", s.Phase, s.Step, s.Weight, s.Revision)
}

// expectState waits until the rollout's status is the wanted state for the
// current revision of its spec.
func expectState(ctx context.Context, name string, phase rolloutsv1.Phase, stepText string, weight int32) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	return awaitRollout(ctx, name, phase, func(g Gomega, ro *rolloutsv1.ModelRollout) {
		got := rolloutState{ro.Status.Revision, ro.Status.Phase, ro.Status.Step, ro.Status.CanaryWeight}
		want := rolloutState{ro.Spec.Revision(), phase, stepText, weight}
		g.Expect(got).To(Equal(want), "message: %s", ro.Status.Message)
	})
}

// expectPhase waits until the rollout reaches the phase for the current
// revision of its spec.
func expectPhase(ctx context.Context, name string, phase rolloutsv1.Phase) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	return awaitRollout(ctx, name, phase, func(g Gomega, ro *rolloutsv1.ModelRollout) {
		g.Expect(ro.Status.Revision).To(Equal(ro.Spec.Revision()))
		g.Expect(ro.Status.Phase).To(Equal(phase), "step %s weight %d: %s", ro.Status.Step, ro.Status.CanaryWeight, ro.Status.Message)
	})
}

// awaitRollout polls the rollout until its status is computed for the
// latest spec and check passes, and returns it; it stops at once when the
// rollout has ended in another phase than the awaited one.
func awaitRollout(ctx context.Context, name string, phase rolloutsv1.Phase, check func(Gomega, *rolloutsv1.ModelRollout)) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	var ro *rolloutsv1.ModelRollout
	Eventually(ctx, func(g Gomega) {
		var err error
		ro, err = stack.Rollout(ctx, name)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ro.Status.ObservedGeneration).To(Equal(ro.Generation), "status not computed for the latest spec yet")
		stopAtOtherEnd(ro, phase)
		check(g, ro)
	}).Should(Succeed())
	return ro
}

// stopAtOtherEnd stops an Eventually at once when the rollout of the current
// revision has ended in Succeeded or RolledBack while the spec waits for
// another phase: a finished rollout stays where it is, so waiting longer
// only hides the message that says why. (A retry not yet handled is the
// one way out of RolledBack without a new revision.)
func stopAtOtherEnd(ro *rolloutsv1.ModelRollout, want rolloutsv1.Phase) {
	st := ro.Status
	ended := st.Phase == rolloutsv1.PhaseSucceeded || st.Phase == rolloutsv1.PhaseRolledBack
	retry := ro.Annotations[rolloutsv1.AnnotationRetry]
	retryPending := retry != "" && retry != st.LastHandledRetry
	if ended && st.Phase != want && !retryPending && st.Revision == ro.Spec.Revision() && st.ObservedGeneration == ro.Generation {
		StopTrying(fmt.Sprintf("the rollout ended %s at step %s, weight %d, while %s was awaited: %s",
			st.Phase, st.Step, st.CanaryWeight, want, st.Message)).Now()
	}
}

// expectWeights waits until both the HTTPRoute in the API server and the
// gateway's routing table carry the weights on the gpt4 rule (by Service
// name; every backendRef of the rule must be listed).
func expectWeights(ctx context.Context, want map[string]int32) {
	GinkgoHelper()
	Eventually(ctx, stack.RouteWeights).Should(Equal(want), "the HTTPRoute's gpt4 rule")
	Eventually(ctx, func() map[string]int32 {
		w, _ := stack.GatewayWeights()
		return w
	}).Should(Equal(want), "the gateway's routing table")
}

// expectOnlyServedBy sends n requests through the gateway and expects every
// one to be answered by the backend.
func expectOnlyServedBy(ctx context.Context, backend string, n int) {
	GinkgoHelper()
	tally, err := demo.RunBatch(ctx, stack.GatewayURL, n, 8, 0)
	Expect(err).NotTo(HaveOccurred())
	Expect(tally.Backends()).To(Equal([]string{backend}), "who served %d requests: %s", n, tally)
	Expect(tally[backend].OK).To(Equal(n), "%s", tally)
}

// expectRestOfRouteUntouched checks that the rules the rollout does not
// manage, and the gpt4 rule's matches and timeouts, are as in Git.
func expectRestOfRouteUntouched(ctx context.Context) {
	GinkgoHelper()
	changed, err := stack.ChangedRules(ctx)
	Expect(err).NotTo(HaveOccurred())
	Expect(changed).To(BeEmpty(), "rules changed besides the gpt4 weights")
}

// startLoad sends gpt-4 requests through the gateway for the rest of the
// spec, bounded in count and time, as the demo does: 1 in 4 streamed, 1 in
// 5 with x-ab-test-group: canary.
func startLoad(ctx context.Context) *demo.Load {
	GinkgoHelper()
	l, err := demo.StartLoad(ctx, demo.LoadOptions{
		URL: stack.GatewayURL, Rate: 25, Concurrency: 16, StreamEvery: 4,
		MaxRequests: 25 * 600, MaxDuration: 10 * time.Minute,
		Header: http.Header{demo.ABTestHeader: []string{demo.ABTestCanary}}, HeaderEvery: 5,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(l.Stop)
	return l
}

// plugin runs the kubectl plugin against the stack and returns its output.
func plugin(ctx context.Context, args ...string) (string, error) {
	args = append([]string{"--kubeconfig", stack.Kubeconfig, "-n", demo.Namespace, "--no-color"}, args...)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, stack.PluginPath, args...).CombinedOutput()
	fmt.Fprintf(GinkgoWriter, "$ kubectl modelrollout %s\n%s", strings.Join(args[5:], " "), out)
	return string(out), err
}

// binomialTolerance is the half-width of the band within which the observed
// share of n independent picks with probability p falls with overwhelming
// probability: z standard deviations, sigma = sqrt(p(1-p)/n).
func binomialTolerance(p float64, n int, z float64) float64 {
	return z * math.Sqrt(p*(1-p)/float64(n))
}
