package grafana

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

func TestEveryQueryParses(t *testing.T) {
	qs, err := Queries(JSON)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 10 {
		t.Fatalf("only %d queries found", len(qs))
	}
	// One rollout picked, and "All" (Grafana's allValue .*).
	for _, vars := range []map[string]string{Variables("ai-gateway", "gpt4"), Variables(".*", ".*")} {
		for _, q := range qs {
			e, err := Parse(q.Expr, vars)
			if err != nil {
				t.Errorf("%s: %q does not parse: %v", q.Where, q.Expr, err)
				continue
			}
			if len(Metrics(e)) == 0 {
				t.Errorf("%s: %q selects no metric", q.Where, q.Expr)
			}
		}
	}
}

func TestParseRejectsLeftoverVariables(t *testing.T) {
	if _, err := Parse(`up{job="$nope"}`, Variables("a", "b")); err == nil {
		t.Error("an unknown variable was accepted")
	}
	if _, err := Parse(`sum(rate(x[$__rate_interval])`, Variables("a", "b")); err == nil {
		t.Error("an unbalanced expression parsed")
	}
}

// The rollout series are filtered by the namespace and rollout variables,
// so that picking a rollout narrows every per-rollout panel.
func TestRolloutSeriesFollowTheVariables(t *testing.T) {
	qs, err := Queries(JSON)
	if err != nil {
		t.Fatal(err)
	}
	const ns, ro = "sentinel-ns", "sentinel-rollout"
	for _, q := range qs {
		if strings.HasPrefix(q.Where, "variable") {
			continue
		}
		e, err := Parse(q.Expr, Variables(ns, ro))
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok || !strings.HasPrefix(vs.Name, "modelrollout_") || strings.HasPrefix(vs.Name, "modelrollout_alerts_") {
				return nil
			}
			// The right side of "unless on (namespace, name)" only removes
			// series the left side already filtered.
			for _, p := range path {
				if b, ok := p.(*parser.BinaryExpr); ok && b.Op == parser.LUNLESS && b.RHS == n {
					return nil
				}
			}
			has := func(label, value string) bool {
				for _, m := range vs.LabelMatchers {
					if m.Name == label && m.Type == labels.MatchRegexp && m.Value == value {
						return true
					}
				}
				return false
			}
			if !has("namespace", ns) || !has("name", ro) {
				t.Errorf("%s: %s is not filtered by namespace=~\"$namespace\" and name=~\"$rollout\"", q.Where, vs)
			}
			return nil
		})
	}
}

func TestPanelsAndVariables(t *testing.T) {
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title       string `json:"title"`
			Description string `json:"description"`
			Datasource  struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []json.RawMessage `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Multi bool   `json:"multi"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(JSON, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" {
		t.Error("the dashboard has no uid: each import would make a new copy")
	}
	titles := map[string]bool{}
	for _, p := range d.Panels {
		titles[p.Title] = true
		if p.Description == "" {
			t.Errorf("panel %q has no description", p.Title)
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q uses datasource %q, not the dashboard's ${datasource} variable", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	for _, want := range []string{"Rollouts by phase", "Canary weight", "Gate values against their thresholds", "Rollbacks by reason",
		"Alert receipts", "Reconciles and errors", "Reconcile latency", "Step lag"} {
		if !titles[want] {
			t.Errorf("no panel %q", want)
		}
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Multi
	}
	for _, want := range []string{"namespace", "rollout"} {
		if multi, ok := vars[want]; !ok || !multi {
			t.Errorf("template variable %s missing or not multi-value", want)
		}
	}
}
