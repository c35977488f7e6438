package analysis

import (
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/modelrollout/modelrollout/api/v1alpha1"
)

func f64(v float64) *float64 { return &v }

func TestRenderVariables(t *testing.T) {
	v := Vars{
		Namespace: "ai", Rollout: "gpt4", Route: "models", Stable: "v1", Canary: "v2",
		StablePort: 8000, CanaryPort: 8001, Weight: 25,
		Interval: 30 * time.Second, StepWindow: 10 * time.Minute,
	}
	tests := []struct{ tmpl, want string }{
		{`{{ .Namespace }}/{{ .Rollout }}/{{ .Route }}`, `ai/gpt4/models`},
		{`{{ .Stable }}:{{ .StablePort }} {{ .Canary }}:{{ .CanaryPort }} {{ .Weight }}`, `v1:8000 v2:8001 25`},
		{`[{{ .Interval }}] [{{ .StepWindow }}]`, `[30s] [10m]`},
		{`{{ .CanaryCluster }} {{ .StableCluster }}`, `kube_ai_v2_8001 kube_ai_v1_8000`},
		{`{{ .CanaryEndpointPicker }} {{ .StableEndpointPicker }}`, `v2-epp v1-epp`},
		{`{{ regex .Canary }}`, `v2`},
		{`{{ regex .Canary .Stable }}`, `v2|v1`},
		{`{{ if eq .Canary "v2" }}yes{{ end }}`, `yes`},
		{`{{ .Selector }}`, ``},
	}
	for _, tt := range tests {
		got, err := Render(tt.tmpl, v)
		if err != nil {
			t.Errorf("Render(%q): %v", tt.tmpl, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Render(%q) = %q, want %q", tt.tmpl, got, tt.want)
		}
	}
}

func TestRenderEscapes(t *testing.T) {
	tests := []struct{ in, want string }{
		{`plain-name`, `plain-name`},
		{`a"b`, `a\"b`},
		{`a\b`, `a\\b`},
		{"a\nb\rc\td", `a\nb\rc\td`},
		{"nul\x00", `nul\x00`},
		{"del\x7f", `del\x7f`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"repl\uFFFD", `repl\ufffd`},
		{"line\u2028sep", `line\u2028sep`},
		{"ünïcödé 模型", "ünïcödé 模型"},
		{`x"} or vector(1) #`, `x\"} or vector(1) #`},
		{`it's`, `it's`},
	}
	for _, tt := range tests {
		got, err := Render(`{{ .Canary }}`, Vars{Canary: tt.in})
		if err != nil {
			t.Fatalf("Render(%q): %v", tt.in, err)
		}
		if got != tt.want {
			t.Errorf("escape %q = %q, want %q", tt.in, got, tt.want)
		}
		// Whatever the value, it comes back from the parser unchanged.
		assertSelector(t, `up{service="`+got+`"}`, map[string]string{"service": tt.in})
	}
}

func TestRenderRegexEscapes(t *testing.T) {
	for _, name := range []string{"v2.1", "a+b*c?", `back\slash`, `quote"d`, "(x|y)", "[set]", "^$"} {
		q, err := Render(`up{service=~"{{ regex .Canary }}"}`, Vars{Canary: name})
		if err != nil {
			t.Fatalf("Render regex %q: %v", name, err)
		}
		m := onlyMatcher(t, q, "service")
		if m.Type != labels.MatchRegexp {
			t.Fatalf("%q: matcher type %v", name, m.Type)
		}
		if !m.Matches(name) {
			t.Errorf("%q: regex %q does not match the raw name", name, m.Value)
		}
		if m.Matches(name+"x") || m.Matches("x"+name) {
			t.Errorf("%q: regex %q matches more than the name", name, m.Value)
		}
		if m.Value != regexp.QuoteMeta(name) {
			t.Errorf("%q: regex value %q, want %q", name, m.Value, regexp.QuoteMeta(name))
		}
	}
}

func TestRenderUnknownVariableIsAnError(t *testing.T) {
	for _, tmpl := range []string{`up{x="{{ .Nope }}"}`, `{{ .canary }}`, `{{ .Canary.Name }}`} {
		got, err := Render(tmpl, Vars{Canary: "v2"})
		if err == nil {
			t.Errorf("Render(%q) = %q, want an error", tmpl, got)
			continue
		}
		if !strings.Contains(err.Error(), "template") {
			t.Errorf("Render(%q) error %q does not say it is a template error", tmpl, err)
		}
	}
	_, err := Render(`{{ .Nope }}`, Vars{})
	if err == nil || !strings.Contains(err.Error(), "unknown variable") || !strings.Contains(err.Error(), ".Canary") {
		t.Errorf("unknown variable error should list the variables, got %v", err)
	}
	if _, err := Render(`{{ .Canary `, Vars{}); err == nil {
		t.Errorf("unterminated action should be an error")
	}
	if _, err := Render(`{{ nope .Canary }}`, Vars{}); err == nil {
		t.Errorf("unknown function should be an error")
	}
}

func TestRenderClusterNeedsPort(t *testing.T) {
	_, err := Render(`{{ .CanaryCluster }}`, Vars{Namespace: "ai", Canary: "v2"})
	if err == nil || !strings.Contains(err.Error(), "port") {
		t.Fatalf("CanaryCluster without a port: got %v, want an error about the port", err)
	}
}

func TestRenderDurations(t *testing.T) {
	tests := []struct {
		interval, window time.Duration
		wantI, wantW     string
	}{
		{time.Minute, 0, "1m", "1m"},                                   // window is at least the interval
		{time.Minute, 10 * time.Minute, "1m", "10m"},                   // plain
		{30 * time.Second, 90 * time.Second, "30s", "1m30s"},           // compound
		{90 * time.Minute, 25 * time.Hour, "1h30m", "1d1h"},            // days
		{0, 0, "1m", "1m"},                                             // default interval
		{-time.Second, 0, "1m", "1m"},                                  // default interval
		{500 * time.Millisecond, 0, "500ms", "1s"},                     // window at least 1s
		{time.Minute, 61*time.Second + time.Millisecond, "1m", "1m2s"}, // whole seconds, rounded up
		{1500 * time.Millisecond, time.Second, "1s500ms", "2s"},        // >= interval
		{time.Minute + 1500*time.Microsecond, 0, "1m1ms", "1m1s"},      // ms precision
		{7 * 24 * time.Hour, 14 * 24 * time.Hour, "1w", "2w"},          // weeks
		{time.Nanosecond, 0, "1ms", "1s"},                              // at least 1ms
		{time.Minute, 2*time.Hour + 3*time.Minute + 4*time.Second, "1m", "2h3m4s"},
	}
	for _, tt := range tests {
		got, err := Render(`{{ .Interval }} {{ .StepWindow }}`, Vars{Interval: tt.interval, StepWindow: tt.window})
		if err != nil {
			t.Fatal(err)
		}
		if want := tt.wantI + " " + tt.wantW; got != want {
			t.Errorf("Interval %s StepWindow %s rendered %q, want %q", tt.interval, tt.window, got, want)
		}
		// Both are valid PromQL durations.
		if err := ValidateQuery(`rate(up[` + strings.Fields(got)[0] + `]) + rate(up[` + strings.Fields(got)[1] + `])`); err != nil {
			t.Errorf("rendered durations %q do not parse: %v", got, err)
		}
	}
}

func TestValidateQuery(t *testing.T) {
	tests := []struct {
		q       string
		wantErr string // substring; "" means valid
	}{
		{`up`, ""},
		{`1`, ""},
		{`sum(rate(x{a="b"}[5m])) / sum(rate(x[5m]))`, ""},
		{`vllm:request_success_total{finished_reason="error"}`, ""},
		{``, "empty query"},
		{`sum(rate(x[5m])`, "parse error: 1:16: unclosed left parenthesis"},
		{`up{a="b}`, "parse error"},
		{`rate(x[5q])`, "parse error"},
		{`up[5m]`, "range vector"},
		{`"text"`, "string"},
		{`nosuchfunc(up)`, `unknown function with name "nosuchfunc"`},
	}
	for _, tt := range tests {
		err := ValidateQuery(tt.q)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidateQuery(%q) = %v, want nil", tt.q, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ValidateQuery(%q) = %v, want an error containing %q", tt.q, err, tt.wantErr)
		}
	}
}

func TestRenderGate(t *testing.T) {
	v := Vars{Namespace: "ai", Canary: "v2", CanaryPort: 8000, Interval: time.Minute, StepWindow: 5 * time.Minute}
	min := int64(50)
	tests := []struct {
		name    string
		gate    v1alpha1.Gate
		want    RenderedGate
		wantErr string
	}{{
		name: "custom query",
		gate: v1alpha1.Gate{Name: "q", GateSpec: v1alpha1.GateSpec{Query: `max(up{service="{{ .Canary }}"})`, Min: f64(1)}},
		want: RenderedGate{Name: "q", Query: `max(up{service="v2"})`},
	}, {
		name: "custom query with requests query and selector",
		gate: v1alpha1.Gate{
			Name: "q", GateSpec: v1alpha1.GateSpec{Query: `sum(rate(x{ {{- .Selector }}}[{{ .Interval }}]))`, Selector: `pod=~"{{ regex .Canary }}-.*"`,
				RequestsQuery: `sum(increase(y{ {{- .Selector }}}[{{ .StepWindow }}]))`, MinRequests: &min, Max: f64(1)},
		},
		want: RenderedGate{Name: "q", Query: `sum(rate(x{pod=~"v2-.*"}[1m]))`, RequestsQuery: `sum(increase(y{pod=~"v2-.*"}[5m]))`},
	}, {
		name: "preset with default selector",
		gate: v1alpha1.Gate{Name: "errors", GateSpec: v1alpha1.GateSpec{Preset: "vllm-error-ratio", Max: f64(0.05)}},
		want: RenderedGate{
			Name:          "errors",
			Query:         `(sum(rate(vllm:request_success_total{finished_reason="error",service="v2",namespace="ai"}[1m])) or vector(0)) / sum(rate(vllm:request_success_total{service="v2",namespace="ai"}[1m]))`,
			RequestsQuery: `sum(increase(vllm:request_success_total{service="v2",namespace="ai"}[5m]))`,
		},
	}, {
		name: "preset with selector override",
		gate: v1alpha1.Gate{Name: "lat", GateSpec: v1alpha1.GateSpec{Preset: "vllm-e2e-latency-p99", Selector: `version="{{ .Canary }}"`, Max: f64(30)}},
		want: RenderedGate{
			Name:          "lat",
			Query:         `histogram_quantile(0.99, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{version="v2"}[1m])))`,
			RequestsQuery: `sum(increase(vllm:request_success_total{version="v2"}[5m]))`,
		},
	}, {
		name:    "parse error names the gate",
		gate:    v1alpha1.Gate{Name: "errors", GateSpec: v1alpha1.GateSpec{Query: `sum(rate(x[5m])`, Max: f64(1)}},
		wantErr: `gate "errors": parse error: `,
	}, {
		name:    "template error names the gate",
		gate:    v1alpha1.Gate{Name: "bad", GateSpec: v1alpha1.GateSpec{Query: `up{a="{{ .Nope }}"}`, Max: f64(1)}},
		wantErr: `gate "bad": template: `,
	}, {
		name:    "selector that is not matchers",
		gate:    v1alpha1.Gate{Name: "s", GateSpec: v1alpha1.GateSpec{Preset: "vllm-ttft-p99", Selector: `a="b"} or vector(1) or up{`, Max: f64(1)}},
		wantErr: `gate "s": selector`,
	}, {
		name:    "requests query error",
		gate:    v1alpha1.Gate{Name: "r", GateSpec: v1alpha1.GateSpec{Query: `up`, RequestsQuery: `up[5m]`, MinRequests: &min, Max: f64(1)}},
		wantErr: `gate "r": requestsQuery: the query returns a range vector`,
	}, {
		name:    "minRequests without requests query",
		gate:    v1alpha1.Gate{Name: "m", GateSpec: v1alpha1.GateSpec{Query: `up`, MinRequests: &min, Max: f64(1)}},
		wantErr: `gate "m": minRequests on a custom query needs requestsQuery`,
	}, {
		name:    "both preset and query",
		gate:    v1alpha1.Gate{Name: "b", GateSpec: v1alpha1.GateSpec{Preset: "vllm-ttft-p99", Query: "up", Max: f64(1)}},
		wantErr: `gate "b": set exactly one of preset or query`,
	}, {
		name:    "neither preset nor query",
		gate:    v1alpha1.Gate{Name: "n", GateSpec: v1alpha1.GateSpec{Max: f64(1)}},
		wantErr: `gate "n": set one of preset or query`,
	}, {
		name:    "unknown preset",
		gate:    v1alpha1.Gate{Name: "u", GateSpec: v1alpha1.GateSpec{Preset: "nope", Max: f64(1)}},
		wantErr: `gate "u": unknown preset "nope"`,
	}, {
		name:    "no threshold",
		gate:    v1alpha1.Gate{Name: "t", GateSpec: v1alpha1.GateSpec{Query: "up"}},
		wantErr: `gate "t": set min, max or both`,
	}, {
		name:    "min above max",
		gate:    v1alpha1.Gate{Name: "t", GateSpec: v1alpha1.GateSpec{Query: "up", Min: f64(2), Max: f64(1)}},
		wantErr: `gate "t": min 2 is greater than max 1`,
	}, {
		name:    "envoy preset without canary port",
		gate:    v1alpha1.Gate{Name: "e", GateSpec: v1alpha1.GateSpec{Preset: "envoy-error-ratio", Max: f64(0.01)}},
		wantErr: `gate "e": selector: template: `,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vv := v
			if tt.name == "envoy preset without canary port" {
				vv.CanaryPort = 0
			}
			got, err := RenderGate(tt.gate, vv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("RenderGate error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RenderGate: %v", err)
			}
			if got != tt.want {
				t.Errorf("RenderGate =\n  %+v\nwant\n  %+v", got, tt.want)
			}
		})
	}
}

func TestValidateGates(t *testing.T) {
	v := Vars{Namespace: "ai", Canary: "v2", CanaryPort: 8000}
	if err := ValidateGates(nil, v); err != nil {
		t.Errorf("nil analysis: %v", err)
	}
	good := &v1alpha1.Analysis{Gates: []v1alpha1.Gate{
		{Name: "errors", GateSpec: v1alpha1.GateSpec{Preset: "vllm-error-ratio", Max: f64(0.05)}},
		{Name: "latency", GateSpec: v1alpha1.GateSpec{Preset: "vllm-e2e-latency-p99", Max: f64(30)}},
	}}
	if err := ValidateGates(good, v); err != nil {
		t.Errorf("valid gates: %v", err)
	}
	bad := &v1alpha1.Analysis{Gates: []v1alpha1.Gate{
		{Name: "errors", GateSpec: v1alpha1.GateSpec{Query: `sum(rate(x[5m])`, Max: f64(0.05)}},
		{Name: "ok", GateSpec: v1alpha1.GateSpec{Preset: "vllm-ttft-p99", Max: f64(2)}},
		{Name: "typo", GateSpec: v1alpha1.GateSpec{Query: `up{a="{{ .Cannary }}"}`, Max: f64(2)}},
	}}
	err := ValidateGates(bad, v)
	if err == nil {
		t.Fatal("invalid gates: no error")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, `gate "errors": parse error: `) || !strings.Contains(msg, `; gate "typo": template: `) || strings.Contains(msg, `"ok"`) {
		t.Errorf("ValidateGates message %q should name exactly the two bad gates", msg)
	}
}

// assertSelector parses q and checks it is a plain selector whose matchers
// are exactly __name__="up" plus want, all equality matchers.
func assertSelector(t *testing.T, q string, want map[string]string) {
	t.Helper()
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		t.Fatalf("parse %q: %v", q, err)
	}
	vs, ok := expr.(*parser.VectorSelector)
	if !ok {
		t.Fatalf("%q parsed as %T, want a vector selector", q, expr)
	}
	if len(vs.LabelMatchers) != len(want)+1 {
		t.Fatalf("%q has %d matchers, want %d: %v", q, len(vs.LabelMatchers), len(want)+1, vs.LabelMatchers)
	}
	for _, m := range vs.LabelMatchers {
		if m.Type != labels.MatchEqual {
			t.Fatalf("%q: matcher %s is not an equality", q, m)
		}
		if m.Name == labels.MetricName {
			if m.Value != "up" {
				t.Fatalf("%q: metric name %q", q, m.Value)
			}
			continue
		}
		w, ok := want[m.Name]
		if !ok {
			t.Fatalf("%q: injected matcher %s", q, m)
		}
		if m.Value != w {
			t.Fatalf("%q: %s = %q, want %q", q, m.Name, m.Value, w)
		}
	}
}

func onlyMatcher(t *testing.T, q, name string) *labels.Matcher {
	t.Helper()
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		t.Fatalf("parse %q: %v", q, err)
	}
	vs, ok := expr.(*parser.VectorSelector)
	if !ok {
		t.Fatalf("%q parsed as %T", q, expr)
	}
	var found *labels.Matcher
	for _, m := range vs.LabelMatchers {
		switch m.Name {
		case labels.MetricName:
		case name:
			found = m
		default:
			t.Fatalf("%q: unexpected matcher %s", q, m)
		}
	}
	if found == nil || len(vs.LabelMatchers) != 2 {
		t.Fatalf("%q: want exactly __name__ and %s, got %v", q, name, vs.LabelMatchers)
	}
	return found
}

// FuzzRenderNoInjection renders object names of any content into label
// matchers and checks the parser reads back exactly those matchers with
// exactly those values: no name can end its string and add PromQL.
func FuzzRenderNoInjection(f *testing.F) {
	seeds := [][2]string{
		{"vllm-gpt4-v2", "ai-gateway"},
		{`x"} or vector(1) or up{a="`, `ns`},
		{`x",namespace="other`, `ns"}`},
		{`\`, `\"`},
		{"line\nbreak", "tab\there"},
		{"\r\n", "\x00\x01\x7f"},
		{"\xff\xfe invalid", "\xc3"},
		{"\uFFFD", "\u2028\u2029"},
		{"{{ .Namespace }}", "}}"},
		{"`raw`", "'single'"},
		{"ünïcödé 模型 🚀", "\U0010FFFF"},
		{"", ""},
		{`\x41\u0041`, `\\\\`},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	const tmpl = `up{service="{{ .Canary }}",namespace="{{ .Namespace }}"}`
	f.Fuzz(func(t *testing.T, canary, namespace string) {
		q, err := Render(tmpl, Vars{Canary: canary, Namespace: namespace})
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		assertSelector(t, q, map[string]string{"service": canary, "namespace": namespace})

		// A =~ matcher built with regex matches the raw name and only it.
		if !utf8.ValidString(canary) {
			return // Prometheus regexes are UTF-8.
		}
		q, err = Render(`up{service=~"{{ regex .Canary }}"}`, Vars{Canary: canary})
		if err != nil {
			t.Fatalf("Render regex: %v", err)
		}
		m := onlyMatcher(t, q, "service")
		if m.Type != labels.MatchRegexp || m.Value != regexp.QuoteMeta(canary) {
			t.Fatalf("regex matcher %s, want =~ %q", m, regexp.QuoteMeta(canary))
		}
		if !m.Matches(canary) {
			t.Fatalf("regex matcher %s does not match %q", m, canary)
		}
	})
}

func TestRenderGateArgs(t *testing.T) {
	v := Vars{Namespace: "ai", Canary: "v2"}
	g := v1alpha1.Gate{Name: "errors",
		Args: []v1alpha1.GateArg{{Name: "job", Value: `vllm"} or vector(1) #`}, {Name: "code", Value: "5.."}},
		GateSpec: v1alpha1.GateSpec{Max: f64(0.05),
			Query: `sum(rate(http_requests_total{job="{{ .Args.job }}",code=~"{{ .Args.code }}",service="{{ .Canary }}"}[1m]))`}}
	r, err := RenderGate(g, v)
	if err != nil {
		t.Fatalf("RenderGate: %v", err)
	}
	want := `sum(rate(http_requests_total{job="vllm\"} or vector(1) #",code=~"5..",service="v2"}[1m]))`
	if r.Query != want {
		t.Errorf("query = %s, want %s", r.Query, want)
	}
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Query)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	found := false
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			for _, m := range vs.LabelMatchers {
				if m.Name == "job" && m.Value == `vllm"} or vector(1) #` && m.Type == labels.MatchEqual {
					found = true
				}
			}
		}
		return nil
	})
	if !found {
		t.Errorf("the argument did not come back as one label value: %s", r.Query)
	}

	g.Args = g.Args[1:]
	_, err = RenderGate(g, v)
	if err == nil || !strings.Contains(err.Error(), `unknown argument "job"`) {
		t.Errorf("a missing argument: err = %v, want unknown argument \"job\"", err)
	}

	unresolved := v1alpha1.Gate{Name: "t", TemplateRef: &v1alpha1.GateTemplateRef{Name: "errors"}}
	if _, err := RenderGate(unresolved, v); err == nil || !strings.Contains(err.Error(), "GateTemplate/errors was not resolved") {
		t.Errorf("an unresolved templateRef: err = %v", err)
	}
}

func TestEffectivePolicy(t *testing.T) {
	tmpl := func(nd v1alpha1.NoDataPolicy, fl int32) *v1alpha1.GateSpec {
		return &v1alpha1.GateSpec{NoData: nd, FailureLimit: fl}
	}
	gate := func(nd v1alpha1.NoDataPolicy, fl int32) v1alpha1.GateSpec {
		return v1alpha1.GateSpec{NoData: nd, FailureLimit: fl}
	}
	for _, c := range []struct {
		name string
		gate v1alpha1.GateSpec
		tmpl *v1alpha1.GateSpec
		want Policy
	}{
		{"inline gate, nothing set: the built-in defaults", gate("", 0), nil, Policy{v1alpha1.NoDataHold, 1}},
		{"inline gate, both set", gate(v1alpha1.NoDataFail, 3), nil, Policy{v1alpha1.NoDataFail, 3}},
		{"template gate, nothing set anywhere", gate("", 0), tmpl("", 0), Policy{v1alpha1.NoDataHold, 1}},
		{"template gate takes the template's", gate("", 0), tmpl(v1alpha1.NoDataFail, 3), Policy{v1alpha1.NoDataFail, 3}},
		{"the gate's Hold and 1 override the template's Fail and 3", gate(v1alpha1.NoDataHold, 1), tmpl(v1alpha1.NoDataFail, 3), Policy{v1alpha1.NoDataHold, 1}},
		{"the gate's Pass and 5 override the template's", gate(v1alpha1.NoDataPass, 5), tmpl(v1alpha1.NoDataFail, 3), Policy{v1alpha1.NoDataPass, 5}},
		{"each field on its own: noData from the gate, failureLimit from the template", gate(v1alpha1.NoDataHold, 0), tmpl(v1alpha1.NoDataFail, 3), Policy{v1alpha1.NoDataHold, 3}},
		{"each field on its own: failureLimit from the gate, noData from the template", gate("", 1), tmpl(v1alpha1.NoDataPass, 3), Policy{v1alpha1.NoDataPass, 1}},
		{"template sets one, the default fills the other", gate("", 0), tmpl("", 4), Policy{v1alpha1.NoDataHold, 4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := EffectivePolicy(c.gate, c.tmpl); got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestRecordShowsEffectivePolicy(t *testing.T) {
	now := time.Unix(1700000000, 0)
	noData := Evaluation{Verdict: v1alpha1.VerdictNoData, Message: "empty vector"}

	// An inline gate that sets nothing: Hold and 1, and no data holds.
	st, out := Record(v1alpha1.GateStatus{}, v1alpha1.Gate{Name: "g"}, noData, 10, 0, now)
	if st.NoData != v1alpha1.NoDataHold || st.FailureLimit != 1 || out != OutcomeHold || st.ConsecutiveFailures != 0 {
		t.Errorf("unset: noData %q, failureLimit %d, outcome %v, failures %d", st.NoData, st.FailureLimit, out, st.ConsecutiveFailures)
	}
	// A gate resolved with Fail and 3: no data counts as a failure, the
	// first of three.
	g := v1alpha1.Gate{Name: "g", GateSpec: v1alpha1.GateSpec{NoData: v1alpha1.NoDataFail, FailureLimit: 3}}
	st, out = Record(v1alpha1.GateStatus{}, g, noData, 10, 0, now)
	if st.NoData != v1alpha1.NoDataFail || st.FailureLimit != 3 || out != OutcomeHold || st.ConsecutiveFailures != 1 {
		t.Errorf("Fail/3: noData %q, failureLimit %d, outcome %v, failures %d", st.NoData, st.FailureLimit, out, st.ConsecutiveFailures)
	}
}
