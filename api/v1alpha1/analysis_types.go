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

// Gate is one check of the canary's health: a gate body written inline
// (preset or query), or a reference to a GateTemplate or ClusterGateTemplate
// with arguments. Thresholds (min, max, minRequests) set on a gate with a
// templateRef override the template's; so do a noData other than Hold and a
// failureLimit above 1.
//
// +kubebuilder:validation:XValidation:rule="[has(self.preset), has(self.query), has(self.templateRef)].filter(x, x).size() == 1",message="set exactly one of preset, query or templateRef"
// +kubebuilder:validation:XValidation:rule="has(self.templateRef) || has(self.min) || has(self.max)",message="set min, max or both: a gate without a threshold would always pass"
// +kubebuilder:validation:XValidation:rule="!has(self.min) || !has(self.max) || self.min <= self.max",message="min must not be greater than max"
// +kubebuilder:validation:XValidation:rule="!has(self.minRequests) || has(self.preset) || has(self.requestsQuery) || has(self.templateRef)",message="minRequests on a custom query needs requestsQuery, the PromQL that counts the canary's requests"
// +kubebuilder:validation:XValidation:rule="!has(self.args) || has(self.templateRef)",message="args are passed to a template: set templateRef, or remove args"
// +kubebuilder:validation:XValidation:rule="!has(self.templateRef) || (!has(self.selector) && !has(self.requestsQuery))",message="a gate with templateRef takes its selector and requestsQuery from the template; set only min, max, minRequests, noData, failureLimit and args here, or declare an argument in the template"
type Gate struct {
	// name identifies the gate in status, events and metrics.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// templateRef names a GateTemplate (in the rollout's namespace) or a
	// ClusterGateTemplate whose gate body this gate uses, read when the
	// gates are evaluated: an edit of the template takes effect at the next
	// evaluation.
	//
	// +optional
	TemplateRef *GateTemplateRef `json:"templateRef,omitempty"`

	// args are the values of the template's arguments, available to its
	// query, selector and requestsQuery as {{ .Args.<name> }}. An argument
	// the template does not declare, or a declared one without a default
	// that is not given, keeps the rollout Waiting.
	//
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Args []GateArg `json:"args,omitempty"`

	// GateSpec is the gate body: what is measured and how it is judged.
	GateSpec `json:",inline"`
}

// GateSpec is the body of a gate, shared by the gates of a ModelRollout and
// by GateTemplate and ClusterGateTemplate: every gate kind added here can be
// written inline or in a template.
type GateSpec struct {
	// preset is a built-in query for a common metric source.
	//
	// +optional
	Preset GatePreset `json:"preset,omitempty"`

	// query is a PromQL expression, a Go text/template over the documented
	// variables ({{ .Namespace }}, {{ .Canary }}, ...; in a GateTemplate or
	// ClusterGateTemplate also its arguments, {{ .Args.<name> }}). It must
	// return a scalar or a single-element vector.
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

	// template is the GateTemplate or ClusterGateTemplate the latest
	// evaluation used, as Kind/name, when the gate has a templateRef.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=300
	Template string `json:"template,omitempty"`

	// templateGeneration is the metadata.generation of that template when
	// the latest evaluation read it: an edit of the template shows here at
	// the next evaluation.
	//
	// +optional
	// +kubebuilder:validation:Minimum=0
	TemplateGeneration int64 `json:"templateGeneration,omitempty"`

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
