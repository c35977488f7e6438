package e2e

import (
	"context"
	"fmt"
	"log"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/modelrollout/modelrollout/test/demo"
	"github.com/modelrollout/modelrollout/test/promharness"
)

// The suite shares one stack: starting it takes tens of seconds. Every spec
// starts from the same state (BeforeEach): no ModelRollout, the HTTPRoute as
// in Git and seen so by the gateway, the simulators as configured at start,
// and no alert pending or firing anywhere.

var stack *demo.Stack

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ModelRollout end-to-end suite")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	// The gateway's reverse proxy logs through the standard logger.
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
		Skip("the end-to-end suite needs kube-apiserver and etcd: " + err.Error())
	}
	if err := promharness.Available(); err != nil {
		Skip("the end-to-end suite needs Prometheus and Alertmanager: " + err.Error())
	}
	stack, err = demo.Start(ctx, demo.Options{
		Root:        root,
		Logf:        func(format string, args ...any) { fmt.Fprintf(GinkgoWriter, format+"\n", args...) },
		BuildPlugin: true,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		Expect(stack.Close()).To(Succeed())
	})
	for _, t := range stack.Timings {
		fmt.Fprintf(GinkgoWriter, "start-up: %s %s\n", t.What, t.Took.Round(time.Millisecond))
	}
}, NodeTimeout(10*time.Minute))

var _ = BeforeEach(func(ctx SpecContext) {
	By("resetting the stack: no rollout, the route as in Git, healthy simulators with one ready endpoint each, no alert, no recent trouble in Prometheus")
	Expect(stack.DeleteRollouts(ctx)).To(Succeed())
	Eventually(ctx, stack.RolloutsGone).Should(BeTrue())
	Expect(stack.ResetRoute(ctx)).To(Succeed())
	Expect(stack.ResetSimulators()).To(Succeed())
	Expect(stack.ResetEndpoints(ctx)).To(Succeed())
	expectWeights(ctx, map[string]int32{demo.Stable: 1})
	// A slow or failing request of an earlier spec still inside the gates'
	// or the alert's windows (e.g. the 45s stream) would fail this spec's
	// rollout. Such a request may have ended only just before this node:
	// Prometheus must have scraped every target since then, or
	// RecentTrouble would not see it yet and a gate later would.
	Expect(stack.Prometheus.WaitForScrapesAfter(ctx, time.Now())).To(Succeed())
	Eventually(ctx, stack.RecentTrouble).Should(BeEmpty())
	// With no errors left in the alert's window, no alert can start firing
	// any more; one still pending or firing from an earlier spec would roll
	// back this spec's rollout: wait until Prometheus and Alertmanager hold
	// none.
	Eventually(ctx, stack.ActiveAlerts).WithTimeout(4 * time.Minute).Should(BeEmpty())
}, NodeTimeout(8*time.Minute))

var _ = AfterEach(func() {
	if CurrentSpecReport().Failed() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fmt.Fprintf(GinkgoWriter, "\n\n########## diagnostics of %q ##########\n", CurrentSpecReport().FullText())
		stack.Diagnostics(ctx, GinkgoWriter)
	}
})
