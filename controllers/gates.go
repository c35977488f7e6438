package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelrollout/modelrollout/analysis"
	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// PrometheusGates evaluates a rollout's gates against Prometheus.
type PrometheusGates struct {
	// Secrets reads the auth Secrets and prompt ConfigMaps that rollouts
	// reference. It should not be the cached client, so that the operator
	// neither lists nor watches Secrets or ConfigMaps.
	Secrets client.Reader
	// Clients reuses one Prometheus client per distinct configuration.
	Clients *analysis.ClientCache
	// DefaultAddress is used by rollouts that name no Prometheus.
	DefaultAddress string
	// Metrics records gate results; optional.
	Metrics *Metrics
	// Egress decides which URLs web and prompt gates may call; nil refuses
	// everything outside the private ranges (egress.New(nil, nil)).
	Egress *egress.Policy
	// WebClients reuses one HTTP client per egress policy and CA bundle for
	// web gates; nil shares a process-wide cache.
	WebClients *analysis.WebClients
	// AmbientAWSCredentials lets a rollout's sigv4 sign with the operator's
	// own AWS credentials (the SDK's default chain: environment, web
	// identity, instance role) when its auth Secret has no access key. Off,
	// credentials come only from Secrets in the rollout's namespace.
	AmbientAWSCredentials bool
	// PrometheusEgressOff sends the Prometheus queries (and OAuth2 token
	// requests) of rollouts around the egress policy
	// (--egress-prometheus=false). By default they go through it, like
	// every other call a rollout's author chooses the address of.
	PrometheusEgressOff bool
	// MaxPrometheusResponseBytes bounds every Prometheus answer, after
	// decompression; 0 means analysis.DefaultMaxResponseBytes.
	MaxPrometheusResponseBytes int64
	// Templates reads the GateTemplates and ClusterGateTemplates that gates
	// reference: the manager's cached client. Secrets when nil.
	Templates client.Reader
	// PromptConcurrency bounds the prompt gate evaluations running at once,
	// PromptConcurrencyPerNamespace those of one namespace; the defaults
	// (DefaultPromptConcurrency, DefaultPromptConcurrencyPerNamespace) when
	// zero.
	PromptConcurrency             int
	PromptConcurrencyPerNamespace int
	// QueryTenancy is "namespace" to confine the PromQL a rollout writes
	// itself to the series of its namespace (--query-tenancy); "" or
	// "none" runs queries as written.
	QueryTenancy string

	promptSharesOnce sync.Once
	promptShares     *fairShare

	// promptClient is the egress policy's client for prompt gates, built
	// on first use.
	promptClientOnce sync.Once
	promptClient     *http.Client
	promptClientErr  error
}

// templates is the reader of gate templates.
func (g *PrometheusGates) templates() client.Reader {
	if g.Templates != nil {
		return g.Templates
	}
	return g.Secrets
}

// egressPolicy is the policy in force: the configured one, or the strictest.
func (g *PrometheusGates) egressPolicy() *egress.Policy {
	if g.Egress != nil {
		return g.Egress
	}
	return defaultEgress
}

var defaultEgress = egress.MustNew(nil, nil)

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

var _ GateEvaluator = (*PrometheusGates)(nil)

// vars are the template variables of the rollout at this moment.
func gateVars(ro *rolloutsv1.ModelRollout, now time.Time) analysis.Vars {
	v := analysis.Vars{
		Namespace: ro.Namespace,
		Rollout:   ro.Name,
		Stable:    ro.Spec.Stable.Name,
		Weight:    ro.Status.CanaryWeight,
		Interval:  plan.AnalysisInterval(ro.Spec.Analysis),
	}
	if len(ro.Spec.Routes) > 0 {
		v.Route = ro.Spec.Routes[0].Name
	}
	if ro.Spec.Stable.Port != nil {
		v.StablePort = *ro.Spec.Stable.Port
	}
	if c := ro.Spec.Canary; c != nil {
		v.Canary = c.Name
		if c.Port != nil {
			v.CanaryPort = *c.Port
		}
	}
	v.StepWindow = v.Interval
	if st := ro.Status.StepStartedAt; st != nil {
		if w := now.Sub(st.Time); w > v.StepWindow {
			v.StepWindow = w
		}
	}
	return v
}

// Validate renders and parses every gate and checks that Prometheus can be
// configured, so that nothing moves on a rollout that could never be judged.
func (g *PrometheusGates) Validate(ctx context.Context, ro *rolloutsv1.ModelRollout) (*plan.Problem, error) {
	resolved, err := resolveGates(ctx, g.templates(), ro)
	if p := firstProblem(resolved); err != nil || p != nil {
		return p, err
	}
	a := ro.Spec.Analysis.DeepCopy()
	for i := range resolved {
		a.Gates[i] = resolved[i].Gate
	}
	if err := analysis.ValidateGates(a, gateVars(ro, time.Now())); err != nil {
		return &plan.Problem{Reason: rolloutsv1.ReasonInvalidQuery, Message: plan.Truncate(err.Error(), 1024)}, nil
	}
	if p := g.validateTenancy(ro, resolved, gateVars(ro, time.Now())); p != nil {
		return p, nil
	}
	if p, err := g.validateWebAuth(ctx, ro, a); p != nil || err != nil {
		return p, err
	}
	if p, err := g.validatePrompts(ctx, ro, a); p != nil || err != nil {
		return p, err
	}
	if !queriesPrometheus(a) {
		return nil, nil
	}
	_, p, err := g.clientConfig(ctx, ro)
	return p, err
}

// queriesPrometheus says whether any gate of a is a PromQL gate. Every
// kind but web and prompt queries Prometheus.
func queriesPrometheus(a *rolloutsv1.Analysis) bool {
	if a == nil {
		return false
	}
	return slices.ContainsFunc(a.Gates, isPromQL)
}

// isPromQL says whether a (resolved) gate queries Prometheus.
func isPromQL(gate rolloutsv1.Gate) bool {
	return gate.Web == nil && gate.Prompt == nil
}

// clientConfig builds the Prometheus client settings of the rollout. A
// problem is one the user must fix (a missing Secret, missing keys, no
// permission, a certificate that does not parse); it is checked again every
// few seconds, since the operator does not watch Secrets. An error is
// transient (throttling, a timeout, the API server unavailable).
func (g *PrometheusGates) clientConfig(ctx context.Context, ro *rolloutsv1.ModelRollout) (analysis.ClientConfig, *plan.Problem, error) {
	cfg := analysis.ClientConfig{Address: g.DefaultAddress, MaxResponseBytes: g.MaxPrometheusResponseBytes}
	if !g.PrometheusEgressOff {
		cfg.DialContext = g.egressPolicy().DialContext
	}
	src := ro.Spec.Analysis.Prometheus
	if src != nil {
		cfg.Address = src.Address
		cfg.InsecureSkipVerify = src.InsecureSkipVerify
		cfg.ServerName = src.ServerName
		cfg.Timeout = src.Timeout.Or(rolloutsv1.DefaultPrometheusTimeout)
		for _, h := range src.Headers {
			if h.Value != nil {
				cfg.Headers = append(cfg.Headers, analysis.Header{Name: h.Name, Value: *h.Value})
			}
		}
		if o := src.OAuth2; o != nil {
			cfg.OAuth2 = &analysis.OAuth2{ClientID: o.ClientID, TokenURL: o.TokenURL, Scopes: o.Scopes, EndpointParams: o.EndpointParams}
		}
		if v := src.SigV4; v != nil {
			cfg.SigV4 = &analysis.SigV4{Region: v.Region, RoleARN: v.RoleARN, Service: v.Service}
		}
	}
	if cfg.Address == "" {
		return cfg, &plan.Problem{Reason: rolloutsv1.ReasonInvalidConfig,
			Message: "no Prometheus to query: set spec.analysis.prometheus.address, or start the operator with --prometheus-address"}, nil
	}
	if src == nil {
		return cfg, nil, nil
	}
	if src.AuthSecretRef == nil {
		if p := g.checkSigV4Credentials(cfg, ""); p != nil {
			return cfg, p, nil
		}
		if err := cfg.Validate(); err != nil {
			return cfg, &plan.Problem{Reason: rolloutsv1.ReasonInvalidConfig, Message: "spec.analysis.prometheus: " + err.Error()}, nil
		}
		return cfg, nil, nil
	}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: src.AuthSecretRef.Name}
	secret, refused, err := readAuthSecret(ctx, g.Secrets, key.Namespace, key.Name, "Prometheus auth Secret")
	switch {
	case err != nil:
		return cfg, nil, err
	case refused != "":
		return cfg, &plan.Problem{Reason: rolloutsv1.ReasonInvalidConfig, Unwatched: true, Message: refused}, nil
	}
	if msg := applyAuthSecret(&cfg, src, secret.Data); msg != "" {
		return cfg, &plan.Problem{Reason: rolloutsv1.ReasonInvalidConfig, Unwatched: true,
			Message: fmt.Sprintf("Prometheus auth Secret %s %s", key.Name, msg)}, nil
	}
	if p := g.checkSigV4Credentials(cfg, key.Name); p != nil {
		return cfg, p, nil
	}
	if err := cfg.Validate(); err != nil {
		return cfg, &plan.Problem{Reason: rolloutsv1.ReasonInvalidConfig, Unwatched: true,
			Message: fmt.Sprintf("Prometheus auth Secret %s: %s", key.Name, err)}, nil
	}
	return cfg, nil, nil
}

// Keys of the Prometheus auth Secret.
const (
	secretKeyToken        = "token"
	secretKeyUsername     = "username"
	secretKeyPassword     = "password"
	secretKeyCA           = "ca.crt"
	secretKeyTLSCert      = "tls.crt"
	secretKeyTLSKey       = "tls.key"
	secretKeyClientSecret = "client_secret"
	secretKeyAccessKey    = "access_key"
	secretKeySecretKey    = "secret_key"
)

// applyAuthSecret fills cfg's credentials from the auth Secret's data. It
// returns what is wrong with the Secret, to follow "Prometheus auth Secret
// <name> ", or "" when it fits the spec.
func applyAuthSecret(cfg *analysis.ClientConfig, src *rolloutsv1.PrometheusSource, data map[string][]byte) string {
	cfg.BearerToken = strings.TrimSpace(string(data[secretKeyToken]))
	cfg.Username = string(data[secretKeyUsername])
	cfg.Password = string(data[secretKeyPassword])
	cfg.CA = data[secretKeyCA]
	cfg.ClientCert = data[secretKeyTLSCert]
	cfg.ClientKey = data[secretKeyTLSKey]
	used := cfg.BearerToken != "" || cfg.Username != "" || cfg.CA != nil || cfg.ClientCert != nil || cfg.ClientKey != nil

	if cfg.BearerToken != "" && cfg.Username != "" {
		return `has both "token" and "username": keep one`
	}
	switch {
	case cfg.ClientCert != nil && cfg.ClientKey == nil:
		return `has "tls.crt" but no "tls.key": a client certificate needs its private key`
	case cfg.ClientCert == nil && cfg.ClientKey != nil:
		return `has "tls.key" but no "tls.crt": a client key needs its certificate`
	}
	for _, h := range src.Headers {
		if h.SecretKey == "" {
			continue
		}
		v, ok := data[h.SecretKey]
		if !ok {
			return fmt.Sprintf("has no key %q for header %s", h.SecretKey, h.Name)
		}
		cfg.Headers = append(cfg.Headers, analysis.Header{Name: h.Name, Value: strings.TrimSpace(string(v)), Secret: true})
		used = true
	}
	mode := ""
	switch {
	case cfg.OAuth2 != nil:
		mode = "oauth2"
		cs := strings.TrimSpace(string(data[secretKeyClientSecret]))
		if cs == "" {
			return `has no key "client_secret": spec.analysis.prometheus.oauth2 reads the client secret from it`
		}
		cfg.OAuth2.ClientSecret = cs
		used = true
	case cfg.SigV4 != nil:
		mode = "sigv4"
		cfg.SigV4.AccessKey = strings.TrimSpace(string(data[secretKeyAccessKey]))
		cfg.SigV4.SecretKey = strings.TrimSpace(string(data[secretKeySecretKey]))
		switch {
		case cfg.SigV4.AccessKey != "" && cfg.SigV4.SecretKey == "":
			return `has "access_key" but no "secret_key": sigv4 needs both`
		case cfg.SigV4.AccessKey == "" && cfg.SigV4.SecretKey != "":
			return `has "secret_key" but no "access_key": sigv4 needs both`
		}
		used = true
	}
	if mode != "" {
		for _, k := range []string{secretKeyToken, secretKeyUsername} {
			if len(data[k]) > 0 {
				return fmt.Sprintf("has %q but spec.analysis.prometheus sets %s: a query carries one Authorization header; remove one", k, mode)
			}
		}
	}
	if !used {
		return `has none of the keys "token", "username" and "password", "ca.crt", or "tls.crt" and "tls.key"`
	}
	return ""
}

// checkSigV4Credentials refuses sigv4 without an access key unless the
// operator allows its own AWS credentials. secret names the auth Secret, if
// any.
func (g *PrometheusGates) checkSigV4Credentials(cfg analysis.ClientConfig, secret string) *plan.Problem {
	if cfg.SigV4 == nil || cfg.SigV4.AccessKey != "" || g.AmbientAWSCredentials {
		return nil
	}
	where := "set spec.analysis.prometheus.authSecretRef to a Secret with keys \"access_key\" and \"secret_key\""
	if secret != "" {
		where = fmt.Sprintf("add keys \"access_key\" and \"secret_key\" to Prometheus auth Secret %s", secret)
	}
	return &plan.Problem{Reason: rolloutsv1.ReasonInvalidConfig, Unwatched: secret != "",
		Message: "sigv4 has no AWS access key: " + where + ", or start the operator with --prometheus-sigv4-ambient-credentials to sign with its own AWS identity"}
}

// Evaluate runs the gates due in this round once, in order, and accounts
// the results: before the first step (status.currentStepIndex unset) the
// pre-traffic gates, afterwards those that run at every step. The other
// gates keep their last status.
func (g *PrometheusGates) Evaluate(ctx context.Context, ro *rolloutsv1.ModelRollout, now time.Time) *plan.GateRound {
	a := ro.Spec.Analysis
	vars := gateVars(ro, now)
	round := &plan.GateRound{}
	preTraffic := ro.Status.CurrentStepIndex == nil
	runs := func(gate rolloutsv1.Gate) bool {
		if preTraffic {
			return gate.RunsPreTraffic()
		}
		return gate.RunsAtSteps()
	}

	resolved, resolveErr := resolveGates(ctx, g.templates(), ro)
	ra := a.DeepCopy()
	if resolveErr == nil {
		for i := range resolved {
			ra.Gates[i] = resolved[i].Gate
		}
	}

	var q analysis.Querier
	var clientErr error
	if slices.ContainsFunc(ra.Gates, func(gate rolloutsv1.Gate) bool { return isPromQL(gate) && runs(gate) }) {
		cfg, p, err := g.clientConfig(ctx, ro)
		switch {
		case err != nil:
			clientErr = err
		case p != nil:
			clientErr = fmt.Errorf("%s", p.Message)
		default:
			q, clientErr = g.Clients.Get(cfg)
		}
	}

	prev := map[string]rolloutsv1.GateStatus{}
	for _, gs := range ro.Status.Gates {
		prev[gs.Name] = gs
	}
	for i, gate := range ra.Gates {
		var ev analysis.Evaluation
		var sent, tenancy string
		var rg resolvedGate
		if resolveErr == nil {
			rg = resolved[i]
		}
		if rg.Problem == nil && !runs(gate) {
			if gs, ok := prev[gate.Name]; ok {
				round.Gates = append(round.Gates, gs)
			}
			continue
		}
		switch {
		case resolveErr != nil && gate.TemplateRef != nil:
			ev = analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: resolveErr.Error()}
		case rg.Problem != nil:
			ev = analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: rg.Problem.Message}
		case gate.Web != nil:
			ev = g.evaluateWeb(ctx, ro, gate, vars)
		case gate.Prompt != nil:
			ev = g.evaluatePrompt(ctx, ro, gate)
		default:
			ev, sent, tenancy = g.evaluateTenantPromQL(ctx, q, clientErr, ro, resolvedGate{Gate: gate, Template: rg.Template}, vars, now)
		}
		gs, outcome := analysis.Record(prev[gate.Name], gate, ev, ro.Status.CanaryWeight, a.InconclusiveLimit, now)
		gs.DryRun = gate.DryRun
		gs.Template, gs.TemplateGeneration = rg.Template, rg.Generation
		gs.Query, gs.Tenancy = sent, tenancy
		round.Gates = append(round.Gates, gs)
		if !errors.Is(ctx.Err(), context.Canceled) {
			// A cancelled round is superseded: its verdicts count nowhere.
			g.Metrics.observeGate(ro, gate, gs)
		}

		if gate.DryRun {
			if p := dryRunFailure(gate, gs, outcome, a.InconclusiveLimit); p != nil {
				round.DryRun = append(round.DryRun, *p)
			}
			continue
		}
		switch outcome {
		case analysis.OutcomeFail:
			if round.Rollback == nil {
				round.Rollback = &plan.Problem{Reason: rolloutsv1.ReasonGateFailed, Message: gateFailure(gate, gs)}
			}
		case analysis.OutcomeInconclusiveLimit:
			if round.Rollback == nil {
				round.Rollback = &plan.Problem{Reason: rolloutsv1.ReasonInconclusive,
					Message: fmt.Sprintf("gate %q had no verdict in %d evaluations in a row (inconclusiveLimit %d): %s", gate.Name, gs.ConsecutiveInconclusive, a.InconclusiveLimit, gs.Message)}
			}
		case analysis.OutcomeHold:
			if round.Holding == nil {
				reason := rolloutsv1.ReasonGateNoData
				switch gs.Verdict {
				case rolloutsv1.VerdictError:
					reason = rolloutsv1.ReasonPrometheusError
					if !isPromQL(gate) {
						reason = rolloutsv1.ReasonGateError
					}
				case rolloutsv1.VerdictFail:
					reason = rolloutsv1.ReasonGateFailed
				}
				round.Holding = &plan.Problem{Reason: reason, Message: fmt.Sprintf("gate %q holds the step: %s", gate.Name, gs.Message)}
			}
		}
	}
	return round
}

// dryRunFailure is the rollback a dry-run gate would have caused, reported
// once when the gate crosses its limit (not again while it stays failed).
func dryRunFailure(gate rolloutsv1.Gate, gs rolloutsv1.GateStatus, outcome analysis.Outcome, inconclusiveLimit int32) *plan.Problem {
	switch {
	case outcome == analysis.OutcomeFail && gs.ConsecutiveFailures == failureLimit(gate):
		return &plan.Problem{Reason: rolloutsv1.ReasonGateFailed, Message: gateFailure(gate, gs)}
	case outcome == analysis.OutcomeInconclusiveLimit && gs.ConsecutiveInconclusive == inconclusiveLimit:
		return &plan.Problem{Reason: rolloutsv1.ReasonInconclusive,
			Message: fmt.Sprintf("gate %q had no verdict in %d evaluations in a row (inconclusiveLimit %d): %s", gate.Name, gs.ConsecutiveInconclusive, inconclusiveLimit, gs.Message)}
	}
	return nil
}

// evaluatePromQL renders a PromQL gate and queries it through q, or
// reports why it cannot (a rendering error, or clientErr).
func evaluatePromQL(ctx context.Context, q analysis.Querier, clientErr error, gate rolloutsv1.Gate, vars analysis.Vars, now time.Time) analysis.Evaluation {
	rendered, err := analysis.RenderGate(gate, vars)
	switch {
	case err != nil:
		return analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: err.Error()}
	case clientErr != nil:
		return analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: clientErr.Error()}
	}
	return analysis.EvaluateGate(ctx, q, gate, rendered, now)
}

func failureLimit(g rolloutsv1.Gate) int32 {
	return analysis.EffectivePolicy(g.GateSpec, nil).FailureLimit
}

// gateFailure names the gate, its value and its threshold.
func gateFailure(g rolloutsv1.Gate, gs rolloutsv1.GateStatus) string {
	value := gs.Value
	if value == "" {
		value = string(gs.Verdict)
	}
	msg := fmt.Sprintf("gate %q value %s outside %s", g.Name, value, gs.Threshold)
	if n := failureLimit(g); n > 1 {
		msg += fmt.Sprintf(" (%d failures in a row, failureLimit %d)", gs.ConsecutiveFailures, n)
	}
	if g.Prompt != nil {
		// Which prompts failed, and how.
		msg += ": " + gs.Message
	}
	return msg
}
