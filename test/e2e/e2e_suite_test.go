package e2e

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/modelrollout/modelrollout/test/demo"
	"github.com/modelrollout/modelrollout/test/e2eutil"
)

// The suite shares one stack: starting it takes tens of seconds. Every spec
// starts from the same state (BeforeEach): no ModelRollout, the HTTPRoute as
// in Git and seen so by the gateway, the simulators as configured at start,
// and no alert pending or firing anywhere.

var stack *e2eutil.Stack

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ModelRollout end-to-end suite")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	stack = e2eutil.StartStack(ctx, "the end-to-end suite", "the gateway's routing table",
		demo.Options{BuildPlugin: true})
}, NodeTimeout(10*time.Minute))

var _ = BeforeEach(func(ctx SpecContext) {
	By("resetting the stack: no rollout, the route as in Git, healthy simulators with one ready endpoint each, no alert, no recent trouble in Prometheus")
	stack.Reset(ctx)
	// With no errors left in the alert's window, no alert can start firing
	// any more; one still pending or firing from an earlier spec would roll
	// back this spec's rollout: wait until Prometheus and Alertmanager hold
	// none.
	Eventually(ctx, stack.ActiveAlerts).WithTimeout(4 * time.Minute).Should(BeEmpty())
}, NodeTimeout(8*time.Minute))

var _ = AfterEach(func() { stack.DiagnoseFailure() })
