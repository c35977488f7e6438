package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/modelrollout/modelrollout/analysis"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Query tenancy (PrometheusGates.QueryTenancy, --query-tenancy): with
// "namespace", the PromQL a rollout writes itself (inline gates and
// namespaced GateTemplates) reads only the series of the rollout's
// namespace; see analysis.EnforceNamespace. Presets and ClusterGateTemplates
// are written by cluster admins and run as written. The gate's status says
// which applied and, when enforced, shows the query as sent.

// Notes in GateStatus.tenancy.
const (
	tenancyExemptPreset  = "exempt: preset"
	tenancyExemptCluster = "exempt: cluster template"
)

// maxStatusQuery bounds GateStatus.query (the CRD's maxLength).
const maxStatusQuery = 8192

// tenancyOf says how query tenancy applies to a resolved gate: the
// namespace to enforce ("" for none) and the note for its status ("" when
// tenancy is off or the gate does not query Prometheus).
func (g *PrometheusGates) tenancyOf(ro *rolloutsv1.ModelRollout, rg resolvedGate) (namespace, note string) {
	if g.QueryTenancy != analysis.QueryTenancyNamespace || !isPromQL(rg.Gate) {
		return "", ""
	}
	switch {
	case strings.HasPrefix(rg.Template, string(rolloutsv1.GateTemplateKindCluster)+"/"):
		return "", tenancyExemptCluster
	case rg.Gate.Preset != "":
		return "", tenancyExemptPreset
	}
	return ro.Namespace, fmt.Sprintf("enforced: namespace=%q", ro.Namespace)
}

// validateTenancy refuses, before any traffic moves, a gate whose query
// reads outside the rollout's namespace.
func (g *PrometheusGates) validateTenancy(ro *rolloutsv1.ModelRollout, resolved []resolvedGate, vars analysis.Vars) *plan.Problem {
	for _, rg := range resolved {
		ns, _ := g.tenancyOf(ro, rg)
		if ns == "" {
			continue
		}
		r, err := analysis.RenderGate(rg.Gate, vars) // its errors name the gate
		if err == nil {
			if _, err = analysis.EnforceGateNamespace(r, ns); err != nil {
				err = fmt.Errorf("%s: %w", tenancyGate(rg), err)
			}
		}
		if err != nil {
			return &plan.Problem{Reason: rolloutsv1.ReasonInvalidConfig, Message: plan.Truncate(err.Error(), 1024)}
		}
	}
	return nil
}

// tenancyGate names a gate in a refusal with the template its query comes
// from, as the argument errors do: `gate "errors" (GateTemplate/quality)`.
// The query is not in the rollout, so the message says where to fix it.
func tenancyGate(rg resolvedGate) string {
	if rg.Template == "" {
		return fmt.Sprintf("gate %q", rg.Name)
	}
	return fmt.Sprintf("gate %q (%s)", rg.Name, rg.Template)
}

// evaluateTenantPromQL is evaluatePromQL under query tenancy: the query as
// sent and the tenancy note come back for the gate's status.
func (g *PrometheusGates) evaluateTenantPromQL(ctx context.Context, q analysis.Querier, clientErr error, ro *rolloutsv1.ModelRollout, rg resolvedGate,
	vars analysis.Vars, now time.Time) (ev analysis.Evaluation, sent, note string) {
	ns, note := g.tenancyOf(ro, rg)
	if ns == "" {
		return evaluatePromQL(ctx, q, clientErr, rg.Gate, vars, now), "", note
	}
	r, err := analysis.RenderGate(rg.Gate, vars)
	if err == nil {
		r, err = analysis.EnforceGateNamespace(r, ns)
		if err != nil {
			err = fmt.Errorf("%s: %w", tenancyGate(rg), err)
		}
	}
	switch {
	case err != nil:
		return analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: err.Error()}, "", note
	case clientErr != nil:
		return analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: clientErr.Error()}, statusQuery(r.Query), note
	}
	return analysis.EvaluateGate(ctx, q, rg.Gate, r, now), statusQuery(r.Query), note
}

// statusQuery bounds a query for GateStatus.query.
func statusQuery(q string) string {
	if len(q) <= maxStatusQuery {
		return q
	}
	return plan.Truncate(q, maxStatusQuery)
}
