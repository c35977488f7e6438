package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/modelrollout/modelrollout/test/gateway"
)

// gatewayAPICRDs returns the standard-channel Gateway API CRDs of the
// gateway-api module this repository requires (override with
// GATEWAY_API_CRD_DIR).
func gatewayAPICRDs(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("GATEWAY_API_CRD_DIR"); dir != "" {
		return dir
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("locating the gateway-api module (set GATEWAY_API_CRD_DIR): %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
}

// TestGatewayAgainstAPIServer runs the gateway against a real kube-apiserver
// (envtest): it must pick up Gateway, HTTPRoute, Service and EndpointSlice
// changes from the informers and route accordingly.
func TestGatewayAgainstAPIServer(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set: run `bash test/scripts/control-plane.sh` and export KUBEBUILDER_ASSETS=<the folder it prints> to run this test")
	}
	g := NewWithT(t)
	ctrllog.SetLogger(logr.Discard())

	env := &envtest.Environment{
		CRDDirectoryPaths:        []string{gatewayAPICRDs(t)},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 3 * time.Minute, // a loaded 2-core machine
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := env.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})

	scheme := runtime.NewScheme()
	g.Expect(gateway.AddToScheme(scheme)).To(Succeed())
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	ctx := t.Context()

	const ns = "gw-envtest"
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())

	a := newBackend(t, "svc-a", nil)
	b := newBackend(t, "svc-b", nil)
	for _, be := range []*testBackend{a, b} {
		_, portStr, _ := strings.Cut(be.addr(), ":")
		p, err := strconv.Atoi(portStr)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: be.name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
				{Name: "http", Port: 8000, TargetPort: intstr.FromInt32(8000)},
			}},
		})).To(Succeed())
		// The convention: a documentation address (never dialled) and the
		// backend's real port on 127.0.0.1.
		g.Expect(c.Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: ns, Name: be.name + "-1",
				Labels: map[string]string{discoveryv1.LabelServiceName: be.name},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(p)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		})).To(Succeed())
	}
	gw := &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "llm-gateway"},
		Spec: gatewayv1.GatewaySpec{
			GatewayClassName: "modelrollout-test",
			Listeners:        []gatewayv1.Listener{{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType}},
		},
	}
	g.Expect(c.Create(ctx, gw)).To(Succeed())
	route := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "llm-canary"},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "llm-gateway"}}},
			Rules: []gatewayv1.HTTPRouteRule{{
				Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{
					Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/v1"),
				}}},
				BackendRefs: []gatewayv1.HTTPBackendRef{backendRef("svc-a", 100), backendRef("svc-b", 0)},
				Timeouts:    &gatewayv1.HTTPRouteTimeouts{Request: ptr.To(gatewayv1.Duration("120s"))},
			}},
		},
	}
	g.Expect(c.Create(ctx, route)).To(Succeed())

	gwy, err := gateway.New(gateway.Options{
		Config:  cfg,
		Gateway: types.NamespacedName{Namespace: ns, Name: "llm-gateway"},
		Logger:  testr.New(t),
	})
	g.Expect(err).NotTo(HaveOccurred())
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gwy.Start(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway Start: %v", err)
		}
	})
	srv := httptest.NewServer(gwy.Handler())
	t.Cleanup(srv.Close)
	httpc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: waitLimit}

	get := func() (int, string) {
		resp, err := httpc.Get(srv.URL + "/v1/chat/completions")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	// waitTable waits until the gateway's table satisfies check; the
	// informers are asynchronous, the table swap is atomic.
	waitTable := func(what string, check func(rules []*gateway.Rule) bool) {
		t.Helper()
		g.Eventually(func() bool { return check(gwy.Table().Rules()) }).
			WithTimeout(waitLimit).WithPolling(20*time.Millisecond).Should(BeTrue(), what)
	}
	weights := func(wa, wb int32) func([]*gateway.Rule) bool {
		return func(rules []*gateway.Rule) bool {
			return len(rules) == 1 && len(rules[0].Backends) == 2 &&
				rules[0].Backends[0].Weight == wa && rules[0].Backends[1].Weight == wb &&
				len(rules[0].Backends[0].Endpoints) == 1 && len(rules[0].Backends[1].Endpoints) == 1
		}
	}
	// expectAll checks that every request gets (code, body).
	expectAll := func(code int, body string) {
		t.Helper()
		for range 10 {
			gotCode, gotBody := get()
			g.Expect(gotCode).To(Equal(code))
			g.Expect(gotBody).To(ContainSubstring(body))
		}
	}

	waitTable("route attached with both backends resolved", weights(100, 0))
	g.Expect(gwy.Table().Rules()[0].RequestTimeout).To(Equal(120 * time.Second))
	expectAll(http.StatusOK, "svc-a")
	ready := httptest.NewRecorder()
	gwy.MetricsHandler().ServeHTTP(ready, httptest.NewRequest("GET", "/ready", nil))
	g.Expect(ready.Code).To(Equal(http.StatusOK))

	// The operator shifts all traffic to the canary.
	setWeights := func(wa, wb int32) {
		t.Helper()
		var cur gatewayv1.HTTPRoute
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(route), &cur)).To(Succeed())
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.Rules[0].BackendRefs = []gatewayv1.HTTPBackendRef{backendRef("svc-a", wa), backendRef("svc-b", wb)}
		g.Expect(c.Patch(ctx, &cur, patch)).To(Succeed())
		waitTable("weights updated", weights(wa, wb))
	}
	setWeights(0, 100)
	expectAll(http.StatusOK, "svc-b")

	// 50/50: both backends answer (the chance that 100 requests all hit
	// the same one is 2·2^-100).
	setWeights(50, 50)
	seen := map[string]int{}
	for range 100 {
		_, body := get()
		seen[body]++
	}
	g.Expect(seen).To(HaveKey("svc-a"))
	g.Expect(seen).To(HaveKey("svc-b"))

	// Endpoint changes are picked up too: svc-b loses its only endpoint.
	setWeights(0, 100)
	expectAll(http.StatusOK, "svc-b")
	g.Expect(c.Delete(ctx, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "svc-b-1"}})).To(Succeed())
	waitTable("svc-b without endpoints", func(rules []*gateway.Rule) bool {
		return len(rules) == 1 && len(rules[0].Backends) == 2 && len(rules[0].Backends[1].Endpoints) == 0
	})
	expectAll(http.StatusServiceUnavailable, gateway.BodyNoHealthyUpstream)

	mfs := scrape(t, gwy.MetricsHandler())
	clB := gateway.ClusterName(ns, "svc-b", 8000)
	g.Expect(value(mfs, gateway.MetricUpstreamRqTotal, gateway.LabelClusterName, clB)).To(BeNumerically(">", 0))
	g.Expect(value(mfs, gateway.MetricUpstreamCxNoneHealthy, gateway.LabelClusterName, clB)).To(BeEquivalentTo(10))

	// Without its Gateway the route is not served.
	g.Expect(c.Delete(ctx, gw)).To(Succeed())
	waitTable("no routes", func(rules []*gateway.Rule) bool { return len(rules) == 0 })
	expectAll(http.StatusNotFound, gateway.BodyNoRoute)
}

func backendRef(name string, weight int32) gatewayv1.HTTPBackendRef {
	return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{
		BackendObjectReference: gatewayv1.BackendObjectReference{
			Name: gatewayv1.ObjectName(name), Port: ptr.To(gatewayv1.PortNumber(8000)),
		},
		Weight: ptr.To(weight),
	}}
}
