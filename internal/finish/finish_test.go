package finish

import (
	"encoding/json"
	"testing"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

func TestRoute(t *testing.T) {
	var route map[string]any
	if err := json.Unmarshal([]byte(`{"metadata":{"name":"r","namespace":"ai"},"spec":{"rules":[
		{"name":"gpt4","matches":[{"headers":[{"name":"x-model-id","value":"gpt-4"}]}],
		 "backendRefs":[{"name":"v1","port":8000,"weight":100},{"name":"v2","port":8000,"weight":0},{"name":"v1","port":9000}]},
		{"name":"health","backendRefs":[{"name":"v1","port":8000}]},
		{"name":"other","backendRefs":[{"name":"v1","port":8000},{"name":"v2","port":8000}]}]}}`), &route); err != nil {
		t.Fatal(err)
	}
	port := int32(8000)
	out, changes := Route(route, []rolloutsv1.RuleName{"gpt4"}, rolloutsv1.BackendRef{Name: "v1", Port: &port}, rolloutsv1.BackendRef{Name: "v2", Port: &port})
	got, _ := json.Marshal(out["spec"])
	want := `{"rules":[{"backendRefs":[{"name":"v2","port":8000,"weight":100},{"name":"v1","port":9000}],"matches":[{"headers":[{"name":"x-model-id","value":"gpt-4"}]}],"name":"gpt4"},` +
		`{"backendRefs":[{"name":"v1","port":8000}],"name":"health"},{"backendRefs":[{"name":"v1","port":8000},{"name":"v2","port":8000}],"name":"other"}]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if len(changes) != 2 {
		t.Errorf("changes: %q", changes)
	}
	// The input is not changed.
	if refs := route["spec"].(map[string]any)["rules"].([]any)[0].(map[string]any)["backendRefs"].([]any); len(refs) != 3 {
		t.Errorf("the input route was changed")
	}
}
