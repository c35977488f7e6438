package gateway_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/modelrollout/modelrollout/test/gateway"
)

// The seed's routes, as an LLM platform would write them.
const (
	seedHeaderRouting = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: llm-header-routing, namespace: llm}
spec:
  parentRefs: [{name: llm-gateway}]
  rules:
  - matches: [{headers: [{name: x-model-id, value: gpt-4}]}]
    backendRefs: [{name: vllm-gpt4-v1, port: 8000}]
    timeouts: {request: 120s, backendRequest: 60s}
  - matches: [{headers: [{name: x-model-id, value: claude-3}]}]
    backendRefs: [{name: tgi-claude, port: 8080}]
    timeouts: {request: 120s, backendRequest: 60s}
  - matches: [{headers: [{name: x-model-id, value: mixtral-8x7b}]}]
    backendRefs: [{name: vllm-mixtral, port: 8000}]
    timeouts: {request: 120s, backendRequest: 60s}
`
	seedPathRouting = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: llm-path-routing, namespace: llm}
spec:
  parentRefs: [{name: llm-gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/chat/completions}}]
    backendRefs: [{name: vllm-chat, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /v1/embeddings}}]
    backendRefs: [{name: vllm-embeddings, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /v1/completions}}]
    backendRefs: [{name: vllm-completions, port: 8000}]
  - matches: [{path: {type: Exact, value: /health}}]
    backendRefs: [{name: health-check, port: 8080}]
`
	seedTierRouting = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: llm-tier-routing, namespace: llm}
spec:
  parentRefs: [{name: llm-gateway}]
  rules:
  - matches:
    - headers: [{name: x-model-id, value: gpt-4}, {name: x-customer-tier, value: premium}]
    backendRefs: [{name: vllm-gpt4-premium, port: 8000}]
  - matches:
    - headers: [{name: x-model-id, value: gpt-4}, {name: x-customer-tier, value: standard}]
    backendRefs: [{name: vllm-gpt4-standard, port: 8000}]
`
	seedCanary = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: llm-gpt4-canary, namespace: llm}
spec:
  parentRefs: [{name: llm-gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1}, headers: [{name: x-model-id, value: gpt-4}]}]
    backendRefs:
    - {name: vllm-gpt4-stable, port: 8000, weight: 90}
    - {name: vllm-gpt4-canary, port: 8000, weight: 10}
`
	seedABTest = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: llm-ab-test, namespace: llm}
spec:
  parentRefs: [{name: llm-gateway}]
  rules:
  - matches: [{headers: [{name: x-ab-test-group, value: control}]}]
    backendRefs: [{name: vllm-llama-control, port: 8000}]
  - matches: [{headers: [{name: x-ab-test-group, value: experiment}]}]
    backendRefs: [{name: vllm-llama-experiment, port: 8000}]
`
)

func seedTable(t *testing.T, docs string) *gateway.Table {
	t.Helper()
	tb := gateway.BuildTable(decodeRoutes(t, docs), fakeResolver(nil))
	if w := tb.Warnings(); len(w) > 0 {
		t.Fatalf("unexpected warnings: %v", w)
	}
	return tb
}

func TestSeedHeaderRouting(t *testing.T) {
	tb := seedTable(t, seedHeaderRouting)
	for _, tc := range []struct {
		headers []string
		want    string
	}{
		{[]string{"x-model-id", "gpt-4"}, "vllm-gpt4-v1:8000=1"},
		{[]string{"X-Model-Id", "claude-3"}, "tgi-claude:8080=1"},
		{[]string{"X-MODEL-ID", "mixtral-8x7b"}, "vllm-mixtral:8000=1"},
		{[]string{"x-model-id", "GPT-4"}, ""}, // values are case-sensitive
		{[]string{"x-model-id", "gpt-4o"}, ""},
		{[]string{"x-model", "gpt-4"}, ""},
		{nil, ""},
	} {
		r, ok := tb.Route(request(http.MethodPost, "/v1/chat/completions", tc.headers...))
		if tc.want == "" {
			if ok {
				t.Errorf("%v: routed to %s, want 404", tc.headers, r)
			}
			continue
		}
		if !ok {
			t.Errorf("%v: no route, want %s", tc.headers, tc.want)
			continue
		}
		if got := backendsOf(r); !slices.Equal(got, []string{tc.want}) {
			t.Errorf("%v: backends %v, want %s", tc.headers, got, tc.want)
		}
		if r.RequestTimeout != 120*time.Second || r.BackendRequestTimeout != 60*time.Second {
			t.Errorf("%v: timeouts %s/%s, want 120s/60s", tc.headers, r.RequestTimeout, r.BackendRequestTimeout)
		}
		if b := r.Backends[0]; b.Cluster != gateway.ClusterName("llm", b.Name, b.Port) {
			t.Errorf("cluster %q", b.Cluster)
		}
	}
}

func TestSeedHeaderNameInRouteIsCaseInsensitive(t *testing.T) {
	tb := seedTable(t, strings.ReplaceAll(seedHeaderRouting, "name: x-model-id", "name: X-MODEL-ID"))
	if got := routeOf(tb, request("GET", "/", "x-model-id", "claude-3")); got != "llm-header-routing/1" {
		t.Fatalf("got %s", got)
	}
}

func TestSeedPathRouting(t *testing.T) {
	tb := seedTable(t, seedPathRouting)
	for path, want := range map[string]string{
		"/v1/chat/completions":         "llm-path-routing/0",
		"/v1/chat/completions/":        "llm-path-routing/0",
		"/v1/chat/completions/x/y":     "llm-path-routing/0",
		"/v1/chat/completionsX":        "404", // element-wise prefix
		"/v1/chat":                     "404",
		"/v1/embeddings":               "llm-path-routing/1",
		"/v1/embeddings/batch":         "llm-path-routing/1",
		"/v1/embeddingsfoo":            "404",
		"/v1/completions":              "llm-path-routing/2",
		"/v1/completions?stream=true":  "llm-path-routing/2",
		"/v1/completions/legacy":       "llm-path-routing/2",
		"/health":                      "llm-path-routing/3",
		"/health/":                     "404", // Exact
		"/healthz":                     "404",
		"/Health":                      "404", // case-sensitive
		"/":                            "404",
		"/v2/chat/completions":         "404",
		"/v1/chat/completions?model=x": "llm-path-routing/0",
	} {
		if got := routeOf(tb, request(http.MethodPost, path)); got != want {
			t.Errorf("%s: got %s, want %s", path, got, want)
		}
	}
}

func TestSeedCombinedHeaders(t *testing.T) {
	tb := seedTable(t, seedTierRouting)
	for _, tc := range []struct {
		headers []string
		want    string
	}{
		{[]string{"x-model-id", "gpt-4", "x-customer-tier", "premium"}, "llm-tier-routing/0"},
		{[]string{"x-customer-tier", "standard", "x-model-id", "gpt-4"}, "llm-tier-routing/1"},
		{[]string{"x-model-id", "gpt-4"}, "404"},                                  // both conditions are ANDed
		{[]string{"x-customer-tier", "premium"}, "404"},                           //
		{[]string{"x-model-id", "claude-3", "x-customer-tier", "premium"}, "404"}, //
		{[]string{"x-model-id", "gpt-4", "x-customer-tier", "free"}, "404"},
	} {
		if got := routeOf(tb, request("POST", "/v1/chat/completions", tc.headers...)); got != tc.want {
			t.Errorf("%v: got %s, want %s", tc.headers, got, tc.want)
		}
	}
}

func TestSeedCanaryAndABTest(t *testing.T) {
	tb := seedTable(t, seedCanary+"\n---\n"+seedABTest)
	r, ok := tb.Route(request("POST", "/v1/chat/completions", "x-model-id", "gpt-4"))
	if !ok {
		t.Fatal("canary route did not match")
	}
	if got, want := backendsOf(r), []string{"vllm-gpt4-stable:8000=90", "vllm-gpt4-canary:8000=10"}; !slices.Equal(got, want) {
		t.Fatalf("canary backends %v, want %v", got, want)
	}
	if got := routeOf(tb, request("POST", "/v2/x", "x-model-id", "gpt-4")); got != "404" {
		t.Errorf("canary must also need the /v1 prefix, got %s", got)
	}
	for group, want := range map[string]string{"control": "llm-ab-test/0", "experiment": "llm-ab-test/1", "other": "404"} {
		if got := routeOf(tb, request("GET", "/anything", "x-ab-test-group", group)); got != want {
			t.Errorf("ab group %s: got %s, want %s", group, got, want)
		}
	}
}

// TestSeedRoutesTogether attaches all seed routes to one gateway, which
// exercises the spec's precedence: path specificity beats header count.
func TestSeedRoutesTogether(t *testing.T) {
	var routes []gatewayv1.HTTPRoute
	for i, doc := range []string{seedHeaderRouting, seedPathRouting, seedTierRouting, seedCanary, seedABTest} {
		routes = append(routes, at(decodeRoutes(t, doc)[0], i))
	}
	tb := gateway.BuildTable(routes, fakeResolver(nil))
	for _, tc := range []struct {
		path    string
		headers []string
		want    string
	}{
		// /v1/chat/completions is a 20-character prefix: it beats every
		// header-only match (prefix "/") and the canary's "/v1".
		{"/v1/chat/completions", []string{"x-model-id", "gpt-4", "x-customer-tier", "premium"}, "llm-path-routing/0"},
		// Under a prefix only the canary and the header routes match:
		// "/v1" (3 characters) beats "/".
		{"/v1/models", []string{"x-model-id", "gpt-4", "x-customer-tier", "premium"}, "llm-gpt4-canary/0"},
		// Elsewhere two header matches beat one.
		{"/generate", []string{"x-model-id", "gpt-4", "x-customer-tier", "premium"}, "llm-tier-routing/0"},
		{"/generate", []string{"x-model-id", "gpt-4"}, "llm-header-routing/0"},
		{"/generate", []string{"x-model-id", "claude-3", "x-ab-test-group", "control"}, "llm-header-routing/1"}, // tie: oldest route
		{"/health", []string{"x-model-id", "gpt-4"}, "llm-path-routing/3"},                                      // Exact beats everything
		{"/generate", []string{"x-ab-test-group", "experiment"}, "llm-ab-test/1"},
		{"/generate", nil, "404"},
	} {
		if got := routeOf(tb, request("POST", tc.path, tc.headers...)); got != tc.want {
			t.Errorf("%s %v: got %s, want %s", tc.path, tc.headers, got, tc.want)
		}
	}
}

const precedenceRoutes = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a-prefix, namespace: ns}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: prefix-api, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api/v1/}}]
    backendRefs: [{name: prefix-api-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api/v1}, method: POST}]
    backendRefs: [{name: post-api-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api/v1}, method: POST, headers: [{name: x-a, value: "1"}]}]
    backendRefs: [{name: post-api-v1-header, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api/v1}, method: POST, queryParams: [{name: debug, value: "1"}]}]
    backendRefs: [{name: post-api-v1-query, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b-exact, namespace: ns}
spec:
  rules:
  - matches: [{path: {type: Exact, value: /api/v1/status}}]
    backendRefs: [{name: exact-status, port: 80}]
  - matches: [{path: {type: RegularExpression, value: "/api/v[0-9]+/models/.*"}}]
    backendRefs: [{name: regex-models, port: 80}]
`

func TestPrecedence(t *testing.T) {
	routes := decodeRoutes(t, precedenceRoutes)
	// b-exact is OLDER; the order must not depend on it except for ties.
	tb := gateway.BuildTable([]gatewayv1.HTTPRoute{at(routes[0], 5), at(routes[1], 1)}, nil)
	for _, tc := range []struct {
		method, target string
		headers        []string
		want           string
	}{
		{"GET", "/api", nil, "a-prefix/0"},
		{"GET", "/apix", nil, "404"},
		{"GET", "/api/v2", nil, "a-prefix/0"},
		{"GET", "/api/v1", nil, "a-prefix/1"},                                         // longer prefix; trailing "/" ignored
		{"GET", "/api/v1/status", nil, "b-exact/0"},                                   // Exact first
		{"POST", "/api/v1/status", []string{"x-a", "1"}, "b-exact/0"},                 // even over method + header
		{"POST", "/api/v1/x", nil, "a-prefix/2"},                                      // method match beats none
		{"POST", "/api/v1/x", []string{"x-a", "1"}, "a-prefix/3"},                     // then header count
		{"POST", "/api/v1/x?debug=1", nil, "a-prefix/4"},                              // then query param count
		{"POST", "/api/v1/x?debug=1", []string{"x-a", "1"}, "a-prefix/3"},             // headers before query params
		{"GET", "/api/v3/models/llama", nil, "a-prefix/0"},                            // a prefix beats a regex
		{"GET", "/api/v1/models/llama", nil, "a-prefix/1"},                            //
		{"GET", "/api/v1/status/", nil, "a-prefix/1"},                                 // not Exact
		{"DELETE", "/api/v1/x", []string{"x-a", "1"}, "a-prefix/1"},                   // method mismatch
		{"POST", "/api/v1/x", []string{"x-a", "2"}, "a-prefix/2"},                     // header value mismatch
		{"POST", "/api/v1/x?debug=0", nil, "a-prefix/2"},                              // query value mismatch
		{"POST", "/api/v1/x?debug=1&debug=0", nil, "a-prefix/4"},                      // first value counts
		{"GET", "/api/v1/models/a", []string{"x-a", "1"}, "a-prefix/1"},               // header alone is not enough
		{"GET", "/other/v9/models/z", nil, "404"},                                     //
		{"POST", "/api/v1/x", []string{"x-a", "1", "x-a", "2"}, "a-prefix/2"},         // a repeated header is "1,2"
		{"POST", "/api/v1/x?debug=1", []string{"x-a", "1", "x-a", "2"}, "a-prefix/4"}, //
	} {
		if got := routeOf(tb, request(tc.method, tc.target, tc.headers...)); got != tc.want {
			t.Errorf("%s %s %v: got %s, want %s", tc.method, tc.target, tc.headers, got, tc.want)
		}
	}

	regexOnly := gateway.BuildTable(decodeRoutes(t, precedenceRoutes)[1:], nil)
	if got := routeOf(regexOnly, request("GET", "/api/v12/models/a/b")); got != "b-exact/1" {
		t.Errorf("regex: got %s", got)
	}
	if got := routeOf(regexOnly, request("GET", "/x/api/v1/models/a")); got != "404" {
		t.Errorf("regex must match the whole path, got %s", got)
	}
}

const tieRoutes = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: zeta, namespace: ns}
spec:
  rules:
  - backendRefs: [{name: zeta-0, port: 80}]
  - backendRefs: [{name: zeta-1, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: alpha, namespace: ns}
spec:
  rules:
  - matches: [{headers: [{name: x-never, value: "1"}]}, {path: {value: /}}]
    backendRefs: [{name: alpha-0, port: 80}]
`

func TestPrecedenceTieBreakers(t *testing.T) {
	routes := decodeRoutes(t, tieRoutes)
	// Same age: alphabetical by namespace/name, so alpha wins; its rule
	// has two ORed matches and the second (no header) matches.
	tb := gateway.BuildTable([]gatewayv1.HTTPRoute{at(routes[0], 1), at(routes[1], 1)}, nil)
	if got := routeOf(tb, request("GET", "/x")); got != "alpha/0" {
		t.Errorf("same age: got %s, want alpha/0", got)
	}
	// The header match of alpha's first match beats everything here.
	if got := routeOf(tb, request("GET", "/x", "x-never", "1")); got != "alpha/0" {
		t.Errorf("header: got %s", got)
	}
	// Older route wins over alphabetical order; then the first rule wins.
	tb = gateway.BuildTable([]gatewayv1.HTTPRoute{at(routes[0], 1), at(routes[1], 2)}, nil)
	if got := routeOf(tb, request("GET", "/x")); got != "zeta/0" {
		t.Errorf("older: got %s, want zeta/0", got)
	}
	// A rule without matches matches everything (PathPrefix "/").
	if got := routeOf(tb, request("DELETE", "/any/path?q=1")); got != "zeta/0" {
		t.Errorf("no matches: got %s", got)
	}
}

const hostRoutes = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: any-host, namespace: ns}
spec:
  rules:
  - matches: [{path: {value: /v1/chat}}]
    backendRefs: [{name: any, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wildcard, namespace: ns}
spec:
  hostnames: ["*.example.com"]
  rules:
  - backendRefs: [{name: wild, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: exact-host, namespace: ns}
spec:
  hostnames: ["api.example.com", "API.other.org"]
  rules:
  - backendRefs: [{name: exact, port: 80}]
`

func TestHostnames(t *testing.T) {
	tb := gateway.BuildTable(decodeRoutes(t, hostRoutes), nil)
	for _, tc := range []struct{ host, path, want string }{
		{"api.example.com", "/v1/chat", "exact-host/0"}, // hostname specificity beats the longer path
		{"API.Example.com:8080", "/", "exact-host/0"},   // case and port are ignored
		{"api.other.org", "/", "exact-host/0"},          //
		{"a.example.com", "/v1/chat", "wildcard/0"},     //
		{"a.b.example.com", "/", "wildcard/0"},          // a wildcard covers several labels
		{"example.com", "/", "404"},                     // but not the bare domain
		{"example.com", "/v1/chat", "any-host/0"},       //
		{"localhost", "/v1/chat/x", "any-host/0"},       //
		{"127.0.0.1:8080", "/other", "404"},             //
	} {
		req := request("GET", tc.path)
		req.Host = tc.host
		if got := routeOf(tb, req); got != tc.want {
			t.Errorf("%s%s: got %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestPathPrefixMatches(t *testing.T) {
	for _, tc := range []struct {
		prefix, path string
		want         bool
	}{
		{"/v1", "/v1", true},
		{"/v1", "/v1/", true},
		{"/v1", "/v1/x", true},
		{"/v1", "/v1x", false},
		{"/v1", "/v", false},
		{"/v1/", "/v1", true},
		{"/v1/", "/v1/x", true},
		{"/v1/", "/v1x", false},
		{"/", "/", true},
		{"/", "/anything", true},
		{"/v1/chat", "/v1/chat/completions", true},
		{"/v1/chat", "/v1/chatty", false},
	} {
		if got := gateway.PathPrefixMatches(tc.prefix, tc.path); got != tc.want {
			t.Errorf("PathPrefixMatches(%q, %q) = %v, want %v", tc.prefix, tc.path, got, tc.want)
		}
	}
}

func TestBuildTableBackendsAndWarnings(t *testing.T) {
	tb := gateway.BuildTable(decodeRoutes(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  rules:
  - filters:
    - type: URLRewrite
      urlRewrite: {hostname: example.com}
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-a, value: b}]}
    backendRefs:
    - {name: svc, port: 80}
    - {name: other, namespace: ns2, port: 81, weight: 0}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: pool, weight: 3}
    - {name: gone, port: 82}
    - {name: noport}
    timeouts: {request: 1.5s, backendRequest: 0s}
`), func(ns, svc string, port int32) ([]string, error) {
		if svc == "gone" {
			return nil, errString("Service not found")
		}
		return nil, nil
	})
	rules := tb.Rules()
	if len(rules) != 1 {
		t.Fatalf("rules: %d", len(rules))
	}
	r := rules[0]
	if r.RequestTimeout != 0 || r.BackendRequestTimeout != 0 {
		t.Errorf("timeouts %s %s, want 0 (invalid and 0s)", r.RequestTimeout, r.BackendRequestTimeout)
	}
	b := r.Backends
	if b[0].Cluster != "kube_ns_svc_80" || b[0].Weight != 1 || b[0].Invalid != "" || len(b[0].Endpoints) != 0 {
		t.Errorf("svc backend: %+v", b[0])
	}
	if b[1].Cluster != "kube_ns2_other_81" || b[1].Weight != 0 {
		t.Errorf("cross-namespace backend: %+v", b[1])
	}
	if !strings.Contains(b[2].Invalid, "InferencePool") || b[2].Cluster != "" || b[2].Weight != 3 {
		t.Errorf("InferencePool backend: %+v", b[2])
	}
	if !strings.Contains(b[3].Invalid, "Service not found") || b[3].Cluster != "" {
		t.Errorf("missing Service backend: %+v", b[3])
	}
	if !strings.Contains(b[4].Invalid, "port is required") {
		t.Errorf("backend without port: %+v", b[4])
	}
	w := strings.Join(tb.Warnings(), "\n")
	for _, want := range []string{`"URLRewrite"`, "timeouts.request"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings %q lack %s", w, want)
		}
	}
	if strings.Contains(w, "RequestHeaderModifier") {
		t.Errorf("RequestHeaderModifier is supported, warnings: %s", w)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"120s": 120 * time.Second, "60s": time.Minute, "1h30m": 90 * time.Minute,
		"500ms": 500 * time.Millisecond, "0s": 0, "1h2m3s4ms": time.Hour + 2*time.Minute + 3*time.Second + 4*time.Millisecond,
	} {
		got, err := gateway.ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1.5s", "-1s", "10", "1us", "123456s", "1d"} {
		if _, err := gateway.ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", in)
		}
	}
}

func TestClusterName(t *testing.T) {
	if got := gateway.ClusterName("llm", "vllm-gpt4-canary", 8000); got != "kube_llm_vllm-gpt4-canary_8000" {
		t.Fatalf("ClusterName = %q", got)
	}
}
