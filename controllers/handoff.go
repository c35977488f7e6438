package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Workload handoff (spec.stable.workloadRef, spec.canary.workloadRef): the
// decision schedules actions in status.workloads (plan), the reconciler
// carries out those that are due through the scale subresource before the
// next decision (runHandoffs), and the decision folds the results. The
// operator never changes a workload's spec: it reads the workload, writes
// one annotation on it and patches its scale. RBAC for that is opt-in
// (config/rbac/workload-handoff), so a missing permission is a condition,
// never a failure of the rollout.

// runHandoffs carries out the workload actions an earlier decision
// scheduled in status.workloads and the planner finds due (plan.DueWorkloads),
// for the next decision to fold their results.
func (r *ModelRolloutReconciler) runHandoffs(ctx context.Context, ro *rolloutsv1.ModelRollout, now time.Time) []plan.HandoffResult {
	var out []plan.HandoffResult
	for _, a := range plan.DueWorkloads(ro, now) {
		out = append(out, r.runHandoff(ctx, ro.Namespace, a))
	}
	return out
}

func (r *ModelRolloutReconciler) reader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

func (r *ModelRolloutReconciler) runHandoff(ctx context.Context, ns string, a rolloutsv1.WorkloadAction) plan.HandoffResult {
	res := plan.HandoffResult{Action: a}
	w := a.WorkloadRef
	fail := func(verb string, err error) plan.HandoffResult {
		switch {
		case apierrors.IsForbidden(err):
			res.Problem = &plan.Problem{Reason: rolloutsv1.ReasonWorkloadHandoffForbidden, Message: fmt.Sprintf(
				"the operator may not %s it (%s). Workload handoff needs the opt-in RBAC: apply config/rbac/workload-handoff, or set workloadHandoff.enabled=true in the Helm chart", verb, apiMessage(err))}
		case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
			res.Problem = &plan.Problem{Reason: rolloutsv1.ReasonWorkloadNotFound, Message: fmt.Sprintf("%s: %s", verb, apiMessage(err))}
		default:
			res.Problem = &plan.Problem{Reason: rolloutsv1.ReasonWorkloadHandoffFailed, Message: fmt.Sprintf("%s: %s", verb, apiMessage(err))}
		}
		return res
	}
	mapping, err := r.RESTMapper().RESTMapping(schema.GroupKind{Group: w.Group, Kind: w.Kind})
	if err != nil {
		return fail("find the kind of", err)
	}
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(mapping.GroupVersionKind)
	if err := r.reader().Get(ctx, types.NamespacedName{Namespace: ns, Name: w.Name}, obj); err != nil {
		return fail("read", err)
	}
	scale := newScale()
	if err := r.SubResource("scale").Get(ctx, obj, scale); err != nil {
		return fail("read the scale of", err)
	}
	replicas, _, _ := unstructured.NestedInt64(scale.Object, "spec", "replicas")
	recorded := obj.GetAnnotations()[rolloutsv1.AnnotationReplicasBeforeScaleDown]

	setScale := func(n int64) error {
		body, _ := json.Marshal(map[string]any{"spec": map[string]any{"replicas": n}})
		return r.SubResource("scale").Patch(ctx, obj.DeepCopy(), client.RawPatch(types.MergePatchType, body),
			client.WithSubResourceBody(newScale()), client.FieldOwner(FieldOwner))
	}
	annotate := func(v *string) error {
		body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]*string{rolloutsv1.AnnotationReplicasBeforeScaleDown: v}}})
		return r.Patch(ctx, obj.DeepCopy(), client.RawPatch(types.MergePatchType, body), client.FieldOwner(FieldOwner))
	}

	switch a.Action {
	case rolloutsv1.WorkloadScaleDown:
		if replicas == 0 {
			res.Done, res.Note = true, "already at 0 replicas"
			return res
		}
		// The count first: a crash before the scale write repeats both.
		if v := strconv.FormatInt(replicas, 10); recorded != v {
			if err := annotate(&v); err != nil {
				return fail("annotate", err)
			}
		}
		if err := setScale(0); err != nil {
			return fail("scale", err)
		}
		res.Done, res.Replicas = true, int32(replicas)
	case rolloutsv1.WorkloadRestore:
		if recorded == "" {
			res.Done, res.Note = true, "no replicas recorded in "+rolloutsv1.AnnotationReplicasBeforeScaleDown+"; left as it is"
			return res
		}
		n, err := strconv.ParseInt(recorded, 10, 32)
		if err != nil || n < 0 {
			res.Done, res.Note = true, fmt.Sprintf("annotation %s=%q is not a replica count; left as it is", rolloutsv1.AnnotationReplicasBeforeScaleDown, recorded)
			return res
		}
		if replicas != n {
			if err := setScale(n); err != nil {
				return fail("scale", err)
			}
		}
		if err := annotate(nil); err != nil {
			return fail("annotate", err)
		}
		res.Done, res.Replicas = true, int32(n)
	}
	return res
}

func newScale() *unstructured.Unstructured {
	s := &unstructured.Unstructured{}
	s.SetGroupVersionKind(schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"})
	return s
}
