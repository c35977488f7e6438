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
//
// +kubebuilder:validation:XValidation:rule="!(has(self.oauth2) && has(self.sigv4))",message="set at most one of oauth2 and sigv4: a query carries one Authorization header"
// +kubebuilder:validation:XValidation:rule="!has(self.oauth2) || has(self.authSecretRef)",message="oauth2 needs authSecretRef: the client secret is read from key \"client_secret\" of that Secret"
// +kubebuilder:validation:XValidation:rule="!has(self.headers) || self.headers.all(h, !has(h.secretKey)) || has(self.authSecretRef)",message="a header with secretKey needs authSecretRef: its value is read from that Secret"
type PrometheusSource struct {
	// address is the base URL of the Prometheus HTTP API, e.g.
	// http://prometheus.monitoring:9090, or with a path prefix, e.g.
	// http://mimir-query-frontend.mimir:8080/prometheus.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))",message="address must be an http:// or https:// URL, e.g. http://prometheus.monitoring:9090"
	Address string `json:"address"`

	// authSecretRef names a Secret in the rollout's namespace holding the
	// credentials: key "token" for a bearer token, or keys "username" and
	// "password" for basic auth; optional key "ca.crt" holds a PEM CA bundle,
	// and keys "tls.crt" and "tls.key" a TLS client certificate and its key
	// (a kubernetes.io/tls Secret has them). With oauth2, key
	// "client_secret" holds the client secret; with sigv4, keys
	// "access_key" and "secret_key" the AWS access key.
	//
	// +optional
	AuthSecretRef *LocalObjectReference `json:"authSecretRef,omitempty"`

	// headers are added to every query, e.g. X-Scope-OrgID to pick a Mimir,
	// Cortex or Thanos tenant.
	//
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Headers []PrometheusHeader `json:"headers,omitempty"`

	// oauth2 gets a bearer token from an OAuth 2.0 token endpoint with the
	// client credentials grant, and renews it before it expires. The client
	// secret is key "client_secret" of authSecretRef. Not with a "token" or
	// "username" key in that Secret, nor with sigv4.
	//
	// +optional
	OAuth2 *PrometheusOAuth2 `json:"oauth2,omitempty"`

	// sigv4 signs every query with AWS Signature Version 4, for Amazon
	// Managed Service for Prometheus. Not with a "token" or "username" key in
	// authSecretRef, nor with oauth2.
	//
	// +optional
	SigV4 *PrometheusSigV4 `json:"sigv4,omitempty"`

	// serverName is the name the server's TLS certificate is checked against,
	// when it differs from the address's host (e.g. an address by IP).
	//
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServerName string `json:"serverName,omitempty"`

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

// PrometheusHeader is an HTTP header sent with every query.
//
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.secretKey)",message="set exactly one of value and secretKey"
// +kubebuilder:validation:XValidation:rule="!(self.name.lowerAscii() in ['authorization', 'host', 'content-encoding', 'content-length', 'content-type', 'user-agent', 'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'www-authenticate', 'accept-encoding', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256'])",message="this header is set by the HTTP client or an auth mode and cannot be configured: use authSecretRef (token, username and password), oauth2 or sigv4 for authorization"
type PrometheusHeader struct {
	// name of the header, e.g. X-Scope-OrgID.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Name string `json:"name"`

	// value of the header, in the clear.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value *string `json:"value,omitempty"`

	// secretKey is the key of authSecretRef whose value is sent, for a
	// header that is a credential.
	//
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	SecretKey string `json:"secretKey,omitempty"`
}

// PrometheusOAuth2 is an OAuth 2.0 client credentials grant.
type PrometheusOAuth2 struct {
	// clientID identifies the operator to the token endpoint.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	ClientID string `json:"clientID"`

	// tokenURL is the token endpoint, e.g.
	// https://login.example.com/oauth2/token. It is trusted with the same
	// ca.crt as the address.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))",message="tokenURL must be an http:// or https:// URL, e.g. https://login.example.com/oauth2/token"
	TokenURL string `json:"tokenURL"`

	// scopes requested with the token.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=256
	Scopes []string `json:"scopes,omitempty"`

	// endpointParams are extra form parameters of the token request, e.g.
	// audience or resource.
	//
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	EndpointParams map[string]string `json:"endpointParams,omitempty"`
}

// PrometheusSigV4 signs queries with AWS Signature Version 4.
type PrometheusSigV4 struct {
	// region of the workspace, e.g. us-east-1.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z0-9-]+$`
	Region string `json:"region"`

	// roleARN is an IAM role assumed (through AWS STS) with the credentials,
	// e.g. arn:aws:iam::123456789012:role/prometheus-query.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^arn:[^:]+:iam::[0-9]{12}:role/.+$`
	RoleARN string `json:"roleARN,omitempty"`

	// service is the AWS service name signed for; "aps" (Amazon Managed
	// Service for Prometheus) when empty.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z0-9-]+$`
	Service string `json:"service,omitempty"`
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

// GatePreset names a built-in query. See docs/reference/presets.md for each one's PromQL.
//
// +kubebuilder:validation:Enum=vllm-error-ratio;vllm-http-error-ratio;vllm-e2e-latency-p99;vllm-ttft-p99;vllm-itl-p99;envoy-error-ratio;envoy-latency-p99;istio-error-ratio;istio-latency-p99;inference-pool-error-ratio;inference-pool-latency-p99;inference-pool-ttft-p99;tgi-error-ratio;tgi-latency-p99;traefik-error-ratio;traefik-latency-p99
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
// (preset, query or web), or a reference to a GateTemplate or
// ClusterGateTemplate with arguments. Thresholds (min, max, minRequests),
// noData and failureLimit set on a gate with a templateRef override the
// template's: see EffectivePolicy in package analysis.
//
// +kubebuilder:validation:XValidation:rule="[has(self.preset), has(self.query), has(self.web), has(self.prompt), has(self.templateRef)].filter(k, k).size() == 1",message="set exactly one gate kind: preset, query, web, prompt or templateRef"
// +kubebuilder:validation:XValidation:rule="has(self.templateRef) || has(self.min) || has(self.max)",message="set min, max or both: a gate without a threshold would always pass"
// +kubebuilder:validation:XValidation:rule="!has(self.min) || !has(self.max) || self.min <= self.max",message="min must not be greater than max"
// +kubebuilder:validation:XValidation:rule="!has(self.minRequests) || has(self.preset) || has(self.requestsQuery) || has(self.templateRef)",message="minRequests on a custom query needs requestsQuery, the PromQL that counts the canary's requests"
// +kubebuilder:validation:XValidation:rule="!has(self.web) || (!has(self.minRequests) && !has(self.requestsQuery) && !has(self.selector))",message="minRequests, requestsQuery and selector apply only to PromQL gates (preset or query), not to web gates"
// +kubebuilder:validation:XValidation:rule="!has(self.prompt) || (!has(self.minRequests) && !has(self.requestsQuery) && !has(self.selector))",message="minRequests, requestsQuery and selector apply to PromQL gates only: remove them from a prompt gate"
// +kubebuilder:validation:XValidation:rule="(has(self.preTraffic) ? self.preTraffic : has(self.prompt)) || (has(self.everyStep) ? self.everyStep : !has(self.prompt))",message="a gate with preTraffic: false and everyStep: false would never run: set one of them to true"
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

	// dryRun evaluates the gate, shows its verdicts in status and exports
	// them as metrics, but never holds a step or rolls back: a failure that
	// would have rolled back is a DryRunGateFailed Event instead. Use it to
	// tune a new gate or a noisy threshold on real rollouts.
	//
	// +optional
	DryRun bool `json:"dryRun,omitempty"`

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

	// web is a gate that asks an HTTP endpoint instead of Prometheus: the
	// number is picked out of its JSON answer with a JSONPath expression.
	// Calls go through the operator's egress policy.
	//
	// +optional
	Web *WebGate `json:"web,omitempty"`

	// prompt sends a small set of prompts to the canary and judges the
	// answers; the gate's value is the fraction of prompts that passed. See
	// docs/guides/prompt-gates.md.
	//
	// +optional
	Prompt *PromptGate `json:"prompt,omitempty"`

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

	// noData is the policy for an evaluation without data: Hold, Fail or
	// Pass. Unset, a gate with a templateRef takes its template's, and
	// otherwise Hold applies; set on such a gate, it overrides the
	// template's. status.gates[].noData shows the policy in force.
	//
	// +optional
	NoData NoDataPolicy `json:"noData,omitempty"`

	// failureLimit is the number of consecutive failed evaluations that roll
	// the rollout back: 1 rolls back on the first failure, 3 on the third
	// failure in a row. A passing evaluation resets the count. Unset, a gate
	// with a templateRef takes its template's, and otherwise 1 applies; set
	// on such a gate, it overrides the template's.
	// status.gates[].failureLimit shows the limit in force.
	//
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	FailureLimit int32 `json:"failureLimit,omitempty"`
}

// WebMethod is the HTTP method of a web gate.
//
// +kubebuilder:validation:Enum=GET;POST
type WebMethod string

const (
	// WebMethodGet sends a GET without a body.
	WebMethodGet WebMethod = "GET"
	// WebMethodPost sends a POST with the rendered body.
	WebMethodPost WebMethod = "POST"
)

// WebGate is an HTTP(S) request whose JSON answer yields the gate's value.
//
// +kubebuilder:validation:XValidation:rule="!has(self.body) || (has(self.method) && self.method == 'POST')",message="body is sent only with method: POST"
// +kubebuilder:validation:XValidation:rule="!has(self.headers) || !has(self.authSecretRef) || self.headers.all(h, h.name.lowerAscii() != 'authorization')",message="set the Authorization header or authSecretRef, not both"
type WebGate struct {
	// url to call, an http:// or https:// URL. A Go text/template over the
	// gate variables; every string variable is percent-encoded, so it is
	// safe in a path segment or a query value, e.g.
	// http://eval.ml:8080/scores?model={{ .Canary }}.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('http://') || self.startsWith('https://')",message="url must start with http:// or https://, e.g. http://eval.ml:8080/score?model={{ .Canary }}"
	URL string `json:"url"`

	// method is GET (default) or POST.
	//
	// +optional
	// +kubebuilder:default=GET
	Method WebMethod `json:"method,omitempty"`

	// headers are sent with the request. Values are templates over the gate
	// variables, inserted verbatim; they must not contain line breaks.
	//
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Headers []WebHeader `json:"headers,omitempty"`

	// body is the JSON document sent with a POST (Content-Type
	// application/json unless a header says otherwise). A template over the
	// gate variables; every string variable is escaped for the inside of a
	// JSON string, so write it between double quotes:
	// {"model": "{{ .Canary }}", "weight": {{ .Weight }}}.
	//
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=8192
	Body string `json:"body,omitempty"`

	// jsonPath is an RFC 9535 JSONPath expression that must select exactly
	// one number (or a string holding one) in the JSON answer, e.g.
	// $.data.score. Selecting nothing or null is no data; several values or
	// anything else is an error.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('$')",message="jsonPath must start with $, the root of the answer, e.g. $.data.score"
	JSONPath string `json:"jsonPath"`

	// authSecretRef names a Secret in the rollout's namespace holding the
	// credentials: key "token" for a bearer token, or keys "username" and
	// "password" for basic auth; optional key "ca.crt" holds a PEM CA bundle
	// that replaces the system roots for https:// URLs.
	//
	// +optional
	AuthSecretRef *LocalObjectReference `json:"authSecretRef,omitempty"`

	// timeout of the whole request, redirects and answer included.
	//
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms') && duration(self) <= duration('60s')",message="timeout must be between 100ms and 60s: gates of a rollout run one after another within one round"
	Timeout Duration `json:"timeout,omitempty"`

	// maxResponseBytes bounds the answer's body; a longer answer is an
	// error. Default 1 MiB, at most 16 MiB.
	//
	// +optional
	// +kubebuilder:default=1048576
	// +kubebuilder:validation:Minimum=64
	// +kubebuilder:validation:Maximum=16777216
	MaxResponseBytes int64 `json:"maxResponseBytes,omitempty"`
}

// WebHeader is one HTTP header of a web gate.
type WebHeader struct {
	// name of the header, e.g. X-Scope-OrgID.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['host', 'content-length', 'transfer-encoding', 'connection'])",message="Host, Content-Length, Transfer-Encoding and Connection are set by the operator; put the host in url"
	Name string `json:"name"`

	// value of the header, a template over the gate variables.
	//
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value"`
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
	// or the canary served fewer than minRequests requests; for a web gate,
	// the JSONPath selected nothing, null, NaN or an infinity.
	VerdictNoData GateVerdict = "NoData"
	// VerdictError: Prometheus could not be queried, or the query returned
	// several series or an unexpected type; for a web gate, the endpoint
	// could not be called (or the egress policy refused it), answered with
	// a non-2xx status, an oversized or non-JSON body, or the JSONPath
	// selected several values or something other than a number.
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

	// tenancy says how the operator's --query-tenancy applied to the
	// latest evaluation: enforced: namespace="<namespace>" (the query read
	// only the rollout's namespace), exempt: preset, or exempt: cluster
	// template. Empty when query tenancy is off or the gate is not PromQL.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Tenancy string `json:"tenancy,omitempty"`

	// query is the PromQL of the latest evaluation exactly as it was sent to
	// Prometheus, when query tenancy added the namespace matcher to it.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=8192
	Query string `json:"query,omitempty"`

	// dryRun is true for a gate that is only observed: its verdicts never
	// hold or roll back the rollout.
	//
	// +optional
	DryRun bool `json:"dryRun,omitempty"`

	// noData is the no-data policy the latest evaluation applied: the
	// gate's, else its template's, else Hold.
	//
	// +optional
	NoData NoDataPolicy `json:"noData,omitempty"`

	// failureLimit is the failure limit the latest evaluation applied: the
	// gate's, else its template's, else 1.
	//
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	FailureLimit int32 `json:"failureLimit,omitempty"`

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
