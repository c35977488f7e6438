package controllers

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelrollout/modelrollout/analysis"
	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
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

	// promptClient is the egress policy's client for prompt gates, built
	// on first use.
	promptClientOnce sync.Once
	promptClient     *http.Client
	promptClientErr  error
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
		Interval:  analysisInterval(ro.Spec.Analysis),
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
// Prompt gates are checked by validatePrompts: their prompts parse and they
// have somewhere to send them.
func (g *PrometheusGates) Validate(ctx context.Context, ro *rolloutsv1.ModelRollout) (*problem, error) {
	promql := promQLGates(ro.Spec.Analysis)
	if err := analysis.ValidateGates(promql, gateVars(ro, time.Now())); err != nil {
		return &problem{Reason: rolloutsv1.ReasonInvalidQuery, Message: truncate(err.Error(), 1024)}, nil
	}
	if p, err := g.validatePrompts(ctx, ro); p != nil || err != nil {
		return p, err
	}
	if promql == nil {
		return nil, nil // no gate queries Prometheus
	}
	_, p, err := g.clientConfig(ctx, ro)
	return p, err
}

// promQLGates is the analysis with its PromQL gates only (preset or query),
// or nil when it has none.
func promQLGates(a *rolloutsv1.Analysis) *rolloutsv1.Analysis {
	if a == nil {
		return nil
	}
	out := *a
	out.Gates = nil
	for _, gate := range a.Gates {
		if gate.Prompt == nil {
			out.Gates = append(out.Gates, gate)
		}
	}
	if len(out.Gates) == 0 {
		return nil
	}
	return &out
}

// clientConfig builds the Prometheus client settings of the rollout. A
// problem is one the user must fix (a missing Secret, missing keys, no
// permission); it is checked again every few seconds, since the operator
// does not watch Secrets. An error is transient (throttling, a timeout, the
// API server unavailable).
func (g *PrometheusGates) clientConfig(ctx context.Context, ro *rolloutsv1.ModelRollout) (analysis.ClientConfig, *problem, error) {
	cfg := analysis.ClientConfig{Address: g.DefaultAddress}
	src := ro.Spec.Analysis.Prometheus
	if src != nil {
		cfg.Address = src.Address
		cfg.InsecureSkipVerify = src.InsecureSkipVerify
		if src.Timeout != "" {
			if d, err := src.Timeout.Parse(); err == nil {
				cfg.Timeout = d
			}
		}
	}
	if cfg.Address == "" {
		return cfg, &problem{Reason: rolloutsv1.ReasonInvalidConfig,
			Message: "no Prometheus to query: set spec.analysis.prometheus.address, or start the operator with --prometheus-address"}, nil
	}
	if src == nil || src.AuthSecretRef == nil {
		return cfg, nil, nil
	}
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: src.AuthSecretRef.Name}
	if err := g.Secrets.Get(ctx, key, secret); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return cfg, &problem{Reason: rolloutsv1.ReasonInvalidConfig, Unwatched: true,
				Message: fmt.Sprintf("Prometheus auth Secret %s not found in namespace %s", key.Name, key.Namespace)}, nil
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			return cfg, &problem{Reason: rolloutsv1.ReasonInvalidConfig, Unwatched: true,
				Message: fmt.Sprintf("read Prometheus auth Secret %s: %s", key.Name, apiMessage(err))}, nil
		}
		return cfg, nil, fmt.Errorf("read Prometheus auth Secret %s: %w", key, err)
	}
	cfg.BearerToken = strings.TrimSpace(string(secret.Data["token"]))
	cfg.Username = string(secret.Data["username"])
	cfg.Password = string(secret.Data["password"])
	cfg.CA = secret.Data["ca.crt"]
	if cfg.BearerToken == "" && cfg.Username == "" && cfg.CA == nil {
		return cfg, &problem{Reason: rolloutsv1.ReasonInvalidConfig, Unwatched: true,
			Message: fmt.Sprintf(`Prometheus auth Secret %s has none of the keys "token", "username" and "password", or "ca.crt"`, key.Name)}, nil
	}
	if cfg.BearerToken != "" && cfg.Username != "" {
		return cfg, &problem{Reason: rolloutsv1.ReasonInvalidConfig, Unwatched: true,
			Message: fmt.Sprintf(`Prometheus auth Secret %s has both "token" and "username": keep one`, key.Name)}, nil
	}
	return cfg, nil, nil
}

// Evaluate runs the gates due in this round once, in order, and accounts
// the results: before the first step (status.currentStepIndex unset) the
// pre-traffic gates, afterwards those that run at every step. The other
// gates keep their last status.
func (g *PrometheusGates) Evaluate(ctx context.Context, ro *rolloutsv1.ModelRollout, now time.Time) *gateRound {
	a := ro.Spec.Analysis
	vars := gateVars(ro, now)
	round := &gateRound{}
	preTraffic := ro.Status.CurrentStepIndex == nil
	runs := func(gate rolloutsv1.Gate) bool {
		if preTraffic {
			return gate.RunsPreTraffic()
		}
		return gate.RunsAtSteps()
	}

	var q analysis.Querier
	var clientErr error
	if slices.ContainsFunc(a.Gates, func(gate rolloutsv1.Gate) bool { return gate.Prompt == nil && runs(gate) }) {
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
	for _, gate := range a.Gates {
		if !runs(gate) {
			if gs, ok := prev[gate.Name]; ok {
				round.Gates = append(round.Gates, gs)
			}
			continue
		}
		var ev analysis.Evaluation
		switch {
		case gate.Prompt != nil:
			ev = g.evaluatePrompt(ctx, ro, gate)
		default:
			rendered, err := analysis.RenderGate(gate, vars)
			switch {
			case err != nil:
				ev = analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: err.Error()}
			case clientErr != nil:
				ev = analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: clientErr.Error()}
			default:
				ev = analysis.EvaluateGate(ctx, q, gate, rendered, now)
			}
		}
		gs, outcome := analysis.Record(prev[gate.Name], gate, ev, ro.Status.CanaryWeight, a.InconclusiveLimit, now)
		round.Gates = append(round.Gates, gs)
		g.Metrics.observeGate(ro, gs)

		switch outcome {
		case analysis.OutcomeFail:
			if round.Rollback == nil {
				round.Rollback = &problem{Reason: rolloutsv1.ReasonGateFailed, Message: gateFailure(gate, gs)}
			}
		case analysis.OutcomeInconclusiveLimit:
			if round.Rollback == nil {
				round.Rollback = &problem{Reason: rolloutsv1.ReasonInconclusive,
					Message: fmt.Sprintf("gate %q had no verdict in %d evaluations in a row (inconclusiveLimit %d): %s", gate.Name, gs.ConsecutiveInconclusive, a.InconclusiveLimit, gs.Message)}
			}
		case analysis.OutcomeHold:
			if round.Holding == nil {
				reason := rolloutsv1.ReasonGateNoData
				switch {
				case gs.Verdict == rolloutsv1.VerdictError && gate.Prompt != nil:
					reason = rolloutsv1.ReasonGateError
				case gs.Verdict == rolloutsv1.VerdictError:
					reason = rolloutsv1.ReasonPrometheusError
				case gs.Verdict == rolloutsv1.VerdictFail:
					reason = rolloutsv1.ReasonGateFailed
				}
				round.Holding = &problem{Reason: reason, Message: fmt.Sprintf("gate %q holds the step: %s", gate.Name, gs.Message)}
			}
		}
	}
	return round
}

func failureLimit(g rolloutsv1.Gate) int32 {
	if g.FailureLimit < 1 {
		return 1
	}
	return g.FailureLimit
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
