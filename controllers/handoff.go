package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Workload handoff (spec.stable.workloadRef, spec.canary.workloadRef): the
// decision schedules actions in status.workloads (plan), the reconciler
// carries out those that are due through the scale subresource before the
// next decision (runHandoffs), and the decision folds the results. The
// operator never changes a workload's spec: it reads the workload, writes
// one annotation on it and patches its scale. RBAC for that is opt-in
// (config/rbac/workload-handoff), so a missing permission is a condition,
// never a failure of the rollout.

// handoffRetry is how soon a handoff that failed is tried again.
const handoffRetry = 30 * time.Second

// handoffResult is what the reconciler did for a due action.
type handoffResult struct {
	Action rolloutsv1.WorkloadAction
	// Done is set when the action is complete (or had nothing to do).
	Done bool
	// Replicas is the count recorded (ScaleDown) or restored (Restore).
	Replicas int32
	// Note says why nothing was done, when so.
	Note    string
	Problem *problem
}

func sameWorkload(a, b *rolloutsv1.WorkloadRef) bool {
	return a != nil && b != nil && a.Group == b.Group && a.Kind == b.Kind && a.Name == b.Name
}

func workloadString(w rolloutsv1.WorkloadRef) string {
	gk := w.Kind
	if w.Group != "" {
		gk += "." + w.Group
	}
	return gk + "/" + w.Name
}

// workloadOf is the workload of a backend of this rollout: spec's when spec
// still names the backend (workloadRef may have been added since the
// start), else the copy in status.
func workloadOf(spec *rolloutsv1.ModelRolloutSpec, b *rolloutsv1.BackendRef) *rolloutsv1.WorkloadRef {
	if b == nil {
		return nil
	}
	if sameRef(spec.Stable, *b) && spec.Stable.WorkloadRef != nil {
		return spec.Stable.WorkloadRef
	}
	if spec.Canary != nil && sameRef(*spec.Canary, *b) && spec.Canary.WorkloadRef != nil {
		return spec.Canary.WorkloadRef
	}
	return b.WorkloadRef
}

// handoffSafe says whether an action may run. A scale-down never hits a
// workload that may get traffic: the workload of spec.stable only while the
// rollout is Succeeded (its canary holds all traffic, and without
// spec.allowStableSwing nothing sends traffic back to it until the finish
// names another stable), the workload of spec.canary only while the rollout
// is RolledBack.
func handoffSafe(ro *rolloutsv1.ModelRollout, phase rolloutsv1.Phase, a rolloutsv1.WorkloadAction) bool {
	if a.Action != rolloutsv1.WorkloadScaleDown {
		return true
	}
	if sameWorkload(ro.Spec.Stable.WorkloadRef, &a.WorkloadRef) && (phase != rolloutsv1.PhaseSucceeded || ro.Spec.AllowStableSwing) {
		return false
	}
	if ro.Spec.Canary != nil && sameWorkload(ro.Spec.Canary.WorkloadRef, &a.WorkloadRef) && phase != rolloutsv1.PhaseRolledBack {
		return false
	}
	return true
}

func (p *planner) scaleDownDelay() time.Duration {
	return p.ro.Spec.ScaleDownDelay.Or(rolloutsv1.DefaultScaleDownDelay)
}

func (p *planner) schedule(a rolloutsv1.WorkloadAction) {
	st := p.st
	st.Workloads = slices.DeleteFunc(st.Workloads, func(o rolloutsv1.WorkloadAction) bool {
		return sameWorkload(&o.WorkloadRef, &a.WorkloadRef)
	})
	st.Workloads = append(st.Workloads, a)
	if n := len(st.Workloads); n > 8 {
		st.Workloads = st.Workloads[n-8:]
	}
}

// handoff schedules the workload actions of this decision's transition,
// folds the results of the actions the reconciler ran, drops actions that
// became unsafe, and asks to come back when the next one is due.
func (p *planner) handoff() {
	st := p.st
	spec := &p.ro.Spec
	before, after := p.ro.Status.Phase, st.Phase
	now := p.now()
	due := metav1.NewTime(p.obs.Now.Add(p.scaleDownDelay()))
	switch {
	case after == rolloutsv1.PhaseSucceeded && before != rolloutsv1.PhaseSucceeded:
		old, canary := workloadOf(spec, st.Stable), workloadOf(spec, st.Canary)
		if old != nil && !sameWorkload(old, canary) {
			p.schedule(rolloutsv1.WorkloadAction{WorkloadRef: *old, Action: rolloutsv1.WorkloadScaleDown, At: due,
				Why: "old stable " + st.Stable.Name + " after success"})
		}
	case after == rolloutsv1.PhaseRolledBack && before != rolloutsv1.PhaseRolledBack:
		canary, stable := workloadOf(spec, st.Canary), workloadOf(spec, st.Stable)
		if canary != nil && !sameWorkload(canary, stable) {
			p.schedule(rolloutsv1.WorkloadAction{WorkloadRef: *canary, Action: rolloutsv1.WorkloadScaleDown, At: due,
				Why: "failed canary " + st.Canary.Name + " after rollback"})
		}
	case before == rolloutsv1.PhaseRolledBack && after != rolloutsv1.PhaseRolledBack &&
		st.Revision != "" && st.Revision == p.ro.Status.Revision:
		// A retry: the canary gets its replicas back at once.
		if canary := workloadOf(spec, st.Canary); canary != nil {
			p.schedule(rolloutsv1.WorkloadAction{WorkloadRef: *canary, Action: rolloutsv1.WorkloadRestore, At: now,
				Why: "canary " + st.Canary.Name + " retried"})
		}
	}

	var trouble *handoffResult
	for _, res := range p.obs.Handoff {
		i := slices.IndexFunc(st.Workloads, func(a rolloutsv1.WorkloadAction) bool {
			return sameWorkload(&a.WorkloadRef, &res.Action.WorkloadRef) && a.Action == res.Action.Action
		})
		if i < 0 {
			continue
		}
		switch {
		case res.Done:
			st.Workloads = slices.Delete(st.Workloads, i, i+1)
			w := workloadString(res.Action.WorkloadRef)
			switch {
			case res.Note != "":
				p.emit(false, "WorkloadHandoff", "%s (%s): %s", w, res.Action.Why, res.Note)
			case res.Action.Action == rolloutsv1.WorkloadScaleDown:
				p.emit(false, "WorkloadScaledDown", "Scaled %s (%s) from %d replicas to 0; %s records %d", w, res.Action.Why, res.Replicas, rolloutsv1.AnnotationReplicasBeforeScaleDown, res.Replicas)
			default:
				p.emit(false, "WorkloadRestored", "Restored %s (%s) to %d replicas", w, res.Action.Why, res.Replicas)
			}
		case res.Problem != nil && trouble == nil:
			trouble = &res
		}
	}
	st.Workloads = slices.DeleteFunc(st.Workloads, func(a rolloutsv1.WorkloadAction) bool { return !handoffSafe(p.ro, st.Phase, a) })
	if len(st.Workloads) == 0 {
		st.Workloads = nil
	}

	if trouble != nil {
		msg := fmt.Sprintf("%s of %s (%s) not done: %s", trouble.Action.Action, workloadString(trouble.Action.WorkloadRef), trouble.Action.Why, trouble.Problem.Message)
		if c := meta.FindStatusCondition(st.Conditions, rolloutsv1.ConditionWorkloadHandoff); c == nil || c.Message != truncate(msg, 32768) {
			p.emit(true, trouble.Problem.Reason, "%s", msg)
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: rolloutsv1.ConditionWorkloadHandoff, Status: metav1.ConditionFalse,
			Reason: trouble.Problem.Reason, Message: truncate(msg, 32768), ObservedGeneration: p.ro.Generation})
		p.requeue(handoffRetry)
	} else if len(p.obs.Handoff) > 0 || len(st.Workloads) == 0 {
		meta.RemoveStatusCondition(&st.Conditions, rolloutsv1.ConditionWorkloadHandoff)
	}
	for _, a := range st.Workloads {
		// A due action that failed is retried after handoffRetry, not
		// at once.
		if a.At.After(p.obs.Now) || trouble == nil {
			p.requeue(a.At.Sub(p.obs.Now))
		}
	}
}

// runHandoffs carries out the due, safe actions of status.workloads.
func (r *ModelRolloutReconciler) runHandoffs(ctx context.Context, ro *rolloutsv1.ModelRollout, now time.Time) []handoffResult {
	var out []handoffResult
	for _, a := range ro.Status.Workloads {
		if a.At.After(now) || !handoffSafe(ro, ro.Status.Phase, a) {
			continue
		}
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

func (r *ModelRolloutReconciler) runHandoff(ctx context.Context, ns string, a rolloutsv1.WorkloadAction) handoffResult {
	res := handoffResult{Action: a}
	w := a.WorkloadRef
	fail := func(verb string, err error) handoffResult {
		switch {
		case apierrors.IsForbidden(err):
			res.Problem = &problem{Reason: rolloutsv1.ReasonWorkloadHandoffForbidden, Message: fmt.Sprintf(
				"the operator may not %s it (%s). Workload handoff needs the opt-in RBAC: apply config/rbac/workload-handoff, or set workloadHandoff.enabled=true in the Helm chart", verb, apiMessage(err))}
		case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
			res.Problem = &problem{Reason: rolloutsv1.ReasonWorkloadNotFound, Message: fmt.Sprintf("%s: %s", verb, apiMessage(err))}
		default:
			res.Problem = &problem{Reason: rolloutsv1.ReasonWorkloadHandoffFailed, Message: fmt.Sprintf("%s: %s", verb, apiMessage(err))}
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
