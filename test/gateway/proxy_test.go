package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	. "github.com/onsi/gomega"

	"github.com/modelrollout/modelrollout/test/gateway"
)

// waitLimit bounds every wait in these tests so that a bug fails the test
// instead of hanging it. It is not a timing assertion: on success nothing
// gets near it.
const waitLimit = 60 * time.Second

// testBackend is an upstream on 127.0.0.1.
type testBackend struct {
	name string
	srv  *httptest.Server
}

func (b *testBackend) addr() string { return b.srv.Listener.Addr().String() }

// newBackend starts a backend; a nil handler answers 200 with its name and
// echoes some request details in headers.
func newBackend(t *testing.T, name string, h http.HandlerFunc) *testBackend {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Seen-Host", r.Host)
			w.Header().Set("X-Seen-Injected", r.Header.Get("X-Injected"))
			w.Header().Set("X-Seen-Dropped", r.Header.Get("X-Drop"))
			w.Header().Set("X-Seen-Path", r.URL.RequestURI())
			_, _ = io.WriteString(w, name)
		}
	}
	srv := httptest.NewServer(h) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return &testBackend{name: name, srv: srv}
}

// harness is a Proxy served by an httptest server, plus a client that never
// uses an HTTP proxy.
type harness struct {
	proxy  *gateway.Proxy
	srv    *httptest.Server
	client *http.Client
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	p := gateway.NewProxy(testr.New(t))
	srv := httptest.NewServer(p)
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
		p.CloseIdleConnections()
	})
	return &harness{proxy: p, srv: srv, client: &http.Client{Transport: tr}}
}

// table builds a table from YAML routes; services resolve to the backends
// with the same name (unknown names resolve to no endpoints).
func (h *harness) setRoutes(t *testing.T, docs string, backends ...*testBackend) {
	t.Helper()
	eps := map[string][]string{}
	for _, b := range backends {
		eps[b.name] = []string{b.addr()}
	}
	h.proxy.SetTable(gateway.BuildTable(decodeRoutes(t, docs), func(_, svc string, _ int32) ([]string, error) {
		return eps[svc], nil
	}))
}

// do sends a request and returns status, body and headers.
func (h *harness) do(t *testing.T, method, path string, headers ...string) (int, string, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if strings.EqualFold(headers[i], "host") {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body)), resp.Header
}

const splitRoutes = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: llm, namespace: llm}
spec:
  rules:
  - matches: [{headers: [{name: x-target, value: a}]}]
    backendRefs: [{name: svc-a, port: 8000}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-injected, value: "yes"}]
        remove: [x-drop]
  - matches: [{headers: [{name: x-target, value: b}]}]
    backendRefs: [{name: svc-b, port: 8000}]
  - matches: [{headers: [{name: x-target, value: fail}]}]
    backendRefs: [{name: svc-fail, port: 8000}]
  - matches: [{headers: [{name: x-target, value: split}]}]
    backendRefs: [{name: svc-a, port: 8000}, {name: svc-b, port: 8000}]
`

func TestProxyRoutesToBackendsAndCountsPerCluster(t *testing.T) {
	g := NewWithT(t)
	a := newBackend(t, "svc-a", nil)
	b := newBackend(t, "svc-b", nil)
	fail := newBackend(t, "svc-fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "model crashed", http.StatusInternalServerError)
	})
	h := newHarness(t)
	h.setRoutes(t, splitRoutes, a, b, fail)

	clA := gateway.ClusterName("llm", "svc-a", 8000)
	clB := gateway.ClusterName("llm", "svc-b", 8000)
	clFail := gateway.ClusterName("llm", "svc-fail", 8000)

	// Known clusters are exported at 0 before any traffic, like Envoy.
	mfs := scrape(t, h.proxy.MetricsHandler())
	g.Expect(value(mfs, gateway.MetricUpstreamRqTotal, gateway.LabelClusterName, clA)).To(BeEquivalentTo(0))

	for i := range 7 {
		code, body, hdr := h.do(t, "POST", fmt.Sprintf("/v1/chat/completions?i=%d", i),
			"x-target", "a", "host", "llm.example.com", "x-drop", "secret")
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(body).To(Equal("svc-a"))
		g.Expect(hdr.Get("X-Seen-Host")).To(Equal("llm.example.com"), "Host is preserved")
		g.Expect(hdr.Get("X-Seen-Injected")).To(Equal("yes"), "RequestHeaderModifier set")
		g.Expect(hdr.Get("X-Seen-Dropped")).To(BeEmpty(), "RequestHeaderModifier remove")
		g.Expect(hdr.Get("X-Seen-Path")).To(Equal(fmt.Sprintf("/v1/chat/completions?i=%d", i)))
	}
	for range 3 {
		code, body, _ := h.do(t, "GET", "/v1/models", "x-target", "b")
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(body).To(Equal("svc-b"))
	}
	for range 2 {
		code, body, _ := h.do(t, "POST", "/v1/completions", "x-target", "fail")
		g.Expect(code).To(Equal(http.StatusInternalServerError))
		g.Expect(body).To(Equal("model crashed"))
	}
	// 1:1 split: both backends get traffic. With 200 requests the chance
	// that one gets none is 2·2^-200.
	seen := map[string]int{}
	for range 200 {
		_, body, _ := h.do(t, "GET", "/", "x-target", "split")
		seen[body]++
	}
	g.Expect(seen).To(HaveLen(2))
	g.Expect(seen["svc-a"] + seen["svc-b"]).To(Equal(200))
	wantA, wantB := 7+seen["svc-a"], 3+seen["svc-b"]

	// Counters charged before the response headers reach the client are
	// exact now.
	mfs = scrape(t, h.proxy.MetricsHandler())
	for _, c := range []struct {
		cluster string
		n       int
		class   string
	}{{clA, wantA, "2"}, {clB, wantB, "2"}, {clFail, 2, "5"}} {
		g.Expect(value(mfs, gateway.MetricUpstreamRqTotal, gateway.LabelClusterName, c.cluster)).To(BeEquivalentTo(c.n), c.cluster)
		g.Expect(value(mfs, gateway.MetricUpstreamRqXX, gateway.LabelClusterName, c.cluster, gateway.LabelResponseCodeClass, c.class)).
			To(BeEquivalentTo(c.n), c.cluster)
	}
	g.Expect(value(mfs, gateway.MetricUpstreamRqXX, gateway.LabelClusterName, clA, gateway.LabelResponseCodeClass, "5")).To(BeEquivalentTo(-1), "absent")
	g.Expect(value(mfs, gateway.MetricUpstreamRq, gateway.LabelClusterName, clFail, gateway.LabelResponseCode, "500")).To(BeEquivalentTo(2))
	g.Expect(value(mfs, gateway.MetricUpstreamRq, gateway.LabelClusterName, clB, gateway.LabelResponseCode, "200")).To(BeEquivalentTo(wantB))

	// upstream_rq_time is observed when the proxy reads the end of the
	// upstream body, which may be just after the client got the last byte.
	g.Eventually(func(g Gomega) {
		mfs := scrape(t, h.proxy.MetricsHandler())
		g.Expect(histCount(mfs, gateway.MetricUpstreamRqTime, gateway.LabelClusterName, clA)).To(BeEquivalentTo(wantA))
		g.Expect(histCount(mfs, gateway.MetricUpstreamRqTime, gateway.LabelClusterName, clB)).To(BeEquivalentTo(wantB))
		g.Expect(histCount(mfs, gateway.MetricUpstreamRqTime, gateway.LabelClusterName, clFail)).To(BeEquivalentTo(2))
		g.Expect(value(mfs, gateway.MetricUpstreamRqActive, gateway.LabelClusterName, clA)).To(BeEquivalentTo(0))
	}).WithTimeout(waitLimit).Should(Succeed())

	// Envoy's default buckets, in milliseconds.
	hist := series(scrape(t, h.proxy.MetricsHandler()), gateway.MetricUpstreamRqTime, gateway.LabelClusterName, clA).GetHistogram()
	var bounds []float64
	for _, bk := range hist.GetBucket() {
		if !math.IsInf(bk.GetUpperBound(), 1) { // the text parser adds +Inf
			bounds = append(bounds, bk.GetUpperBound())
		}
	}
	g.Expect(bounds).To(Equal(gateway.EnvoyHistogramBuckets))
	g.Expect(bounds).To(Equal([]float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}))
}

func TestProxyLocalReplies(t *testing.T) {
	g := NewWithT(t)
	reset := newBackend(t, "svc-reset", func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close() // close without answering
		}
	})
	// A port that nothing listens on any more.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	closedAddr := ln.Addr().String()
	g.Expect(ln.Close()).To(Succeed())

	h := newHarness(t)
	routes := decodeRoutes(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  rules:
  - matches: [{path: {type: Exact, value: /zero}}]
    backendRefs: [{name: svc-a, port: 80, weight: 0}]
  - matches: [{path: {type: Exact, value: /pool}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
  - matches: [{path: {type: Exact, value: /empty}}]
    backendRefs: [{name: svc-empty, port: 80}]
  - matches: [{path: {type: Exact, value: /reset}}]
    backendRefs: [{name: svc-reset, port: 80}]
  - matches: [{path: {type: Exact, value: /closed}}]
    backendRefs: [{name: svc-closed, port: 80}]
  - matches: [{path: {type: Exact, value: /remote}}]
    backendRefs: [{name: svc-remote, port: 80}]
`)
	h.proxy.SetTable(gateway.BuildTable(routes, func(_, svc string, _ int32) ([]string, error) {
		switch svc {
		case "svc-reset":
			return []string{reset.addr()}, nil
		case "svc-closed":
			return []string{closedAddr}, nil
		case "svc-remote":
			// A resolver that breaks the convention: must never be dialled.
			return []string{"192.0.2.1:80"}, nil
		}
		return nil, nil
	}))

	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/nothing", http.StatusNotFound, gateway.BodyNoRoute},
		{"/zero", http.StatusInternalServerError, "no backendRef with a non-zero weight"},
		{"/pool", http.StatusInternalServerError, "unsupported backend kind"},
		{"/empty", http.StatusServiceUnavailable, gateway.BodyNoHealthyUpstream},
		{"/reset", http.StatusServiceUnavailable, gateway.BodyUpstreamReset},
		{"/closed", http.StatusServiceUnavailable, gateway.BodyUpstreamReset},
		{"/remote", http.StatusServiceUnavailable, "only dials 127.0.0.1"},
	} {
		code, body, _ := h.do(t, "GET", tc.path)
		g.Expect(code).To(Equal(tc.code), tc.path)
		g.Expect(body).To(ContainSubstring(tc.body), tc.path)
	}

	mfs := scrape(t, h.proxy.MetricsHandler())
	cl := func(svc string) []string {
		return []string{gateway.LabelClusterName, gateway.ClusterName("ns", svc, 80)}
	}
	class5 := func(svc string) []string { return append(cl(svc), gateway.LabelResponseCodeClass, "5") }
	// No healthy upstream: 503 charged, no upstream request (as in Envoy).
	g.Expect(value(mfs, gateway.MetricUpstreamCxNoneHealthy, cl("svc-empty")...)).To(BeEquivalentTo(1))
	g.Expect(value(mfs, gateway.MetricUpstreamRqXX, class5("svc-empty")...)).To(BeEquivalentTo(1))
	g.Expect(value(mfs, gateway.MetricUpstreamRqTotal, cl("svc-empty")...)).To(BeEquivalentTo(0))
	// Reset after connecting: a request was sent.
	g.Expect(value(mfs, gateway.MetricUpstreamRqTotal, cl("svc-reset")...)).To(BeNumerically(">=", 1))
	g.Expect(value(mfs, gateway.MetricUpstreamRqXX, class5("svc-reset")...)).To(BeEquivalentTo(1))
	// Connection refused and refused non-loopback dial: connect failures.
	for _, svc := range []string{"svc-closed", "svc-remote"} {
		g.Expect(value(mfs, gateway.MetricUpstreamCxConnectFail, cl(svc)...)).To(BeEquivalentTo(1), svc)
		g.Expect(value(mfs, gateway.MetricUpstreamRqTotal, cl(svc)...)).To(BeEquivalentTo(0), svc)
		g.Expect(value(mfs, gateway.MetricUpstreamRq, append(cl(svc), gateway.LabelResponseCode, "503")...)).To(BeEquivalentTo(1), svc)
	}
}

func TestProxySSEPassthrough(t *testing.T) {
	g := NewWithT(t)
	ack := make(chan struct{})
	sse := newBackend(t, "svc-sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		rc := http.NewResponseController(w)
		_, _ = io.WriteString(w, "data: {\"token\":\"Hel\"}\n\n")
		_ = rc.Flush()
		// The second event is only sent once the client has read the
		// first one THROUGH the gateway: a buffering gateway deadlocks
		// here (and the test fails at waitLimit instead of passing).
		select {
		case <-ack:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: {\"token\":\"lo\"}\n\n")
		_ = rc.Flush()
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	})
	h := newHarness(t)
	h.setRoutes(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: stream, namespace: llm}
spec:
  rules:
  - matches: [{path: {value: /v1/chat/completions}}]
    backendRefs: [{name: svc-sse, port: 8000}]
    timeouts: {request: 120s, backendRequest: 60s}
`, sse)

	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	resp, err := h.client.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("text/event-stream"))

	rd := bufio.NewReader(resp.Body)
	g.Expect(readEvent(rd)).To(Equal(`data: {"token":"Hel"}`))
	close(ack)
	g.Expect(readEvent(rd)).To(Equal(`data: {"token":"lo"}`))
	g.Expect(readEvent(rd)).To(Equal(`data: [DONE]`))
	rest, err := io.ReadAll(rd)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rest).To(BeEmpty())
}

// readEvent reads one SSE event (up to the blank line) and returns its
// first line.
func readEvent(rd *bufio.Reader) (string, error) {
	var lines []string
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return strings.Join(lines, "\n"), err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return strings.Join(lines, "\n"), nil
		}
		lines = append(lines, line)
	}
}

func TestProxyTimeouts(t *testing.T) {
	g := NewWithT(t)
	// A backend that never answers: it returns only when the gateway gives
	// up on the request (or at test cleanup).
	release := make(chan struct{})
	stuck := newBackend(t, "svc-stuck", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before stuck's srv.Close
	h := newHarness(t)
	// The timeouts are short only to keep the test fast; nothing asserts
	// how long anything took.
	h.setRoutes(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: slow, namespace: llm}
spec:
  rules:
  - matches: [{path: {value: /request}}]
    backendRefs: [{name: svc-stuck, port: 8000}]
    timeouts: {request: 200ms}
  - matches: [{path: {value: /backend}}]
    backendRefs: [{name: svc-stuck, port: 8000}]
    timeouts: {request: 10m, backendRequest: 200ms}
`, stuck)

	for _, path := range []string{"/request", "/backend"} {
		code, body, _ := h.do(t, "POST", path)
		g.Expect(code).To(Equal(http.StatusGatewayTimeout), path)
		g.Expect(body).To(Equal(gateway.BodyUpstreamTimeout), path)
	}
	cl := []string{gateway.LabelClusterName, gateway.ClusterName("llm", "svc-stuck", 8000)}
	mfs := scrape(t, h.proxy.MetricsHandler())
	g.Expect(value(mfs, gateway.MetricUpstreamRqTimeout, cl...)).To(BeEquivalentTo(1))
	g.Expect(value(mfs, gateway.MetricUpstreamRqPerTryTimeout, cl...)).To(BeEquivalentTo(1))
	g.Expect(value(mfs, gateway.MetricUpstreamRq, append(cl, gateway.LabelResponseCode, "504")...)).To(BeEquivalentTo(2))
	g.Expect(value(mfs, gateway.MetricUpstreamRqXX, append(cl, gateway.LabelResponseCodeClass, "5")...)).To(BeEquivalentTo(2))
	g.Expect(histCount(mfs, gateway.MetricUpstreamRqTime, cl...)).To(BeEquivalentTo(0), "no complete response")
}

// TestProxyInFlightStreamSurvivesTableSwap moves all traffic away from a
// backend while it is streaming: the stream completes, new requests go to
// the other backend.
func TestProxyInFlightStreamSurvivesTableSwap(t *testing.T) {
	g := NewWithT(t)
	release := make(chan struct{})
	stable := newBackend(t, "svc-stable", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		_, _ = io.WriteString(w, "data: stable-1\n\n")
		_ = rc.Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: stable-2\n\ndata: [DONE]\n\n")
	})
	canary := newBackend(t, "svc-canary", nil)
	h := newHarness(t)
	const route = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary, namespace: llm}
spec:
  rules:
  - backendRefs:
    - {name: svc-stable, port: 8000, weight: %d}
    - {name: svc-canary, port: 8000, weight: %d}
`
	h.setRoutes(t, fmt.Sprintf(route, 100, 0), stable, canary)

	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/v1/chat/completions", nil)
	resp, err := h.client.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	g.Expect(readEvent(rd)).To(Equal("data: stable-1"))

	// The operator moves everything to the canary while the stream runs.
	h.setRoutes(t, fmt.Sprintf(route, 0, 100), stable, canary)
	for range 5 {
		code, body, _ := h.do(t, "POST", "/v1/chat/completions")
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(body).To(Equal("svc-canary"))
	}

	close(release)
	g.Expect(readEvent(rd)).To(Equal("data: stable-2"))
	g.Expect(readEvent(rd)).To(Equal("data: [DONE]"))
	_, err = io.ReadAll(rd)
	g.Expect(err).NotTo(HaveOccurred(), "the stream ended cleanly")

	mfs := scrape(t, h.proxy.MetricsHandler())
	g.Expect(value(mfs, gateway.MetricUpstreamRqTotal, gateway.LabelClusterName, gateway.ClusterName("llm", "svc-stable", 8000))).To(BeEquivalentTo(1))
	g.Expect(value(mfs, gateway.MetricUpstreamRqTotal, gateway.LabelClusterName, gateway.ClusterName("llm", "svc-canary", 8000))).To(BeEquivalentTo(5))
}

func TestMetricsHandlerEndpoints(t *testing.T) {
	g := NewWithT(t)
	p := gateway.NewProxy(testr.New(t))
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	code, body := get("/ready")
	g.Expect(code).To(Equal(http.StatusServiceUnavailable))
	g.Expect(body).To(ContainSubstring("PRE_INITIALIZING"))

	p.SetTable(gateway.BuildTable(decodeRoutes(t, seedCanary), fakeResolver(nil)))
	code, body = get("/ready")
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(body).To(Equal("LIVE\n"))

	_, metrics := get("/metrics")
	_, stats := get("/stats/prometheus")
	g.Expect(stats).To(Equal(metrics))
	for _, want := range []string{
		`envoy_cluster_upstream_rq_total{envoy_cluster_name="kube_llm_vllm-gpt4-canary_8000"} 0`,
		`envoy_cluster_upstream_rq_total{envoy_cluster_name="kube_llm_vllm-gpt4-stable_8000"} 0`,
		`envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="kube_llm_vllm-gpt4-stable_8000",le="0.5"} 0`,
		`envoy_cluster_upstream_rq_time_count{envoy_cluster_name="kube_llm_vllm-gpt4-stable_8000"} 0`,
	} {
		g.Expect(metrics).To(ContainSubstring(want))
	}
	// Only the Envoy families: the registry is private.
	g.Expect(metrics).NotTo(ContainSubstring("go_goroutines"))

	_, routes := get("/routes")
	g.Expect(routes).To(ContainSubstring("llm/llm-gpt4-canary rule 0"))
	g.Expect(routes).To(ContainSubstring("weight=90 cluster=kube_llm_vllm-gpt4-stable_8000"))

	// Two proxies in one process do not share metrics.
	mfs, err := gateway.NewProxy(testr.New(t)).Registry().Gather()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(mfs).To(BeEmpty())
}
