// Package gateway is a small, TEST-ONLY Gateway API data plane. It exists so
// that integration tests, e2e tests and `make demo` can exercise ModelRollout
// against something that honours HTTPRoutes and exports Envoy-style metrics on
// a machine where no Envoy can be installed. It is test scaffolding and is
// never shipped as part of the product.
//
// # What it does
//
// A [Gateway] watches Gateways, HTTPRoutes (gateway.networking.k8s.io/v1),
// Services and EndpointSlices (discovery.k8s.io/v1) through a
// controller-runtime cache. On every change it rebuilds an immutable routing
// [Table] from the HTTPRoutes attached to one Gateway and swaps it in
// atomically; requests load the current table without locks. A request keeps
// the rule, backend and endpoint it picked for its whole life, so a table swap
// (for example a canary weight moving to 0) never cuts an in-flight stream.
//
// The pure layer ([BuildTable], [NewResolver], [AttachedRoutes],
// [Table.Route], [Rule.Pick]) has no Kubernetes dependency at run time and is
// what the unit tests exercise. [Proxy] serves a table (set by hand or by a
// Gateway) and owns the metrics.
//
// # Matching (Gateway API HTTPRoute semantics)
//
//   - hostnames: exact or wildcard ("*.example.com" matches one or more
//     leading labels); a route without hostnames matches every host. When
//     several routes match, the most specific hostname wins first (exact over
//     wildcard, then more characters), as the spec requires.
//   - path: Exact, PathPrefix (element-wise: "/v1" matches "/v1" and "/v1/x"
//     but not "/v1x"; a trailing "/" in the prefix is ignored) and
//     RegularExpression (Go RE2, must match the whole path). A match without a
//     path is PathPrefix "/".
//   - headers: Exact (names case-insensitive, values case-sensitive) and
//     RegularExpression (RE2, whole value). A repeated request header is
//     compared as its values joined by ",".
//   - query params: Exact and RegularExpression on the first value.
//   - method: exact.
//
// Matches of one rule are ORed, the conditions inside one match are ANDed.
// Precedence across all attached routes follows the spec: Exact path, then
// the longest PathPrefix (RegularExpression paths rank below both), then a
// method match, then more header matches, then more query param matches, then
// the oldest route, then "{namespace}/{name}" alphabetically, then rule order.
// TestPrecedenceFollowsTheSpecList reads that list from the gateway-api
// module and checks every criterion, and their order, against it; the header
// route of a header-routed ModelRollout step relies on it. No match answers
// 404.
//
// # Backends and status codes
//
// A backendRef is picked with probability weight/sum(weights); an unset weight
// is 1 and a weight of 0 never receives traffic. Then:
//
//   - all weights 0, or no backendRefs: 500 (the Gateway API treats a rule
//     with nothing to send to as a 500).
//   - the picked backendRef is invalid (not a core Service, Service or port
//     missing, ExternalName Service): 500 with a body that says why, as the
//     spec requires for the share of traffic that would reach an invalid
//     backend. InferencePool and other kinds land here.
//   - the picked Service has no ready endpoint: 503 with Envoy's body
//     "no healthy upstream" (the spec's SHOULD; this is also what Envoy,
//     and so Kgateway and Envoy Gateway, answer).
//   - the upstream connection fails or is reset before response headers: 503
//     "upstream connect error or disconnect/reset before headers", like Envoy.
//   - rule timeouts.request (or timeouts.backendRequest, the per-attempt
//     timeout; this gateway makes exactly one attempt) expires before
//     response headers: 504 "upstream request timeout", like Envoy. If it
//     expires while the body is streaming the downstream stream is reset.
//     An unset or "0s" timeout means no timeout.
//
// Filters: RequestHeaderModifier (rule and backendRef level) is applied. All
// other filter types are ignored and reported in [Table.Warnings].
// Responses stream through with a flush after every write (SSE works).
//
// # Backend resolution convention: every backend dials 127.0.0.1
//
// All backends in tests and the demo run on this machine on 127.0.0.1, but
// Kubernetes rejects loopback addresses in EndpointSlices. So:
//
//  1. The backendRef (kind Service, core group) names a Service and a Service
//     port NUMBER (spec.ports[].port).
//  2. The EndpointSlices of that Service are those in its namespace labelled
//     kubernetes.io/service-name=<service>. Their endpoint addresses may be
//     anything valid and non-loopback (tests use 192.0.2.x from the TEST-NET-1
//     documentation range); they are NEVER dialled.
//  3. In each slice the port is chosen by the Service port's name (the way
//     the EndpointSlice controller names slice ports; an unnamed Service port
//     matches an unnamed slice port), else by a numeric targetPort equal to
//     the slice port number, else by a named targetPort equal to the slice
//     port name.
//  4. If the slice has at least one ready endpoint (conditions.ready unset
//     counts as ready), the gateway dials 127.0.0.1:<that slice port>.
//     Endpoints of one slice share the port, so they collapse into one
//     address; give separate backend processes separate slices (or ports).
//     Distinct addresses are used round-robin.
//
// The gateway refuses to dial anything but 127.0.0.1.
//
// # Attachment
//
// A route is served when one of its parentRefs names the configured Gateway
// (group gateway.networking.k8s.io, kind Gateway, namespace defaulting to the
// route's) and a listener of that Gateway (restricted by sectionName and port
// when set) allows it: allowedRoutes.namespaces.from Same (the default) or
// All; Selector is treated as All (namespaces are not watched); None rejects;
// allowedRoutes.kinds, when set, must list HTTPRoute. Nothing is served while
// the Gateway object does not exist. The GatewayClass, listener hostnames,
// TLS and ReferenceGrants are not checked, and no status is written.
//
// # Metrics
//
// Metrics use Envoy's names and Prometheus labels (as Envoy's
// /stats/prometheus exports them) with one cluster per Service port named the
// way Kgateway names clusters, see [ClusterName]:
//
//	envoy_cluster_upstream_rq_total{envoy_cluster_name}             counter
//	envoy_cluster_upstream_rq_xx{envoy_cluster_name,envoy_response_code_class} counter
//	envoy_cluster_upstream_rq{envoy_cluster_name,envoy_response_code}          counter
//	envoy_cluster_upstream_rq_completed{envoy_cluster_name}         counter
//	envoy_cluster_upstream_rq_timeout{envoy_cluster_name}           counter
//	envoy_cluster_upstream_rq_per_try_timeout{envoy_cluster_name}   counter
//	envoy_cluster_upstream_cx_connect_fail{envoy_cluster_name}      counter
//	envoy_cluster_upstream_cx_none_healthy{envoy_cluster_name}      counter
//	envoy_cluster_upstream_rq_active{envoy_cluster_name}            gauge
//	envoy_cluster_upstream_rq_time{envoy_cluster_name}              histogram, milliseconds
//
// They are charged the way Envoy's router charges them: upstream_rq_total
// when a request gets an upstream connection; upstream_rq_xx and
// upstream_rq (per code) with the upstream status, or with the 503/504 the
// gateway answers for "no healthy upstream", connect failures and timeouts
// (so, as in Envoy, 5xx can be charged without upstream_rq_total, e.g. for
// no healthy upstream); upstream_rq_time from dispatch to the end of the
// upstream response body, only for responses that complete, with Envoy's
// default buckets. Answers the gateway gives before choosing a cluster (404
// no route, 500 for zero weights or an invalid backend) are not counted
// anywhere. The per-code series appear on first use, the other series
// appear at 0 as soon as a cluster is in the routing table.
// Each gateway has its own registry; nothing is registered globally.
package gateway
