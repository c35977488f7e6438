package e2e

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
)

// The finish at the gateway: after success, `kubectl modelrollout finish`
// leaves the route equal to what `finish --print` says Git holds, and the
// gateway sends everything to the new stable.
var _ = Describe("Finishing a rollout at the gateway", func() {
	It("leaves the route equal to the Git change of finish --print, all traffic on the new stable", func(ctx SpecContext) {
		ro := stack.NewRollout("gpt4-finish", step(100, "0s"))
		stack.Apply(ctx, ro)
		stack.ExpectPhase(ctx, ro.Name, rolloutsv1.PhaseSucceeded)
		stack.ExpectWeights(ctx, map[string]int32{demo.Stable: 0, demo.GoodCanary: 100})

		By("the Git change, printed")
		printed, err := plugin(ctx, "finish", ro.Name, "--print")
		Expect(err).NotTo(HaveOccurred())
		docs := strings.Split(printed, "\n---\n")
		Expect(docs).To(HaveLen(1 + len(ro.Spec.Routes)))
		gitRoute := &gatewayv1.HTTPRoute{}
		Expect(yaml.Unmarshal([]byte(docs[1]), gitRoute)).To(Succeed())
		Expect(gitRoute.Name).To(Equal(demo.RouteName))

		By("the finish")
		_, err = plugin(ctx, "finish", ro.Name, "--wait", "--timeout", "2m")
		Expect(err).NotTo(HaveOccurred())
		stack.ExpectPhase(ctx, ro.Name, rolloutsv1.PhaseIdle)
		stack.ExpectWeights(ctx, map[string]int32{demo.GoodCanary: 100})
		Eventually(ctx, func(g Gomega) {
			live := &gatewayv1.HTTPRoute{}
			g.Expect(stack.Client.Get(ctx, types.NamespacedName{Namespace: demo.Namespace, Name: demo.RouteName}, live)).To(Succeed())
			g.Expect(live.Spec.Rules).To(Equal(gitRoute.Spec.Rules), "the live rules are what Git holds after the finish")
			g.Expect(live.Annotations).NotTo(HaveKey(rolloutsv1.AnnotationRuleOwners))
		}).Should(Succeed())
		expectRestOfRouteUntouched(ctx)
		expectOnlyServedBy(ctx, demo.GoodCanary, 200)
	}, SpecTimeout(5*time.Minute))
})
