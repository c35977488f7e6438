package traefik

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

// The suite shares one stack. Every spec starts from the same state
// (BeforeEach): no ModelRollout, the HTTPRoute as in Git and served so by
// Traefik, the simulators as configured at start, and no recent trouble in
// Prometheus that a gate could hold against the next rollout.

var stack *demo.Stack

func TestTraefik(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ModelRollout through Traefik suite")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	log.SetOutput(GinkgoWriter)
	SetDefaultEventuallyTimeout(5 * time.Minute)
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	EnforceDefaultTimeoutsWhenUsingContexts()

	root, err := demo.FindRepoRoot()
	Expect(err).NotTo(HaveOccurred())
	if _, err := demo.ControlPlaneAssets(root); err != nil {
		Skip("the Traefik suite needs kube-apiserver and etcd: " + err.Error())
	}
	if err := promharness.Available(); err != nil {
		Skip("the Traefik suite needs Prometheus and Alertmanager: " + err.Error())
	}
	if _, err := demo.TraefikBinary(root); err != nil {
		Skip("the Traefik suite needs Traefik: " + err.Error())
	}
	stack, err = demo.Start(ctx, demo.Options{
		Root:    root,
		Logf:    func(format string, args ...any) { fmt.Fprintf(GinkgoWriter, format+"\n", args...) },
		Gateway: demo.GatewayTraefik,
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
	By("resetting the stack: no rollout, the route as in Git and at Traefik, healthy simulators, no recent trouble in Prometheus")
	Expect(stack.DeleteRollouts(ctx)).To(Succeed())
	Eventually(ctx, stack.RolloutsGone).Should(BeTrue())
	Expect(stack.ResetRoute(ctx)).To(Succeed())
	Expect(stack.ResetSimulators()).To(Succeed())
	Expect(stack.ResetEndpoints(ctx)).To(Succeed())
	expectWeights(ctx, map[string]int32{demo.Stable: 1})
	Expect(stack.Prometheus.WaitForScrapesAfter(ctx, time.Now())).To(Succeed())
	Eventually(ctx, stack.RecentTrouble).Should(BeEmpty())
}, NodeTimeout(8*time.Minute))

var _ = AfterEach(func() {
	if CurrentSpecReport().Failed() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fmt.Fprintf(GinkgoWriter, "\n\n########## diagnostics of %q ##########\n", CurrentSpecReport().FullText())
		stack.Diagnostics(ctx, GinkgoWriter)
	}
})
