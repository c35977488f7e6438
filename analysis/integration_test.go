package analysis_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/modelrollout/modelrollout/analysis"
	"github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/promharness"
)

// fakeVLLM exposes vLLM-named metrics whose values grow with every scrape in
// fixed proportions, so that rates, ratios and quantiles are exact whatever
// the scrape timing: per scrape, errors requests finish with reason "error"
// and ok with reason "stop", and every request's e2e latency falls in the
// latency bucket (lo, hi].
type fakeVLLM struct {
	errors, ok float64
	lo, hi     float64

	mu      sync.Mutex
	scrapes float64
}

var (
	successDesc = prometheus.NewDesc("vllm:request_success_total", "Count of successfully processed requests.",
		[]string{"finished_reason"}, prometheus.Labels{"model_name": "gpt-4", "engine": "0"})
	e2eDesc = prometheus.NewDesc("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
		nil, prometheus.Labels{"model_name": "gpt-4", "engine": "0"})
	latencyBuckets = []float64{0.25, 0.5, 1, 2, 5, 10}
)

func (f *fakeVLLM) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(f, ch) }

func (f *fakeVLLM) Collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	f.scrapes++
	n := f.scrapes
	f.mu.Unlock()
	if f.errors > 0 { // like many exporters, no error series before the first error
		ch <- prometheus.MustNewConstMetric(successDesc, prometheus.CounterValue, n*f.errors, "error")
	}
	ch <- prometheus.MustNewConstMetric(successDesc, prometheus.CounterValue, n*f.ok, "stop")
	count := uint64(n * (f.errors + f.ok))
	buckets := map[float64]uint64{}
	for _, b := range latencyBuckets {
		if b >= f.hi {
			buckets[b] = count
		} else {
			buckets[b] = 0
		}
	}
	ch <- prometheus.MustNewConstHistogram(e2eDesc, count, float64(count)*(f.lo+f.hi)/2, buckets)
}

func serve(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("metrics server: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestPresetsAgainstRealPrometheus has a real Prometheus scrape a canary, a
// stable and a never-failing vLLM (told apart by the service target label a
// ServiceMonitor would set) and evaluates the vllm-error-ratio and
// vllm-e2e-latency-p99 presets through the real client, polling until the
// data is there. It skips when the Prometheus binary is missing.
func TestPresetsAgainstRealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server; skipped with -short")
	}
	if err := promharness.Available(); err != nil {
		t.Skipf("skipping the real-Prometheus test: %v", err)
	}
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const ns, canary, stable = "ai-gateway", "vllm-gpt4-v2", "vllm-gpt4-v1"
	// Canary: 1 error in 20 requests (0.05), latency in (1, 2] so p99 = 1.99.
	canaryAddr := serve(t, &fakeVLLM{errors: 1, ok: 19, lo: 1, hi: 2})
	// Stable: half the requests fail, latency in (0.5, 1]: a selector that
	// mixed the two would show it.
	stableAddr := serve(t, &fakeVLLM{errors: 10, ok: 10, lo: 0.5, hi: 1})
	// Another canary that never failed, so it has no error series at all.
	const healthy = "vllm-gpt4-v3"
	healthyAddr := serve(t, &fakeVLLM{errors: 0, ok: 5, lo: 0.25, hi: 0.5})

	prom, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{
		ScrapeInterval: time.Second,
		Targets: []promharness.Target{
			{Job: "vllm", Addr: canaryAddr, Labels: map[string]string{"service": canary, "namespace": ns}},
			{Job: "vllm", Addr: stableAddr, Labels: map[string]string{"service": stable, "namespace": ns}},
			{Job: "vllm", Addr: healthyAddr, Labels: map[string]string{"service": healthy, "namespace": ns}},
		},
	})
	if err != nil {
		t.Fatalf("start Prometheus: %v", err)
	}
	t.Cleanup(func() { _ = prom.Close() })
	if err := prom.WaitForTargetsUp(ctx); err != nil {
		t.Fatalf("targets: %v", err)
	}

	q, err := analysis.NewClientCache(4).Get(analysis.ClientConfig{Address: prom.URL(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	vars := analysis.Vars{
		Namespace: ns, Rollout: "gpt4", Route: "models", Stable: stable, Canary: canary,
		StablePort: 8000, CanaryPort: 8000, Weight: 10, Interval: time.Minute, StepWindow: time.Minute,
	}
	one := int64(1)
	maxErr, maxLatency := 0.1, 1.5
	healthyVars := vars
	healthyVars.Canary = healthy
	tests := []struct {
		gate    v1alpha1.Gate
		vars    analysis.Vars
		verdict v1alpha1.GateVerdict
		value   float64
	}{
		{v1alpha1.Gate{Name: "errors", GateSpec: v1alpha1.GateSpec{Preset: "vllm-error-ratio", Max: &maxErr, MinRequests: &one}}, vars, v1alpha1.VerdictPass, 0.05},
		{v1alpha1.Gate{Name: "latency", GateSpec: v1alpha1.GateSpec{Preset: "vllm-e2e-latency-p99", Max: &maxLatency, MinRequests: &one}}, vars, v1alpha1.VerdictFail, 1.99},
		// No error series: the ratio reads 0, not "no data".
		{v1alpha1.Gate{Name: "errors", GateSpec: v1alpha1.GateSpec{Preset: "vllm-error-ratio", Max: &maxErr, MinRequests: &one}}, healthyVars, v1alpha1.VerdictPass, 0},
		{v1alpha1.Gate{Name: "latency", GateSpec: v1alpha1.GateSpec{Preset: "vllm-e2e-latency-p99", Max: &maxLatency}}, healthyVars, v1alpha1.VerdictPass, 0.4975},
	}
	for _, tt := range tests {
		r, err := analysis.RenderGate(tt.gate, tt.vars)
		if err != nil {
			t.Fatal(err)
		}
		// Poll until Prometheus has two scrapes of the canary in the window.
		var ev analysis.Evaluation
		g.Eventually(func(g Gomega) {
			ev = analysis.EvaluateGate(ctx, q, tt.gate, r, time.Now())
			g.Expect(ev.Verdict).NotTo(Equal(v1alpha1.VerdictNoData), "still no data: %s", ev.Message)
		}).WithContext(ctx).WithTimeout(90*time.Second).WithPolling(250*time.Millisecond).Should(Succeed(), "gate %s, query %s", tt.gate.Name, r.Query)

		g.Expect(ev.Verdict).To(Equal(tt.verdict), "gate %s: %s", tt.gate.Name, ev.Message)
		g.Expect(ev.Value).NotTo(BeNil())
		g.Expect(*ev.Value).To(BeNumerically("~", tt.value, 1e-9), "gate %s, query %s", tt.gate.Name, r.Query)
		if tt.gate.MinRequests != nil {
			g.Expect(ev.Requests).NotTo(BeNil())
			g.Expect(*ev.Requests).To(BeNumerically(">=", 1))
		}

		st, out := analysis.Record(v1alpha1.GateStatus{}, tt.gate, ev, vars.Weight, 0, time.Now())
		if tt.verdict == v1alpha1.VerdictPass {
			g.Expect(out).To(Equal(analysis.OutcomePass))
		} else {
			g.Expect(out).To(Equal(analysis.OutcomeFail))
		}
		g.Expect(st.Value).To(Equal(analysis.FormatValue(tt.value)))
	}
}
