package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestInferencePoolRefused(t *testing.T) {
	parent := func(conds ...any) map[string]any {
		return map[string]any{"parentRef": map[string]any{"name": "gw"}, "conditions": conds}
	}
	cond := func(typ, status, reason, msg string) map[string]any {
		return map[string]any{"type": typ, "status": status, "reason": reason, "message": msg}
	}
	cases := []struct {
		name   string
		status any
		want   string
	}{
		{"no status: no gateway has reported yet", nil, ""},
		{"accepted and resolved", map[string]any{"parents": []any{parent(cond("Accepted", "True", "Accepted", ""), cond("ResolvedRefs", "True", "ResolvedRefs", ""))}}, ""},
		{"unknown is not a refusal", map[string]any{"parents": []any{parent(cond("Accepted", "Unknown", "Pending", ""))}}, ""},
		{"other condition types are not read", map[string]any{"parents": []any{parent(cond("Programmed", "False", "Pending", ""))}}, ""},
		{"not accepted", map[string]any{"parents": []any{parent(cond("Accepted", "False", "NotSupportedByGateway", ""))}},
			"is not usable: parent gw reports Accepted=False (NotSupportedByGateway)"},
		{"second parent refuses", map[string]any{"parents": []any{
			parent(cond("Accepted", "True", "Accepted", "")),
			parent(cond("ResolvedRefs", "False", "InvalidExtensionRef", "no epp")),
		}}, "is not usable: parent gw reports ResolvedRefs=False (InvalidExtensionRef): no epp"},
		{"malformed parents are skipped, never a panic", map[string]any{"parents": []any{"x", int64(3), map[string]any{"conditions": []any{"y", nil}}}}, ""},
		{"parents of the wrong type", map[string]any{"parents": "nope"}, ""},
		{"status of the wrong type", "nope", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pool := &unstructured.Unstructured{Object: map[string]any{"kind": "InferencePool"}}
			if c.status != nil {
				pool.Object["status"] = c.status
			}
			if got := inferencePoolRefused(pool); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}
