package analysis

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/modelrollout/modelrollout/api/v1alpha1"
)

// DefaultInterval is what {{ .Interval }} renders to when Vars.Interval is
// not positive. It matches the CRD default of analysis.interval.
const DefaultInterval = v1alpha1.DefaultAnalysisInterval

// Vars are the values a gate template can use. See Render for how each one
// renders.
type Vars struct {
	// Namespace of the rollout (and of its routes and backends).
	Namespace string
	// Rollout is the ModelRollout's name.
	Rollout string
	// Route is the first managed HTTPRoute.
	Route string
	// Stable and Canary are the backends' names (Service or InferencePool).
	Stable, Canary string
	// StablePort and CanaryPort are the backendRef ports, 0 when absent.
	StablePort, CanaryPort int32
	// Weight is the canary's current weight in percent.
	Weight int32
	// Interval is the analysis interval.
	Interval time.Duration
	// StepWindow is the time since the current step started.
	StepWindow time.Duration
	// StableEndpointPicker and CanaryEndpointPicker name the endpoint-picker
	// (EPP) Services of InferencePool backends, from the pool's
	// spec.endpointPickerRef.name. Optional: when empty, the inference-pool
	// presets assume the inferencepool Helm chart's "<pool>-epp".
	StableEndpointPicker, CanaryEndpointPicker string
}

// RenderedGate is a gate whose templates have been rendered and parsed.
type RenderedGate struct {
	// Name of the gate.
	Name string
	// Query is the PromQL whose value is compared with min and max.
	Query string
	// RequestsQuery counts the canary's requests in the step, for
	// minRequests; empty for a custom query without requestsQuery.
	RequestsQuery string
}

// promString is a string value of the template data. It prints escaped for
// the inside of a double-quoted PromQL string, so that no value can end the
// string it is written in; comparisons (eq, ne) and the regex function see
// the raw value.
type promString string

func (s promString) String() string { return EscapeString(string(s)) }

// promDuration prints as a PromQL duration such as 1m, 30s, 1h30m or 500ms.
type promDuration time.Duration

func (d promDuration) String() string { return model.Duration(d).String() }

// promQL is an already rendered PromQL fragment (a selector) that prints
// verbatim.
type promQL string

// templateData is what gate templates execute on. Keep it in sync with the
// Vars documentation in Render and with variableNames.
type templateData struct {
	Namespace, Rollout, Route promString
	Stable, Canary            promString
	StablePort, CanaryPort    int32
	Weight                    int32
	Interval, StepWindow      promDuration
	// Selector is the rendered label matchers of the gate: the preset's
	// default or gate.selector.
	Selector promQL
	// Args are the gate's template arguments (gate.args), escaped like the
	// strings.
	Args map[string]promString

	stablePicker, canaryPicker string
}

var variableNames = []string{
	".Namespace", ".Rollout", ".Route", ".Stable", ".Canary", ".StablePort", ".CanaryPort",
	".Weight", ".Interval", ".StepWindow", ".Selector", ".StableCluster", ".CanaryCluster",
	".StableEndpointPicker", ".CanaryEndpointPicker", ".Args.<name>",
}

// KgatewayClusterName is the name Kgateway gives the Envoy cluster of a
// Service port: "kube_<namespace>_<service>_<port>" (the "kube" prefix of its
// Kubernetes Service backend plugin, then namespace, name and port number
// joined by "_"). Envoy's Prometheus stats carry it in the
// envoy_cluster_name label.
func KgatewayClusterName(namespace, service string, port int32) string {
	return "kube_" + namespace + "_" + service + "_" + strconv.Itoa(int(port))
}

// EndpointPickerName is the endpoint-picker Service of an InferencePool as
// the inferencepool Helm chart names it: the pool name, lower-cased, trimmed
// and cut to 40 characters, then "-epp".
func EndpointPickerName(pool string) string {
	base := strings.ToLower(strings.TrimSpace(pool))
	if r := []rune(base); len(r) > 40 {
		base = string(r[:40])
	}
	return base + "-epp"
}

// CanaryCluster is the Kgateway Envoy cluster of the canary Service port.
func (d templateData) CanaryCluster() (promString, error) {
	if d.CanaryPort == 0 {
		return "", errors.New("{{ .CanaryCluster }} needs the canary's port (spec.canary.port): Kgateway names clusters kube_<namespace>_<service>_<port>")
	}
	return promString(KgatewayClusterName(string(d.Namespace), string(d.Canary), d.CanaryPort)), nil
}

// StableCluster is the Kgateway Envoy cluster of the stable Service port.
func (d templateData) StableCluster() (promString, error) {
	if d.StablePort == 0 {
		return "", errors.New("{{ .StableCluster }} needs the stable backend's port (spec.stable.port): Kgateway names clusters kube_<namespace>_<service>_<port>")
	}
	return promString(KgatewayClusterName(string(d.Namespace), string(d.Stable), d.StablePort)), nil
}

// CanaryEndpointPicker is the canary InferencePool's endpoint-picker Service.
func (d templateData) CanaryEndpointPicker() promString {
	if d.canaryPicker != "" {
		return promString(d.canaryPicker)
	}
	return promString(EndpointPickerName(string(d.Canary)))
}

// StableEndpointPicker is the stable InferencePool's endpoint-picker Service.
func (d templateData) StableEndpointPicker() promString {
	if d.stablePicker != "" {
		return promString(d.stablePicker)
	}
	return promString(EndpointPickerName(string(d.Stable)))
}

func newTemplateData(v Vars) templateData {
	interval := v.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	if interval < time.Millisecond {
		interval = time.Millisecond
	}
	interval = interval.Truncate(time.Millisecond)
	// At least Interval, rounded up to whole seconds, at least 1s.
	window := max(v.StepWindow, interval)
	window = (window + time.Second - 1).Truncate(time.Second)
	return templateData{
		Namespace:    promString(v.Namespace),
		Rollout:      promString(v.Rollout),
		Route:        promString(v.Route),
		Stable:       promString(v.Stable),
		Canary:       promString(v.Canary),
		StablePort:   v.StablePort,
		CanaryPort:   v.CanaryPort,
		Weight:       v.Weight,
		Interval:     promDuration(interval),
		StepWindow:   promDuration(window),
		stablePicker: v.StableEndpointPicker,
		canaryPicker: v.CanaryEndpointPicker,
	}
}

var templateFuncs = template.FuncMap{"regex": regexFunc}

// regexFunc quotes its arguments for a =~ or !~ matcher: each raw value
// goes through regexp.QuoteMeta, several are joined with "|", and the result
// is escaped for a double-quoted PromQL string.
func regexFunc(args ...any) (string, error) {
	if len(args) == 0 {
		return "", errors.New("regex needs at least one value")
	}
	parts := make([]string, 0, len(args))
	for _, a := range args {
		s, err := rawString(a)
		if err != nil {
			return "", err
		}
		parts = append(parts, regexp.QuoteMeta(s))
	}
	return EscapeString(strings.Join(parts, "|")), nil
}

func rawString(a any) (string, error) {
	switch v := a.(type) {
	case promString:
		return string(v), nil
	case string:
		return v, nil
	case int32, int, int64:
		return fmt.Sprint(v), nil
	case promDuration:
		return v.String(), nil
	}
	return "", fmt.Errorf("regex: cannot quote a %s", reflect.TypeOf(a))
}

// EscapeString escapes s for the inside of a double-quoted PromQL string
// (e.g. a label matcher value): backslash, double quote, newline, carriage
// return and tab get their backslash escapes, other control and
// non-printable characters \x, \u or \U escapes, and bytes that are not
// valid UTF-8 \x escapes, so the PromQL parser reads back exactly s.
func EscapeString(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r == utf8.RuneError || !unicode.IsPrint(r):
			// The lexer rejects a literal U+FFFD; escape invisible runes too.
			if r < 0x10000 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				fmt.Fprintf(&b, `\U%08x`, r)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// Render executes a gate template (Go text/template) over v.
//
// The variables are:
//
//	{{ .Namespace }}  {{ .Rollout }}  {{ .Route }}  {{ .Stable }}  {{ .Canary }}
//	    strings, escaped for the inside of a double-quoted PromQL string:
//	    write them between double quotes, e.g. service="{{ .Canary }}".
//	{{ .StablePort }}  {{ .CanaryPort }}  {{ .Weight }}
//	    integers; ports are 0 when absent.
//	{{ .Interval }}
//	    the analysis interval as a PromQL duration (1m, 30s, 1h30m, 500ms);
//	    DefaultInterval when not positive.
//	{{ .StepWindow }}
//	    the time since the step started, at least Interval, in whole seconds
//	    and at least 1s, as a PromQL duration: use it as [{{ .StepWindow }}].
//	{{ .CanaryCluster }}  {{ .StableCluster }}
//	    the backend's Kgateway Envoy cluster, kube_<namespace>_<name>_<port>
//	    (an error when the port is 0), escaped like the strings.
//	{{ .CanaryEndpointPicker }}  {{ .StableEndpointPicker }}
//	    the InferencePool's endpoint-picker Service, escaped like the strings.
//	{{ .Selector }}
//	    the gate's rendered label matchers (preset default or gate.selector),
//	    verbatim; empty in a selector itself.
//	{{ .Args.<name> }}
//	    a template argument (gate.args, filled from a GateTemplate's
//	    declared defaults when the gate was resolved), escaped like the
//	    strings; RenderGate only, an unknown name is an error.
//
// and the function {{ regex .Canary }} quotes values for a =~ matcher
// (regexp.QuoteMeta, joined by "|" when given several, then escaped).
//
// An unknown variable such as {{ .Nope }} is an error, not an empty string.
func Render(tmpl string, v Vars) (string, error) {
	return render(tmpl, newTemplateData(v))
}

func render(tmpl string, data templateData) (string, error) {
	return execute(tmpl, data, templateFuncs, variableNames)
}

// execute runs a gate template over data, with missing keys and unknown
// variables as errors that list the variables (names).
func execute(tmpl string, data any, funcs template.FuncMap, names []string) (string, error) {
	t, err := template.New("gate").Option("missingkey=error").Funcs(funcs).Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("template: %w", trimTemplateErr(err))
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		err = trimTemplateErr(err)
		if m := unknownArgRE.FindStringSubmatch(err.Error()); m != nil {
			return "", fmt.Errorf("template: %sunknown argument %q: pass it in the gate's args, or declare it in the template's args", m[1], m[2])
		}
		if m := unknownFieldRE.FindStringSubmatch(err.Error()); m != nil {
			return "", fmt.Errorf("template: %sunknown variable %s; the variables are %s", m[1], m[2], strings.Join(names, ", "))
		}
		return "", fmt.Errorf("template: %w", err)
	}
	return b.String(), nil
}

// The renderers of web gates. They execute over the same variables as
// PromQL templates (but .Selector, which only PromQL has), each string
// escaped for where it lands.

// urlString prints percent-encoded: every byte but the unreserved
// characters of RFC 3986 (letters, digits, "-", ".", "_", "~") becomes %XX,
// so a value is one path segment or one query value and cannot add a "/",
// "?", "&", "=" or "#".
type urlString string

func (s urlString) String() string { return EscapeURLComponent(string(s)) }

// jsonString prints escaped for the inside of a double-quoted JSON string.
type jsonString string

func (s jsonString) String() string { return EscapeJSONString(string(s)) }

// headerString prints verbatim; the rendered header is checked afterwards.
type headerString string

func (s headerString) String() string { return string(s) }

// webData is what web gate templates execute on: templateData's variables
// with strings of type S. Keep it in sync with webVariableNames.
type webData[S ~string] struct {
	Namespace, Rollout, Route S
	Stable, Canary            S
	StablePort, CanaryPort    int32
	Weight                    int32
	Interval, StepWindow      promDuration

	stablePicker, canaryPicker string
}

var webVariableNames = []string{
	".Namespace", ".Rollout", ".Route", ".Stable", ".Canary", ".StablePort", ".CanaryPort",
	".Weight", ".Interval", ".StepWindow", ".StableCluster", ".CanaryCluster",
	".StableEndpointPicker", ".CanaryEndpointPicker",
}

func newWebData[S ~string](v Vars) webData[S] {
	d := newTemplateData(v)
	return webData[S]{
		Namespace: S(d.Namespace), Rollout: S(d.Rollout), Route: S(d.Route),
		Stable: S(d.Stable), Canary: S(d.Canary),
		StablePort: d.StablePort, CanaryPort: d.CanaryPort, Weight: d.Weight,
		Interval: d.Interval, StepWindow: d.StepWindow,
		stablePicker: d.stablePicker, canaryPicker: d.canaryPicker,
	}
}

func (d webData[S]) base() templateData {
	return templateData{Namespace: promString(d.Namespace), Stable: promString(d.Stable), Canary: promString(d.Canary),
		StablePort: d.StablePort, CanaryPort: d.CanaryPort, stablePicker: d.stablePicker, canaryPicker: d.canaryPicker}
}

// CanaryCluster is the Kgateway Envoy cluster of the canary Service port.
func (d webData[S]) CanaryCluster() (S, error) {
	c, err := d.base().CanaryCluster()
	return S(c), err
}

// StableCluster is the Kgateway Envoy cluster of the stable Service port.
func (d webData[S]) StableCluster() (S, error) {
	c, err := d.base().StableCluster()
	return S(c), err
}

// CanaryEndpointPicker is the canary InferencePool's endpoint-picker Service.
func (d webData[S]) CanaryEndpointPicker() S { return S(d.base().CanaryEndpointPicker()) }

// StableEndpointPicker is the stable InferencePool's endpoint-picker Service.
func (d webData[S]) StableEndpointPicker() S { return S(d.base().StableEndpointPicker()) }

// RenderURL executes a URL template over v. String variables are
// percent-encoded (EscapeURLComponent); numbers and durations print as in
// Render. An unknown variable is an error.
func RenderURL(tmpl string, v Vars) (string, error) {
	return execute(tmpl, newWebData[urlString](v), nil, webVariableNames)
}

// RenderJSON executes a JSON body template over v. String variables are
// escaped for the inside of a JSON string (EscapeJSONString): write them
// between double quotes. An unknown variable is an error.
func RenderJSON(tmpl string, v Vars) (string, error) {
	return execute(tmpl, newWebData[jsonString](v), nil, webVariableNames)
}

// RenderHeader executes a header value template over v. Variables print
// verbatim: object names cannot hold line breaks, and the caller checks the
// rendered value. An unknown variable is an error.
func RenderHeader(tmpl string, v Vars) (string, error) {
	return execute(tmpl, newWebData[headerString](v), nil, webVariableNames)
}

// EscapeURLComponent percent-encodes every byte of s but the RFC 3986
// unreserved characters (A-Z a-z 0-9 - . _ ~). The result is safe as a path
// segment and as a query name or value.
func EscapeURLComponent(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// EscapeJSONString escapes s for the inside of a double-quoted JSON string:
// quote, backslash and control characters get their escapes, and invalid
// UTF-8 becomes U+FFFD, so a JSON parser reads back s (or its valid form).
func EscapeJSONString(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	out := strings.TrimSuffix(b.String(), "\n")
	return out[1 : len(out)-1]
}

// unknownFieldRE matches text/template's error for a missing field, after
// trimTemplateErr: "1:9: at <.Nope>: can't evaluate field Nope in type ...".
var unknownFieldRE = regexp.MustCompile(`^(\d+:\d+: )?at <([^>]*)>: can't evaluate field `)

// unknownArgRE matches text/template's error for a missing map key under
// missingkey=error: "1:9: at <.Args.region>: map has no entry for key ...".
var unknownArgRE = regexp.MustCompile(`^(\d+:\d+: )?at <\.Args\.([^>]*)>: map has no entry for key`)

// trimTemplateErr drops the "template: gate:" prefix text/template puts on
// its errors; the caller says which gate and which field.
func trimTemplateErr(err error) error {
	msg := strings.TrimPrefix(err.Error(), "template: ")
	msg = strings.TrimPrefix(msg, "gate:")
	msg = strings.ReplaceAll(msg, `executing "gate" at `, "at ")
	msg = strings.ReplaceAll(msg, "analysis.templateData", "the gate variables")
	return errors.New(msg)
}

// ValidateQuery parses q as PromQL and checks that it evaluates to a scalar
// or an instant vector. The error carries the parser's message.
func ValidateQuery(q string) error {
	if strings.TrimSpace(q) == "" {
		return errors.New("parse error: empty query")
	}
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		// The parser's message is "<line:col>: parse error: <what>"; say
		// "parse error" once.
		var perrs parser.ParseErrors
		if errors.As(err, &perrs) && len(perrs) > 0 && perrs[0].Err != nil {
			pe := perrs[0]
			return fmt.Errorf("parse error: %s: %w", pe.PositionRange.StartPosInput(pe.Query, 0), pe.Err)
		}
		return fmt.Errorf("parse error: %w", err)
	}
	switch t := expr.Type(); t {
	case parser.ValueTypeScalar, parser.ValueTypeVector:
		return nil
	case parser.ValueTypeMatrix:
		return errors.New("the query returns a range vector; a gate needs a scalar or an instant vector, e.g. wrap it in rate() or avg_over_time()")
	default:
		return fmt.Errorf("the query returns a %s; a gate needs a scalar or an instant vector", t)
	}
}

// validateSelector checks that a rendered selector is a list of label
// matchers and nothing else.
func validateSelector(sel string) error {
	if _, err := parser.NewParser(parser.Options{}).ParseMetricSelector("{" + sel + "}"); err != nil {
		return fmt.Errorf("must be label matchers such as service=\"a\",namespace=\"b\": %w", err)
	}
	return nil
}

// RenderGate renders the gate's query (a preset's with its selector, or
// the custom query) and its requests query, and parses them. Errors name
// the gate, e.g. `gate "errors": parse error: ...`.
func RenderGate(g v1alpha1.Gate, v Vars) (RenderedGate, error) {
	r, err := renderGate(g, v)
	if err != nil {
		return RenderedGate{}, fmt.Errorf("gate %q: %w", g.Name, err)
	}
	return r, nil
}

func renderGate(g v1alpha1.Gate, v Vars) (RenderedGate, error) {
	r := RenderedGate{Name: g.Name}
	switch {
	case g.TemplateRef != nil && g.Preset == "" && g.Query == "":
		return r, fmt.Errorf("templateRef %s was not resolved", g.TemplateRef)
	case g.Preset != "" && g.Query != "":
		return r, errors.New("set exactly one of preset or query")
	case g.Preset == "" && g.Query == "":
		return r, errors.New("set one of preset or query")
	case g.Min == nil && g.Max == nil:
		return r, errors.New("set min, max or both: a gate without a threshold would always pass")
	case g.Min != nil && g.Max != nil && *g.Min > *g.Max:
		return r, fmt.Errorf("min %s is greater than max %s", formatFloat(*g.Min), formatFloat(*g.Max))
	}
	switch g.NoData {
	case "", v1alpha1.NoDataHold, v1alpha1.NoDataFail, v1alpha1.NoDataPass:
	default:
		return r, fmt.Errorf("noData %q is not one of Hold, Fail, Pass", g.NoData)
	}

	data := newTemplateData(v)
	data.Args = make(map[string]promString, len(g.Args))
	for _, a := range g.Args {
		data.Args[string(a.Name)] = promString(a.Value)
	}
	queryTmpl, requestsTmpl, selTmpl := g.Query, g.RequestsQuery, g.Selector
	if g.Preset != "" {
		p, ok := presets[g.Preset]
		if !ok {
			return r, fmt.Errorf("unknown preset %q; the presets are %s", g.Preset, presetList())
		}
		queryTmpl, requestsTmpl = p.query, p.requests
		if selTmpl == "" {
			selTmpl = p.selector
		}
	}
	if selTmpl != "" {
		sel, err := render(selTmpl, data)
		if err != nil {
			return r, fmt.Errorf("selector: %w", err)
		}
		if err := validateSelector(sel); err != nil {
			return r, fmt.Errorf("selector %q: %w", sel, err)
		}
		data.Selector = promQL(sel)
	}

	q, err := render(queryTmpl, data)
	if err != nil {
		return r, err
	}
	if err := ValidateQuery(q); err != nil {
		return r, err
	}
	r.Query = q

	if requestsTmpl != "" {
		rq, err := render(requestsTmpl, data)
		if err != nil {
			return r, fmt.Errorf("requestsQuery: %w", err)
		}
		if err := ValidateQuery(rq); err != nil {
			return r, fmt.Errorf("requestsQuery: %w", err)
		}
		r.RequestsQuery = rq
	}
	if g.MinRequests != nil && *g.MinRequests > 0 && r.RequestsQuery == "" {
		return r, errors.New("minRequests on a custom query needs requestsQuery, the PromQL that counts the canary's requests")
	}
	return r, nil
}

// ValidateGates renders and parses every gate of a, as RenderGate (or
// RenderWeb for a web gate) does, and
// reports all problems at once, separated by "; ". The controller calls it
// before any traffic moves.
func ValidateGates(a *v1alpha1.Analysis, v Vars) error {
	if a == nil {
		return nil
	}
	var msgs []string
	seen := map[string]bool{}
	for _, g := range a.Gates {
		if seen[g.Name] {
			msgs = append(msgs, fmt.Sprintf("gate %q: the name is used twice", g.Name))
			continue
		}
		seen[g.Name] = true
		if g.Prompt != nil {
			continue // parsed by ParsePrompts: its prompts come from the spec or a ConfigMap
		}
		if g.Web != nil {
			if _, err := RenderWeb(g, v); err != nil {
				msgs = append(msgs, err.Error())
			}
			continue
		}
		if _, err := RenderGate(g, v); err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// Policy is how a gate's evaluations are counted: what no data means, and
// how many failures in a row roll back.
type Policy struct {
	NoData       v1alpha1.NoDataPolicy
	FailureLimit int32
}

// EffectivePolicy resolves a gate's noData and failureLimit: each is the
// gate's own when it sets one, else its template's (tmpl is nil for an
// inline gate), else the built-in default (Hold, 1). Neither field has a
// CRD default, so a value present on the gate was written there and
// overrides the template's, whatever it is. This is the one place the rule
// lives: template resolution applies it to the gate that is evaluated, and
// the evaluation records the result in status.gates[].
func EffectivePolicy(gate v1alpha1.GateSpec, tmpl *v1alpha1.GateSpec) Policy {
	p := Policy{NoData: gate.NoData, FailureLimit: gate.FailureLimit}
	if tmpl != nil {
		if p.NoData == "" {
			p.NoData = tmpl.NoData
		}
		if p.FailureLimit <= 0 {
			p.FailureLimit = tmpl.FailureLimit
		}
	}
	if p.NoData == "" {
		p.NoData = v1alpha1.DefaultNoData
	}
	if p.FailureLimit <= 0 {
		p.FailureLimit = v1alpha1.DefaultFailureLimit
	}
	return p
}
