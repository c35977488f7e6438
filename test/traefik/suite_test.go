package traefik

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/modelrollout/modelrollout/test/demo"
	"github.com/modelrollout/modelrollout/test/e2eutil"
)

// The suite shares one stack. Every spec starts from the same state
// (BeforeEach): no ModelRollout, the HTTPRoute as in Git and served so by
// Traefik, the simulators as configured at start, and no recent trouble in
// Prometheus that a gate could hold against the next rollout.

var stack *e2eutil.Stack

func TestTraefik(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ModelRollout through Traefik suite")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	stack = e2eutil.StartStack(ctx, "the Traefik suite", "the gpt4 rule's weighted service in Traefik's API",
		demo.Options{Gateway: demo.GatewayTraefik})
}, NodeTimeout(10*time.Minute))

var _ = BeforeEach(func(ctx SpecContext) {
	By("resetting the stack: no rollout, the route as in Git and at Traefik, healthy simulators, no recent trouble in Prometheus")
	stack.Reset(ctx)
}, NodeTimeout(8*time.Minute))

var _ = AfterEach(func() { stack.DiagnoseFailure() })
