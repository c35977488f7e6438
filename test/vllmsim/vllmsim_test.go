package vllmsim_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/modelrollout/modelrollout/test/vllmsim"
)

// eventually bounds how long tests wait for state the simulator reaches on
// its own; polling ends as soon as the state is reached.
const eventually = 30 * time.Second

func TestHealthModelsAndBackendHeader(t *testing.T) {
	_, base := newSim(t, vllmsim.Config{Name: "vllm-gpt4-v2", Model: "gpt-4"})

	r := get(t, base+"/health")
	expectStatus(t, r, http.StatusOK)
	if got := r.header.Get("x-backend"); got != "vllm-gpt4-v2" {
		t.Fatalf("x-backend = %q, want vllm-gpt4-v2", got)
	}

	r = get(t, base+"/v1/models")
	expectStatus(t, r, http.StatusOK)
	models := decode[vllmsim.ModelList](t, r)
	if models.Object != "list" || len(models.Data) != 1 || models.Data[0].ID != "gpt-4" || models.Data[0].Object != "model" {
		t.Fatalf("models = %s", r.body)
	}
	if r.header.Get("x-backend") != "vllm-gpt4-v2" {
		t.Fatalf("x-backend missing on /v1/models: %v", r.header)
	}
}

func TestChatCompletion(t *testing.T) {
	_, base := newSim(t, vllmsim.Config{Name: "b", Model: "gpt-4", Tokens: 5})

	r := post(t, base+"/v1/chat/completions", chatBody(nil))
	expectStatus(t, r, http.StatusOK)
	c := decode[vllmsim.ChatCompletion](t, r)
	if !strings.HasPrefix(c.ID, "chatcmpl-") || c.Object != "chat.completion" || c.Model != "gpt-4" || c.Created == 0 {
		t.Fatalf("bad envelope: %s", r.body)
	}
	if len(c.Choices) != 1 || c.Choices[0].Message.Role != "assistant" || c.Choices[0].FinishReason != "stop" {
		t.Fatalf("bad choices: %s", r.body)
	}
	if got := len(strings.Fields(c.Choices[0].Message.Content)); got != 5 {
		t.Fatalf("content %q has %d tokens, want 5", c.Choices[0].Message.Content, got)
	}
	want := vllmsim.Usage{PromptTokens: 5, CompletionTokens: 5, TotalTokens: 10}
	if c.Usage == nil || *c.Usage != want {
		t.Fatalf("usage = %+v, want %+v", c.Usage, want)
	}

	// max_tokens below the configured length ends with "length".
	r = post(t, base+"/v1/chat/completions", chatBody(map[string]any{"max_tokens": 2}))
	c = decode[vllmsim.ChatCompletion](t, r)
	if c.Choices[0].FinishReason != "length" || c.Usage.CompletionTokens != 2 {
		t.Fatalf("max_tokens 2: %s", r.body)
	}
	// Model may be omitted.
	r = post(t, base+"/v1/chat/completions", map[string]any{"messages": []map[string]string{{"role": "user", "content": "hi"}}})
	expectStatus(t, r, http.StatusOK)

	fams := scrape(t, base)
	if v := value(fams, vllmsim.MetricRequestSuccess, reason("stop")); v != 2 {
		t.Fatalf("stop count %v, want 2", v)
	}
	if v := value(fams, vllmsim.MetricRequestSuccess, reason("length")); v != 1 {
		t.Fatalf("length count %v, want 1", v)
	}
	if v := value(fams, vllmsim.MetricGenerationTokens, nil); v != 12 {
		t.Fatalf("generation tokens %v, want 12", v)
	}
	if v := value(fams, vllmsim.MetricPromptTokens, nil); v != 11 {
		t.Fatalf("prompt tokens %v, want 11", v)
	}
}

func TestCompletion(t *testing.T) {
	_, base := newSim(t, vllmsim.Config{Name: "b", Model: "gpt-4", Tokens: 3})
	r := post(t, base+"/v1/completions", map[string]any{"model": "gpt-4", "prompt": "once upon a time"})
	expectStatus(t, r, http.StatusOK)
	c := decode[vllmsim.Completion](t, r)
	if !strings.HasPrefix(c.ID, "cmpl-") || c.Object != "text_completion" || c.Model != "gpt-4" {
		t.Fatalf("bad envelope: %s", r.body)
	}
	if len(c.Choices) != 1 || len(strings.Fields(c.Choices[0].Text)) != 3 || c.Choices[0].FinishReason == nil || *c.Choices[0].FinishReason != "stop" {
		t.Fatalf("bad choices: %s", r.body)
	}
	if c.Usage == nil || *c.Usage != (vllmsim.Usage{PromptTokens: 4, CompletionTokens: 3, TotalTokens: 7}) {
		t.Fatalf("usage: %s", r.body)
	}
	// Token id prompts count one token per id.
	r = post(t, base+"/v1/completions", map[string]any{"prompt": []int{1, 2, 3, 4, 5, 6}, "max_tokens": 1})
	c = decode[vllmsim.Completion](t, r)
	if c.Usage.PromptTokens != 6 || *c.Choices[0].FinishReason != "length" {
		t.Fatalf("token prompt: %s", r.body)
	}
}

func TestStreamingChat(t *testing.T) {
	_, base := newSim(t, vllmsim.Config{Name: "b", Model: "gpt-4", Tokens: 4})
	r := post(t, base+"/v1/chat/completions", chatBody(map[string]any{
		"stream": true, "stream_options": map[string]any{"include_usage": true},
	}))
	expectStatus(t, r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	events := sseEvents(t, r.body)
	// 4 token chunks, the finish chunk, the usage chunk, [DONE].
	if len(events) != 7 || events[6] != "[DONE]" {
		t.Fatalf("events %q", events)
	}
	var text strings.Builder
	var id string
	for i, ev := range events[:4] {
		var c vllmsim.ChatCompletionChunk
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("chunk %d %q: %v", i, ev, err)
		}
		if c.Object != "chat.completion.chunk" || c.Model != "gpt-4" || len(c.Choices) != 1 || c.Choices[0].FinishReason != nil {
			t.Fatalf("chunk %d: %s", i, ev)
		}
		if c.Choices[0].Delta.Content == "" {
			t.Fatalf("chunk %d has no delta.content: %s", i, ev)
		}
		if (i == 0) != (c.Choices[0].Delta.Role == "assistant") {
			t.Fatalf("chunk %d role %q: only the first chunk carries the role", i, c.Choices[0].Delta.Role)
		}
		if id == "" {
			id = c.ID
		} else if c.ID != id {
			t.Fatalf("chunk %d id %q != %q", i, c.ID, id)
		}
		text.WriteString(c.Choices[0].Delta.Content)
	}
	if got := len(strings.Fields(text.String())); got != 4 {
		t.Fatalf("streamed text %q has %d tokens", text.String(), got)
	}
	var fin vllmsim.ChatCompletionChunk
	if err := json.Unmarshal([]byte(events[4]), &fin); err != nil || fin.Choices[0].FinishReason == nil || *fin.Choices[0].FinishReason != "stop" || fin.Choices[0].Delta.Content != "" {
		t.Fatalf("finish chunk %s (%v)", events[4], err)
	}
	var usage vllmsim.ChatCompletionChunk
	if err := json.Unmarshal([]byte(events[5]), &usage); err != nil || usage.Usage == nil || usage.Usage.CompletionTokens != 4 || len(usage.Choices) != 0 {
		t.Fatalf("usage chunk %s (%v)", events[5], err)
	}

	// Without include_usage there is no usage chunk.
	r = post(t, base+"/v1/chat/completions", chatBody(map[string]any{"stream": true, "max_tokens": 2}))
	events = sseEvents(t, r.body)
	if len(events) != 4 || events[3] != "[DONE]" || !strings.Contains(events[2], `"finish_reason":"length"`) {
		t.Fatalf("events %q", events)
	}
}

func TestStreamingCompletion(t *testing.T) {
	_, base := newSim(t, vllmsim.Config{Name: "b", Model: "gpt-4", Tokens: 3})
	r := post(t, base+"/v1/completions", map[string]any{"model": "gpt-4", "prompt": "hi", "stream": true})
	expectStatus(t, r, http.StatusOK)
	events := sseEvents(t, r.body)
	if len(events) != 5 || events[4] != "[DONE]" {
		t.Fatalf("events %q", events)
	}
	for i, ev := range events[:4] {
		var c vllmsim.Completion
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatal(err)
		}
		if c.Object != "text_completion" || len(c.Choices) != 1 {
			t.Fatalf("chunk %d: %s", i, ev)
		}
		if last := i == 3; last != (c.Choices[0].FinishReason != nil) || last != (c.Choices[0].Text == "") {
			t.Fatalf("chunk %d: %s", i, ev)
		}
	}
}

func TestEmbeddings(t *testing.T) {
	_, base := newSim(t, vllmsim.Config{Name: "b", Model: "gpt-4"})
	r := post(t, base+"/v1/embeddings", map[string]any{"model": "gpt-4", "input": []string{"hello world", "canary"}})
	expectStatus(t, r, http.StatusOK)
	e := decode[vllmsim.EmbeddingList](t, r)
	if e.Object != "list" || e.Model != "gpt-4" || len(e.Data) != 2 || e.Usage.PromptTokens != 3 {
		t.Fatalf("embeddings: %s", r.body)
	}
	for i, d := range e.Data {
		var norm float64
		for _, x := range d.Embedding {
			norm += x * x
		}
		if d.Object != "embedding" || d.Index != i || len(d.Embedding) == 0 || math.Abs(norm-1) > 1e-9 {
			t.Fatalf("embedding %d: %+v", i, d)
		}
	}
	again := decode[vllmsim.EmbeddingList](t, post(t, base+"/v1/embeddings", map[string]any{"input": "hello world"}))
	if !slices.Equal(again.Data[0].Embedding, e.Data[0].Embedding) {
		t.Fatal("embedding of the same text differs")
	}
	expectAPIError(t, post(t, base+"/v1/embeddings", map[string]any{"input": 3}), http.StatusBadRequest)
}

func TestRequestErrors(t *testing.T) {
	_, base := newSim(t, fastConfig())
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings"} {
		e := expectAPIError(t, post(t, base+path, map[string]any{"model": "gpt-5", "prompt": "x", "input": "x", "messages": []map[string]string{{"role": "user", "content": "x"}}}), http.StatusNotFound)
		if !strings.Contains(e.Message, "gpt-5") {
			t.Fatalf("%s: 404 message %q does not name the model", path, e.Message)
		}
		expectAPIError(t, post(t, base+path, `{"model": "gpt-4",`), http.StatusBadRequest)
		expectAPIError(t, post(t, base+path, `[1, 2]`), http.StatusBadRequest)
	}
	expectAPIError(t, post(t, base+"/v1/chat/completions", map[string]any{"messages": []any{}}), http.StatusBadRequest)
	expectAPIError(t, post(t, base+"/v1/completions", map[string]any{"model": "gpt-4"}), http.StatusBadRequest)
	expectAPIError(t, post(t, base+"/v1/completions", map[string]any{"prompt": "x", "max_tokens": 0}), http.StatusBadRequest)
	expectAPIError(t, get(t, base+"/v1/nope"), http.StatusNotFound)
	r := get(t, base+"/v1/chat/completions")
	expectAPIError(t, r, http.StatusMethodNotAllowed)
	if r.header.Get("Allow") != "POST" {
		t.Fatalf("Allow = %q", r.header.Get("Allow"))
	}

	fams := scrape(t, base)
	lbl := func(h, s string) map[string]string {
		return map[string]string{"handler": h, "method": "POST", "status": s}
	}
	if v := value(fams, vllmsim.MetricHTTPRequests, lbl("/v1/completions", "4xx")); v != 5 {
		t.Fatalf("completions 4xx = %v, want 5", v)
	}
	if v := value(fams, vllmsim.MetricHTTPRequests, map[string]string{"handler": "none", "method": "GET", "status": "4xx"}); v != 1 {
		t.Fatalf("unknown path 4xx = %v, want 1", v)
	}
	// Rejected requests never reach the engine.
	for _, r := range []string{"stop", "length", "abort", "error"} {
		if v := value(fams, vllmsim.MetricRequestSuccess, reason(r)); v != 0 {
			t.Fatalf("%s = %v, want 0", r, v)
		}
	}
}

func TestErrorInjectionRate(t *testing.T) {
	const n, rate = 400, 0.25
	cfg := fastConfig()
	cfg.ErrorRate, cfg.Seed = rate, 42
	run := func() []int {
		_, base := newSim(t, cfg)
		statuses := make([]int, n)
		for i := range statuses {
			var r result
			if i%2 == 0 {
				r = post(t, base+"/v1/chat/completions", chatBody(nil))
			} else {
				r = post(t, base+"/v1/chat/completions", chatBody(map[string]any{"stream": true}))
			}
			statuses[i] = r.status
			switch r.status {
			case http.StatusOK:
			case http.StatusInternalServerError:
				expectAPIError(t, r, http.StatusInternalServerError) // JSON even when streaming was asked for
			default:
				t.Fatalf("request %d: status %d", i, r.status)
			}
		}
		fams := scrape(t, base)
		failed := float64(countOf(statuses, 500))
		if v := value(fams, vllmsim.MetricRequestSuccess, reason("error")); v != failed {
			t.Fatalf("error count %v, want %v", v, failed)
		}
		if v := value(fams, vllmsim.MetricRequestSuccess, reason("stop")); v != n-failed {
			t.Fatalf("stop count %v, want %v", v, n-failed)
		}
		if v := value(fams, vllmsim.MetricHTTPRequests, map[string]string{"handler": "/v1/chat/completions", "method": "POST", "status": "5xx"}); v != failed {
			t.Fatalf("5xx count %v, want %v", v, failed)
		}
		if v := value(fams, vllmsim.MetricE2ELatency, nil); v != n {
			t.Fatalf("e2e count %v, want %d (every finished request)", v, n)
		}
		return statuses
	}
	first := run()
	failed := countOf(first, 500)
	// Binomial(400, 0.25): sd ~8.7; 4.5 sd either side.
	if failed < 60 || failed > 140 {
		t.Fatalf("%d of %d failed, want about %d", failed, n, int(n*rate))
	}
	if second := run(); !slices.Equal(first, second) {
		t.Fatal("the same seed gave a different error sequence")
	}

	// Rates 0 and 1 are exact.
	sim, base := newSim(t, fastConfig())
	for range 20 {
		expectStatus(t, post(t, base+"/v1/completions", map[string]any{"prompt": "x"}), http.StatusOK)
	}
	if err := sim.UpdateConfig(func(c *vllmsim.Config) { c.ErrorRate = 1 }); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		expectAPIError(t, post(t, base+"/v1/completions", map[string]any{"prompt": "x", "stream": true}), http.StatusInternalServerError)
	}
}

func countOf(s []int, v int) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func TestMetricsExposition(t *testing.T) {
	_, base := newSim(t, vllmsim.Config{Name: "b", Model: "llama-3"})
	post(t, base+"/v1/chat/completions", chatBody(map[string]any{"model": "llama-3"}))
	post(t, base+"/v1/completions", map[string]any{"prompt": "x", "stream": true})
	get(t, base+"/v1/models")

	fams := scrape(t, base)
	types := map[string]string{
		"vllm:e2e_request_latency_seconds": "HISTOGRAM",
		"vllm:time_to_first_token_seconds": "HISTOGRAM",
		"vllm:inter_token_latency_seconds": "HISTOGRAM",
		"vllm:request_queue_time_seconds":  "HISTOGRAM",
		"vllm:request_success_total":       "COUNTER",
		"vllm:prompt_tokens_total":         "COUNTER",
		"vllm:generation_tokens_total":     "COUNTER",
		"vllm:num_requests_running":        "GAUGE",
		"vllm:num_requests_waiting":        "GAUGE",
		"vllm:kv_cache_usage_perc":         "GAUGE",
		"http_requests_total":              "COUNTER",
	}
	for name, typ := range types {
		f := fams[name]
		if f == nil {
			t.Fatalf("metric %s missing", name)
		}
		if f.GetType().String() != typ {
			t.Fatalf("%s is a %s, want %s", name, f.GetType(), typ)
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if strings.HasPrefix(name, "vllm:") {
				if labels["model_name"] != "llama-3" || labels["engine"] != "0" {
					t.Fatalf("%s labels %v, want model_name=llama-3 engine=0", name, labels)
				}
			} else if len(labels) != 3 || labels["handler"] == "" || labels["method"] == "" || !slices.Contains([]string{"2xx", "4xx", "5xx"}, labels["status"]) {
				t.Fatalf("%s labels %v", name, labels)
			}
			if m.Histogram != nil {
				var bounds []float64
				for _, b := range m.Histogram.GetBucket() {
					bounds = append(bounds, b.GetUpperBound())
				}
				if !slices.Equal(bounds, append(slices.Clone(vllmsim.LatencyBuckets), math.Inf(1))) {
					t.Fatalf("%s buckets %v", name, bounds)
				}
			}
		}
	}
	if got := len(fams["vllm:request_success_total"].GetMetric()); got != 4 {
		t.Fatalf("request_success_total has %d series, want stop/length/abort/error", got)
	}
	if v := value(fams, "vllm:request_success_total", reason("stop")); v != 2 {
		t.Fatalf("stop = %v, want 2", v)
	}
	for _, h := range []string{"vllm:e2e_request_latency_seconds", "vllm:time_to_first_token_seconds", "vllm:request_queue_time_seconds"} {
		if v := value(fams, h, nil); v != 2 {
			t.Fatalf("%s count = %v, want 2", h, v)
		}
	}
	// 16 tokens each: 15 gaps each.
	if v := value(fams, "vllm:inter_token_latency_seconds", nil); v != 30 {
		t.Fatalf("inter-token count = %v, want 30", v)
	}
	if v := value(fams, "http_requests_total", map[string]string{"handler": "/v1/models", "method": "GET", "status": "2xx"}); v != 1 {
		t.Fatalf("models 2xx = %v", v)
	}
	if find(fams, "http_requests_total", map[string]string{"handler": "/metrics"}) != nil {
		t.Fatal("/metrics must not be instrumented (vLLM excludes it)")
	}
	if v := value(fams, "vllm:kv_cache_usage_perc", nil); v != 0 {
		t.Fatalf("idle kv cache usage %v", v)
	}
}

func TestControlEndpoint(t *testing.T) {
	sim, base := newSim(t, vllmsim.Config{Name: "vllm-gpt4-v2", Model: "gpt-4", Tokens: 4, TTFT: 5 * time.Millisecond})

	r := get(t, base+"/control")
	expectStatus(t, r, http.StatusOK)
	var fields map[string]any
	if err := json.Unmarshal(r.body, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "model", "latency", "ttft", "itl", "tokens", "error_rate", "jitter", "seed", "max_running", "kv_cache_tokens", "answer"} {
		if _, ok := fields[k]; !ok {
			t.Fatalf("GET /control lacks %q: %s", k, r.body)
		}
	}
	if fields["ttft"] != "5ms" || fields["name"] != "vllm-gpt4-v2" {
		t.Fatalf("GET /control: %s", r.body)
	}

	r = do(t, context.Background(), http.MethodPut, base+"/control", `{"error_rate": 1, "itl": "250ms", "tokens": 2}`)
	expectStatus(t, r, http.StatusOK)
	got := sim.Config()
	want := vllmsim.Config{Name: "vllm-gpt4-v2", Model: "gpt-4", Tokens: 2, TTFT: 5 * time.Millisecond,
		InterTokenLatency: 250 * time.Millisecond, ErrorRate: 1, Seed: 0, KVCacheTokens: vllmsim.DefaultKVCacheTokens}
	if got != want {
		t.Fatalf("after PUT: %+v, want %+v", got, want)
	}
	var echoed vllmsim.Config
	if err := json.Unmarshal(r.body, &echoed); err != nil || echoed != want {
		t.Fatalf("PUT answer %s decodes to %+v (%v)", r.body, echoed, err)
	}
	expectAPIError(t, post(t, base+"/v1/completions", map[string]any{"prompt": "x"}), http.StatusInternalServerError)

	// POST works too; a bad request changes nothing.
	expectStatus(t, post(t, base+"/control", `{"error_rate": 0, "itl": "0s"}`), http.StatusOK)
	before := sim.Config()
	for _, bad := range []string{
		`{"error_rate": 1.5}`, `{"error_rate": -0.1}`, `{"tokens": 0}`, `{"ttft": "-1s"}`, `{"itl": "fast"}`,
		`{"latency": 250}`, `{"jitter": 2}`, `{"max_running": -1}`, `{"kv_cache_tokens": 0}`,
		`{"model": "gpt-5"}`, `{"name": "other"}`, `{"bogus": 1}`, `{"error_rate": 0.5, "tokens": -3}`, `not json`, ``,
	} {
		expectAPIError(t, do(t, context.Background(), http.MethodPut, base+"/control", bad), http.StatusBadRequest)
		if sim.Config() != before {
			t.Fatalf("PUT %s changed the config", bad)
		}
	}
	c := decode[vllmsim.Completion](t, post(t, base+"/v1/completions", map[string]any{"prompt": "x"}))
	if c.Usage.CompletionTokens != 2 {
		t.Fatalf("tokens knob not applied: %+v", c.Usage)
	}

	// The Go API validates the same way.
	if err := sim.UpdateConfig(func(c *vllmsim.Config) { c.ErrorRate = 3 }); err == nil {
		t.Fatal("UpdateConfig accepted error_rate 3")
	}
	if err := sim.SetConfig(vllmsim.Config{Tokens: 7}); err != nil {
		t.Fatal(err)
	}
	if c := sim.Config(); c.Name != "vllm-gpt4-v2" || c.Tokens != 7 || c.TTFT != 0 {
		t.Fatalf("SetConfig: %+v", c)
	}
}

func TestClientCancellationCountsAsAbort(t *testing.T) {
	g := NewWithT(t)
	// Tokens come an hour apart: only cancellation ends these requests.
	_, base := newSim(t, vllmsim.Config{Name: "b", Model: "gpt-4", Tokens: 3, InterTokenLatency: time.Hour})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions",
		strings.NewReader(`{"messages":[{"role":"user","content":"x"}],"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ev := readEvent(t, bufio.NewReader(resp.Body)); !strings.Contains(ev, `"role":"assistant"`) {
		t.Fatalf("first event %s", ev)
	}
	g.Expect(metricValue(t, base, vllmsim.MetricRequestsRunning, nil)).To(Equal(1.0))
	g.Expect(metricValue(t, base, vllmsim.MetricKVCacheUsage, nil)).To(BeNumerically(">", 0))
	cancel()
	g.Eventually(func() float64 { return metricValue(t, base, vllmsim.MetricRequestSuccess, reason("abort")) }).
		WithTimeout(eventually).WithPolling(5 * time.Millisecond).Should(Equal(1.0))
	g.Expect(metricValue(t, base, vllmsim.MetricRequestsRunning, nil)).To(Equal(0.0))
	g.Expect(metricValue(t, base, vllmsim.MetricKVCacheUsage, nil)).To(Equal(0.0))
	g.Expect(metricValue(t, base, vllmsim.MetricRequestSuccess, reason("stop"))).To(Equal(0.0))

	// A non-streaming request is aborted the same way.
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx2, http.MethodPost, base+"/v1/completions", strings.NewReader(`{"prompt":"x"}`))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	g.Eventually(func() float64 { return metricValue(t, base, vllmsim.MetricRequestsRunning, nil) }).
		WithTimeout(eventually).WithPolling(5 * time.Millisecond).Should(Equal(1.0))
	cancel2()
	g.Expect(<-done).To(MatchError(context.Canceled))
	g.Eventually(func() float64 { return metricValue(t, base, vllmsim.MetricRequestSuccess, reason("abort")) }).
		WithTimeout(eventually).WithPolling(5 * time.Millisecond).Should(Equal(2.0))
	g.Expect(metricValue(t, base, vllmsim.MetricE2ELatency, nil)).To(Equal(2.0))
}

func TestMaxRunningQueues(t *testing.T) {
	g := NewWithT(t)
	sim, base := newSim(t, vllmsim.Config{Name: "b", Model: "gpt-4", Tokens: 2, InterTokenLatency: time.Hour, MaxRunning: 1})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan int, 2)
	send := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/completions", strings.NewReader(`{"prompt":"x"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			results <- 0
			return
		}
		resp.Body.Close()
		results <- resp.StatusCode
	}
	go send(ctx)
	g.Eventually(func() float64 { return metricValue(t, base, vllmsim.MetricRequestsRunning, nil) }).
		WithTimeout(eventually).WithPolling(5 * time.Millisecond).Should(Equal(1.0))
	go send(context.Background())
	g.Eventually(func() float64 { return metricValue(t, base, vllmsim.MetricRequestsWaiting, nil) }).
		WithTimeout(eventually).WithPolling(5 * time.Millisecond).Should(Equal(1.0))

	// Make generation instant, then free the slot: the queued request runs.
	g.Expect(sim.UpdateConfig(func(c *vllmsim.Config) { c.InterTokenLatency = 0 })).To(Succeed())
	cancel()
	g.Expect([]int{<-results, <-results}).To(ConsistOf(0, http.StatusOK))
	fams := scrape(t, base)
	g.Expect(value(fams, vllmsim.MetricRequestSuccess, reason("abort"))).To(Equal(1.0))
	g.Expect(value(fams, vllmsim.MetricRequestSuccess, reason("stop"))).To(Equal(1.0))
	g.Expect(value(fams, vllmsim.MetricRequestsWaiting, nil)).To(Equal(0.0))
	g.Expect(value(fams, vllmsim.MetricQueueTime, nil)).To(Equal(2.0))
}

func TestStartAndClose(t *testing.T) {
	g := NewWithT(t)
	sim := vllmsim.New(vllmsim.Config{Name: "vllm-gpt4-v1", Tokens: 2, InterTokenLatency: time.Hour})
	addr, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	if !strings.HasPrefix(addr, "127.0.0.1:") || sim.URL() != "http://"+addr {
		t.Fatalf("addr %q URL %q", addr, sim.URL())
	}
	if _, err := sim.Start("127.0.0.1:0"); err == nil {
		t.Fatal("second Start succeeded")
	}
	expectStatus(t, get(t, sim.URL()+"/health"), http.StatusOK)

	// Close ends an in-flight stream (counted as abort) and returns.
	resp, err := http.Post(sim.URL()+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"x"}],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	readEvent(t, bufio.NewReader(resp.Body))
	g.Expect(sim.Close()).To(Succeed())
	fams := scrape(t, serve(t, sim))
	g.Expect(value(fams, vllmsim.MetricRequestSuccess, reason("abort"))).To(Equal(1.0))
	g.Expect(sim.Close()).To(Succeed())
}

func TestConfigDefaultsValidationAndFlags(t *testing.T) {
	d := vllmsim.DefaultConfig()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Model != "gpt-4" || d.TTFT != 50*time.Millisecond || d.InterTokenLatency != 10*time.Millisecond || d.Tokens != 16 {
		t.Fatalf("defaults %+v", d)
	}

	cfg := vllmsim.DefaultConfig()
	fs := flag.NewFlagSet("vllm-sim", flag.ContinueOnError)
	cfg.BindFlags(fs)
	err := fs.Parse([]string{"--name", "vllm-gpt4-v2", "--model", "gpt-4o", "--ttft", "20ms", "--itl", "5ms",
		"--latency", "200ms", "--error-rate", "0.1", "--tokens", "8", "--jitter", "0.2", "--seed", "7",
		"--max-running", "4", "--kv-cache-tokens", "1000"})
	if err != nil {
		t.Fatal(err)
	}
	want := vllmsim.Config{Name: "vllm-gpt4-v2", Model: "gpt-4o", TTFT: 20 * time.Millisecond, InterTokenLatency: 5 * time.Millisecond,
		Latency: 200 * time.Millisecond, ErrorRate: 0.1, Tokens: 8, Jitter: 0.2, Seed: 7, MaxRunning: 4, KVCacheTokens: 1000}
	if cfg != want {
		t.Fatalf("flags gave %+v, want %+v", cfg, want)
	}

	// JSON round trip.
	data, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"latency":"200ms"`) {
		t.Fatalf("durations not strings: %s", data)
	}
	var back vllmsim.Config
	if err := json.Unmarshal(data, &back); err != nil || back != want {
		t.Fatalf("round trip %+v (%v)", back, err)
	}

	defer func() {
		if recover() == nil {
			t.Fatal("New accepted error rate 2")
		}
	}()
	vllmsim.New(vllmsim.Config{ErrorRate: 2})
}

// TestWrongAnswerSwitch: with answer set, every completion (chat, text,
// streaming or not) is that text, fast and with HTTP 200; the PUT /control
// switch turns it on and off at run time.
func TestWrongAnswerSwitch(t *testing.T) {
	sim, base := newSim(t, fastConfig())
	content := func() string {
		c := decode[vllmsim.ChatCompletion](t, post(t, base+"/v1/chat/completions", chatBody(nil)))
		return c.Choices[0].Message.Content
	}
	if got := content(); got != "The quick brown fox" {
		t.Fatalf("default answer %q", got)
	}

	r := do(t, context.Background(), http.MethodPut, base+"/control", map[string]any{"answer": vllmsim.WrongAnswer})
	expectStatus(t, r, http.StatusOK)
	if sim.Config().Answer != vllmsim.WrongAnswer || !strings.Contains(string(r.body), `"answer":"I am sorry`) {
		t.Fatalf("PUT answered %s; config %+v", r.body, sim.Config())
	}
	if got := content(); got != vllmsim.WrongAnswer {
		t.Fatalf("chat answer %q", got)
	}
	c := decode[vllmsim.ChatCompletion](t, post(t, base+"/v1/chat/completions", chatBody(map[string]any{"max_tokens": 2})))
	if c.Choices[0].Message.Content != vllmsim.WrongAnswer || c.Usage.CompletionTokens != 2 || c.Choices[0].FinishReason != "length" {
		t.Fatalf("capped chat answer %+v", c)
	}

	// Invalid JSON, through the completions API and streamed.
	expectStatus(t, do(t, context.Background(), http.MethodPut, base+"/control", map[string]any{"answer": vllmsim.InvalidJSONAnswer}), http.StatusOK)
	tc := decode[vllmsim.Completion](t, post(t, base+"/v1/completions", map[string]any{"prompt": "2+2 as JSON"}))
	if tc.Choices[0].Text != vllmsim.InvalidJSONAnswer || json.Valid([]byte(tc.Choices[0].Text)) {
		t.Fatalf("completion %+v", tc)
	}
	events := sseEvents(t, post(t, base+"/v1/chat/completions", chatBody(map[string]any{"stream": true})).body)
	var streamed strings.Builder
	for _, ev := range events[:len(events)-2] {
		var ch vllmsim.ChatCompletionChunk
		if err := json.Unmarshal([]byte(ev), &ch); err != nil {
			t.Fatalf("chunk %q: %v", ev, err)
		}
		streamed.WriteString(ch.Choices[0].Delta.Content)
	}
	if streamed.String() != vllmsim.InvalidJSONAnswer {
		t.Fatalf("streamed %q", streamed.String())
	}

	// Off again.
	expectStatus(t, do(t, context.Background(), http.MethodPut, base+"/control", `{"answer": ""}`), http.StatusOK)
	if got := content(); got != "The quick brown fox" {
		t.Fatalf("answer after reset %q", got)
	}
	expectAPIError(t, do(t, context.Background(), http.MethodPut, base+"/control", map[string]any{"answer": strings.Repeat("x", 65<<10)}), http.StatusBadRequest)

	// The flag.
	cfg := vllmsim.DefaultConfig()
	fs := flag.NewFlagSet("vllm-sim", flag.ContinueOnError)
	cfg.BindFlags(fs)
	if err := fs.Parse([]string{"--answer", "Lyon"}); err != nil || cfg.Answer != "Lyon" {
		t.Fatalf("--answer gave %q (%v)", cfg.Answer, err)
	}
}
