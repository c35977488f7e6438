// Package bench holds benchmarks that need a real API server.
package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/modelrollout/modelrollout/analysis"
	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/controllers"
	"github.com/modelrollout/modelrollout/controllers/alerts"
)

const token = "bench-token"

// stack is an API server with the operator and its alert receiver running
// in this process, shared by the benchmark's runs.
type stack struct {
	env      *envtest.Environment
	client   client.WithWatch
	receiver string
	cancel   context.CancelFunc
	// prom is the Prometheus the gates of BenchmarkAbortUnderSlowPrometheus
	// query; nil, with promErr saying why, when it cannot run here.
	prom    *slowPrometheus
	promErr string
}

var (
	once   sync.Once
	shared *stack
	setErr error
)

func start(b *testing.B) *stack {
	once.Do(func() { shared, setErr = newStack() })
	if setErr != nil {
		b.Fatal(setErr)
	}
	return shared
}

func newStack() (*stack, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run `make bench`")
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	utilruntime.Must(rolloutsv1.AddToScheme(scheme))
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return nil, fmt.Errorf("locate gateway-api: %w", err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases"),
			filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := &stack{env: env, client: c, cancel: cancel}
	if st.prom, err = startSlowPrometheus(ctx); err != nil {
		st.promErr = err.Error()
	}
	r := &controllers.ModelRolloutReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Gates: &controllers.PrometheusGates{Secrets: mgr.GetAPIReader(), Clients: analysis.NewClientCache(256),
			// Prometheus listens on loopback, as --egress-allow=127.0.0.0/8 allows.
			Egress: egress.MustNew(nil, []string{"127.0.0.0/8"})}}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		cancel()
		return nil, err
	}
	rcv, err := alerts.New(alerts.Options{Client: mgr.GetClient(), Token: token, BindAddress: "127.0.0.1:0", Direct: r.AbortNow})
	if err != nil {
		cancel()
		return nil, err
	}
	if err := mgr.Add(rcv); err != nil {
		cancel()
		return nil, err
	}
	go func() { _ = mgr.Start(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for rcv.Addr() == nil {
		if time.Now().After(deadline) {
			cancel()
			return nil, fmt.Errorf("the alert receiver did not start")
		}
		time.Sleep(10 * time.Millisecond) // polling the receiver's bound address
	}
	st.receiver = "http://" + rcv.Addr().String() + "/alerts"
	return st, nil
}

// prepare creates n rollouts, each on its own route, and waits until every
// canary has 10 %.
func (s *stack) prepare(b *testing.B, ns string, n int) { s.prepareWith(b, ns, n, nil) }

// prepareWith is prepare with the given analysis on every rollout.
func (s *stack) prepareWith(b *testing.B, ns string, n int, analysis *rolloutsv1.Analysis) {
	ctx := context.Background()
	must(b, s.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	must(b, s.client.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "canary", Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8000}}}}))
	must(b, s.client.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "canary", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "canary"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8000)}},
	}))
	for i := range n {
		must(b, s.client.Create(ctx, route(ns, fmt.Sprintf("r%d", i))))
		pause := rolloutsv1.Duration("1h")
		must(b, s.client.Create(ctx, &rolloutsv1.ModelRollout{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("m%d", i), Namespace: ns},
			Spec: rolloutsv1.ModelRolloutSpec{
				Routes:   []rolloutsv1.RouteTarget{{Name: fmt.Sprintf("r%d", i)}},
				Stable:   rolloutsv1.BackendRef{Name: "stable", Port: ptr.To[int32](8000)},
				Canary:   &rolloutsv1.BackendRef{Name: "canary", Port: ptr.To[int32](8000)},
				Steps:    []rolloutsv1.Step{{Weight: 10, Pause: &pause}, {Weight: 100, Pause: &pause}},
				Analysis: analysis.DeepCopy(),
			},
		}))
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		list := &rolloutsv1.ModelRolloutList{}
		must(b, s.client.List(ctx, list, client.InNamespace(ns)))
		routes := &gatewayv1.HTTPRouteList{}
		must(b, s.client.List(ctx, routes, client.InNamespace(ns)))
		carried := map[string]bool{}
		for i := range routes.Items {
			carried[routes.Items[i].Name] = canaryWeight(&routes.Items[i]) == 10
		}
		ready := 0
		for _, ro := range list.Items {
			if ro.Status.StepStartedAt != nil && ro.Status.CanaryWeight == 10 && carried[ro.Spec.Routes[0].Name] {
				ready++
			}
		}
		if ready == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d rollouts reached 10%%", ready, n)
		}
		time.Sleep(100 * time.Millisecond) // polling the API server for a condition
	}
}

func route(ns, name string) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "gw"}}},
			Rules: []gatewayv1.HTTPRouteRule{{
				BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
					BackendObjectReference: gatewayv1.BackendObjectReference{Name: "stable", Port: ptr.To[gatewayv1.PortNumber](8000)}}}},
			}},
		},
	}
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// canaryWeight is the canary's weight in the route's first rule.
func canaryWeight(r *gatewayv1.HTTPRoute) int32 {
	for _, ref := range r.Spec.Rules[0].BackendRefs {
		if ref.Name == "canary" && ref.Weight != nil {
			return *ref.Weight
		}
	}
	return -1
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkAlertToRoutePatched posts one firing alert per iteration straight
// to the operator's receiver and measures until the API server reports the
// rollout's route at canary weight 0. In the same run it times bare
// HTTPRoute PATCH round trips on the same API server, and reports the ratio.
// Run it with a fixed count: go test -bench . -benchtime=100x ./test/bench/
func BenchmarkAlertToRoutePatched(b *testing.B) {
	s := start(b)
	ctx := context.Background()
	ns := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	s.prepare(b, ns, b.N)

	b.ResetTimer()
	lat := s.abortEach(b, ns, b.N)
	b.StopTimer()

	// Bare PATCH round trips of one route's weight, on the same server.
	var bare []time.Duration
	r := &gatewayv1.HTTPRoute{}
	must(b, s.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "r0"}, r))
	for i := range max(100, b.N) {
		patch := fmt.Sprintf(`[{"op":"add","path":"/spec/rules/0/backendRefs/0/weight","value":%d}]`, 100-i%2)
		start := time.Now()
		must(b, s.client.Patch(ctx, r, client.RawPatch(types.JSONPatchType, []byte(patch))))
		bare = append(bare, time.Since(start))
	}

	b.ReportMetric(ms(percentile(lat, 0.5)), "alert-p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "alert-p99-ms")
	b.ReportMetric(ms(percentile(lat, 1)), "alert-max-ms")
	b.ReportMetric(ms(percentile(bare, 0.5)), "patch-p50-ms")
	b.ReportMetric(ms(percentile(bare, 0.99)), "patch-p99-ms")
	b.ReportMetric(float64(percentile(lat, 0.5))/float64(percentile(bare, 0.5)), "alert/patch-p50")
	b.ReportMetric(float64(percentile(lat, 0.99))/float64(percentile(bare, 0.99)), "alert/patch-p99")
}

// TestMain stops the shared API server when the benchmarks are done.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.cancel()
		if shared.prom != nil {
			shared.prom.Close()
		}
		_ = shared.env.Stop()
	}
	os.Exit(code)
}
