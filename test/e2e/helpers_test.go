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

	"github.com/modelrollout/modelrollout/test/demo"
	"github.com/modelrollout/modelrollout/test/e2eutil"
)

// step is a schedule step; an empty pause waits for a promote.
var step = e2eutil.Step

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
