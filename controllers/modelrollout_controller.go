package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// FieldOwner is the field manager of every write the controller makes.
const FieldOwner = "modelrollout-controller"

// Field indexes.
const (
	indexRoute                = "spec.routes.name"
	indexBackend              = "spec.backends.name"
	indexEndpointSliceService = "metadata.labels.service-name"
)

// GateEvaluator validates a rollout's gates and evaluates them.
type GateEvaluator interface {
	// Validate reports a gate that cannot be rendered or parsed, or
	// Prometheus settings that cannot be used, before any traffic moves.
	Validate(ctx context.Context, ro *rolloutsv1.ModelRollout) *problem
	// Evaluate runs every gate once and accounts the results.
	Evaluate(ctx context.Context, ro *rolloutsv1.ModelRollout, now time.Time) *gateRound
}

// ModelRolloutReconciler walks HTTPRoute weights through a ModelRollout's
// steps.
type ModelRolloutReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// Clock is the time source; the real clock when nil.
	Clock clock.PassiveClock
	// Gates evaluates analysis gates; rollouts with gates wait when nil.
	Gates GateEvaluator
	// Metrics records the operator's series; optional.
	Metrics *Metrics
	// MaxConcurrentReconciles is the number of workers; 4 when zero.
	MaxConcurrentReconciles int
}

// +kubebuilder:rbac:groups=rollouts.modelrollout.io,resources=modelrollouts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=rollouts.modelrollout.io,resources=modelrollouts/status,verbs=get;patch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=inference.networking.k8s.io;inference.networking.x-k8s.io,resources=inferencepools,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile observes one rollout's routes, canary and gates, decides its next
// status, writes the status, then holds the routes at the decided weights.
func (r *ModelRolloutReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)

	ro := &rolloutsv1.ModelRollout{}
	if err := r.Get(ctx, req.NamespacedName, ro); err != nil {
		if apierrors.IsNotFound(err) {
			r.Metrics.forget(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ro.DeletionTimestamp.IsZero() {
		// Deleting a rollout leaves the routes as they are.
		return ctrl.Result{}, nil
	}

	now := r.now()
	obs := observation{Now: now, Requests: readRequests(ro)}
	routes, routeProblem, err := r.observeRoutes(ctx, ro)
	if err != nil {
		return ctrl.Result{}, err
	}
	obs.Routes = routeProblem
	if ro.Spec.Canary != nil {
		for _, m := range routes {
			obs.RouteWeights = append(obs.RouteWeights, ruleCanaryWeights(m.Route, m.Rules, ro.Spec.Stable, *ro.Spec.Canary)...)
		}
		if obs.Canary, err = r.observeCanary(ctx, ro); err != nil {
			return ctrl.Result{}, err
		}
		if ro.Spec.Analysis != nil {
			if r.Gates == nil {
				obs.Analysis = &problem{Reason: rolloutsv1.ReasonInvalidConfig, Message: "the operator runs without gate evaluation"}
			} else if obs.Analysis = r.Gates.Validate(ctx, ro); obs.Analysis == nil && gatesDue(ro, now) && !abortPending(ro, obs.Requests) {
				// A pending abort is acted on first, without waiting on
				// Prometheus.
				obs.Gates = r.Gates.Evaluate(ctx, ro, now)
			}
		}
	}

	d := plan(ro, obs)
	before := ro.Status.DeepCopy()

	if !equality.Semantic.DeepEqual(ro.Status, d.Status) {
		if err := r.patchStatus(ctx, ro, d.Status); err != nil {
			return ctrl.Result{}, err
		}
	}
	r.Metrics.observe(ro, &d)
	for _, e := range d.Events {
		r.event(ro, e)
		if e.Warning {
			logger.Info(e.Message, "reason", e.Reason, "phase", d.Status.Phase)
		} else {
			logger.V(1).Info(e.Message, "reason", e.Reason, "phase", d.Status.Phase)
		}
	}

	if err := r.applyRoutes(ctx, ro, before, &d, routes); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: d.RequeueAfter}, nil
}

// abortPending says whether an abort token is waiting to be acted on.
func abortPending(ro *rolloutsv1.ModelRollout, req requests) bool {
	return req.Abort != "" && req.Abort != ro.Status.LastHandledAbort
}

func (r *ModelRolloutReconciler) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

// patchStatus writes the status with an optimistic lock: a decision made
// from a stale copy is rejected and made again.
func (r *ModelRolloutReconciler) patchStatus(ctx context.Context, ro *rolloutsv1.ModelRollout, status rolloutsv1.ModelRolloutStatus) error {
	base := ro.DeepCopy()
	ro.Status = status
	patch := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, ro, patch, client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("patch status of ModelRollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	return nil
}

func (r *ModelRolloutReconciler) event(ro *rolloutsv1.ModelRollout, e event) {
	if r.Recorder == nil {
		return
	}
	t := corev1.EventTypeNormal
	if e.Warning {
		t = corev1.EventTypeWarning
	}
	r.Recorder.Eventf(ro, nil, t, e.Reason, e.Reason, "%s", truncate(e.Message, 1000))
}

// applyRoutes holds every found route at the status's weights.
// before is the status the decision started from.
func (r *ModelRolloutReconciler) applyRoutes(ctx context.Context, ro *rolloutsv1.ModelRollout, before *rolloutsv1.ModelRolloutStatus, d *decision, routes []managedRoute) error {
	if !d.ManageRoutes {
		return nil
	}
	st := &d.Status
	started := st.CurrentStepIndex != nil || st.Phase == rolloutsv1.PhaseRolledBack || st.Phase == rolloutsv1.PhaseSucceeded
	if !started && len(d.Retire) == 0 {
		return nil
	}
	w := weights{Stable: ro.Spec.Stable, Canary: *ro.Spec.Canary, CanaryWeight: st.CanaryWeight, Retire: d.Retire, RetireOnly: !started}
	weightChanged := before.CanaryWeight != st.CanaryWeight || before.Revision != st.Revision || len(d.Retire) > 0

	var errs []error
	for _, m := range routes {
		ops, changes := weightOps(m.Route, m.Rules, w)
		if len(ops) == 0 {
			continue
		}
		if !weightChanged {
			r.event(ro, event{Warning: true, Reason: "WeightDriftCorrected",
				Message: fmt.Sprintf("HTTPRoute %s was changed outside the rollout (%s); restored to canary weight %d", m.Route.Name, describeChanges(changes), st.CanaryWeight)})
		}
		body, err := patchBody(m.Route.ResourceVersion, ops)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		route := m.Route.DeepCopy()
		if err := r.Patch(ctx, route, client.RawPatch(types.JSONPatchType, body), client.FieldOwner(FieldOwner)); err != nil {
			if apierrors.IsInvalid(err) || apierrors.IsConflict(err) {
				// The resourceVersion test failed: the cached route was stale.
				// The watch brings the fresh copy and the next attempt retries.
				errs = append(errs, fmt.Errorf("patch HTTPRoute %s/%s: route changed concurrently: %w", route.Namespace, route.Name, err))
				continue
			}
			errs = append(errs, fmt.Errorf("patch HTTPRoute %s/%s: %w", route.Namespace, route.Name, err))
			continue
		}
		log.FromContext(ctx).Info("Patched HTTPRoute", "route", route.Name, "canaryWeight", st.CanaryWeight, "changes", describeChanges(changes))
	}
	return errors.Join(errs...)
}

// SetupWithManager registers the controller, its watches and field indexes.
func (r *ModelRolloutReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &rolloutsv1.ModelRollout{}, indexRoute, func(o client.Object) []string {
		ro := o.(*rolloutsv1.ModelRollout)
		names := make([]string, 0, len(ro.Spec.Routes))
		for _, t := range ro.Spec.Routes {
			names = append(names, t.Name)
		}
		return names
	}); err != nil {
		return fmt.Errorf("index ModelRollouts by route: %w", err)
	}
	if err := idx.IndexField(ctx, &rolloutsv1.ModelRollout{}, indexBackend, func(o client.Object) []string {
		ro := o.(*rolloutsv1.ModelRollout)
		names := []string{ro.Spec.Stable.Name}
		if ro.Spec.Canary != nil {
			names = append(names, ro.Spec.Canary.Name)
		}
		return names
	}); err != nil {
		return fmt.Errorf("index ModelRollouts by backend: %w", err)
	}
	if err := idx.IndexField(ctx, &discoveryv1.EndpointSlice{}, indexEndpointSliceService, func(o client.Object) []string {
		if svc := o.GetLabels()[discoveryv1.LabelServiceName]; svc != "" {
			return []string{svc}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index EndpointSlices by Service: %w", err)
	}

	workers := r.MaxConcurrentReconciles
	if workers <= 0 {
		workers = 4
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&rolloutsv1.ModelRollout{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&gatewayv1.HTTPRoute{}, handler.EnqueueRequestsFromMapFunc(r.mapBy(mgr.GetClient(), indexRoute, func(o client.Object) string { return o.GetName() })),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.mapBy(mgr.GetClient(), indexBackend, func(o client.Object) string { return o.GetName() })),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(r.mapBy(mgr.GetClient(), indexBackend, func(o client.Object) string {
			return o.GetLabels()[discoveryv1.LabelServiceName]
		}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Named("modelrollout").
		Complete(r)
}

// mapBy maps a watched object to the rollouts in its namespace whose index
// holds the key.
func (r *ModelRolloutReconciler) mapBy(c client.Client, index string, key func(client.Object) string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		k := key(o)
		if k == "" {
			return nil
		}
		list := &rolloutsv1.ModelRolloutList{}
		if err := c.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index: k}); err != nil {
			log.FromContext(ctx).Error(err, "List ModelRollouts for a watched object", "index", index, "key", k)
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, ro := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}})
		}
		return reqs
	}
}

func itoa32(i int32) string { return strconv.FormatInt(int64(i), 10) }

func parseFloat(s string) (float64, error) { return strconv.ParseFloat(s, 64) }
