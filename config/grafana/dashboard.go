// Package grafana holds the operator's Grafana dashboard (modelrollout.json)
// and reads its queries, for the tests that check them: every query parses
// as PromQL, and every metric it names is exported by a running operator.
// The Helm chart carries a copy of the JSON (templates/grafana-dashboard.yaml),
// kept in sync by test/install.
package grafana

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// JSON is the dashboard, as Grafana imports it.
//
//go:embed modelrollout.json
var JSON []byte

// Query is one PromQL expression of the dashboard.
type Query struct {
	// Where names the panel and target, or the template variable.
	Where string
	// Expr is the expression with Grafana's variables in it.
	Expr string
}

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// labelValues is Grafana's label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// Queries returns every PromQL expression of the dashboard: the panels'
// targets, and the selectors of the query variables' label_values().
func Queries(dashboardJSON []byte) ([]Query, error) {
	var d dashboard
	if err := json.Unmarshal(dashboardJSON, &d); err != nil {
		return nil, err
	}
	var out []Query
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, Query{Where: fmt.Sprintf("panel %q target %s", p.Title, t.RefID), Expr: t.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				return nil, fmt.Errorf("variable %s: query is neither a string nor an object", v.Name)
			}
		}
		m := labelValues.FindStringSubmatch(strings.TrimSpace(q.Query))
		if m == nil {
			return nil, fmt.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
		}
		out = append(out, Query{Where: "variable " + v.Name, Expr: m[1]})
	}
	return out, nil
}

// Substitute replaces Grafana's variables with values, the way Grafana
// does before it sends a query: $name and ${name}, longest names first.
func Substitute(expr string, values map[string]string) string {
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	// Longest first, so that $__rate_interval is not read as $__rate.
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if len(names[j]) > len(names[i]) {
				names[i], names[j] = names[j], names[i]
			}
		}
	}
	for _, n := range names {
		expr = strings.ReplaceAll(expr, "${"+n+"}", values[n])
		expr = strings.ReplaceAll(expr, "$"+n, values[n])
	}
	return expr
}

// Variables are values for the variables the dashboard and Grafana define,
// for parsing the queries.
func Variables(namespace, rollout string) map[string]string {
	return map[string]string{
		"namespace":       namespace,
		"rollout":         rollout,
		"datasource":      "prometheus",
		"__rate_interval": "1m",
		"__interval":      "30s",
		"__range":         "6h",
		"__range_s":       "21600",
		"__interval_ms":   "30000",
		"__dashboard":     "ModelRollout",
		"__org":           "1",
	}
}

// Parse substitutes the variables and parses the expression.
func Parse(expr string, values map[string]string) (parser.Expr, error) {
	if s := Substitute(expr, values); strings.Contains(s, "$") {
		return nil, fmt.Errorf("unknown variable left in %q", s)
	}
	return parser.NewParser(parser.Options{}).ParseExpr(Substitute(expr, values))
}

// Metrics returns the metric names an expression selects.
func Metrics(e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
			if name != "" {
				out = append(out, name)
			}
		}
		return nil
	})
	return out
}
