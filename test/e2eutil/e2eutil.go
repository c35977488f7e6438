// Package e2eutil holds what the Ginkgo suites over the demo stack (test/e2e
// through the test gateway, test/traefik through Traefik) share: starting and
// resetting the stack, and the helpers their specs drive a rollout and wait
// on it with. TEST-ONLY; nothing here ships.
package e2eutil

import (
	"context"
	"fmt"
	"log"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
	"github.com/modelrollout/modelrollout/test/promharness"
)

// Stack is the demo stack a suite shares, with the helpers its specs use.
type Stack struct {
	*demo.Stack
	// RoutingTable names where ExpectWeights reads the gateway's weights,
	// for its failure message.
	RoutingTable string
}

// StartStack is a suite's BeforeSuite: it logs to GinkgoWriter, sets the
// default Eventually timeouts, skips the suite (named so in the message,
// e.g. "the end-to-end suite") when a binary it needs is missing, and
// starts the stack with opts, closed when the suite ends. opts.Root is
// found from the working directory.
func StartStack(ctx context.Context, suite, routingTable string, opts demo.Options) *Stack {
	GinkgoHelper()
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	// The test gateway's reverse proxy logs through the standard logger.
	log.SetOutput(GinkgoWriter)
	// Generous: a loaded 2-core machine, Prometheus scraping every second,
	// gates every 5 seconds.
	SetDefaultEventuallyTimeout(5 * time.Minute)
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	// Eventually(ctx, ...) would otherwise wait for the spec's own timeout
	// and report a bare TIMEDOUT instead of what it waited for.
	EnforceDefaultTimeoutsWhenUsingContexts()

	root, err := demo.FindRepoRoot()
	Expect(err).NotTo(HaveOccurred())
	if _, err := demo.ControlPlaneAssets(root); err != nil {
		Skip(suite + " needs kube-apiserver and etcd: " + err.Error())
	}
	if err := promharness.Available(); err != nil {
		Skip(suite + " needs Prometheus and Alertmanager: " + err.Error())
	}
	if opts.Gateway == demo.GatewayTraefik {
		if _, err := demo.TraefikBinary(root); err != nil {
			Skip(suite + " needs Traefik: " + err.Error())
		}
	}
	opts.Root = root
	opts.Logf = func(format string, args ...any) { fmt.Fprintf(GinkgoWriter, format+"\n", args...) }
	st, err := demo.Start(ctx, opts)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		Expect(st.Close()).To(Succeed())
	})
	for _, t := range st.Timings {
		fmt.Fprintf(GinkgoWriter, "start-up: %s %s\n", t.What, t.Took.Round(time.Millisecond))
	}
	return &Stack{Stack: st, RoutingTable: routingTable}
}

// Reset brings the stack back to the state every spec starts from: no
// rollout, the route as in Git and at the gateway, the simulators as
// configured at start with their endpoints, and no recent trouble in
// Prometheus that a gate could hold against the next rollout.
func (s *Stack) Reset(ctx context.Context) {
	GinkgoHelper()
	Expect(s.DeleteRollouts(ctx)).To(Succeed())
	Eventually(ctx, s.RolloutsGone).Should(BeTrue())
	Expect(s.ResetRoute(ctx)).To(Succeed())
	Expect(s.ResetSimulators()).To(Succeed())
	Expect(s.ResetEndpoints(ctx)).To(Succeed())
	s.ExpectWeights(ctx, map[string]int32{demo.Stable: 1})
	// A slow or failing request of an earlier spec still inside the gates'
	// or the alert's windows (e.g. a long stream) would fail this spec's
	// rollout. Such a request may have ended only just before this node:
	// Prometheus must have scraped every target since then, or
	// RecentTrouble would not see it yet and a gate later would.
	Expect(s.Prometheus.WaitForScrapesAfter(ctx, time.Now())).To(Succeed())
	Eventually(ctx, s.RecentTrouble).Should(BeEmpty())
}

// DiagnoseFailure is a suite's AfterEach: when the spec failed, it writes
// the stack's diagnostics to GinkgoWriter.
func (s *Stack) DiagnoseFailure() {
	if CurrentSpecReport().Failed() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fmt.Fprintf(GinkgoWriter, "\n\n########## diagnostics of %q ##########\n", CurrentSpecReport().FullText())
		s.Diagnostics(ctx, GinkgoWriter)
	}
}

// ManifestRollout reads one of the demo's rollout manifests.
func (s *Stack) ManifestRollout(file string) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	ro, err := demo.ReadRollout(s.File(file))
	Expect(err).NotTo(HaveOccurred())
	return ro
}

// NewRollout is the demo's good rollout (v1 -> v2) under another name with
// another schedule, without analysis and alert selector unless the spec
// adds them.
func (s *Stack) NewRollout(name string, steps ...rolloutsv1.Step) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	ro := s.ManifestRollout(demo.GoodRolloutFile)
	ro.Name = name
	ro.Spec.Steps = steps
	ro.Spec.Analysis = nil
	ro.Spec.RollbackOnAlerts = nil
	return ro
}

// Step is a schedule step; an empty pause waits for a promote.
func Step(weight int32, pause string) rolloutsv1.Step {
	s := rolloutsv1.Step{Weight: weight}
	if pause != "" {
		s.Pause = ptr.To(rolloutsv1.Duration(pause))
	}
	return s
}

// Apply creates or updates the rollout.
func (s *Stack) Apply(ctx context.Context, ro *rolloutsv1.ModelRollout) {
	GinkgoHelper()
	Expect(demo.ApplyRollout(ctx, s.Client, ro)).To(Succeed())
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

// ExpectState waits until the rollout's status is the wanted state for the
// current revision of its spec.
func (s *Stack) ExpectState(ctx context.Context, name string, phase rolloutsv1.Phase, stepText string, weight int32) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	return s.AwaitRollout(ctx, name, phase, func(g Gomega, ro *rolloutsv1.ModelRollout) {
		got := rolloutState{ro.Status.Revision, ro.Status.Phase, ro.Status.Step, ro.Status.CanaryWeight}
		want := rolloutState{ro.Spec.Revision(), phase, stepText, weight}
		g.Expect(got).To(Equal(want), "message: %s", ro.Status.Message)
	})
}

// ExpectPhase waits until the rollout reaches the phase for the current
// revision of its spec.
func (s *Stack) ExpectPhase(ctx context.Context, name string, phase rolloutsv1.Phase) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	return s.AwaitRollout(ctx, name, phase, func(g Gomega, ro *rolloutsv1.ModelRollout) {
		g.Expect(ro.Status.Revision).To(Equal(ro.Spec.Revision()))
		g.Expect(ro.Status.Phase).To(Equal(phase), "step %s weight %d: %s", ro.Status.Step, ro.Status.CanaryWeight, ro.Status.Message)
	})
}

// AwaitRollout polls the rollout until its status is computed for the
// latest spec and check passes, and returns it; it stops at once when the
// rollout has ended in another phase than the awaited one.
func (s *Stack) AwaitRollout(ctx context.Context, name string, phase rolloutsv1.Phase, check func(Gomega, *rolloutsv1.ModelRollout)) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	var ro *rolloutsv1.ModelRollout
	Eventually(ctx, func(g Gomega) {
		var err error
		ro, err = s.Rollout(ctx, name)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ro.Status.ObservedGeneration).To(Equal(ro.Generation), "status not computed for the latest spec yet")
		StopAtOtherEnd(ro, phase)
		check(g, ro)
	}).Should(Succeed())
	return ro
}

// StopAtOtherEnd stops an Eventually at once when the rollout of the current
// revision has ended in Succeeded or RolledBack while the spec waits for
// another phase: a finished rollout stays where it is, so waiting longer
// only hides the message that says why. (A retry not yet handled is the
// one way out of RolledBack without a new revision.)
func StopAtOtherEnd(ro *rolloutsv1.ModelRollout, want rolloutsv1.Phase) {
	st := ro.Status
	ended := st.Phase == rolloutsv1.PhaseSucceeded || st.Phase == rolloutsv1.PhaseRolledBack
	retry := ro.Annotations[rolloutsv1.AnnotationRetry]
	retryPending := retry != "" && retry != st.LastHandledRetry
	if ended && st.Phase != want && !retryPending && st.Revision == ro.Spec.Revision() && st.ObservedGeneration == ro.Generation {
		StopTrying(fmt.Sprintf("the rollout ended %s at step %s, weight %d, while %s was awaited: %s",
			st.Phase, st.Step, st.CanaryWeight, want, st.Message)).Now()
	}
}

// ExpectWeights waits until both the HTTPRoute in the API server and the
// gateway's routing table carry the weights on the gpt4 rule (by Service
// name; every backendRef of the rule must be listed). Traefik leaves a
// backendRef of weight 0 in the weighted service, and never picks it.
func (s *Stack) ExpectWeights(ctx context.Context, want map[string]int32) {
	GinkgoHelper()
	Eventually(ctx, s.RouteWeights).Should(Equal(want), "the HTTPRoute's gpt4 rule")
	Eventually(ctx, func() map[string]int32 {
		w, _ := s.GatewayWeights()
		return w
	}).Should(Equal(want), s.RoutingTable)
}

// OpenCanaryStream opens streams of the given tokens through the gateway,
// at most attempts of them, until one is served by the canary (the weights
// are 50/50) and delivers tokens.
func (s *Stack) OpenCanaryStream(ctx context.Context, tokens, attempts int) *demo.Stream {
	GinkgoHelper()
	for attempt := 1; attempt <= attempts; attempt++ {
		st, err := demo.OpenStream(ctx, s.GatewayURL, tokens)
		Expect(err).NotTo(HaveOccurred())
		if st.Status != 200 || st.Backend != demo.GoodCanary {
			st.Close()
			continue
		}
		// Tokens flowing prove the stream is established end to end. (The
		// test gateway can cut a stream right after its headers: Go's
		// reverse proxy closes the upstream connection when the upstream
		// answers before the proxy saw the request body's EOF. Then another
		// stream is tried.)
		Eventually(ctx, func() bool {
			select {
			case <-st.Done():
				return true
			default:
				return st.Chunks() >= 3
			}
		}).WithTimeout(time.Minute).Should(BeTrue())
		if st.Chunks() >= 3 {
			return st
		}
		st.Close()
	}
	Fail(fmt.Sprintf("no stream reached the canary in %d attempts at 50%%", attempts))
	return nil
}
