package v1alpha1

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// crdSchema returns the openAPIV3Schema of the generated CRD for kind.
func crdSchema(t *testing.T, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", file))
	if err != nil {
		t.Fatal(err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	versions := crd["spec"].(map[string]any)["versions"].([]any)
	return versions[0].(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)
}

// schemaAt walks properties (and items for "[]") down a dotted path.
func schemaAt(t *testing.T, s map[string]any, path string) map[string]any {
	t.Helper()
	for _, p := range strings.Split(path, ".") {
		if p == "[]" {
			s = s["items"].(map[string]any)
			continue
		}
		props, _ := s["properties"].(map[string]any)
		next, ok := props[p].(map[string]any)
		if !ok {
			t.Fatalf("no property %q on the way to %s", p, path)
		}
		s = next
	}
	return s
}

func TestDurationDefaultsMatchCRD(t *testing.T) {
	schema := crdSchema(t, "rollouts.modelrollout.io_modelrollouts.yaml")
	for path, want := range map[string]time.Duration{
		"spec.progressDeadline":                 DefaultProgressDeadline,
		"spec.canaryUnavailableGrace":           DefaultCanaryUnavailableGrace,
		"spec.scaleDownDelay":                   DefaultScaleDownDelay,
		"spec.analysis.interval":                DefaultAnalysisInterval,
		"spec.analysis.prometheus.timeout":      DefaultPrometheusTimeout,
		"spec.analysis.gates.[].web.timeout":    DefaultWebGateTimeout,
		"spec.analysis.gates.[].prompt.timeout": DefaultPromptTimeout,
		"spec.webhooks.[].timeout":              DefaultWebhookTimeout,
	} {
		def, ok := schemaAt(t, schema, path)["default"].(string)
		if !ok {
			t.Errorf("%s: no string default in the CRD", path)
			continue
		}
		got, err := time.ParseDuration(def)
		if err != nil || got != want {
			t.Errorf("%s: CRD default %q, Go constant %s: change the +kubebuilder:default marker or the constant", path, def, want)
		}
	}
}

func TestDurationOr(t *testing.T) {
	d := func(s string) *Duration { v := Duration(s); return &v }
	for _, c := range []struct {
		in   *Duration
		want time.Duration
	}{
		{nil, time.Hour},
		{d(""), time.Hour},
		{d("nonsense"), time.Hour},
		{d("-5s"), time.Hour},
		{d("0s"), 0},
		{d("1h30m"), 90 * time.Minute},
		{d("250ms"), 250 * time.Millisecond},
	} {
		if got := c.in.Or(time.Hour); got != c.want {
			name := "nil"
			if c.in != nil {
				name = string(*c.in)
			}
			t.Errorf("Duration(%q).Or(1h) = %s, want %s", name, got, c.want)
		}
	}
	// A value field works through its address.
	a := Analysis{}
	if got := a.Interval.Or(DefaultAnalysisInterval); got != DefaultAnalysisInterval {
		t.Errorf("unset interval: %s", got)
	}
}
