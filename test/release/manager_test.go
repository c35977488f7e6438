package release_test

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// The helpers of this file serve the tests that run a released binary (the
// manager from the image, the plugin from its archive) against the test API
// server.

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// apiClient is a client of the test API server the kubeconfig kcfg points
// at, knowing the built-in, Gateway API and ModelRollout types.
func apiClient(g Gomega, kcfg string) client.Client {
	scheme := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	utilruntime.Must(rolloutsv1.AddToScheme(scheme))
	restCfg, err := clientcmd.BuildConfigFromFlags("", kcfg)
	g.Expect(err).NotTo(HaveOccurred())
	c, err := client.New(restCfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	return c
}

// createNamespace creates the namespace ns.
func createNamespace(ctx context.Context, g Gomega, c client.Client, ns string) {
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
}

// startManager starts the manager's command cmd with its output collected
// in the returned buffer. When the test ends, cancel (the context of cmd)
// stops it, and the log is written if the test failed.
func startManager(t *testing.T, g Gomega, cmd *exec.Cmd, cancel context.CancelFunc) *syncBuffer {
	t.Helper()
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	g.Expect(cmd.Start()).To(Succeed())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.String())
		}
	})
	return logs
}

// createCanaryRollout creates in ns the objects of a rollout named
// "rollout": the canary Service with a ready endpoint, the HTTPRoute
// "route" to the stable Service, and the ModelRollout moving the canary
// to 10 % then 100 %, an hour's pause after each step.
func createCanaryRollout(ctx context.Context, g Gomega, c client.Client, ns string) {
	g.Expect(c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "canary", Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8000}}}})).To(Succeed())
	g.Expect(c.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "canary", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "canary"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8000)}},
	})).To(Succeed())
	g.Expect(c.Create(ctx, &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "route", Namespace: ns},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "gw"}}},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: "stable", Port: ptr.To[gatewayv1.PortNumber](8000)}}}}}},
		},
	})).To(Succeed())
	pause := rolloutsv1.Duration("1h")
	g.Expect(c.Create(ctx, &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "rollout", Namespace: ns},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{{Name: "route"}},
			Stable: rolloutsv1.BackendRef{Name: "stable", Port: ptr.To[int32](8000)},
			Canary: &rolloutsv1.BackendRef{Name: "canary", Port: ptr.To[int32](8000)},
			Steps:  []rolloutsv1.Step{{Weight: 10, Pause: &pause}, {Weight: 100, Pause: &pause}},
		},
	})).To(Succeed())
}

// waitFirstStep waits until the rollout of createCanaryRollout in ns is
// Progressing with its canary at 10 % in status and on the route; more, if
// not nil, checks the rollout further on each try. The manager's log tail
// explains a failure.
func waitFirstStep(ctx context.Context, g Gomega, c client.Client, ns string, logs *syncBuffer, more func(Gomega, *rolloutsv1.ModelRollout)) {
	g.Eventually(func(g Gomega) {
		ro := &rolloutsv1.ModelRollout{}
		g.Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "rollout"}, ro)).To(Succeed())
		g.Expect(ro.Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
		g.Expect(ro.Status.CanaryWeight).To(BeEquivalentTo(10))
		if more != nil {
			more(g, ro)
		}
		r := &gatewayv1.HTTPRoute{}
		g.Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "route"}, r)).To(Succeed())
		weights := map[string]int32{}
		for _, ref := range r.Spec.Rules[0].BackendRefs {
			weights[string(ref.Name)] = ptr.Deref(ref.Weight, -1)
		}
		g.Expect(weights).To(Equal(map[string]int32{"stable": 90, "canary": 10}))
	}, 2*time.Minute, 200*time.Millisecond).Should(Succeed(), func() string { return "manager log:\n" + tailString(logs.String(), 4000) })
}
