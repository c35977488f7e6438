// Package analysis evaluates a ModelRollout's gates: PromQL queries, built
// in (presets) or written by the user as Go templates, whose value must lie
// within [min, max] for the rollout to go on.
//
// # Pipeline
//
//  1. ValidateGates (before any traffic moves) and RenderGate render every
//     gate's templates over Vars and parse the results with the Prometheus
//     parser. Template values are escaped for double-quoted PromQL strings,
//     so no object name can inject PromQL, and an unknown variable is an
//     error.
//  2. EvaluateGate runs the rendered queries through a Querier (a Client
//     from a ClientCache) and returns an Evaluation with a Verdict.
//  3. Record folds the Evaluation into the gate's GateStatus and returns
//     the Outcome for the rollout. Due says when the gate is next due.
//
// Web gates take another first two steps: RenderWeb renders the URL, header
// and body templates (RenderURL, RenderHeader, RenderJSON, each escaping for
// where the value lands) and parses the RFC 9535 JSONPath; EvaluateWeb calls
// the endpoint through an egress-policy client from WebClients and
// JudgeWebAnswer picks the number. Their verdicts are listed in web.go.
// Record is the same for every kind.
//
// # Verdicts (EvaluateGate)
//
//   - Pass: the query returned a number v with min <= v <= max (inclusive;
//     an absent bound is unbounded).
//   - Fail: the query returned a number outside [min, max].
//   - NoData: the query returned an empty vector, NaN, +Inf or -Inf (the
//     message says which), or, with minRequests set, the requests query
//     counted fewer than minRequests requests since the step started (or
//     returned no data): "canary served 3 of 50 required requests in this
//     step". The requests query runs first; the gate's query only runs when
//     enough requests were served. Counts are rounded to whole requests,
//     since increase() extrapolates.
//   - Error: Prometheus could not be queried (transport, timeout, HTTP or
//     API error), or the query returned several series, a range vector, a
//     string or a native histogram.
//
// # Accounting (Record)
//
//   - Pass resets consecutiveFailures and consecutiveInconclusive; the
//     Outcome is OutcomePass.
//   - Fail increments consecutiveFailures and resets
//     consecutiveInconclusive. The Outcome is OutcomeFail (roll back now)
//     exactly when consecutiveFailures >= failureLimit, otherwise
//     OutcomeHold. failureLimit N rolls back on the N-th consecutive failure,
//     not the N+1-th; a failureLimit of 0 (absent) means 1.
//   - NoData follows the gate's noData policy:
//     Hold (the default) increments consecutiveInconclusive, leaves
//     consecutiveFailures as it is, and holds (OutcomeHold);
//     Fail counts it as a failure exactly as above;
//     Pass counts it as a pass exactly as above (OutcomePass).
//   - Error increments consecutiveInconclusive, leaves consecutiveFailures as
//     it is, and holds (OutcomeHold): an error never passes and never
//     promotes, whatever the noData policy.
//   - An inconclusive evaluation (NoData under Hold, or Error) neither
//     resets nor extends a run of failures.
//   - When inconclusiveLimit > 0 and consecutiveInconclusive reaches
//     inconclusiveLimit, the Outcome is OutcomeInconclusiveLimit (roll back:
//     too long without a verdict). 0 holds for as long as it takes.
//
// Record also sets verdict, value (4 significant digits), threshold ("<=
// 0.05", ">= 0.9", "[0.1, 0.5]"), lastEvaluatedAt and message, and appends
// a measurement to history, which keeps the last MaxHistory (10), oldest
// first. Messages are cut to the CRD's bounds (512 bytes for the status, 256
// for a measurement, 64 for a value).
//
// # Queries
//
// A query must return a scalar or a one-element instant vector. Prometheus
// warnings are appended to the message and logged through the logr.Logger
// of the context.
//
// # Prometheus access
//
// ClientConfig says how to reach a Prometheus-compatible API: bearer token,
// basic auth, OAuth 2.0 client credentials, TLS (CA, client certificate,
// server name), extra headers such as X-Scope-OrgID, all done by
// prometheus/common/config, and AWS SigV4 signing by prometheus/sigv4.
// ClientConfig.Validate checks it without reaching any server.
//
// # Presets
//
// Every GatePreset has a query template, a default selector picking the
// canary's series (replaced by gate.selector) and a requests query for
// minRequests over [{{ .StepWindow }}]; see Describe and PresetNames.
//
//   - vllm-*: service="<canary>",namespace="<namespace>": the target labels
//     a prometheus-operator ServiceMonitor gives the canary Service's pods.
//   - envoy-*: envoy_cluster_name="kube_<namespace>_<canary>_<port>", the
//     cluster Kgateway builds per Service port (see KgatewayClusterName); it
//     needs spec.canary.port. Envoy Gateway puts all backends of a rule in
//     one cluster and cannot tell canary from stable.
//   - istio-*: reporter="destination", destination_service_name and
//     destination_service_namespace of the canary Service.
//   - inference-pool-*: service="<pool>-epp",namespace="<namespace>": each
//     InferencePool has its own endpoint picker, named <pool>-epp by the
//     inferencepool Helm chart (Vars.CanaryEndpointPicker overrides it).
//     Limitation: this holds only while each pool has its own endpoint
//     picker, scraped through a Service with the service target label; the
//     picker's metrics carry model_name and target_model_name but no pool
//     label. The TTFT histogram exists only with the picker's latency
//     tracking enabled; without it the ttft gate has no data. Each
//     inference-pool query is `(<llm_d_epp_request_* query>) or
//     (<inference_objective_request_* query>)`: the llm-d router's names
//     when they exist, the deprecated Inference Extension names otherwise,
//     never both added up.
//   - tgi-*: the same selector as vllm-*, over Text Generation Inference's
//     tgi_request_count, tgi_request_failure and tgi_request_duration.
//
// A custom query can use the gate's rendered selector as {{ .Selector }}
// too.
//
// Error ratios are (sum(rate(errors)) or vector(0)) / sum(rate(all)): the
// error series often does not exist before the first error, so a healthy
// canary reads 0, while a canary without traffic has no data.
package analysis
