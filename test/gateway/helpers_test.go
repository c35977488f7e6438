package gateway_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/modelrollout/modelrollout/test/gateway"
)

// decodeRoutes parses "---"-separated HTTPRoute YAML documents.
func decodeRoutes(t testing.TB, docs string) []gatewayv1.HTTPRoute {
	t.Helper()
	var out []gatewayv1.HTTPRoute
	for i, doc := range strings.Split(docs, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var r gatewayv1.HTTPRoute
		if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
			t.Fatalf("route document %d: %v", i, err)
		}
		out = append(out, r)
	}
	return out
}

// fakeResolver resolves every Service to an address derived from its name,
// unless overridden. Addresses are never dialled by pure tests.
func fakeResolver(overrides map[string][]string) gateway.Resolver {
	return func(ns, svc string, port int32) ([]string, error) {
		if eps, ok := overrides[svc]; ok {
			return eps, nil
		}
		return []string{fmt.Sprintf("127.0.0.1:%d", port)}, nil
	}
}

// request builds a request for routing tests; headers are "name", "value"
// pairs.
func request(method, target string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

// routeOf routes req and returns "route/ruleIndex" or "404".
func routeOf(tb *gateway.Table, req *http.Request) string {
	r, ok := tb.Route(req)
	if !ok {
		return "404"
	}
	return fmt.Sprintf("%s/%d", r.RouteName, r.Index)
}

// backendsOf returns "name:port=weight" for each backend of a rule.
func backendsOf(r *gateway.Rule) []string {
	var out []string
	for _, b := range r.Backends {
		out = append(out, fmt.Sprintf("%s:%d=%d", b.Name, b.Port, b.Weight))
	}
	return out
}

// at sets a creation timestamp, for precedence tests.
func at(r gatewayv1.HTTPRoute, minute int) gatewayv1.HTTPRoute {
	r.CreationTimestamp = metav1.NewTime(time.Date(2026, 1, 1, 0, minute, 0, 0, time.UTC))
	return r
}

// scrape fetches /metrics from a metrics handler and parses it.
func scrape(t testing.TB, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body.String())
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing metrics: %v", err)
	}
	return mfs
}

// series finds the metric of a family with exactly these label values
// (other labels are not allowed); nil when absent.
func series(mfs map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	mf := mfs[name]
	if mf == nil {
		return nil
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		ok := true
		for _, lp := range m.GetLabel() {
			if v, found := want[lp.GetName()]; !found || v != lp.GetValue() {
				ok = false
				break
			}
		}
		if ok {
			return m
		}
	}
	return nil
}

// value returns a counter or gauge value, or -1 when the series is absent.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := series(mfs, name, labels...)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return -1
}

// histCount returns a histogram's sample count, or -1 when absent.
func histCount(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := series(mfs, name, labels...)
	if m == nil || m.Histogram == nil {
		return -1
	}
	return float64(m.GetHistogram().GetSampleCount())
}
