package vllmsim

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, as real vLLM (V1 engine) exposes them. Every vllm:* series
// has the labels model_name (the served model) and engine ("0").
const (
	MetricE2ELatency        = "vllm:e2e_request_latency_seconds"
	MetricTTFT              = "vllm:time_to_first_token_seconds"
	MetricInterTokenLatency = "vllm:inter_token_latency_seconds"
	MetricQueueTime         = "vllm:request_queue_time_seconds"
	MetricRequestSuccess    = "vllm:request_success_total"
	MetricPromptTokens      = "vllm:prompt_tokens_total"
	MetricGenerationTokens  = "vllm:generation_tokens_total"
	MetricRequestsRunning   = "vllm:num_requests_running"
	MetricRequestsWaiting   = "vllm:num_requests_waiting"
	MetricKVCacheUsage      = "vllm:kv_cache_usage_perc"

	// HTTP layer metrics, as prometheus-fastapi-instrumentator exposes them
	// in vLLM's API server.
	MetricHTTPRequests        = "http_requests_total"
	MetricHTTPRequestDuration = "http_request_duration_seconds"
)

// Finish reasons, the values of the finished_reason label of
// vllm:request_success_total. "error" counts injected failures.
const (
	FinishStop   = "stop"
	FinishLength = "length"
	FinishAbort  = "abort"
	FinishError  = "error"
)

// Engine is the value of the engine label.
const Engine = "0"

// LatencyBuckets are the upper bounds (seconds) of every latency histogram
// the simulator exposes. They are roughly 1-2-3-5 spaced from 5 ms to 60 s,
// so histogram_quantile(0.99, ...) resolves to within a bucket of about a
// third of its value anywhere between 10 ms and 60 s.
var LatencyBuckets = []float64{
	0.005, 0.01, 0.02, 0.03, 0.05, 0.075,
	0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
	1, 1.5, 2, 3, 5, 7.5,
	10, 15, 20, 30, 45, 60,
}

type metrics struct {
	reg *prometheus.Registry

	e2e, ttft, itl, queue prometheus.Histogram
	success               *prometheus.CounterVec
	promptTok, genTok     prometheus.Counter
	httpRequests          *prometheus.CounterVec
	httpDuration          *prometheus.HistogramVec
}

// stateFuncs give the gauges their current values.
type stateFuncs struct {
	running, waiting, kvUsage func() float64
}

func newMetrics(model string, state stateFuncs) *metrics {
	constLabels := prometheus.Labels{"model_name": model, "engine": Engine}
	hist := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: name, Help: help, Buckets: LatencyBuckets, ConstLabels: constLabels,
		})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: constLabels})
	}
	gauge := func(name, help string, f func() float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: constLabels}, f)
	}
	m := &metrics{
		reg:   prometheus.NewRegistry(),
		e2e:   hist(MetricE2ELatency, "Histogram of e2e request latency in seconds."),
		ttft:  hist(MetricTTFT, "Histogram of time to first token in seconds."),
		itl:   hist(MetricInterTokenLatency, "Histogram of inter-token latency in seconds."),
		queue: hist(MetricQueueTime, "Histogram of time spent in WAITING phase for request."),
		success: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequestSuccess, Help: "Count of successfully processed requests.", ConstLabels: constLabels,
		}, []string{"finished_reason"}),
		promptTok: counter(MetricPromptTokens, "Number of prefill tokens processed."),
		genTok:    counter(MetricGenerationTokens, "Number of generation tokens processed."),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricHTTPRequests, Help: "Total number of requests by method, status and handler.",
		}, []string{"handler", "method", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricHTTPRequestDuration, Help: "Latency with only few buckets by handler.",
			Buckets: LatencyBuckets,
		}, []string{"handler", "method"}),
	}
	m.reg.MustRegister(
		m.e2e, m.ttft, m.itl, m.queue, m.success, m.promptTok, m.genTok,
		gauge(MetricRequestsRunning, "Number of requests in model execution batches.", state.running),
		gauge(MetricRequestsWaiting, "Number of requests waiting to be processed.", state.waiting),
		gauge(MetricKVCacheUsage, "KV-cache usage. 1 means 100 percent usage.", state.kvUsage),
		m.httpRequests, m.httpDuration,
	)
	// Every series a rollout gate may take a rate() of exists from the start
	// at 0, so "no errors yet" reads as 0 and not as "no data".
	for _, r := range []string{FinishStop, FinishLength, FinishAbort, FinishError} {
		m.success.WithLabelValues(r)
	}
	for _, h := range []string{"/v1/chat/completions", "/v1/completions"} {
		for _, s := range []string{"2xx", "4xx", "5xx"} {
			m.httpRequests.WithLabelValues(h, "POST", s)
		}
	}
	return m
}
