package analysis

import (
	"strings"

	"github.com/modelrollout/modelrollout/api/v1alpha1"
)

// PresetInfo describes a built-in gate query, for documentation and tools.
type PresetInfo struct {
	// Name is the value of gate.preset.
	Name v1alpha1.GatePreset
	// Query is the PromQL template; {{ .Selector }} stands for the selector.
	Query string
	// Selector is the default label matchers picking the canary's series, a
	// template; gate.selector replaces it.
	Selector string
	// RequestsQuery counts the canary's requests since the step started, for
	// gate.minRequests.
	RequestsQuery string
	// Unit of the query's value: "ratio" (0 to 1) or "seconds".
	Unit string
	// Description says what is measured, where the canary is told apart from
	// the stable backend, and the caveats.
	Description string
}

type preset struct {
	query, requests, selector, unit, description string
}

// Selectors. Stable and canary serve the same model, so the version is told
// apart by labels Prometheus attaches at scrape time or that the proxy puts
// on its own metrics.
const (
	// vLLM pods scraped through a prometheus-operator ServiceMonitor (or
	// PodMonitor with the same relabeling) get the target labels service (the
	// Service whose endpoints were scraped) and namespace. The canary backend
	// is a Service, so its name selects the canary's pods.
	serviceSelector = `service="{{ .Canary }}",namespace="{{ .Namespace }}"`
	// Kgateway names one Envoy cluster per Service port,
	// kube_<namespace>_<service>_<port>; Envoy exports it as
	// envoy_cluster_name.
	envoySelector = `envoy_cluster_name="{{ .CanaryCluster }}"`
	// Istio's standard metrics, as reported by the destination's proxy.
	istioSelector = `reporter="destination",destination_service_name="{{ .Canary }}",destination_service_namespace="{{ .Namespace }}"`
	// Every InferencePool has its own endpoint picker (EPP), so the canary
	// pool's EPP Service, scraped with the service target label, selects the
	// canary's requests.
	eppSelector = `service="{{ .CanaryEndpointPicker }}",namespace="{{ .Namespace }}"`
	// Traefik's Gateway API provider names the service of every backendRef
	// <router>-svc-<namespace>-<service>-<index>, where <router> is
	// httproute-<route namespace>-<route name>-gw-<gateway namespace>-
	// <gateway name>-ep-<entry point>-<rule index>-<hash>, and its metrics
	// add the provider, @kubernetesgateway. The index is the backendRef's
	// position in the rule, which moves when Git reorders the refs, and a
	// rollout's header route is a route of its own: the regular expression
	// takes the canary Service's requests from every rule and route of the
	// namespace. The rule's weighted service (<router>-wrr) is left out.
	traefikSelector = `service=~"httproute-{{ .Namespace }}-.+-svc-{{ .Namespace }}-{{ .Canary }}-[0-9]+@kubernetesgateway"`
)

// Query building blocks. `{ {{- .Selector }}}` renders as {<selector>}: the
// "{{-" trims the space that keeps "{" from opening a template action.
const (
	sel    = `{ {{- .Selector }}}`
	rateI  = `[{{ .Interval }}]`
	stepSW = `[{{ .StepWindow }}]`
)

func p99(bucket, divisor string) string {
	q := `histogram_quantile(0.99, sum by (le) (rate(` + bucket + sel + rateI + `)))`
	if divisor != "" {
		q += " / " + divisor
	}
	return q
}

// ratio is errors over all requests. The numerator falls back to 0 when the
// error series does not exist (many exporters create it on the first error),
// so a healthy canary reads 0 instead of no data; without any request the
// denominator is empty or 0 and the gate has no data.
func ratio(errSeries, errMatchers, totalSeries string) string {
	errSel := sel
	if errMatchers != "" {
		errSel = `{` + errMatchers + `,{{ .Selector }}}`
	}
	return `(sum(rate(` + errSeries + errSel + rateI + `)) or vector(0)) / sum(rate(` + totalSeries + sel + rateI + `))`
}

func requests(counter string) string {
	return `sum(increase(` + counter + sel + stepSW + `))`
}

// firstOf reads the first of several equivalent queries that has a result:
// `(a) or (b)`. Each query aggregates to one series without labels, so `or`
// keeps the left one whenever it exists and never adds the two. Exporters
// that emit a metric under a new and a deprecated name at once are counted
// once, under the new name; exporters with only one of them work as well.
// Each alternative is a whole query over one naming, so a ratio never
// divides one naming's errors by the other's requests.
func firstOf(queries ...string) string {
	return "(" + strings.Join(queries, ") or (") + ")"
}

// Endpoint picker metric families. The llm-d router's endpoint picker
// exports llm_d_epp_request_* and marks the Gateway API Inference Extension
// names inference_objective_request_* deprecated (it emits both during the
// deprecation); older pickers export only inference_objective_*. The presets
// read llm_d_epp_* when it exists and inference_objective_* otherwise.
const (
	eppNew = "llm_d_epp_request"
	eppOld = "inference_objective_request"
)

func eppRatio() string {
	return firstOf(
		ratio(eppNew+"_error_total", "", eppNew+"_total"),
		ratio(eppOld+"_error_total", "", eppOld+"_total"))
}

func eppP99(suffix string) string {
	return firstOf(p99(eppNew+suffix, ""), p99(eppOld+suffix, ""))
}

func eppRequests() string {
	return firstOf(requests(eppNew+"_total"), requests(eppOld+"_total"))
}

// presetOrder is the order of the GatePreset enum in the CRD.
var presetOrder = []v1alpha1.GatePreset{
	"vllm-error-ratio", "vllm-http-error-ratio", "vllm-e2e-latency-p99", "vllm-ttft-p99", "vllm-itl-p99",
	"envoy-error-ratio", "envoy-latency-p99",
	"istio-error-ratio", "istio-latency-p99",
	"inference-pool-error-ratio", "inference-pool-latency-p99", "inference-pool-ttft-p99",
	"tgi-error-ratio", "tgi-latency-p99",
	"traefik-error-ratio", "traefik-latency-p99",
}

var presets = map[v1alpha1.GatePreset]preset{
	"vllm-error-ratio": {
		query:    ratio("vllm:request_success_total", `finished_reason="error"`, "vllm:request_success_total"),
		requests: requests("vllm:request_success_total"),
		selector: serviceSelector,
		unit:     "ratio",
		description: "Share of the canary's finished vLLM requests that finished with reason \"error\". " +
			"vllm:request_success_total counts every finished request, by finished_reason (stop, length, abort, error, repetition).",
	},
	"vllm-http-error-ratio": {
		query:    ratio("http_requests_total", `status="5xx"`, "http_requests_total"),
		requests: requests("http_requests_total"),
		selector: serviceSelector,
		unit:     "ratio",
		description: "Share of the canary's HTTP responses with a 5xx status, from the http_requests_total counter of vLLM's " +
			"OpenAI-compatible server (status grouped as 2xx, 4xx, 5xx).",
	},
	"vllm-e2e-latency-p99": {
		query:       p99("vllm:e2e_request_latency_seconds_bucket", ""),
		requests:    requests("vllm:request_success_total"),
		selector:    serviceSelector,
		unit:        "seconds",
		description: "99th percentile of the canary's end-to-end request latency measured by vLLM, in seconds.",
	},
	"vllm-ttft-p99": {
		query:       p99("vllm:time_to_first_token_seconds_bucket", ""),
		requests:    requests("vllm:request_success_total"),
		selector:    serviceSelector,
		unit:        "seconds",
		description: "99th percentile of the canary's time to first token measured by vLLM, in seconds.",
	},
	"vllm-itl-p99": {
		query:    p99("vllm:inter_token_latency_seconds_bucket", ""),
		requests: requests("vllm:request_success_total"),
		selector: serviceSelector,
		unit:     "seconds",
		description: "99th percentile of the canary's inter-token latency measured by vLLM, in seconds " +
			"(vLLM 0.13 removed time_per_output_token in favour of it).",
	},
	"envoy-error-ratio": {
		query:    ratio("envoy_cluster_upstream_rq_xx", `envoy_response_code_class="5"`, "envoy_cluster_upstream_rq_total"),
		requests: requests("envoy_cluster_upstream_rq_total"),
		selector: envoySelector,
		unit:     "ratio",
		description: "Share of the gateway's requests to the canary's Envoy cluster answered with a 5xx. The default selector " +
			"uses Kgateway's per-Service cluster name kube_<namespace>_<service>_<port> and needs spec.canary.port. " +
			"Envoy Gateway puts all backends of a rule in one cluster, so it cannot tell canary from stable.",
	},
	"envoy-latency-p99": {
		query:    p99("envoy_cluster_upstream_rq_time_bucket", "1000"),
		requests: requests("envoy_cluster_upstream_rq_total"),
		selector: envoySelector,
		unit:     "seconds",
		description: "99th percentile of the upstream request time of the canary's Envoy cluster, converted from Envoy's " +
			"milliseconds to seconds. On streamed responses it is the whole stream's duration, not the model's speed.",
	},
	"istio-error-ratio": {
		query:       ratio("istio_requests_total", `response_code=~"5.."`, "istio_requests_total"),
		requests:    requests("istio_requests_total"),
		selector:    istioSelector,
		unit:        "ratio",
		description: "Share of the requests to the canary Service answered with a 5xx, as reported by the destination's Istio proxy.",
	},
	"istio-latency-p99": {
		query:       p99("istio_request_duration_milliseconds_bucket", "1000"),
		requests:    requests("istio_requests_total"),
		selector:    istioSelector,
		unit:        "seconds",
		description: "99th percentile of the request duration to the canary Service reported by the destination's Istio proxy, in seconds.",
	},
	"inference-pool-error-ratio": {
		query:    eppRatio(),
		requests: eppRequests(),
		selector: eppSelector,
		unit:     "ratio",
		description: "Share of the canary InferencePool's requests that its endpoint picker counted as errors. " +
			"Reads llm_d_epp_request_error_total / llm_d_epp_request_total (llm-d router) when they exist, " +
			"else inference_objective_request_error_total / inference_objective_request_total (Gateway API Inference Extension; " +
			"named inference_model_* up to v1.0).",
	},
	"inference-pool-latency-p99": {
		query:    eppP99("_duration_seconds_bucket"),
		requests: eppRequests(),
		selector: eppSelector,
		unit:     "seconds",
		description: "99th percentile of the response latency the canary InferencePool's endpoint picker measured, in seconds " +
			"(llm_d_epp_request_duration_seconds, else inference_objective_request_duration_seconds).",
	},
	"inference-pool-ttft-p99": {
		query:    eppP99("_ttft_seconds_bucket"),
		requests: eppRequests(),
		selector: eppSelector,
		unit:     "seconds",
		description: "99th percentile of the time to first token the canary InferencePool's endpoint picker measured, in seconds " +
			"(llm_d_epp_request_ttft_seconds, else inference_objective_request_ttft_seconds). " +
			"The endpoint picker records it only when latency tracking (the latency predictor) is enabled; otherwise the gate has no data.",
	},
	"tgi-error-ratio": {
		query:    ratio("tgi_request_failure", "", "tgi_request_count"),
		requests: requests("tgi_request_count"),
		selector: serviceSelector,
		unit:     "ratio",
		description: "Share of the canary's Text Generation Inference requests that failed: tgi_request_failure (every error kind, " +
			"by its err label: validation, generation, overloaded, ...) over tgi_request_count. TGI's exporter names its counters " +
			"without the _total suffix.",
	},
	"tgi-latency-p99": {
		query:       p99("tgi_request_duration_bucket", ""),
		requests:    requests("tgi_request_count"),
		selector:    serviceSelector,
		unit:        "seconds",
		description: "99th percentile of the canary's end-to-end request duration measured by Text Generation Inference (tgi_request_duration), in seconds.",
	},
	"traefik-error-ratio": {
		query:    ratio("traefik_service_requests_total", `code=~"5.."`, "traefik_service_requests_total"),
		requests: requests("traefik_service_requests_total"),
		selector: traefikSelector,
		unit:     "ratio",
		description: "Share of the requests Traefik sent to the canary Service that were answered with a 5xx, from " +
			"traefik_service_requests_total of Traefik's Prometheus metrics (metrics.prometheus.addServicesLabels, on by default). " +
			"The default selector matches the service names Traefik's Gateway API provider gives backendRefs " +
			"(httproute-<namespace>-...-svc-<namespace>-<service>-<index>@kubernetesgateway), in every route of the namespace, " +
			"the rollout's header route included.",
	},
	"traefik-latency-p99": {
		query:    p99("traefik_service_request_duration_seconds_bucket", ""),
		requests: requests("traefik_service_requests_total"),
		selector: traefikSelector,
		unit:     "seconds",
		description: "99th percentile of the duration of the requests Traefik sent to the canary Service, in seconds " +
			"(traefik_service_request_duration_seconds). Traefik's default buckets are 0.1, 0.3, 1.2 and 5 seconds: set " +
			"metrics.prometheus.buckets around the threshold. On streamed responses it is the whole stream's duration.",
	},
}

// PresetNames lists every preset, in the order of the CRD's enum.
func PresetNames() []v1alpha1.GatePreset {
	return append([]v1alpha1.GatePreset(nil), presetOrder...)
}

// Describe returns a preset's templates and documentation; only Name is
// set for an unknown preset.
func Describe(p v1alpha1.GatePreset) PresetInfo {
	pr, ok := presets[p]
	if !ok {
		return PresetInfo{Name: p}
	}
	return PresetInfo{
		Name:          p,
		Query:         pr.query,
		Selector:      pr.selector,
		RequestsQuery: pr.requests,
		Unit:          pr.unit,
		Description:   pr.description,
	}
}

func presetList() string {
	names := make([]string, len(presetOrder))
	for i, p := range presetOrder {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}
