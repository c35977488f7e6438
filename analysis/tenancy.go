package analysis

import (
	"errors"
	"fmt"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Query tenancy: with the operator's --query-tenancy=namespace, the queries
// a rollout writes itself (inline gates and namespaced GateTemplates) see
// only the series of the rollout's namespace. Every series selector gets
// the matcher namespace="<namespace>", through the PromQL parser, the way
// prom-label-proxy enforces a label. Presets and ClusterGateTemplates are
// written by cluster admins and are exempt.

// Query tenancy modes.
const (
	// QueryTenancyNone runs queries as written.
	QueryTenancyNone = "none"
	// QueryTenancyNamespace confines a rollout's own queries to the series
	// of its namespace.
	QueryTenancyNamespace = "namespace"
)

// TenancyLabel is the label that names a series' namespace.
const TenancyLabel = "namespace"

// ErrTenancy marks a query that reads outside the rollout's namespace.
var ErrTenancy = errors.New("query tenancy")

// EnforceNamespace returns q with namespace="<namespace>" added to every
// series selector. A selector that already matches that namespace exactly
// is kept; one that names another namespace, or matches namespaces by
// regular expression or negation, is refused with an error wrapping
// ErrTenancy.
func EnforceNamespace(q, namespace string) (string, error) {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		return "", fmt.Errorf("parse error: %w", err)
	}
	var refused error
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok || refused != nil {
			return nil
		}
		found := false
		for _, m := range vs.LabelMatchers {
			if m.Name != TenancyLabel {
				continue
			}
			switch {
			case m.Type != labels.MatchEqual:
				refused = fmt.Errorf("%w: selector %s matches namespaces with %s %q; with --query-tenancy=namespace a rollout's queries read only its own namespace %q: drop the namespace matcher, the operator adds namespace=%q",
					ErrTenancy, vs.String(), m.Type, m.Value, namespace, namespace)
			case m.Value != namespace:
				refused = fmt.Errorf("%w: selector %s names namespace %q; with --query-tenancy=namespace a rollout's queries read only its own namespace %q",
					ErrTenancy, vs.String(), m.Value, namespace)
			}
			found = true
		}
		if refused == nil && !found {
			vs.LabelMatchers = append(vs.LabelMatchers, labels.MustNewMatcher(labels.MatchEqual, TenancyLabel, namespace))
		}
		return nil
	})
	if refused != nil {
		return "", refused
	}
	return expr.String(), nil
}

// EnforceGateNamespace applies EnforceNamespace to both queries of a
// rendered PromQL gate.
func EnforceGateNamespace(r RenderedGate, namespace string) (RenderedGate, error) {
	q, err := EnforceNamespace(r.Query, namespace)
	if err != nil {
		return r, err
	}
	r.Query = q
	if r.RequestsQuery != "" {
		rq, err := EnforceNamespace(r.RequestsQuery, namespace)
		if err != nil {
			return r, fmt.Errorf("requestsQuery: %w", err)
		}
		r.RequestsQuery = rq
	}
	return r, nil
}
