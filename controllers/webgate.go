package controllers

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/modelrollout/modelrollout/analysis"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// defaultWebClients serves PrometheusGates without WebClients of their own.
var defaultWebClients = analysis.NewWebClients(64)

func (g *PrometheusGates) webClients() *analysis.WebClients {
	if g.WebClients != nil {
		return g.WebClients
	}
	return defaultWebClients
}

// evaluateWeb calls a web gate's endpoint once through the egress policy.
// Whatever stops the call (a template, the Secret, the policy, the
// endpoint) is the gate's Error verdict.
func (g *PrometheusGates) evaluateWeb(ctx context.Context, ro *rolloutsv1.ModelRollout, gate rolloutsv1.Gate, vars analysis.Vars) analysis.Evaluation {
	req, err := analysis.RenderWeb(gate, vars)
	if err != nil {
		return analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: err.Error()}
	}
	auth, ca, p, err := g.webAuth(ctx, ro, gate)
	switch {
	case err != nil:
		return analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: err.Error()}
	case p != nil:
		return analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: p.Message}
	}
	client, err := g.webClients().Get(g.egressPolicy(), ca)
	if err != nil {
		return analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: fmt.Sprintf("gate %q: web.authSecretRef: %v", gate.Name, err)}
	}
	return analysis.EvaluateWeb(ctx, client, gate, req, auth)
}

// validateWebAuth checks the Secret of every web gate that names one, so a
// missing Secret or key stalls the rollout before traffic moves.
func (g *PrometheusGates) validateWebAuth(ctx context.Context, ro *rolloutsv1.ModelRollout, a *rolloutsv1.Analysis) (*plan.Problem, error) {
	if a == nil {
		return nil, nil
	}
	for _, gate := range a.Gates {
		if gate.Web == nil || gate.Web.AuthSecretRef == nil {
			continue
		}
		if _, _, p, err := g.webAuth(ctx, ro, gate); p != nil || err != nil {
			return p, err
		}
	}
	return nil, nil
}

// webAuth reads a web gate's credentials and CA bundle from its Secret in
// the rollout's namespace. A problem is one the user must fix; an error is
// transient.
func (g *PrometheusGates) webAuth(ctx context.Context, ro *rolloutsv1.ModelRollout, gate rolloutsv1.Gate) (analysis.WebAuth, []byte, *plan.Problem, error) {
	var auth analysis.WebAuth
	ref := gate.Web.AuthSecretRef
	if ref == nil {
		return auth, nil, nil, nil
	}
	invalid := func(format string, args ...any) *plan.Problem {
		return &plan.Problem{Reason: rolloutsv1.ReasonInvalidConfig, Unwatched: true,
			Message: fmt.Sprintf("gate %q: ", gate.Name) + fmt.Sprintf(format, args...)}
	}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ref.Name}
	secret, refused, err := readAuthSecret(ctx, g.Secrets, key.Namespace, key.Name, "web auth Secret")
	switch {
	case err != nil:
		return auth, nil, nil, err
	case refused != "":
		return auth, nil, invalid("%s", refused), nil
	}
	auth.BearerToken = strings.TrimSpace(string(secret.Data["token"]))
	auth.Username = string(secret.Data["username"])
	auth.Password = string(secret.Data["password"])
	ca := secret.Data["ca.crt"]
	switch {
	case auth.BearerToken == "" && auth.Username == "" && len(ca) == 0:
		return auth, nil, invalid(`web auth Secret %s has none of the keys "token", "username" and "password", or "ca.crt"`, key.Name), nil
	case auth.BearerToken != "" && auth.Username != "":
		return auth, nil, invalid(`web auth Secret %s has both "token" and "username": keep one`, key.Name), nil
	case auth.Username == "" && auth.Password != "":
		return auth, nil, invalid(`web auth Secret %s has "password" without "username"`, key.Name), nil
	case len(ca) > 0 && !x509.NewCertPool().AppendCertsFromPEM(ca):
		return auth, nil, invalid(`web auth Secret %s: "ca.crt" holds no PEM certificate`, key.Name), nil
	}
	return auth, ca, nil, nil
}
