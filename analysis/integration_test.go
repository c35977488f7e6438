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
	"github.com/modelrollout/modelrollout/analysis/egress"
	"github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/authproxy"
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

// fakeEPP exposes an endpoint picker's request metrics under the llm-d
// router's names (llm_d_epp_request_*), the deprecated Inference Extension
// names (inference_objective_request_*) or both at once, as the llm-d router
// does during the deprecation. Per scrape it counts errors failed and ok
// successful requests, every one with a latency and a TTFT in (lo, hi].
type fakeEPP struct {
	newNames, oldNames bool
	errors, ok         float64
	lo, hi             float64

	mu      sync.Mutex
	scrapes float64
}

func (f *fakeEPP) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(f, ch) }

func (f *fakeEPP) Collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	f.scrapes++
	n := f.scrapes
	f.mu.Unlock()
	count := uint64(n * (f.errors + f.ok))
	buckets := map[float64]uint64{}
	for _, b := range latencyBuckets {
		if b >= f.hi {
			buckets[b] = count
		} else {
			buckets[b] = 0
		}
	}
	labels := prometheus.Labels{"model_name": "gpt-4", "target_model_name": "gpt-4"}
	emit := func(prefix string) {
		total := prometheus.NewDesc(prefix+"_total", "Requests.", nil, labels)
		errs := prometheus.NewDesc(prefix+"_error_total", "Failed requests.", nil, labels)
		dur := prometheus.NewDesc(prefix+"_duration_seconds", "Latency.", nil, labels)
		ttft := prometheus.NewDesc(prefix+"_ttft_seconds", "Time to first token.", nil, labels)
		ch <- prometheus.MustNewConstMetric(total, prometheus.CounterValue, float64(count))
		if f.errors > 0 {
			ch <- prometheus.MustNewConstMetric(errs, prometheus.CounterValue, n*f.errors)
		}
		ch <- prometheus.MustNewConstHistogram(dur, count, float64(count)*(f.lo+f.hi)/2, buckets)
		ch <- prometheus.MustNewConstHistogram(ttft, count, float64(count)*(f.lo+f.hi)/2, buckets)
	}
	if f.newNames {
		emit("llm_d_epp_request")
	}
	if f.oldNames {
		emit("inference_objective_request")
	}
}

// TestInferencePoolPresetsBothMetricNames has a real Prometheus scrape three
// endpoint pickers: one exporting only the llm-d router's llm_d_epp_* names,
// one exporting both those and the deprecated inference_objective_* names
// (double counting would show as doubled request counts), and one with only
// the old names. Every inference-pool preset reads the same values from each.
func TestInferencePoolPresetsBothMetricNames(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server; skipped with -short")
	}
	if err := promharness.Available(); err != nil {
		t.Skipf("skipping the real-Prometheus test: %v", err)
	}
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const ns = "ai-gateway"
	pickers := map[string]*fakeEPP{
		"pool-new":  {newNames: true, errors: 1, ok: 9, lo: 1, hi: 2},
		"pool-both": {newNames: true, oldNames: true, errors: 1, ok: 9, lo: 1, hi: 2},
		"pool-old":  {oldNames: true, errors: 1, ok: 9, lo: 1, hi: 2},
	}
	var targets []promharness.Target
	for pool, f := range pickers {
		targets = append(targets, promharness.Target{Job: "epp", Addr: serve(t, f),
			Labels: map[string]string{"service": analysis.EndpointPickerName(pool), "namespace": ns}})
	}
	prom, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{ScrapeInterval: time.Second, Targets: targets})
	if err != nil {
		t.Fatalf("start Prometheus: %v", err)
	}
	t.Cleanup(func() { _ = prom.Close() })
	if err := prom.WaitForTargetsUp(ctx); err != nil {
		t.Fatalf("targets: %v", err)
	}
	q, err := analysis.NewClient(analysis.ClientConfig{Address: prom.URL()})
	if err != nil {
		t.Fatal(err)
	}
	one := int64(1)
	maxErr, maxLatency := 0.2, 5.0
	gates := []struct {
		gate  v1alpha1.Gate
		value float64
	}{
		{v1alpha1.Gate{Name: "errors", GateSpec: v1alpha1.GateSpec{Preset: "inference-pool-error-ratio", Max: &maxErr, MinRequests: &one}}, 0.1},
		{v1alpha1.Gate{Name: "latency", GateSpec: v1alpha1.GateSpec{Preset: "inference-pool-latency-p99", Max: &maxLatency, MinRequests: &one}}, 1.99},
		{v1alpha1.Gate{Name: "ttft", GateSpec: v1alpha1.GateSpec{Preset: "inference-pool-ttft-p99", Max: &maxLatency}}, 1.99},
	}
	for pool := range pickers {
		vars := analysis.Vars{Namespace: ns, Rollout: "gpt4", Stable: "pool-stable", Canary: pool,
			Weight: 10, Interval: time.Minute, StepWindow: time.Minute}
		for _, tt := range gates {
			r, err := analysis.RenderGate(tt.gate, vars)
			if err != nil {
				t.Fatal(err)
			}
			var ev analysis.Evaluation
			g.Eventually(func(g Gomega) {
				ev = analysis.EvaluateGate(ctx, q, tt.gate, r, time.Now())
				g.Expect(ev.Verdict).To(Equal(v1alpha1.VerdictPass), "%s", ev.Message)
			}).WithContext(ctx).WithTimeout(90*time.Second).WithPolling(250*time.Millisecond).Should(Succeed(), "pool %s, gate %s, query %s", pool, tt.gate.Name, r.Query)
			g.Expect(*ev.Value).To(BeNumerically("~", tt.value, 1e-9), "pool %s, gate %s, query %s", pool, tt.gate.Name, r.Query)
		}
		// The requests query counts each request once, even when the
		// picker exports both names: at the same instant it equals the
		// count under the new name alone.
		if pool == "pool-both" {
			r, err := analysis.RenderGate(gates[0].gate, vars)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Now()
			got, err := q.Query(ctx, r.RequestsQuery, at)
			g.Expect(err).NotTo(HaveOccurred())
			single, err := q.Query(ctx, `sum(increase(llm_d_epp_request_total{service="pool-both-epp"}[1m]))`, at)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.NoData || single.NoData).To(BeFalse())
			g.Expect(got.Value).To(Equal(single.Value), "requests counted twice: %s", r.RequestsQuery)
		}
	}
}

// TestAuthAgainstRealPrometheus puts a real Prometheus behind three
// authenticating proxies: one requiring a tenant header (as Mimir, Cortex
// and Thanos do), one requiring a bearer token from an OAuth 2.0 token
// endpoint (client credentials), and one requiring a TLS client certificate.
// Through each, the gate passes with the right settings and has an Error
// verdict saying what was refused without them.
func TestAuthAgainstRealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server; skipped with -short")
	}
	if err := promharness.Available(); err != nil {
		t.Skipf("skipping the real-Prometheus test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const ns, canary = "ai-gateway", "vllm-gpt4-v2"
	prom, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{
		ScrapeInterval: time.Second,
		Targets: []promharness.Target{{Job: "vllm", Addr: serve(t, &fakeVLLM{errors: 1, ok: 19, lo: 1, hi: 2}),
			Labels: map[string]string{"service": canary, "namespace": ns}}},
	})
	if err != nil {
		t.Fatalf("start Prometheus: %v", err)
	}
	t.Cleanup(func() { _ = prom.Close() })
	if err := prom.WaitForTargetsUp(ctx); err != nil {
		t.Fatalf("targets: %v", err)
	}

	tenant, err := authproxy.Start(prom.URL(), authproxy.RequireHeader("X-Scope-OrgID", "team-a"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tenant.Close() })

	tokens, err := authproxy.StartTokenServer("modelrollout", "cl1ent-s3cret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tokens.Close() })
	oauth, err := authproxy.Start(prom.URL(), authproxy.RequireToken(tokens))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = oauth.Close() })

	ca, err := authproxy.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	mtls, err := authproxy.Start(prom.URL(), authproxy.RequireClientCert(ca, "prometheus.monitoring.svc"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mtls.Close() })
	cert, key, err := ca.Issue(true, "modelrollout")
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := authproxy.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey, err := otherCA.Issue(true, "modelrollout")
	if err != nil {
		t.Fatal(err)
	}

	maxErr, one := 0.1, int64(1)
	gate := v1alpha1.Gate{Name: "errors", GateSpec: v1alpha1.GateSpec{Preset: "vllm-error-ratio", Max: &maxErr, MinRequests: &one}}
	r, err := analysis.RenderGate(gate, analysis.Vars{Namespace: ns, Rollout: "gpt4", Stable: "vllm-gpt4-v1", Canary: canary,
		Weight: 10, Interval: time.Minute, StepWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	oauth2 := &analysis.OAuth2{ClientID: "modelrollout", ClientSecret: "cl1ent-s3cret", TokenURL: tokens.URL(), Scopes: []string{"metrics:read"}}
	mtlsCfg := analysis.ClientConfig{Address: mtls.URL(), CA: ca.PEM, ServerName: "prometheus.monitoring.svc", ClientCert: cert, ClientKey: key}
	noCert := mtlsCfg
	noCert.ClientCert, noCert.ClientKey = nil, nil
	wrongCert := mtlsCfg
	wrongCert.ClientCert, wrongCert.ClientKey = otherCert, otherKey

	tests := []struct {
		name    string
		good    analysis.ClientConfig
		bad     []analysis.ClientConfig
		badWant string
	}{
		{
			name: "tenant header",
			good: analysis.ClientConfig{Address: tenant.URL(), Headers: []analysis.Header{{Name: "X-Scope-OrgID", Value: "team-a"}}},
			bad: []analysis.ClientConfig{
				{Address: tenant.URL()},
				{Address: tenant.URL(), Headers: []analysis.Header{{Name: "X-Scope-OrgID", Value: "team-b"}}},
			},
			badWant: `client error: 401: authproxy: header X-Scope-OrgID must be "team-a"; the server refused the query's credentials`,
		},
		{
			name: "oauth2 client credentials",
			good: analysis.ClientConfig{Address: oauth.URL(), OAuth2: oauth2},
			bad: []analysis.ClientConfig{
				{Address: oauth.URL()},
				{Address: oauth.URL(), BearerToken: "made-up"},
			},
			badWant: `client error: 401: authproxy: a bearer token from the token endpoint is required; the server refused the query's credentials`,
		},
		{
			name:    "mTLS client certificate",
			good:    mtlsCfg,
			bad:     []analysis.ClientConfig{noCert, wrongCert},
			badWant: `prometheus query failed: .*remote error: tls: (certificate required|unknown certificate authority)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			q, err := analysis.NewClient(tt.good)
			g.Expect(err).NotTo(HaveOccurred())
			var ev analysis.Evaluation
			g.Eventually(func(g Gomega) {
				ev = analysis.EvaluateGate(ctx, q, gate, r, time.Now())
				g.Expect(ev.Verdict).To(Equal(v1alpha1.VerdictPass), "%s", ev.Message)
			}).WithContext(ctx).WithTimeout(90 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
			g.Expect(*ev.Value).To(BeNumerically("~", 0.05, 1e-9))

			for i, cfg := range tt.bad {
				q, err := analysis.NewClient(cfg)
				g.Expect(err).NotTo(HaveOccurred())
				ev := analysis.EvaluateGate(ctx, q, gate, r, time.Now())
				g.Expect(ev.Verdict).To(Equal(v1alpha1.VerdictError), "bad config %d", i)
				g.Expect(ev.Message).To(MatchRegexp(tt.badWant), "bad config %d", i)
				t.Logf("without the right settings: %s", ev.Message)
			}
		})
	}
	if tokens := tokens.Requests(); len(tokens) == 0 || tokens[0].Get("scope") != "metrics:read" {
		t.Errorf("token requests %v: want one with scope metrics:read", tokens)
	}
}

// fakeTGI exposes Text Generation Inference's request metrics as its Rust
// exporter does: counters without a _total suffix, failures by err label,
// and the end-to-end duration histogram in seconds.
type fakeTGI struct {
	failures, ok float64
	lo, hi       float64

	mu      sync.Mutex
	scrapes float64
}

func (f *fakeTGI) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(f, ch) }

func (f *fakeTGI) Collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	f.scrapes++
	n := f.scrapes
	f.mu.Unlock()
	count := uint64(n * (f.failures + f.ok))
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("tgi_request_count", "Total number of requests.", nil, nil),
		prometheus.CounterValue, float64(count))
	if f.failures > 0 {
		failure := prometheus.NewDesc("tgi_request_failure", "Failed requests by error kind.", []string{"err"}, nil)
		ch <- prometheus.MustNewConstMetric(failure, prometheus.CounterValue, n*f.failures/2, "validation")
		ch <- prometheus.MustNewConstMetric(failure, prometheus.CounterValue, n*f.failures/2, "generation")
	}
	buckets := map[float64]uint64{}
	for _, b := range latencyBuckets {
		if b >= f.hi {
			buckets[b] = count
		} else {
			buckets[b] = 0
		}
	}
	ch <- prometheus.MustNewConstHistogram(prometheus.NewDesc("tgi_request_duration", "End-to-end latency.", nil, nil),
		count, float64(count)*(f.lo+f.hi)/2, buckets)
}

// TestTGIPresetsAgainstRealPrometheus evaluates the TGI presets on a real
// Prometheus scraping a failing canary and a healthy one (no failure series
// at all).
func TestTGIPresetsAgainstRealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server; skipped with -short")
	}
	if err := promharness.Available(); err != nil {
		t.Skipf("skipping the real-Prometheus test: %v", err)
	}
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns = "ai-gateway"
	prom, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{
		ScrapeInterval: time.Second,
		Targets: []promharness.Target{
			{Job: "tgi", Addr: serve(t, &fakeTGI{failures: 2, ok: 18, lo: 1, hi: 2}), Labels: map[string]string{"service": "tgi-v2", "namespace": ns}},
			{Job: "tgi", Addr: serve(t, &fakeTGI{ok: 10, lo: 0.25, hi: 0.5}), Labels: map[string]string{"service": "tgi-v3", "namespace": ns}},
		},
	})
	if err != nil {
		t.Fatalf("start Prometheus: %v", err)
	}
	t.Cleanup(func() { _ = prom.Close() })
	if err := prom.WaitForTargetsUp(ctx); err != nil {
		t.Fatalf("targets: %v", err)
	}
	q, err := analysis.NewClient(analysis.ClientConfig{Address: prom.URL()})
	if err != nil {
		t.Fatal(err)
	}
	maxErr, maxLatency, one := 0.05, 1.5, int64(1)
	tests := []struct {
		canary  string
		gate    v1alpha1.Gate
		verdict v1alpha1.GateVerdict
		value   float64
	}{
		{"tgi-v2", v1alpha1.Gate{Name: "errors", GateSpec: v1alpha1.GateSpec{Preset: "tgi-error-ratio", Max: &maxErr, MinRequests: &one}}, v1alpha1.VerdictFail, 0.1},
		{"tgi-v2", v1alpha1.Gate{Name: "latency", GateSpec: v1alpha1.GateSpec{Preset: "tgi-latency-p99", Max: &maxLatency}}, v1alpha1.VerdictFail, 1.99},
		{"tgi-v3", v1alpha1.Gate{Name: "errors", GateSpec: v1alpha1.GateSpec{Preset: "tgi-error-ratio", Max: &maxErr, MinRequests: &one}}, v1alpha1.VerdictPass, 0},
		{"tgi-v3", v1alpha1.Gate{Name: "latency", GateSpec: v1alpha1.GateSpec{Preset: "tgi-latency-p99", Max: &maxLatency}}, v1alpha1.VerdictPass, 0.4975},
	}
	for _, tt := range tests {
		r, err := analysis.RenderGate(tt.gate, analysis.Vars{Namespace: ns, Rollout: "r", Stable: "tgi-v1", Canary: tt.canary,
			Weight: 10, Interval: time.Minute, StepWindow: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		var ev analysis.Evaluation
		g.Eventually(func(g Gomega) {
			ev = analysis.EvaluateGate(ctx, q, tt.gate, r, time.Now())
			g.Expect(ev.Verdict).NotTo(Equal(v1alpha1.VerdictNoData), "still no data: %s", ev.Message)
		}).WithContext(ctx).WithTimeout(90*time.Second).WithPolling(250*time.Millisecond).Should(Succeed(), "query %s", r.Query)
		g.Expect(ev.Verdict).To(Equal(tt.verdict), "%s %s: %s", tt.canary, tt.gate.Name, ev.Message)
		g.Expect(*ev.Value).To(BeNumerically("~", tt.value, 1e-9), "%s %s, query %s", tt.canary, tt.gate.Name, r.Query)
	}
}

// TestEgressPolicyOnPrometheus queries a real Prometheus on loopback
// through the egress policy (--egress-prometheus): refused without an
// allowlist entry, answered with one.
func TestEgressPolicyOnPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server; skipped with -short")
	}
	if err := promharness.Available(); err != nil {
		t.Skipf("skipping the real-Prometheus test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prom, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{ScrapeInterval: time.Second})
	if err != nil {
		t.Fatalf("start Prometheus: %v", err)
	}
	t.Cleanup(func() { _ = prom.Close() })

	strict, err := analysis.NewClient(analysis.ClientConfig{Address: prom.URL(), DialContext: egress.MustNew(nil, nil).DialContext})
	if err != nil {
		t.Fatal(err)
	}
	_, err = strict.Query(ctx, "vector(1)", time.Time{})
	if !errors.Is(err, egress.ErrRefused) || !errors.Is(err, analysis.ErrQueryFailed) {
		t.Fatalf("a loopback Prometheus was queried without an allowlist entry: %v", err)
	}
	allowed, err := analysis.NewClient(analysis.ClientConfig{Address: prom.URL(), DialContext: egress.MustNew(nil, []string{"127.0.0.0/8"}).DialContext})
	if err != nil {
		t.Fatal(err)
	}
	s, err := allowed.Query(ctx, "vector(1)", time.Time{})
	if err != nil || s.Value != 1 {
		t.Fatalf("allowlisted Prometheus: %+v, %v", s, err)
	}
}
