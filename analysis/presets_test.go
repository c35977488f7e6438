package analysis

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/modelrollout/modelrollout/api/v1alpha1"
)

// gatePresetEnum reads the +kubebuilder:validation:Enum marker of GatePreset
// from the API source, so that a new enum value without a preset fails.
func gatePresetEnum(t *testing.T) []v1alpha1.GatePreset {
	t.Helper()
	src, err := os.ReadFile("../api/v1alpha1/analysis_types.go")
	if err != nil {
		t.Fatalf("read the API types: %v", err)
	}
	re := regexp.MustCompile(`(?m)^// \+kubebuilder:validation:Enum=(\S+)\n(?://.*\n)*type GatePreset string`)
	m := re.FindSubmatch(src)
	if m == nil {
		t.Fatal("no +kubebuilder:validation:Enum marker right above `type GatePreset string` in api/v1alpha1/analysis_types.go")
	}
	var out []v1alpha1.GatePreset
	for _, v := range strings.Split(string(m[1]), ";") {
		out = append(out, v1alpha1.GatePreset(v))
	}
	return out
}

func TestEveryEnumValueHasAPreset(t *testing.T) {
	enum := gatePresetEnum(t)
	if len(enum) < 12 {
		t.Fatalf("parsed only %d enum values: %v", len(enum), enum)
	}
	for _, p := range enum {
		if _, ok := presets[p]; !ok {
			t.Errorf("GatePreset %q is in the CRD enum but has no preset in presets.go", p)
		}
	}
	for p := range presets {
		if !slices.Contains(enum, p) {
			t.Errorf("preset %q is not in the CRD's GatePreset enum: the API server would reject it", p)
		}
	}
	if got := PresetNames(); !slices.Equal(got, enum) {
		t.Errorf("PresetNames() = %v, want the enum order %v", got, enum)
	}
}

func TestPresetsRenderAndParse(t *testing.T) {
	v := Vars{
		Namespace: "ai-gateway", Rollout: "gpt4", Route: "models", Stable: "vllm-gpt4-v1", Canary: "vllm-gpt4-v2",
		StablePort: 8000, CanaryPort: 8000, Weight: 25, Interval: time.Minute, StepWindow: 12 * time.Minute,
	}
	for _, name := range PresetNames() {
		t.Run(string(name), func(t *testing.T) {
			info := Describe(name)
			if info.Name != name || info.Query == "" || info.Selector == "" || info.RequestsQuery == "" || info.Description == "" {
				t.Fatalf("Describe(%q) is incomplete: %+v", name, info)
			}
			if info.Unit != "ratio" && info.Unit != "seconds" {
				t.Errorf("unit %q", info.Unit)
			}
			for _, tmpl := range []string{info.Query, info.RequestsQuery} {
				if !strings.Contains(tmpl, ".Selector }}") {
					t.Errorf("template %q does not use {{ .Selector }}, so gate.selector could not replace it", tmpl)
				}
			}
			if !strings.Contains(info.Query, "[{{ .Interval }}]") {
				t.Errorf("query %q is not over [{{ .Interval }}]", info.Query)
			}
			if !strings.Contains(info.RequestsQuery, "[{{ .StepWindow }}]") {
				t.Errorf("requests query %q is not over [{{ .StepWindow }}]", info.RequestsQuery)
			}

			r, err := RenderGate(v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Preset: name, Max: f64(1)}}, v)
			if err != nil {
				t.Fatalf("RenderGate: %v", err)
			}
			checkSelectorsEverywhere(t, r.Query, info)
			checkSelectorsEverywhere(t, r.RequestsQuery, info)
			if !strings.Contains(r.Query, "[1m]") || !strings.Contains(r.RequestsQuery, "[12m]") {
				t.Errorf("windows not rendered: %q / %q", r.Query, r.RequestsQuery)
			}
			if strings.HasSuffix(string(name), "-ratio") && !strings.Contains(r.Query, "or vector(0)") {
				t.Errorf("error ratio %q does not default a missing error series to 0", r.Query)
			}

			// A selector override replaces the default everywhere.
			r, err = RenderGate(v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Preset: name, Max: f64(1), Selector: `version="{{ .Canary }}"`}}, v)
			if err != nil {
				t.Fatalf("RenderGate with selector: %v", err)
			}
			for _, q := range []string{r.Query, r.RequestsQuery} {
				for _, vs := range selectors(t, q) {
					if !hasMatcher(vs, "version", "vllm-gpt4-v2") {
						t.Errorf("selector %s of %q lacks the override", vs, q)
					}
				}
			}
		})
	}
}

// checkSelectorsEverywhere checks that every vector selector of q picks the
// canary: the preset's default matchers are on every one of them.
func checkSelectorsEverywhere(t *testing.T, q string, info PresetInfo) {
	t.Helper()
	var want [][2]string
	switch {
	case strings.HasPrefix(string(info.Name), "vllm-"), strings.HasPrefix(string(info.Name), "tgi-"):
		want = [][2]string{{"service", "vllm-gpt4-v2"}, {"namespace", "ai-gateway"}}
	case strings.HasPrefix(string(info.Name), "envoy-"):
		want = [][2]string{{"envoy_cluster_name", "kube_ai-gateway_vllm-gpt4-v2_8000"}}
	case strings.HasPrefix(string(info.Name), "istio-"):
		want = [][2]string{{"reporter", "destination"}, {"destination_service_name", "vllm-gpt4-v2"}, {"destination_service_namespace", "ai-gateway"}}
	case strings.HasPrefix(string(info.Name), "inference-pool-"):
		want = [][2]string{{"service", "vllm-gpt4-v2-epp"}, {"namespace", "ai-gateway"}}
	case strings.HasPrefix(string(info.Name), "traefik-"):
		// Traefik's Gateway API provider's service names: the canary's
		// backendRef in any rule of any route of the namespace, not the
		// stable's, not the rule's weighted service.
		for _, vs := range selectors(t, q) {
			var m *labels.Matcher
			for _, lm := range vs.LabelMatchers {
				if lm.Name == "service" && lm.Type == labels.MatchRegexp {
					m = lm
				}
			}
			if m == nil {
				t.Fatalf("selector %s of %q has no service=~ matcher", vs, q)
			}
			for svc, want := range map[string]bool{
				"httproute-ai-gateway-models-gw-ai-gateway-gw-ep-web-0-0123456789-svc-ai-gateway-vllm-gpt4-v2-1@kubernetesgateway":            true,
				"httproute-ai-gateway-models-gpt4-match-gw-ai-gateway-gw-ep-web-0-abcdef0123-svc-ai-gateway-vllm-gpt4-v2-0@kubernetesgateway": true,
				"httproute-ai-gateway-models-gw-ai-gateway-gw-ep-web-0-0123456789-svc-ai-gateway-vllm-gpt4-v1-0@kubernetesgateway":            false,
				"httproute-ai-gateway-models-gw-ai-gateway-gw-ep-web-0-0123456789-svc-ai-gateway-vllm-gpt4-v2-canary-1@kubernetesgateway":     false,
				"httproute-ai-gateway-models-gw-ai-gateway-gw-ep-web-0-0123456789-wrr@kubernetesgateway":                                      false,
				"httproute-other-models-gw-ai-gateway-gw-ep-web-0-0123456789-svc-other-vllm-gpt4-v2-1@kubernetesgateway":                      false,
			} {
				if m.Matches(svc) != want {
					t.Errorf("service=~%q matches %s: %v, want %v", m.Value, svc, !want, want)
				}
			}
		}
		return
	default:
		t.Fatalf("no expectation for preset %q", info.Name)
	}
	vss := selectors(t, q)
	if len(vss) == 0 {
		t.Fatalf("%q has no selector", q)
	}
	for _, vs := range vss {
		for _, w := range want {
			if !hasMatcher(vs, w[0], w[1]) {
				t.Errorf("selector %s of %q lacks %s=%q", vs, q, w[0], w[1])
			}
		}
	}
}

func selectors(t *testing.T, q string) []*parser.VectorSelector {
	t.Helper()
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		t.Fatalf("parse %q: %v", q, err)
	}
	var out []*parser.VectorSelector
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

func hasMatcher(vs *parser.VectorSelector, name, value string) bool {
	for _, m := range vs.LabelMatchers {
		if m.Type == labels.MatchEqual && m.Name == name && m.Value == value {
			return true
		}
	}
	return false
}

func TestDescribeUnknown(t *testing.T) {
	if got := Describe("nope"); got != (PresetInfo{Name: "nope"}) {
		t.Errorf("Describe(unknown) = %+v", got)
	}
}

func TestNamingHelpers(t *testing.T) {
	if got := KgatewayClusterName("ai-gateway", "vllm-gpt4-v2", 8000); got != "kube_ai-gateway_vllm-gpt4-v2_8000" {
		t.Errorf("KgatewayClusterName = %q", got)
	}
	if got := EndpointPickerName("gpt4-pool-v2"); got != "gpt4-pool-v2-epp" {
		t.Errorf("EndpointPickerName = %q", got)
	}
	long := strings.Repeat("a", 50)
	if got := EndpointPickerName(long); got != strings.Repeat("a", 40)+"-epp" {
		t.Errorf("EndpointPickerName(50 chars) = %q, want the Helm chart's 40-character cut", got)
	}
	got, err := Render(`{{ .CanaryEndpointPicker }}`, Vars{Canary: "pool", CanaryEndpointPicker: "custom-picker"})
	if err != nil || got != "custom-picker" {
		t.Errorf("CanaryEndpointPicker override = %q, %v", got, err)
	}
}

// The inference-pool presets read the llm-d router's llm_d_epp_* names first
// and fall back to the deprecated inference_objective_* names, each
// alternative a whole query over one naming joined by `or`, so that an
// endpoint picker exporting both is counted once.
func TestInferencePoolPresetsReadBothNamings(t *testing.T) {
	v := Vars{Namespace: "ai-gateway", Canary: "pool-v2", Interval: time.Minute, StepWindow: time.Minute}
	for _, name := range []v1alpha1.GatePreset{"inference-pool-error-ratio", "inference-pool-latency-p99", "inference-pool-ttft-p99"} {
		r, err := RenderGate(v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{Preset: name, Max: f64(1)}}, v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, q := range []string{r.Query, r.RequestsQuery} {
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
			if err != nil {
				t.Fatalf("%s: parse %q: %v", name, q, err)
			}
			be, ok := expr.(*parser.BinaryExpr)
			if !ok || be.Op != parser.LOR {
				t.Fatalf("%s: %q is not `<llm_d_epp query> or <inference_objective query>`", name, q)
			}
			left, right := be.LHS.String(), be.RHS.String()
			if !strings.Contains(left, "llm_d_epp_request") || strings.Contains(left, "inference_objective") {
				t.Errorf("%s: left side %q should read only llm_d_epp_request_*", name, left)
			}
			if !strings.Contains(right, "inference_objective_request") || strings.Contains(right, "llm_d_epp") {
				t.Errorf("%s: right side %q should read only inference_objective_request_*", name, right)
			}
		}
	}
}
