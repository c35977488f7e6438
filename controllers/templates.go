package controllers

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelrollout/modelrollout/analysis"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Gate templates: a gate with a templateRef takes its body from a
// GateTemplate in the rollout's namespace or from a ClusterGateTemplate.
// The templates are read from the cache every time the gates are validated
// or evaluated, so an edit takes effect at the next evaluation; the
// template's name and generation go into the gate's status.

// +kubebuilder:rbac:groups=rollouts.modelrollout.io,resources=gatetemplates;clustergatetemplates,verbs=get;list;watch

// indexGateTemplate indexes rollouts by the templates their gates
// reference, as Kind/name (GateTemplateRef.String()).
const indexGateTemplate = "spec.analysis.gates.templateRef"

// gateTemplateKeys are the index values of a rollout: the templates its
// gates reference.
func gateTemplateKeys(o client.Object) []string {
	ro := o.(*rolloutsv1.ModelRollout)
	if ro.Spec.Analysis == nil {
		return nil
	}
	var keys []string
	for _, g := range ro.Spec.Analysis.Gates {
		if g.TemplateRef != nil && !slices.Contains(keys, g.TemplateRef.String()) {
			keys = append(keys, g.TemplateRef.String())
		}
	}
	return keys
}

// templateKey is the index value that names a watched template.
func templateKey(kind rolloutsv1.GateTemplateKind) func(client.Object) string {
	return func(o client.Object) string {
		return rolloutsv1.GateTemplateRef{Kind: kind, Name: o.GetName()}.String()
	}
}

// resolvedGate is a gate as it is evaluated: an inline gate as written, or
// a gate with a templateRef whose body comes from the template.
type resolvedGate struct {
	rolloutsv1.Gate
	// Template is the template used, as Kind/name; empty for an inline gate.
	Template string
	// Generation is the template's metadata.generation when it was read.
	Generation int64
	// Problem is why the gate could not be resolved: the template is
	// missing, or the arguments do not fit it.
	Problem *plan.Problem
}

// resolveGates resolves every gate of the rollout. A problem of one gate
// is in its Problem; an error is transient (the cache could not be read).
func resolveGates(ctx context.Context, c client.Reader, ro *rolloutsv1.ModelRollout) ([]resolvedGate, error) {
	if ro.Spec.Analysis == nil {
		return nil, nil
	}
	out := make([]resolvedGate, 0, len(ro.Spec.Analysis.Gates))
	for _, g := range ro.Spec.Analysis.Gates {
		if g.TemplateRef == nil {
			out = append(out, resolvedGate{Gate: g})
			continue
		}
		ref := *g.TemplateRef
		rg := resolvedGate{Gate: g, Template: ref.String()}
		spec, gen, p, err := readTemplate(ctx, c, ro.Namespace, ref)
		switch {
		case err != nil:
			return nil, fmt.Errorf("gate %q: %w", g.Name, err)
		case p != nil:
			rg.Problem = p
		default:
			rg.Generation = gen
			resolved, err := resolveGate(g, spec)
			if err != nil {
				rg.Problem = &plan.Problem{Reason: rolloutsv1.ReasonInvalidGateArgs, Message: err.Error()}
			} else {
				rg.Gate = resolved
			}
		}
		out = append(out, rg)
	}
	return out, nil
}

// firstProblem is the first gate that could not be resolved, if any.
func firstProblem(gates []resolvedGate) *plan.Problem {
	for _, g := range gates {
		if g.Problem != nil {
			return g.Problem
		}
	}
	return nil
}

// readTemplate reads a template's spec and generation.
func readTemplate(ctx context.Context, c client.Reader, namespace string, ref rolloutsv1.GateTemplateRef) (*rolloutsv1.GateTemplateSpec, int64, *plan.Problem, error) {
	var (
		obj   client.Object
		spec  *rolloutsv1.GateTemplateSpec
		key   = types.NamespacedName{Name: ref.Name}
		where string
	)
	switch ref.KindOrDefault() {
	case rolloutsv1.GateTemplateKindCluster:
		t := &rolloutsv1.ClusterGateTemplate{}
		obj, spec = t, &t.Spec
	default:
		t := &rolloutsv1.GateTemplate{}
		obj, spec, key.Namespace = t, &t.Spec, namespace
		where = " in namespace " + namespace
	}
	err := c.Get(ctx, key, obj)
	switch {
	case err == nil:
		return spec, obj.GetGeneration(), nil, nil
	case apierrors.IsNotFound(err):
		return nil, 0, &plan.Problem{Reason: rolloutsv1.ReasonGateTemplateNotFound,
			Message: fmt.Sprintf("%s not found%s; the rollout goes on once it exists", ref, where)}, nil
	case apierrors.IsForbidden(err):
		return nil, 0, &plan.Problem{Reason: rolloutsv1.ReasonGateTemplateNotFound, Unwatched: true,
			Message: fmt.Sprintf("read %s: %s (the operator's role needs get, list and watch on gatetemplates and clustergatetemplates)", ref, apiMessage(err))}, nil
	case meta.IsNoMatchError(err):
		return nil, 0, &plan.Problem{Reason: rolloutsv1.ReasonGateTemplateNotFound, Unwatched: true,
			Message: fmt.Sprintf("%s: the %s CRD is not installed", ref, ref.KindOrDefault())}, nil
	}
	return nil, 0, nil, fmt.Errorf("read %s: %w", ref, err)
}

// argRefRE finds the arguments a template uses: {{ .Args.name }}.
var argRefRE = regexp.MustCompile(`\.Args\.([A-Za-z_][A-Za-z0-9_]*)`)

// resolveGate makes the gate that is evaluated from a gate with a
// templateRef and its template: the template's body; the gate's min and
// max instead of the template's when it sets either (both together, as a
// range); its minRequests when set; noData and failureLimit as
// analysis.EffectivePolicy resolves them; and args holding every
// declared argument, the template's default where the gate passes none.
// It is pure: an error names the gate, the template and what to change.
func resolveGate(g rolloutsv1.Gate, t *rolloutsv1.GateTemplateSpec) (rolloutsv1.Gate, error) {
	ref := g.TemplateRef.String()
	declared := make([]string, 0, len(t.Args))
	for _, a := range t.Args {
		declared = append(declared, string(a.Name))
	}
	known := func() string {
		if len(declared) == 0 {
			return "it declares none"
		}
		return "it declares " + strings.Join(declared, ", ")
	}

	given := map[string]string{}
	var problems []string
	for _, a := range g.Args {
		if !slices.Contains(declared, string(a.Name)) {
			problems = append(problems, fmt.Sprintf("unknown argument %q (%s)", a.Name, known()))
			continue
		}
		given[string(a.Name)] = a.Value
	}
	args := make([]rolloutsv1.GateArg, 0, len(t.Args))
	for _, a := range t.Args {
		v, ok := given[string(a.Name)]
		switch {
		case ok:
		case a.Default != nil:
			v = *a.Default
		default:
			msg := fmt.Sprintf("missing required argument %q", a.Name)
			if a.Description != "" {
				msg += " (" + a.Description + ")"
			}
			problems = append(problems, msg)
			continue
		}
		args = append(args, rolloutsv1.GateArg{Name: a.Name, Value: v})
	}
	body := t.Gate.DeepCopy()
	for _, tmpl := range []string{body.Query, body.Selector, body.RequestsQuery} {
		for _, m := range argRefRE.FindAllStringSubmatch(tmpl, -1) {
			if !slices.Contains(declared, m[1]) {
				problems = append(problems, fmt.Sprintf("the template uses {{ .Args.%s }} but does not declare it in spec.args", m[1]))
			}
		}
	}

	if g.Min != nil || g.Max != nil {
		body.Min, body.Max = g.Min, g.Max
	}
	if g.MinRequests != nil {
		body.MinRequests = g.MinRequests
	}
	pol := analysis.EffectivePolicy(g.GateSpec, &t.Gate)
	body.NoData, body.FailureLimit = pol.NoData, pol.FailureLimit
	if body.Min == nil && body.Max == nil {
		problems = append(problems, "neither the gate nor the template sets min or max")
	}
	if len(problems) > 0 {
		return g, fmt.Errorf("gate %q (%s): %s", g.Name, ref, strings.Join(slices.Compact(problems), "; "))
	}
	return rolloutsv1.Gate{Name: g.Name, TemplateRef: g.TemplateRef, Args: args, DryRun: g.DryRun,
		PreTraffic: g.PreTraffic, EveryStep: g.EveryStep, GateSpec: *body}, nil
}
