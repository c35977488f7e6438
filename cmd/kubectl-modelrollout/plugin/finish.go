package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/finish"
)

// FinishOptions are the options of finish.
type FinishOptions struct {
	ActionOptions
	// Print writes the Git change (the rollout and its routes as Git
	// should hold them after the finish) instead of applying it.
	Print bool
}

// checkFinish refuses a rollout whose canary does not hold all traffic.
func checkFinish(ro *rolloutsv1.ModelRollout) error {
	if rolloutsv1.ActionFinish.AllowedIn(effectivePhase(ro)) && ro.Status.Canary != nil && ro.Status.CanaryWeight == 100 {
		return nil
	}
	msg := phaseNote(ro) + "; only a Succeeded rollout (its canary holds 100%) can be finished"
	if effectivePhase(ro) == rolloutsv1.PhaseRolledBack {
		msg += fmt.Sprintf(" (to start again at step 1: kubectl modelrollout retry %s -n %s)", ro.Name, ro.Namespace)
	}
	return failf("%s", msg)
}

// Finish ends a Succeeded rollout: spec.stable becomes the canary and
// spec.canary is removed. The operator then removes the old stable's
// backendRef from the managed rules and goes Idle. With Print it writes
// the same change, for Git, instead.
func (p *Plugin) Finish(ctx context.Context, name string, o FinishOptions) error {
	if o.Print {
		return p.printFinish(ctx, name)
	}
	for attempt := 0; ; attempt++ {
		ro, err := p.get(ctx, name)
		if err != nil {
			return err
		}
		if err := checkFinish(ro); err != nil {
			return err
		}
		patch := map[string]any{
			"metadata": map[string]any{"resourceVersion": ro.ResourceVersion},
			"spec":     map[string]any{"stable": ro.Spec.Canary, "canary": nil},
		}
		data, err := json.Marshal(patch)
		if err != nil {
			return err
		}
		err = p.Client.MergePatch(ctx, ro, data)
		if apierrors.IsConflict(err) && attempt < 5 {
			continue
		}
		if err != nil {
			return p.apiError(err, p.Namespace, name)
		}
		fmt.Fprintf(p.Out, "modelrollout %q finished: spec.stable is now %s and spec.canary is removed; the operator removes the old stable's backendRef from the managed rules\n", name, ro.Spec.Stable.String())
		if !o.Wait {
			return nil
		}
		return p.waitIdle(ctx, name, o.ActionOptions)
	}
}

// waitIdle waits until the controller has seen the finished spec and the
// rollout is Idle.
func (p *Plugin) waitIdle(ctx context.Context, name string, o ActionOptions) error {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	deadline := time.Now().Add(timeout)
	for {
		ro, err := p.get(ctx, name)
		if err != nil {
			return err
		}
		if ro.Status.ObservedGeneration == ro.Generation && ro.Status.Phase == rolloutsv1.PhaseIdle {
			fmt.Fprintf(p.Out, "modelrollout %q is Idle: %s is the stable backend\n", name, ro.Spec.Stable.String())
			return nil
		}
		if time.Now().After(deadline) {
			return failf("timed out after %s waiting for %s to be Idle; it is %s: %s", timeout, name, ro.Status.Phase, ro.Status.Message)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// operatorAnnotations are written by the operator or by kubectl, never kept
// in Git.
var operatorAnnotations = []string{
	rolloutsv1.AnnotationRuleOwners, rolloutsv1.AnnotationAppliedWeights,
	"kubectl.kubernetes.io/last-applied-configuration",
}

// printFinish writes the rollout and each of its routes as Git should hold
// them after the finish, as a multi-document YAML stream.
func (p *Plugin) printFinish(ctx context.Context, name string) error {
	ro, err := p.get(ctx, name)
	if err != nil {
		return err
	}
	if err := checkFinish(ro); err != nil {
		return err
	}
	spec := ro.Spec.DeepCopy()
	oldStable := spec.Stable
	spec.Stable = *spec.Canary
	spec.Canary = nil
	header := fmt.Sprintf("# The Git change that finishes ModelRollout %s/%s: stable %s (was %s), no canary,\n# and the old stable's backendRef removed from the managed rules.\n", ro.Namespace, ro.Name, spec.Stable.String(), oldStable.String())
	out, err := yaml.Marshal(map[string]any{
		"apiVersion": rolloutsv1.GroupVersion.String(),
		"kind":       "ModelRollout",
		"metadata":   cleanMeta(ro.Name, ro.Namespace, ro.Labels, ro.Annotations),
		"spec":       spec,
	})
	if err != nil {
		return err
	}
	docs := []string{header + string(out)}
	for _, t := range ro.Spec.Routes {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(httpRouteGVK)
		if err := p.Client.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: t.Name}, u); err != nil {
			return p.apiError(err, ro.Namespace, t.Name)
		}
		route, changes := finish.Route(u.Object, t.Rules, oldStable, spec.Stable)
		route["metadata"] = cleanMeta(u.GetName(), u.GetNamespace(), u.GetLabels(), u.GetAnnotations())
		delete(route, "status")
		body, err := yaml.Marshal(route)
		if err != nil {
			return err
		}
		note := "no change"
		if len(changes) > 0 {
			note = strings.Join(changes, "; ")
		}
		docs = append(docs, fmt.Sprintf("# HTTPRoute %s: %s\n%s", t.Name, note, body))
	}
	_, err = fmt.Fprint(p.Out, strings.Join(docs, "---\n"))
	return err
}

// cleanMeta is the metadata a Git manifest holds: name, namespace, labels
// and the annotations neither the operator nor kubectl writes.
func cleanMeta(name, namespace string, labels, annotations map[string]string) map[string]any {
	m := map[string]any{"name": name, "namespace": namespace}
	if len(labels) > 0 {
		m["labels"] = labels
	}
	kept := map[string]string{}
	for k, v := range annotations {
		if strings.HasPrefix(k, "rollouts.modelrollout.io/") || contains(operatorAnnotations, k) {
			continue
		}
		kept[k] = v
	}
	if len(kept) > 0 {
		m["annotations"] = kept
	}
	return m
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
