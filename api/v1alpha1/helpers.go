package v1alpha1

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Parse returns the duration. The CRD schema guarantees the syntax of stored
// values; Parse reports an error for anything else.
func (d Duration) Parse() (time.Duration, error) {
	if d == "" {
		return 0, fmt.Errorf("empty duration")
	}
	v, err := time.ParseDuration(string(d))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w", string(d), err)
	}
	return v, nil
}

// The defaults of the duration fields. Each one is also the field's
// +kubebuilder:default marker (a marker cannot name a Go constant):
// TestDurationDefaultsMatchCRD fails when the two part.
const (
	// DefaultProgressDeadline is spec.progressDeadline's default.
	DefaultProgressDeadline = 10 * time.Minute
	// DefaultCanaryUnavailableGrace is spec.canaryUnavailableGrace's default.
	DefaultCanaryUnavailableGrace = 30 * time.Second
	// DefaultScaleDownDelay is spec.scaleDownDelay's default.
	DefaultScaleDownDelay = 10 * time.Minute
	// DefaultAnalysisInterval is spec.analysis.interval's default.
	DefaultAnalysisInterval = time.Minute
	// DefaultPrometheusTimeout is spec.analysis.prometheus.timeout's default.
	DefaultPrometheusTimeout = 10 * time.Second
	// DefaultWebGateTimeout is a web gate's timeout default.
	DefaultWebGateTimeout = 10 * time.Second
	// DefaultPromptTimeout is a prompt gate's timeout default.
	DefaultPromptTimeout = 60 * time.Second
	// DefaultWebhookTimeout is a webhook's timeout default.
	DefaultWebhookTimeout = 10 * time.Second
)

// The built-in gate policies, for a gate that sets none and whose template
// (if any) sets none either. Neither is a CRD default: a default would be
// written into every gate and so override every template.
const (
	// DefaultNoData holds the step on an evaluation without data.
	DefaultNoData = NoDataHold
	// DefaultFailureLimit rolls back on the first failed evaluation.
	DefaultFailureLimit int32 = 1
)

// Or returns the duration, or def when it is unset (nil or empty), does
// not parse, or is negative. The CRD schema checks stored values and fills
// in its default; Or covers objects it did not (a status or fake built in
// code, a field that predates its default). Zero is a duration like any
// other: a field for which zero makes no sense rejects it in its schema.
func (d *Duration) Or(def time.Duration) time.Duration {
	if d == nil || *d == "" {
		return def
	}
	v, err := d.Parse()
	if err != nil || v < 0 {
		return def
	}
	return v
}

// DefaultSteps is the schedule used when spec.steps is empty. It matches the
// CRD default and the seed's timeline.
func DefaultSteps() []Step {
	d := func(s string) *Duration { v := Duration(s); return &v }
	return []Step{
		{Weight: 10, Pause: d("30m")},
		{Weight: 25, Pause: d("30m")},
		{Weight: 50, Pause: d("1h")},
		{Weight: 75, Pause: d("1h")},
		{Weight: 100, Pause: d("1h")},
	}
}

// EffectiveSteps returns spec.steps, or DefaultSteps when it is empty.
func (s *ModelRolloutSpec) EffectiveSteps() []Step {
	if len(s.Steps) == 0 {
		return DefaultSteps()
	}
	return s.Steps
}

// WalkedSteps returns the steps status.stepWeights walks: the step of
// spec.steps with each weight, or, for a weight that an edit removed while
// it was in force and that still bakes, a step of that weight with
// status.stepPause. It is spec.steps when status.stepWeights is empty.
func (ro *ModelRollout) WalkedSteps() []Step {
	spec := ro.Spec.EffectiveSteps()
	if len(ro.Status.StepWeights) == 0 {
		return spec
	}
	out := make([]Step, 0, len(ro.Status.StepWeights))
	for _, w := range ro.Status.StepWeights {
		found := false
		for _, s := range spec {
			if s.Weight == w {
				out, found = append(out, s), true
				break
			}
		}
		if !found {
			out = append(out, Step{Weight: w, Pause: ro.Status.StepPause})
		}
	}
	return out
}

// KindOrDefault returns the backend's kind, Service when unset.
func (b BackendRef) KindOrDefault() BackendKind {
	if b.Kind == "" {
		return BackendKindService
	}
	return b.Kind
}

// String renders the backend as Kind/name:port, e.g. Service/vllm-gpt4-v2:8000.
func (b BackendRef) String() string {
	s := string(b.KindOrDefault()) + "/" + b.Name
	if b.Port != nil {
		s += ":" + strconv.Itoa(int(*b.Port))
	}
	return s
}

// Revision identifies a stable and canary pair. A change of either starts a
// new rollout.
func (s *ModelRolloutSpec) Revision() string {
	if s.Canary == nil {
		return ""
	}
	return s.Stable.String() + " -> " + s.Canary.String()
}

// Truncate cuts s to at most n bytes without splitting a UTF-8 sequence,
// ending it with "..." when cut. n bytes are at most n characters, so the
// result fits a CRD maxLength of n.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "..."
	if n <= len(ellipsis) {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return s[:cut]
	}
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// RunsPreTraffic says whether the gate is evaluated before the first step,
// with the canary at weight 0: preTraffic, by default true for prompt gates.
func (g Gate) RunsPreTraffic() bool {
	if g.PreTraffic != nil {
		return *g.PreTraffic
	}
	return g.Prompt != nil
}

// RunsAtSteps says whether the gate is evaluated at every step while the
// canary has traffic: everyStep, by default false for prompt gates.
func (g Gate) RunsAtSteps() bool {
	if g.EveryStep != nil {
		return *g.EveryStep
	}
	return g.Prompt == nil
}

// String renders a step's match for messages, e.g.
// "header x-ab-test-group=canary, query variant~=b.*" (~= for a regular
// expression).
func (m StepMatch) String() string {
	var parts []string
	op := func(regex bool) string {
		if regex {
			return "~="
		}
		return "="
	}
	for _, h := range m.Headers {
		parts = append(parts, fmt.Sprintf("header %s%s%s", h.Name, op(h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression), h.Value))
	}
	for _, q := range m.QueryParams {
		parts = append(parts, fmt.Sprintf("query %s%s%s", q.Name, op(q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression), q.Value))
	}
	return strings.Join(parts, ", ")
}
