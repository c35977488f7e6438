package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

const testToken = "s3cret-token"

var testScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(rolloutsv1.AddToScheme(s))
	return s
}()

// rollout builds a ModelRollout in a phase, with an optional selector.
func rollout(ns, name string, phase rolloutsv1.Phase, sel map[string]string) *rolloutsv1.ModelRollout {
	ro := &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{{Name: "chat"}},
			Stable: rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "llm-v1", Port: ptr.To[int32](8000)},
			Canary: &rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "llm-v2", Port: ptr.To[int32](8000)},
		},
		Status: rolloutsv1.ModelRolloutStatus{Phase: phase},
	}
	if sel != nil {
		ro.Spec.RollbackOnAlerts = &rolloutsv1.AlertSelector{MatchLabels: sel}
	}
	ro.Status.Revision = ro.Spec.Revision()
	return ro
}

func fakeClient(funcs *interceptor.Funcs, objs ...client.Object) client.WithWatch {
	b := fake.NewClientBuilder().WithScheme(testScheme).
		WithStatusSubresource(&rolloutsv1.ModelRollout{}).
		WithObjects(objs...)
	if funcs != nil {
		b = b.WithInterceptorFuncs(*funcs)
	}
	return b.Build()
}

func testLogger(tb testing.TB) logr.Logger {
	if testing.Verbose() {
		return testr.NewWithInterface(tb, testr.Options{Verbosity: 1})
	}
	return logr.Discard()
}

func newTestReceiver(tb testing.TB, c client.Client, mod func(*Options)) *Receiver {
	tb.Helper()
	opts := Options{Client: c, Token: testToken, Logger: testLogger(tb)}
	if mod != nil {
		mod(&opts)
	}
	r, err := New(opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return r
}

var t0 = time.Date(2026, 3, 14, 9, 26, 53, 589_000_000, time.UTC)

func firing(fp string, labels map[string]string) Alert {
	return Alert{
		Status:       StatusFiring,
		Labels:       labels,
		Annotations:  map[string]string{"summary": "error rate above 5%"},
		StartsAt:     t0,
		GeneratorURL: "http://prometheus.example/graph?g0.expr=...",
		Fingerprint:  fp,
	}
}

func resolved(fp string, labels map[string]string) Alert {
	a := firing(fp, labels)
	a.Status = StatusResolved
	a.EndsAt = t0.Add(5 * time.Minute)
	return a
}

func payload(alerts ...Alert) *Payload {
	status := StatusResolved
	for _, a := range alerts {
		if a.Firing() {
			status = StatusFiring
		}
	}
	return &Payload{
		Version:     "4",
		GroupKey:    `{}:{alertname="HighErrorRate"}`,
		Status:      status,
		Receiver:    "modelrollout",
		GroupLabels: map[string]string{"alertname": "HighErrorRate"},
		ExternalURL: "http://alertmanager.example",
		Alerts:      alerts,
	}
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// post sends body to the handler with the given Authorization header value
// ("" for none).
func post(h http.Handler, auth string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// postPayload sends p with the test token and decodes the 200 summary.
func postPayload(tb testing.TB, h http.Handler, p *Payload) Summary {
	tb.Helper()
	rec := post(h, "Bearer "+testToken, mustJSON(tb, p))
	if rec.Code != http.StatusOK {
		tb.Fatalf("status %d, body %s", rec.Code, rec.Body)
	}
	var s Summary
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		tb.Fatalf("decode summary %q: %v", rec.Body, err)
	}
	return s
}

func getRollout(tb testing.TB, c client.Client, ns, name string) *rolloutsv1.ModelRollout {
	tb.Helper()
	ro := &rolloutsv1.ModelRollout{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, ro); err != nil {
		tb.Fatalf("get %s/%s: %v", ns, name, err)
	}
	return ro
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
