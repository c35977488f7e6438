package vllmsim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/modelrollout/modelrollout/test/vllmsim"
)

// newSim serves a simulator with cfg on an httptest server.
func newSim(t *testing.T, cfg vllmsim.Config) (*vllmsim.Server, string) {
	t.Helper()
	sim := vllmsim.New(cfg)
	ts := httptest.NewServer(sim.Handler())
	t.Cleanup(ts.Close)
	return sim, ts.URL
}

// serve exposes sim's handler on a fresh httptest server (to read the
// metrics of a closed server).
func serve(t *testing.T, sim *vllmsim.Server) string {
	t.Helper()
	ts := httptest.NewServer(sim.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// fastConfig is a config without delays.
func fastConfig() vllmsim.Config {
	return vllmsim.Config{Name: "vllm-test", Model: "gpt-4", Tokens: 4, Seed: 1}
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, ctx context.Context, method, url string, body any) result {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: data}
}

func post(t *testing.T, url string, body any) result {
	t.Helper()
	return do(t, context.Background(), http.MethodPost, url, body)
}

func get(t *testing.T, url string) result {
	t.Helper()
	return do(t, context.Background(), http.MethodGet, url, nil)
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding %T from %q: %v", v, r.body, err)
	}
	return v
}

func expectStatus(t *testing.T, r result, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
}

func expectAPIError(t *testing.T, r result, status int) vllmsim.APIError {
	t.Helper()
	expectStatus(t, r, status)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q, want application/json", ct)
	}
	e := decode[vllmsim.ErrorResponse](t, r)
	if e.Error.Code != status || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("error body %s: want code %d, a message and a type", r.body, status)
	}
	return e.Error
}

// sseEvents splits an SSE body into the payloads of its data: events.
func sseEvents(t *testing.T, body []byte) []string {
	t.Helper()
	text := string(body)
	if !strings.HasSuffix(text, "\n\n") {
		t.Fatalf("SSE body does not end with a blank line: %q", text)
	}
	var out []string
	for _, ev := range strings.Split(strings.TrimSuffix(text, "\n\n"), "\n\n") {
		payload, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(payload, "\n") {
			t.Fatalf("malformed SSE event %q", ev)
		}
		out = append(out, payload)
	}
	return out
}

// readEvent reads one SSE data: event from a streaming body.
func readEvent(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading SSE event: %v", err)
	}
	blank, err := br.ReadString('\n')
	if err != nil || blank != "\n" {
		t.Fatalf("SSE event %q not followed by a blank line (%q, %v)", line, blank, err)
	}
	payload, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "data: ")
	if !ok {
		t.Fatalf("malformed SSE line %q", line)
	}
	return payload
}

// scrape parses the simulator's /metrics exposition.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	r := get(t, base+"/metrics")
	expectStatus(t, r, http.StatusOK)
	parser := expfmt.NewTextParser(model.LegacyValidation) // Prometheus 2.x needs legacy names
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, r.body)
	}
	return fams
}

// find returns the metric of family name whose labels include want.
func find(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// value returns the value of a counter or gauge, or the sample count of a
// histogram; -1 if the series does not exist.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	m := find(fams, name, labels)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

func reason(r string) map[string]string { return map[string]string{"finished_reason": r} }

func metricValue(t *testing.T, base, name string, labels map[string]string) float64 {
	t.Helper()
	return value(scrape(t, base), name, labels)
}

func chatBody(extra map[string]any) map[string]any {
	b := map[string]any{"model": "gpt-4", "messages": []map[string]any{{"role": "user", "content": "say hello to the canary"}}}
	for k, v := range extra {
		b[k] = v
	}
	return b
}
