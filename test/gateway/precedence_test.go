package gateway_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/modelrollout/modelrollout/test/gateway"
)

// specPrecedence reads the precedence lists of HTTPRouteRule.matches from
// the gateway-api module this project builds with (apis/v1/httproute_types.go):
// the criteria across all rules, then those across routes, in the spec's
// order.
func specPrecedence(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("locate the gateway-api module: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "apis", "v1", "httproute_types.go"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	start := strings.Index(text, "precedence must be\n")
	end := strings.Index(text, "If ties still exist within an HTTPRoute")
	if start < 0 || end < start {
		t.Fatal("the precedence text of HTTPRouteRule.matches was not found in the gateway-api module")
	}
	var items []string
	bullet := regexp.MustCompile(`^\s*//\s*\*\s*(.*)$`)
	cont := regexp.MustCompile(`^\s*//\s{3}(\S.*)$`)
	for _, line := range strings.Split(text[start:end], "\n") {
		if m := bullet.FindStringSubmatch(line); m != nil {
			items = append(items, m[1])
		} else if m := cont.FindStringSubmatch(line); m != nil && len(items) > 0 {
			items[len(items)-1] += " " + m[1]
		}
	}
	return items
}

// precedenceCase is one criterion of the spec's list: two routes whose
// matches both match the request, the winner better by this criterion and
// the loser better by every later one (so the order of the criteria is
// tested, not only each criterion).
type precedenceCase struct {
	criterion     string
	winner, loser string // HTTPRoute YAML; the loser is created first unless stated
	winnerOlder   bool
}

const precedenceRequest = "/a/b?q1=1&q2=1&q3=1"

var precedenceHeaders = []string{"h1", "1", "h2", "1", "h3", "1"}

var precedenceCases = []precedenceCase{
	{
		criterion: `"Exact" path match.`,
		winner:    `{metadata: {name: z, namespace: ns}, spec: {rules: [{matches: [{path: {type: Exact, value: /a/b}}], backendRefs: [{name: w, port: 80}]}]}}`,
		loser:     `{metadata: {name: a, namespace: ns}, spec: {rules: [{matches: [{path: {type: PathPrefix, value: /a/b}, method: GET, headers: [{name: h1, value: "1"}], queryParams: [{name: q1, value: "1"}]}], backendRefs: [{name: l, port: 80}]}]}}`,
	},
	{
		criterion: `"Prefix" path match with largest number of characters.`,
		winner:    `{metadata: {name: z, namespace: ns}, spec: {rules: [{matches: [{path: {type: PathPrefix, value: /a/b}}], backendRefs: [{name: w, port: 80}]}]}}`,
		loser:     `{metadata: {name: a, namespace: ns}, spec: {rules: [{matches: [{path: {type: PathPrefix, value: /a}, method: GET, headers: [{name: h1, value: "1"}], queryParams: [{name: q1, value: "1"}]}], backendRefs: [{name: l, port: 80}]}]}}`,
	},
	{
		criterion: `Method match.`,
		winner:    `{metadata: {name: z, namespace: ns}, spec: {rules: [{matches: [{path: {value: /a}, method: GET}], backendRefs: [{name: w, port: 80}]}]}}`,
		loser:     `{metadata: {name: a, namespace: ns}, spec: {rules: [{matches: [{path: {value: /a}, headers: [{name: h1, value: "1"}, {name: h2, value: "1"}], queryParams: [{name: q1, value: "1"}]}], backendRefs: [{name: l, port: 80}]}]}}`,
	},
	{
		criterion: `Largest number of header matches.`,
		winner:    `{metadata: {name: z, namespace: ns}, spec: {rules: [{matches: [{path: {value: /a}, headers: [{name: h1, value: "1"}, {name: h2, value: "1"}]}], backendRefs: [{name: w, port: 80}]}]}}`,
		loser:     `{metadata: {name: a, namespace: ns}, spec: {rules: [{matches: [{path: {value: /a}, headers: [{name: h1, value: "1"}], queryParams: [{name: q1, value: "1"}, {name: q2, value: "1"}, {name: q3, value: "1"}]}], backendRefs: [{name: l, port: 80}]}]}}`,
	},
	{
		criterion: `Largest number of query param matches.`,
		winner:    `{metadata: {name: z, namespace: ns}, spec: {rules: [{matches: [{path: {value: /a}, queryParams: [{name: q1, value: "1"}, {name: q2, value: "1"}]}], backendRefs: [{name: w, port: 80}]}]}}`,
		loser:     `{metadata: {name: a, namespace: ns}, spec: {rules: [{matches: [{path: {value: /a}, queryParams: [{name: q1, value: "1"}]}], backendRefs: [{name: l, port: 80}]}]}}`,
	},
	{
		criterion:   `The oldest Route based on creation timestamp.`,
		winner:      `{metadata: {name: z, namespace: ns}, spec: {rules: [{matches: [{path: {value: /a}, headers: [{name: h1, value: "1"}]}], backendRefs: [{name: w, port: 80}]}]}}`,
		loser:       `{metadata: {name: a, namespace: ns}, spec: {rules: [{matches: [{path: {value: /a}, headers: [{name: h2, value: "1"}]}], backendRefs: [{name: l, port: 80}]}]}}`,
		winnerOlder: true,
	},
	{
		criterion: `The Route appearing first in alphabetical order by "{namespace}/{name}".`,
		winner:    `{metadata: {name: b, namespace: a}, spec: {rules: [{matches: [{path: {value: /a}}], backendRefs: [{name: w, port: 80}]}]}}`,
		loser:     `{metadata: {name: a, namespace: b}, spec: {rules: [{matches: [{path: {value: /a}}], backendRefs: [{name: l, port: 80}]}]}}`,
	},
}

// TestPrecedenceFollowsTheSpecList checks the test gateway against each
// criterion of the spec's precedence list, in the spec's order.
func TestPrecedenceFollowsTheSpecList(t *testing.T) {
	spec := specPrecedence(t)
	var criteria []string
	for _, c := range precedenceCases {
		criteria = append(criteria, c.criterion)
	}
	if !slices.Equal(spec, criteria) {
		t.Fatalf("the spec's precedence list is\n  %q\nthe test covers\n  %q", spec, criteria)
	}
	for _, c := range precedenceCases {
		t.Run(c.criterion, func(t *testing.T) {
			w, l := decodeRoutes(t, c.winner)[0], decodeRoutes(t, c.loser)[0]
			wAge, lAge := 2, 1
			if c.winnerOlder {
				wAge, lAge = 1, 2
			}
			if c.criterion == criteria[len(criteria)-1] {
				wAge, lAge = 1, 1
			}
			// Both orders of the input, so that list order cannot decide.
			for _, routes := range [][]gatewayv1.HTTPRoute{{at(w, wAge), at(l, lAge)}, {at(l, lAge), at(w, wAge)}} {
				tb := gateway.BuildTable(routes, nil)
				r, ok := tb.Route(request("GET", precedenceRequest, precedenceHeaders...))
				if !ok || string(r.Backends[0].Name) != "w" {
					t.Fatalf("the request went to %v, want the winner", r)
				}
			}
		})
	}
}

// The seed's header-routing route and the header route a ModelRollout
// creates for a dark-launch step on its gpt4 rule (as controllers/
// headerroute.go builds it): created later, named after it.
const (
	userRoute = `
metadata: {name: model-header-routing, namespace: ai}
spec:
  parentRefs: [{name: ai-inference-gateway}]
  rules:
  - name: gpt4
    matches: [{path: {type: PathPrefix, value: /v1/chat/completions}, headers: [{name: x-model-id, value: gpt-4}]}]
    backendRefs: [{name: vllm-gpt4-v1, port: 8000, weight: 100}, {name: vllm-gpt4-v2, port: 8000, weight: 0}]
  - name: claude
    matches: [{headers: [{name: x-model-id, value: claude-3}]}]
    backendRefs: [{name: tgi-claude, port: 8080}]
  - name: health
    matches: [{path: {type: Exact, value: /health}}]
    backendRefs: [{name: vllm-gpt4-v1, port: 8000}]
`
	ownedHeaderRoute = `
metadata: {name: model-header-routing-gpt4-match, namespace: ai}
spec:
  parentRefs: [{name: ai-inference-gateway}]
  rules:
  - name: gpt4
    matches: [{path: {type: PathPrefix, value: /v1/chat/completions}, headers: [{name: x-model-id, value: gpt-4}, {name: x-ab-test-group, value: canary}]}]
    backendRefs: [{name: vllm-gpt4-v2, port: 8000, weight: 1}]
  - name: health
    matches: [{path: {type: Exact, value: /health}, headers: [{name: x-ab-test-group, value: canary}]}]
    backendRefs: [{name: vllm-gpt4-v2, port: 8000, weight: 1}]
`
	// A route of another team, more specific by path.
	otherRoute = `
metadata: {name: aa-embeddings, namespace: ai}
spec:
  parentRefs: [{name: ai-inference-gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/chat/completions/embeddings}}]
    backendRefs: [{name: vllm-embeddings, port: 8000}]
`
)

// TestHeaderRouteTakesOnlyMatchingRequests: a header route adds one header
// match to the user's matches, so it wins exactly the requests that carry
// the header and that the user's rule would have routed, and nothing else.
func TestHeaderRouteTakesOnlyMatchingRequests(t *testing.T) {
	tb := gateway.BuildTable([]gatewayv1.HTTPRoute{
		at(decodeRoutes(t, userRoute)[0], 1), at(decodeRoutes(t, ownedHeaderRoute)[0], 2), at(decodeRoutes(t, otherRoute)[0], 3),
	}, nil)
	for _, tc := range []struct {
		path    string
		headers []string
		want    string
	}{
		{"/v1/chat/completions", []string{"x-model-id", "gpt-4", "x-ab-test-group", "canary"}, "model-header-routing-gpt4-match/0"},
		{"/v1/chat/completions", []string{"x-model-id", "gpt-4"}, "model-header-routing/0"},
		{"/v1/chat/completions", []string{"x-model-id", "gpt-4", "x-ab-test-group", "control"}, "model-header-routing/0"},
		{"/v1/chat/completions", []string{"x-ab-test-group", "canary"}, "404"}, // the user's rule needs x-model-id too
		{"/v1/chat/completions", []string{"x-model-id", "claude-3", "x-ab-test-group", "canary"}, "model-header-routing/1"},
		{"/health", []string{"x-ab-test-group", "canary"}, "model-header-routing-gpt4-match/1"},
		{"/health", nil, "model-header-routing/2"},
		// A longer path elsewhere still wins: the header route never
		// takes a request the user's rule would not have had.
		{"/v1/chat/completions/embeddings", []string{"x-model-id", "gpt-4", "x-ab-test-group", "canary"}, "aa-embeddings/0"},
	} {
		if got := routeOf(tb, request("POST", tc.path, tc.headers...)); got != tc.want {
			t.Errorf("%s %v: got %s, want %s", tc.path, tc.headers, got, tc.want)
		}
	}
}
