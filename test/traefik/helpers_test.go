package traefik

import (
	"context"
	"fmt"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// newRollout is the demo's good rollout (v1 -> v2) under another name with
// another schedule, without analysis and alert selector unless the spec
// adds them.
func newRollout(name string, steps ...rolloutsv1.Step) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	ro, err := demo.ReadRollout(stack.File(demo.GoodRolloutFile))
	Expect(err).NotTo(HaveOccurred())
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

func annotate(ctx context.Context, name, key string) {
	GinkgoHelper()
	Expect(stack.Annotate(ctx, name, map[string]string{key: time.Now().UTC().Format(time.RFC3339Nano)})).To(Succeed())
}

// expectState waits until the rollout's status is the wanted state for the
// current revision of its spec.
func expectState(ctx context.Context, name string, phase rolloutsv1.Phase, stepText string, weight int32) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	return awaitRollout(ctx, name, phase, func(g Gomega, ro *rolloutsv1.ModelRollout) {
		got := fmt.Sprintf("%s step %s weight %d (%s)", ro.Status.Phase, ro.Status.Step, ro.Status.CanaryWeight, ro.Status.Revision)
		want := fmt.Sprintf("%s step %s weight %d (%s)", phase, stepText, weight, ro.Spec.Revision())
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

func awaitRollout(ctx context.Context, name string, phase rolloutsv1.Phase, check func(Gomega, *rolloutsv1.ModelRollout)) *rolloutsv1.ModelRollout {
	GinkgoHelper()
	var ro *rolloutsv1.ModelRollout
	Eventually(ctx, func(g Gomega) {
		var err error
		ro, err = stack.Rollout(ctx, name)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ro.Status.ObservedGeneration).To(Equal(ro.Generation), "status not computed for the latest spec yet")
		st := ro.Status
		ended := st.Phase == rolloutsv1.PhaseSucceeded || st.Phase == rolloutsv1.PhaseRolledBack
		if ended && st.Phase != phase && st.Revision == ro.Spec.Revision() {
			StopTrying(fmt.Sprintf("the rollout ended %s at step %s, weight %d, while %s was awaited: %s",
				st.Phase, st.Step, st.CanaryWeight, phase, st.Message)).Now()
		}
		check(g, ro)
	}).Should(Succeed())
	return ro
}

// expectWeights waits until both the HTTPRoute in the API server and
// Traefik's running configuration (its API) carry the weights on the gpt4
// rule, by Service name.
func expectWeights(ctx context.Context, want map[string]int32) {
	GinkgoHelper()
	Eventually(ctx, stack.RouteWeights).Should(Equal(want), "the HTTPRoute's gpt4 rule")
	// Traefik leaves a backendRef of weight 0 in the weighted service, and
	// never picks it.
	Eventually(ctx, func() map[string]int32 {
		w, _ := stack.GatewayWeights()
		return w
	}).Should(Equal(want), "the gpt4 rule's weighted service in Traefik's API")
}

// batch sends n gpt-4 requests through Traefik's listener, eight at a
// time, and returns who answered (the simulators' x-backend header) and
// what Traefik counted per Service in traefik_service_requests_total. It
// fails when Traefik reloaded its configuration during the batch: a reload
// restarts the round robin, and the counts would no longer be exact.
func batch(ctx context.Context, n int, header http.Header) (demo.Tally, map[string]float64) {
	GinkgoHelper()
	before, reloads0, err := stack.TraefikCounters(ctx)
	Expect(err).NotTo(HaveOccurred())
	tally, err := demo.RunBatchWithHeader(ctx, stack.GatewayURL, n, 8, 0, header)
	Expect(err).NotTo(HaveOccurred())
	var after map[string]float64
	var reloads1 float64
	// Traefik counts a request when its response ends; the last ones may
	// land just after the client saw them. Responses no backend answered
	// are not waited for: Traefik may count them under no backendRef.
	served := n - tally[demo.FromGateway].Total() - tally[demo.NoResponse].Total()
	Eventually(ctx, func(g Gomega) {
		after, reloads1, err = stack.TraefikCounters(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		var sum float64
		for svc, v := range after {
			sum += v - before[svc]
		}
		g.Expect(sum).To(BeNumerically(">=", served))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	Expect(reloads1).To(Equal(reloads0), "Traefik reloaded its configuration during the batch")
	counted := map[string]float64{}
	for svc, v := range after {
		if d := v - before[svc]; d > 0 {
			counted[svc] = d
		}
	}
	return tally, counted
}

// expectSplit sends n requests without a header and expects exactly
// n*weight/100 of them at each backend, as the load generator and as
// Traefik counted them.
func expectSplit(ctx context.Context, n int, weights map[string]int32) {
	GinkgoHelper()
	tally, counted := batch(ctx, n, nil)
	want := demo.Tally{}
	wantCounted := map[string]float64{}
	var total int32
	for _, w := range weights {
		total += w
	}
	for svc, w := range weights {
		if w == 0 {
			continue
		}
		k := n * int(w) / int(total)
		want[svc] = demo.BackendCount{OK: k}
		wantCounted[svc] = float64(k)
	}
	AddReportEntry(fmt.Sprintf("split at %v", weights), fmt.Sprintf("answered: %s; Traefik counted: %v", tally, counted))
	Expect(tally).To(Equal(want), "who answered the %d requests", n)
	Expect(counted).To(Equal(wantCounted), "traefik_service_requests_total by backend Service")
}

// quiesce waits until Traefik's request counters stop moving: the requests
// of a load that was just stopped are all counted.
func quiesce(ctx context.Context) {
	GinkgoHelper()
	var last map[string]float64
	Eventually(ctx, func(g Gomega) {
		now, _, err := stack.TraefikCounters(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		prev := last
		last = now
		g.Expect(now).To(Equal(prev))
	}).WithPolling(time.Second).Should(Succeed())
}
