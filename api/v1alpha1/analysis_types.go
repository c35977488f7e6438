package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Analysis declares how each step is judged.
type Analysis struct {
	// interval between two evaluations of the gates while the canary has
	// traffic.
	//
	// +optional
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="interval must be at least 1s: gates are queried once per interval, and Prometheus scrapes every 15s or so"
	Interval Duration `json:"interval,omitempty"`

	// prometheus says where the gates are queried. When absent, the operator's
	// default (its --prometheus-address flag) is used.
	//
	// +optional
	Prometheus *PrometheusSource `json:"prometheus,omitempty"`

	// gates are the checks every step must pass before the next step starts.
	//
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Gates []Gate `json:"gates"`

	// inconclusiveLimit is how many evaluations in a row may end without a
	// verdict (no data under the Hold policy, or Prometheus unreachable or
	// erroring) before the rollout is rolled back. 0, the default, holds the
	// current step for as long as it takes. A hold never promotes.
	//
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	InconclusiveLimit int32 `json:"inconclusiveLimit,omitempty"`
}

// PrometheusSource is a Prometheus-compatible query endpoint.
type PrometheusSource struct {
	// address is the base URL of the Prometheus HTTP API, e.g.
	// http://prometheus.monitoring:9090.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))",message="address must be an http:// or https:// URL, e.g. http://prometheus.monitoring:9090"
	Address string `json:"address"`

	// authSecretRef names a Secret in the rollout's namespace holding the
	// credentials: key "token" for a bearer token, or keys "username" and
	// "password" for basic auth; optional key "ca.crt" holds a PEM CA bundle.
	//
	// +optional
	AuthSecretRef *LocalObjectReference `json:"authSecretRef,omitempty"`

	// insecureSkipVerify disables TLS certificate verification. For tests only.
	//
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`

	// timeout of a single query.
	//
	// +optional
	// +kubebuilder:default="10s"
	Timeout Duration `json:"timeout,omitempty"`
}

// LocalObjectReference names an object in the rollout's namespace.
type LocalObjectReference struct {
	// name of the object.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// GatePreset names a built-in query. See the README for each one's PromQL.
//
// +kubebuilder:validation:Enum=vllm-error-ratio;vllm-http-error-ratio;vllm-e2e-latency-p99;vllm-ttft-p99;vllm-itl-p99;envoy-error-ratio;envoy-latency-p99;istio-error-ratio;istio-latency-p99;inference-pool-error-ratio;inference-pool-latency-p99;inference-pool-ttft-p99
type GatePreset string

// NoDataPolicy says what a gate does when its query returns nothing to judge:
// an empty vector, NaN or an infinity.
//
// +kubebuilder:validation:Enum=Hold;Fail;Pass
type NoDataPolicy string

const (
	// NoDataHold keeps the step where it is and evaluates again at the next
	// interval. It counts toward analysis.inconclusiveLimit.
	NoDataHold NoDataPolicy = "Hold"
	// NoDataFail counts the evaluation as a failure toward failureLimit.
	NoDataFail NoDataPolicy = "Fail"
	// NoDataPass counts the evaluation as a pass.
	NoDataPass NoDataPolicy = "Pass"
)

// Gate is one check of the canary's health.
//
// +kubebuilder:validation:XValidation:rule="[has(self.preset), has(self.query), has(self.prompt)].filter(x, x).size() == 1",message="set exactly one of preset, query or prompt"
// +kubebuilder:validation:XValidation:rule="has(self.min) || has(self.max)",message="set min, max or both: a gate without a threshold would always pass"
// +kubebuilder:validation:XValidation:rule="!has(self.min) || !has(self.max) || self.min <= self.max",message="min must not be greater than max"
// +kubebuilder:validation:XValidation:rule="!has(self.minRequests) || has(self.preset) || has(self.requestsQuery)",message="minRequests on a custom query needs requestsQuery, the PromQL that counts the canary's requests"
// +kubebuilder:validation:XValidation:rule="!has(self.prompt) || (!has(self.minRequests) && !has(self.requestsQuery) && !has(self.selector))",message="minRequests, requestsQuery and selector apply to PromQL gates only: remove them from a prompt gate"
// +kubebuilder:validation:XValidation:rule="(has(self.preTraffic) ? self.preTraffic : has(self.prompt)) || (has(self.everyStep) ? self.everyStep : !has(self.prompt))",message="a gate with preTraffic: false and everyStep: false would never run: set one of them to true"
type Gate struct {
	// name identifies the gate in status, events and metrics.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// preset is a built-in query for a common metric source.
	//
	// +optional
	Preset GatePreset `json:"preset,omitempty"`

	// query is a PromQL expression, a Go text/template over the documented
	// variables ({{ .Namespace }}, {{ .Canary }}, ...). It must return a
	// scalar or a single-element vector.
	//
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Query string `json:"query,omitempty"`

	// selector replaces a preset's default label matchers that pick the
	// canary's series, e.g. `service="{{ .Canary }}"`. A template, like query.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Selector string `json:"selector,omitempty"`

	// min is the lowest passing value, inclusive.
	//
	// +optional
	Min *float64 `json:"min,omitempty"`

	// max is the highest passing value, inclusive.
	//
	// +optional
	Max *float64 `json:"max,omitempty"`

	// minRequests is how many requests the canary must have served in the
	// current step before this gate can pass; until then the gate has no data.
	//
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinRequests *int64 `json:"minRequests,omitempty"`

	// requestsQuery counts the canary's requests for minRequests when query is
	// custom. A template; {{ .StepWindow }} is the time since the step started.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	RequestsQuery string `json:"requestsQuery,omitempty"`

	// noData is the policy for an evaluation without data: Hold (default),
	// Fail or Pass.
	//
	// +optional
	// +kubebuilder:default=Hold
	NoData NoDataPolicy `json:"noData,omitempty"`

	// failureLimit is the number of consecutive failed evaluations that roll
	// the rollout back: 1 (default) rolls back on the first failure, 3 on the
	// third failure in a row. A passing evaluation resets the count.
	//
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	FailureLimit int32 `json:"failureLimit,omitempty"`

	// prompt sends a small set of prompts to the canary and judges the
	// answers; the gate's value is the fraction of prompts that passed. See
	// the README's "Prompt gates".
	//
	// +optional
	Prompt *PromptGate `json:"prompt,omitempty"`

	// preTraffic evaluates the gate before the first step, with the canary
	// at weight 0: step 1's weight goes out only once every pre-traffic gate
	// passed, a failure rolls back with no traffic moved, and no data holds.
	// Default: true for prompt gates, false for the others.
	//
	// +optional
	PreTraffic *bool `json:"preTraffic,omitempty"`

	// everyStep evaluates the gate at every step while the canary has
	// traffic. Default: false for prompt gates, true for the others.
	//
	// +optional
	EveryStep *bool `json:"everyStep,omitempty"`
}

// PromptAPI is the OpenAI API a prompt gate speaks.
//
// +kubebuilder:validation:Enum=Chat;Completions
type PromptAPI string

const (
	// PromptAPIChat sends POST /v1/chat/completions with one user message.
	PromptAPIChat PromptAPI = "Chat"
	// PromptAPICompletions sends POST /v1/completions with the prompt.
	PromptAPICompletions PromptAPI = "Completions"
)

// PromptGate sends prompts straight to the canary backend, bypassing the
// routes, and judges the answers.
//
// +kubebuilder:validation:XValidation:rule="has(self.prompts) != has(self.promptsFrom)",message="set exactly one of prompts or promptsFrom"
// +kubebuilder:validation:XValidation:rule="!has(self.stableURL) || (has(self.url) && has(self.compareStable) && self.compareStable)",message="stableURL needs url and compareStable: true"
// +kubebuilder:validation:XValidation:rule="!has(self.url) || !has(self.compareStable) || !self.compareStable || has(self.stableURL)",message="compareStable with url needs stableURL, the address of the stable backend"
type PromptGate struct {
	// api is the OpenAI API to call: Chat (default) or Completions.
	//
	// +optional
	// +kubebuilder:default=Chat
	API PromptAPI `json:"api,omitempty"`

	// path of the API on the backend. Default: /v1/chat/completions for
	// Chat, /v1/completions for Completions.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^/[A-Za-z0-9._~/-]*$')",message="path must start with / and hold only letters, digits and . _ ~ / -"
	Path string `json:"path,omitempty"`

	// model is the OpenAI "model" field of every request, e.g. the name
	// vLLM serves. Omitted when empty (vLLM then uses its served model).
	//
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Model string `json:"model,omitempty"`

	// url overrides where the prompts are sent: the base URL of the canary,
	// http(s)://host:port, to which path is appended. By default the prompts
	// go to the canary Service, http://<canary>.<namespace>.svc:<port>. Set
	// it when the operator runs outside the cluster, or for an
	// InferencePool canary. The operator's egress policy applies either way.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))",message="url must be an http:// or https:// URL, e.g. http://vllm-canary.models:8000"
	URL string `json:"url,omitempty"`

	// stableURL is url for the stable backend, used with compareStable.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))",message="stableURL must be an http:// or https:// URL, e.g. http://vllm-stable.models:8000"
	StableURL string `json:"stableURL,omitempty"`

	// prompts are the prompts and what their answers must hold.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Prompts []PromptCase `json:"prompts,omitempty"`

	// promptsFrom reads the prompts from a key of a ConfigMap in the
	// rollout's namespace: a YAML or JSON list of prompts, each as in
	// prompts. It is read at every evaluation.
	//
	// +optional
	PromptsFrom *ConfigMapKeyRef `json:"promptsFrom,omitempty"`

	// concurrency is how many prompts are in flight at once.
	//
	// +optional
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	Concurrency int32 `json:"concurrency,omitempty"`

	// timeout bounds one evaluation, all prompts included. A prompt without
	// an answer by then fails.
	//
	// +optional
	// +kubebuilder:default="60s"
	Timeout Duration `json:"timeout,omitempty"`

	// compareStable sends the same prompts to the stable backend too and
	// shows its pass rate next to the canary's (status.gates[].stableValue).
	// Only the canary's pass rate is judged.
	//
	// +optional
	CompareStable bool `json:"compareStable,omitempty"`
}

// ConfigMapKeyRef names a key of a ConfigMap in the rollout's namespace.
type ConfigMapKeyRef struct {
	// name of the ConfigMap.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key in the ConfigMap's data.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// PromptCase is one prompt and what its answer must hold.
type PromptCase struct {
	// prompt is the user message (Chat) or the prompt (Completions).
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=8192
	Prompt string `json:"prompt"`

	// expect is what the answer must hold.
	//
	// +required
	Expect PromptExpectation `json:"expect"`

	// maxTokens caps the answer's length (the request's max_tokens).
	//
	// +optional
	// +kubebuilder:default=64
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4096
	MaxTokens int32 `json:"maxTokens,omitempty"`

	// maxLatency is the slowest passing answer; it is also the prompt's
	// timeout.
	//
	// +optional
	// +kubebuilder:default="10s"
	MaxLatency Duration `json:"maxLatency,omitempty"`
}

// PromptExpectation is what an answer must hold: exactly one of contains,
// regex or jsonSchema.
//
// +kubebuilder:validation:XValidation:rule="[has(self.contains), has(self.regex), has(self.jsonSchema)].filter(x, x).size() == 1",message="set exactly one of contains, regex or jsonSchema"
type PromptExpectation struct {
	// contains is a substring the answer must contain (case-sensitive).
	//
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Contains string `json:"contains,omitempty"`

	// regex is an RE2 regular expression (Go syntax) the answer must match
	// somewhere; anchor it with ^ and $ to match the whole answer.
	//
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Regex string `json:"regex,omitempty"`

	// jsonSchema is a JSON Schema (as a JSON string): the answer must be
	// JSON that validates against it. "{}" accepts any JSON. References
	// ($ref) to other documents are not loaded.
	//
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=8192
	JSONSchema string `json:"jsonSchema,omitempty"`
}

// AlertSelector matches Alertmanager alerts by their labels.
type AlertSelector struct {
	// matchLabels must all be present on an alert, with equal values, for the
	// alert to roll this rollout back.
	//
	// +required
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=16
	MatchLabels map[string]string `json:"matchLabels"`
}

// GateVerdict is the outcome of one evaluation of a gate.
//
// +kubebuilder:validation:Enum=Pass;Fail;NoData;Error
type GateVerdict string

const (
	// VerdictPass: the value is within [min, max].
	VerdictPass GateVerdict = "Pass"
	// VerdictFail: the value is outside [min, max].
	VerdictFail GateVerdict = "Fail"
	// VerdictNoData: the query returned an empty vector, NaN or an infinity,
	// or the canary served fewer than minRequests requests.
	VerdictNoData GateVerdict = "NoData"
	// VerdictError: Prometheus could not be queried, or the query returned
	// several series or an unexpected type.
	VerdictError GateVerdict = "Error"
)

// GateStatus is the recent record of one gate.
type GateStatus struct {
	// name of the gate.
	//
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// verdict of the latest evaluation.
	//
	// +optional
	Verdict GateVerdict `json:"verdict,omitempty"`

	// value of the latest evaluation, when there was one.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Value string `json:"value,omitempty"`

	// threshold is the passing range, for display, e.g. "<= 0.05".
	//
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Threshold string `json:"threshold,omitempty"`

	// stableValue is the stable backend's value in the latest evaluation,
	// for comparison (prompt gates with compareStable); it is not judged.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=64
	StableValue string `json:"stableValue,omitempty"`

	// consecutiveFailures counts failed evaluations in a row.
	//
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// consecutiveInconclusive counts evaluations in a row without a verdict.
	//
	// +optional
	ConsecutiveInconclusive int32 `json:"consecutiveInconclusive,omitempty"`

	// lastEvaluatedAt is when the latest evaluation ran.
	//
	// +optional
	LastEvaluatedAt *metav1.Time `json:"lastEvaluatedAt,omitempty"`

	// message explains the latest verdict.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`

	// history lists recent evaluations, oldest first.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	History []GateMeasurement `json:"history,omitempty"`
}

// GateMeasurement is one evaluation of a gate.
type GateMeasurement struct {
	// at is when the evaluation ran.
	// +required
	At metav1.Time `json:"at"`
	// weight is the canary weight at the time.
	// +optional
	Weight int32 `json:"weight"`
	// value measured, if any.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Value string `json:"value,omitempty"`
	// verdict of the evaluation.
	// +required
	Verdict GateVerdict `json:"verdict"`
	// message explains the verdict.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Message string `json:"message,omitempty"`
}
