package controllers

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/modelrollout/modelrollout/analysis"
	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Prompt gates send their prompts straight to the canary backend: by
// default its Service, http://<canary>.<namespace>.svc:<port><path>, or the
// gate's url when set (an operator outside the cluster, an InferencePool
// canary). Every call goes through the operator's egress policy.

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// promptClientTimeout bounds a prompt request at the transport; the
// gate's own timeouts (maxLatency, timeout) are shorter and end it first.
const promptClientTimeout = 10 * time.Minute

// promptHTTP returns the egress policy's client for prompt gates.
func (g *PrometheusGates) promptHTTP() (*http.Client, error) {
	g.promptClientOnce.Do(func() {
		g.promptClient, g.promptClientErr = g.egressPolicy().Client(egress.Options{Timeout: promptClientTimeout})
	})
	return g.promptClient, g.promptClientErr
}

// validatePrompts checks every prompt gate before any traffic moves: its
// prompts parse (reading the ConfigMap when they come from one) and it has
// somewhere to send them.
func (g *PrometheusGates) validatePrompts(ctx context.Context, ro *rolloutsv1.ModelRollout, a *rolloutsv1.Analysis) (*plan.Problem, error) {
	if a == nil {
		return nil, nil
	}
	for _, gate := range a.Gates {
		if gate.Prompt == nil {
			continue
		}
		if _, p, err := g.gatePrompts(ctx, ro, gate); p != nil || err != nil {
			return p, err
		}
		if _, _, err := promptTargets(ro, gate); err != nil {
			return &plan.Problem{Reason: rolloutsv1.ReasonInvalidConfig, Message: plan.Truncate(fmt.Sprintf("gate %q: %v", gate.Name, err), 1024)}, nil
		}
	}
	return nil, nil
}

// gatePrompts returns the gate's prompts, from its spec or its ConfigMap.
// A problem is one the user must fix (an invalid prompt, a missing
// ConfigMap or key); an error is transient.
func (g *PrometheusGates) gatePrompts(ctx context.Context, ro *rolloutsv1.ModelRollout, gate rolloutsv1.Gate) ([]analysis.PromptCheck, *plan.Problem, error) {
	pg := gate.Prompt
	invalid := func(format string, args ...any) *plan.Problem {
		return &plan.Problem{Reason: rolloutsv1.ReasonInvalidConfig, Unwatched: pg.PromptsFrom != nil,
			Message: plan.Truncate(fmt.Sprintf("gate %q: ", gate.Name)+fmt.Sprintf(format, args...), 1024)}
	}
	if pg.PromptsFrom == nil {
		prompts, err := analysis.ParsePrompts(pg.Prompts)
		if err != nil {
			return nil, invalid("%v", err), nil
		}
		return prompts, nil, nil
	}
	ref := pg.PromptsFrom
	cm := &corev1.ConfigMap{}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ref.Name}
	if err := g.Secrets.Get(ctx, key, cm); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return nil, invalid("prompts ConfigMap %s not found in namespace %s", key.Name, key.Namespace), nil
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			return nil, invalid("read prompts ConfigMap %s: %s", key.Name, apiMessage(err)), nil
		}
		return nil, nil, fmt.Errorf("read prompts ConfigMap %s: %w", key, err)
	}
	data, ok := cm.Data[ref.Key]
	if !ok {
		return nil, invalid("prompts ConfigMap %s has no key %q", key.Name, ref.Key), nil
	}
	prompts, err := analysis.ParsePromptList([]byte(data))
	if err != nil {
		return nil, invalid("prompts ConfigMap %s key %q: %v", key.Name, ref.Key, err), nil
	}
	return prompts, nil, nil
}

// promptTargets returns where the gate sends its prompts: the canary, and
// the stable backend when compareStable is set ("" otherwise).
func promptTargets(ro *rolloutsv1.ModelRollout, gate rolloutsv1.Gate) (canary, stable string, err error) {
	pg := gate.Prompt
	path := pg.Path
	if path == "" {
		path = "/v1/chat/completions"
		if pg.API == rolloutsv1.PromptAPICompletions {
			path = "/v1/completions"
		}
	}
	target := func(override, field string, b *rolloutsv1.BackendRef, role string) (string, error) {
		if override != "" {
			u, err := url.Parse(override)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return "", fmt.Errorf("prompt.%s %q is not an http:// or https:// URL", field, override)
			}
			return strings.TrimRight(override, "/") + path, nil
		}
		if b == nil {
			return "", fmt.Errorf("no %s backend to send the prompts to", role)
		}
		if b.KindOrDefault() != rolloutsv1.BackendKindService {
			return "", fmt.Errorf("the %s is %s, not a Service: set prompt.%s to the address of its model server", role, b.String(), field)
		}
		if b.Port == nil {
			return "", fmt.Errorf("the %s Service %s has no port in spec: set its port, or prompt.%s", role, b.Name, field)
		}
		return fmt.Sprintf("http://%s.%s.svc:%d%s", b.Name, ro.Namespace, *b.Port, path), nil
	}
	if canary, err = target(pg.URL, "url", ro.Spec.Canary, "canary"); err != nil {
		return "", "", err
	}
	if pg.CompareStable {
		stableRef := ro.Spec.Stable
		if stable, err = target(pg.StableURL, "stableURL", &stableRef, "stable"); err != nil {
			return "", "", err
		}
	}
	return canary, stable, nil
}

// evaluatePrompt runs a prompt gate once: every prompt to the canary, and
// to stable with compareStable, at the same time.
func (g *PrometheusGates) evaluatePrompt(ctx context.Context, ro *rolloutsv1.ModelRollout, gate rolloutsv1.Gate) analysis.Evaluation {
	fail := func(msg string) analysis.Evaluation {
		return analysis.Evaluation{Verdict: rolloutsv1.VerdictError, Message: msg}
	}
	prompts, p, err := g.gatePrompts(ctx, ro, gate)
	switch {
	case err != nil:
		return fail(err.Error())
	case p != nil:
		return fail(p.Message)
	}
	canaryURL, stableURL, err := promptTargets(ro, gate)
	if err != nil {
		return fail(err.Error())
	}
	c, err := g.promptHTTP()
	if err != nil {
		return fail("prompt client: " + err.Error())
	}
	release, ok := g.promptSlot(ctx, ro.Namespace)
	if !ok {
		return fail("no prompt gate slot free before the gate round's timeout (--prompt-concurrency)")
	}
	defer release()
	pg := gate.Prompt
	timeout := pg.Timeout.Or(rolloutsv1.DefaultPromptTimeout)
	if timeout <= 0 {
		timeout = rolloutsv1.DefaultPromptTimeout
	}
	run := func(u string) analysis.PromptRun {
		return analysis.RunPrompts(ctx, c, analysis.PromptTarget{URL: u, API: pg.API, Model: pg.Model}, prompts, int(pg.Concurrency), timeout)
	}
	var stable *analysis.PromptRun
	var wg sync.WaitGroup
	if stableURL != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := run(stableURL)
			stable = &r
		}()
	}
	canary := run(canaryURL)
	wg.Wait()

	// Counts and times only: answers are never logged.
	kv := []any{"rollout", ro.Namespace + "/" + ro.Name, "gate", gate.Name, "prompts", canary.Total, "sent", canary.Sent,
		"passed", canary.Passed, "took", canary.Took.Round(time.Millisecond)}
	if stable != nil {
		kv = append(kv, "stableSent", stable.Sent, "stablePassed", stable.Passed, "stableTook", stable.Took.Round(time.Millisecond))
	}
	log.FromContext(ctx).V(1).Info("Prompt gate evaluated", kv...)
	return analysis.PromptOutcome(gate, canary, stable)
}
