package promharness_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"

	"github.com/modelrollout/modelrollout/test/promharness"
	"github.com/modelrollout/modelrollout/test/vllmsim"
)

// Polling bounds. They are generous because the machine may be loaded;
// polling stops as soon as the condition holds.
const (
	waitLong = 90 * time.Second
	poll     = 100 * time.Millisecond
)

func requireBinaries(t *testing.T) {
	t.Helper()
	if err := promharness.Available(); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer collects a child's output; it is printed if the test fails.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func childLog(t *testing.T, name string) io.Writer {
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s output:\n%s", name, buf)
		}
	})
	return buf
}

// gaugeServer serves one gauge named harness_test_value at path.
func gaugeServer(t *testing.T, path string, v float64) (prometheus.Gauge, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "harness_test_value", Help: "test value"})
	g.Set(v)
	reg.MustRegister(g)
	mux := http.NewServeMux()
	mux.Handle(path, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return g, strings.TrimPrefix(srv.URL, "http://")
}

// queryVector runs an instant query at ts and returns its samples.
func queryVector(ctx context.Context, p *promharness.Prometheus, q string, ts time.Time) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, _, _, err := p.API().Query(ctx, q, ts)
	if err != nil {
		return nil, err
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("%s: got %s, want a vector", q, v.Type())
	}
	return vec, nil
}

// single returns the value of a query that must give exactly one sample.
func single(ctx context.Context, p *promharness.Prometheus, q string, ts time.Time) (float64, error) {
	vec, err := queryVector(ctx, p, q, ts)
	if err != nil {
		return 0, err
	}
	if len(vec) != 1 {
		return 0, fmt.Errorf("%s: %d samples, want 1: %v", q, len(vec), vec)
	}
	return float64(vec[0].Value), nil
}

func TestPrometheusScrapeStopStartAndReload(t *testing.T) {
	requireBinaries(t)
	g := NewWithT(t)
	ctx := t.Context()

	gauge, addr := gaugeServer(t, "/metrics", 42)
	prom, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{
		Targets:   []promharness.Target{{Job: "app", Addr: addr, Labels: map[string]string{"service": "vllm-gpt4-v2"}}},
		LogWriter: childLog(t, "prometheus"),
	})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { g.Expect(prom.Close()).To(Succeed()) })
	g.Expect(prom.URL()).To(HavePrefix("http://127.0.0.1:"))

	g.Expect(prom.WaitForTargetsUp(ctx)).To(Succeed())
	const q = `harness_test_value{job="app",service="vllm-gpt4-v2",instance="` + "%s" + `"}`
	query := fmt.Sprintf(q, addr)
	g.Eventually(func() (float64, error) { return single(ctx, prom, query, time.Now()) }).
		WithTimeout(waitLong).WithPolling(poll).Should(Equal(42.0))
	// After WaitForScrapesAfter(t), a query sees what the target held at t
	// on the first try, whatever the phase of the scrape interval.
	for _, v := range []float64{1, 2, 3} {
		gauge.Set(v)
		g.Expect(prom.WaitForScrapesAfter(ctx, time.Now())).To(Succeed())
		g.Expect(single(ctx, prom, query, time.Now())).To(Equal(v), "the first query after WaitForScrapesAfter")
	}
	gauge.Set(42)
	g.Expect(prom.WaitForScrapesAfter(ctx, time.Now())).To(Succeed())
	scrapedAt := time.Now()

	// Down: the API does not answer.
	url := prom.URL()
	g.Expect(prom.Stop()).To(Succeed())
	g.Expect(prom.Running()).To(BeFalse())
	_, err = single(ctx, prom, query, time.Now())
	g.Expect(err).To(HaveOccurred())
	g.Expect(prom.Stop()).To(Succeed()) // stopping twice is fine

	// Back on the same port with the same data.
	g.Expect(prom.Start(ctx)).To(Succeed())
	g.Expect(prom.URL()).To(Equal(url))
	g.Expect(prom.Start(ctx)).To(MatchError(ContainSubstring("already running")))
	g.Expect(single(ctx, prom, query, scrapedAt)).To(Equal(42.0), "samples scraped before Stop survive Start")
	gauge.Set(7)
	g.Eventually(func() (float64, error) { return single(ctx, prom, query, time.Now()) }).
		WithTimeout(waitLong).WithPolling(poll).Should(Equal(7.0))

	// Reload with a second target on a custom metrics path.
	_, addr2 := gaugeServer(t, "/custom/metrics", 5)
	g.Expect(prom.SetTargets(ctx, []promharness.Target{
		{Job: "app", Addr: addr, Labels: map[string]string{"service": "vllm-gpt4-v2"}},
		{Job: "app", Addr: addr2, Labels: map[string]string{"service": "vllm-gpt4-v1"}, MetricsPath: "/custom/metrics"},
	})).To(Succeed())
	g.Expect(prom.WaitForTargetsUp(ctx)).To(Succeed())
	g.Eventually(func() (float64, error) {
		return single(ctx, prom, `harness_test_value{service="vllm-gpt4-v1"}`, time.Now())
	}).WithTimeout(waitLong).WithPolling(poll).Should(Equal(5.0))

	// A target that cannot be scraped is reported by name.
	dead, err := promharness.FreePort()
	g.Expect(err).NotTo(HaveOccurred())
	deadAddr := fmt.Sprintf("127.0.0.1:%d", dead)
	g.Expect(prom.SetTargets(ctx, []promharness.Target{{Job: "app", Addr: deadAddr}})).To(Succeed())
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	g.Expect(prom.WaitForTargetsUp(short)).To(MatchError(ContainSubstring(deadAddr)))
	short2, cancel2 := context.WithTimeout(ctx, 3*time.Second)
	defer cancel2()
	g.Expect(prom.WaitForScrapesAfter(short2, time.Now())).To(MatchError(ContainSubstring(deadAddr)))
}

// webhookPayload is the part of Alertmanager's webhook body the test reads.
type webhookPayload struct {
	Version  string `json:"version"`
	Status   string `json:"status"`
	Receiver string `json:"receiver"`
	Alerts   []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

type webhookCall struct {
	auth    string
	payload webhookPayload
	err     error
}

func TestAlertmanagerWebhookFromFiringRule(t *testing.T) {
	requireBinaries(t)
	g := NewWithT(t)
	ctx := t.Context()

	calls := make(chan webhookCall, 100)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c webhookCall
		c.auth = r.Header.Get("Authorization")
		c.err = json.NewDecoder(r.Body).Decode(&c.payload)
		select {
		case calls <- c:
		default:
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(hook.Close)

	am, err := promharness.StartAlertmanager(ctx, promharness.AlertmanagerOptions{
		WebhookURL:  hook.URL + "/alerts",
		BearerToken: "s3cret-token",
		LogWriter:   childLog(t, "alertmanager"),
	})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { g.Expect(am.Close()).To(Succeed()) })
	g.Expect(am.URL()).To(HavePrefix("http://127.0.0.1:"))

	prom, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{
		RuleFiles: map[string]string{"always.yml": `
groups:
- name: harness
  rules:
  - alert: AlwaysFiring
    expr: vector(1)
    labels:
      severity: page
`},
		AlertmanagerURL: am.URL(),
		LogWriter:       childLog(t, "prometheus"),
	})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { g.Expect(prom.Close()).To(Succeed()) })
	g.Expect(prom.WaitForTargetsUp(ctx)).To(Succeed()) // no targets: returns at once

	var got webhookCall
	select {
	case got = <-calls:
	case <-time.After(waitLong):
		t.Fatal("the webhook received no notification")
	}
	g.Expect(got.err).NotTo(HaveOccurred())
	g.Expect(got.auth).To(Equal("Bearer s3cret-token"))
	g.Expect(got.payload.Version).To(Equal("4"))
	g.Expect(got.payload.Status).To(Equal("firing"))
	g.Expect(got.payload.Alerts).NotTo(BeEmpty())
	g.Expect(got.payload.Alerts[0].Status).To(Equal("firing"))
	g.Expect(got.payload.Alerts[0].Labels).To(HaveKeyWithValue("alertname", "AlwaysFiring"))
	g.Expect(got.payload.Alerts[0].Labels).To(HaveKeyWithValue("severity", "page"))

	// A rules file Prometheus rejects fails the reload with its message.
	g.Expect(prom.SetRuleFiles(ctx, map[string]string{"bad.yml": "groups: [{name: x, rules: [{alert: A, expr: 'sum('}]}]"})).
		To(MatchError(ContainSubstring("bad.yml")))
}

// The simulator's metrics, scraped by a real Prometheus, answer the queries
// a rollout gate runs.
func TestPrometheusScrapesVLLMSim(t *testing.T) {
	requireBinaries(t)
	g := NewWithT(t)
	ctx := t.Context()

	sim := vllmsim.New(vllmsim.Config{Name: "vllm-gpt4-v2", Model: "gpt-4", Tokens: 4, Seed: 3})
	addr, err := sim.Start("127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = sim.Close() })
	for i := range 10 {
		if i == 5 {
			g.Expect(sim.UpdateConfig(func(c *vllmsim.Config) { c.ErrorRate = 1 })).To(Succeed())
		}
		resp, err := http.Post(sim.URL()+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}`))
		g.Expect(err).NotTo(HaveOccurred())
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	prom, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{
		Targets:   []promharness.Target{{Job: "vllm", Addr: addr, Labels: map[string]string{"service": "vllm-gpt4-v2"}}},
		LogWriter: childLog(t, "prometheus"),
	})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { g.Expect(prom.Close()).To(Succeed()) })
	g.Expect(prom.WaitForTargetsUp(ctx)).To(Succeed())

	sel := `{service="vllm-gpt4-v2",model_name="gpt-4",engine="0"}`
	g.Eventually(func() (float64, error) {
		return single(ctx, prom, `sum(vllm:request_success_total`+sel+`)`, time.Now())
	}).WithTimeout(waitLong).WithPolling(poll).Should(Equal(10.0))
	g.Expect(single(ctx, prom, `vllm:request_success_total{service="vllm-gpt4-v2",finished_reason="error"}`, time.Now())).To(Equal(5.0))
	g.Expect(single(ctx, prom, `sum(http_requests_total{service="vllm-gpt4-v2",status="5xx"})`, time.Now())).To(Equal(5.0))
	p99, err := single(ctx, prom, `histogram_quantile(0.99, sum by (le) (vllm:e2e_request_latency_seconds_bucket`+sel+`))`, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(math.IsNaN(p99) || math.IsInf(p99, 0)).To(BeFalse(), "p99 = %v", p99)
	g.Expect(p99).To(BeNumerically(">=", 0))
}
