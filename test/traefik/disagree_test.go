package traefik

import (
	"io"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/demo"
	"github.com/modelrollout/modelrollout/test/vllmsim"
)

// Where Traefik and the test gateway (test/gateway) disagree on something
// the operator relies on. docs/guides/traefik.md tells users.
var _ = Describe("Where Traefik and the test gateway disagree", func() {
	// The EndpointSlice API says a nil ready condition is an unknown state
	// that consumers should in most cases read as ready. The operator's
	// capacity check (controllers/observe.go, readyEndpoints) and the test
	// gateway (test/gateway, resolve) do; Traefik's Gateway provider sends
	// traffic only to endpoints whose ready condition is true. The
	// EndpointSlice controller always sets it, so this bites only
	// hand-written or third-party slices.
	It("an endpoint whose ready condition is unset: the operator counts it and moves weight, Traefik sends it nothing, answers 503 for the canary's share and counts none of it as the canary's", func(ctx SpecContext) {
		By("the canary's only endpoint has no ready (and no serving) condition")
		Eventually(ctx, func(g Gomega) {
			es := &discoveryv1.EndpointSlice{}
			g.Expect(stack.Client.Get(ctx, types.NamespacedName{Namespace: demo.Namespace, Name: demo.GoodCanary + "-loopback"}, es)).To(Succeed())
			for i := range es.Endpoints {
				es.Endpoints[i].Conditions.Ready = nil
				es.Endpoints[i].Conditions.Serving = nil
			}
			g.Expect(stack.Client.Update(ctx, es)).To(Succeed())
		}).Should(Succeed())

		ro := stack.NewRollout("gpt4-ready-unset", step(25, ""), step(100, ""))
		stack.Apply(ctx, ro)
		By("the operator reads the endpoint as ready and sets 75/25")
		stack.ExpectState(ctx, ro.Name, rolloutsv1.PhasePaused, "1/2", 25)
		Eventually(ctx, stack.RouteWeights).Should(Equal(map[string]int32{demo.Stable: 75, demo.GoodCanary: 25}))

		By("Traefik gives the canary's backendRef no server, keeps its weight, and answers 503 for that share")
		Eventually(ctx, func(g Gomega) {
			services, err := stack.TraefikServices(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			var canary *demo.TraefikService
			for i := range services {
				if demo.TraefikBackendService(services[i].Name) == demo.GoodCanary {
					canary = &services[i]
				}
			}
			g.Expect(canary).NotTo(BeNil(), "the canary's backendRef service in Traefik's API")
			g.Expect(canary.LoadBalancer).NotTo(BeNil())
			g.Expect(canary.LoadBalancer.Servers).To(BeEmpty())
		}).Should(Succeed())
		Eventually(ctx, func() map[string]int32 {
			w, _ := stack.GatewayWeights()
			return w
		}).Should(Equal(map[string]int32{demo.Stable: 75}), "only the stable has a server")
		tally, counted := batch(ctx, requestsPerStep, nil)
		AddReportEntry("ready unset, at 25%", tally.String())
		Expect(tally).To(Equal(demo.Tally{
			demo.Stable:      {OK: requestsPerStep * 75 / 100},
			demo.FromGateway: {Failed: requestsPerStep * 25 / 100},
		}), "the test gateway would have sent the canary its 25%%")
		// Traefik's service for the canary's backendRef counts none of
		// them: traefik-error-ratio has no data for the canary (its gate
		// holds, by minRequests or noData) instead of failing.
		Expect(counted).To(Equal(map[string]float64{demo.Stable: requestsPerStep * 75 / 100}),
			"traefik_service_requests_total by backend Service: the canary's share is not counted as the canary's")

		By("the status Traefik answers for the canary's share")
		var codes []int
		for range 4 { // one in four requests is the canary's at 75/25
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, stack.GatewayURL+"/v1/chat/completions",
				strings.NewReader(`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`))
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set("x-model-id", demo.ModelID)
			req.Header.Set("content-type", "application/json")
			resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Minute}).Do(req)
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Header.Get(vllmsim.BackendHeader) == "" {
				codes = append(codes, resp.StatusCode)
			}
		}
		Expect(codes).To(Equal([]int{http.StatusServiceUnavailable}), "one of four requests answered by Traefik itself, with a 503")
	}, SpecTimeout(5*time.Minute))
})
