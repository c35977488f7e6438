package controllers

import (
	"context"
	"errors"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Reconcile observes one rollout (its routes, canary, gates and requests),
// lets the planner decide (internal/plan: the next status, the weights the
// routes must carry, the write order and the clock policy), and applies the
// decision: the routes first, then the status, so that a status never
// claims weights the routes do not carry.
func (r *ModelRolloutReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ro, result, err := r.load(ctx, req)
	if ro == nil {
		return result, err
	}
	o, result, err := r.observe(ctx, ro)
	if o == nil {
		return result, err
	}
	// The receiver patches the abort's annotation once the routes are sent,
	// or once this reconcile ends without sending them.
	defer r.direct.release(o.direct)
	return r.apply(ctx, ro, o, plan.Plan(ro, o.Observation))
}

// load reads the rollout and makes sure it carries the finalizer before any
// route write. It returns nil when the reconcile ends here: the rollout is
// gone, the cache is behind this process's own status write, or the
// rollout is being deleted (finalize).
func (r *ModelRolloutReconciler) load(ctx context.Context, req ctrl.Request) (*rolloutsv1.ModelRollout, ctrl.Result, error) {
	ro := &rolloutsv1.ModelRollout{}
	if err := r.Get(ctx, req.NamespacedName, ro); err != nil {
		if apierrors.IsNotFound(err) {
			r.forgetRollout(req.NamespacedName)
		}
		return nil, ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.writes.statusStale(req.NamespacedName, ro.ResourceVersion) {
		// Its watch event is on the way.
		return nil, ctrl.Result{RequeueAfter: cacheLagRetry}, nil
	}
	if !ro.DeletionTimestamp.IsZero() {
		result, err := r.finalize(ctx, ro)
		return nil, result, err
	}
	if needsFinalizer(ro) && !controllerutil.ContainsFinalizer(ro, rolloutsv1.FinalizerRoutes) {
		// Before the first route write, so that a deletion can always
		// return the canary's traffic.
		if err := r.patchFinalizers(ctx, ro, func() { controllerutil.AddFinalizer(ro, rolloutsv1.FinalizerRoutes) }); err != nil {
			return nil, ctrl.Result{}, err
		}
	}
	return ro, ctrl.Result{}, nil
}

// observed is what one reconcile read: the planner's input, and what the
// apply needs besides the decision.
type observed struct {
	plan.Observation
	// found are the routes in spec.routes, dropped those that left it and
	// still carry this rollout's weights or ownership.
	found, dropped []plan.ManagedRoute
	// backoff is how long a drift correction waits (Contended).
	backoff time.Duration
	// direct is an abort the Alertmanager receiver handed over directly.
	direct *directAbort
}

// observe reads everything the planner decides from. It returns nil when
// the reconcile ends here: a read failed, or the cache is behind this
// process's own route write (its watch event is on the way).
func (r *ModelRolloutReconciler) observe(ctx context.Context, ro *rolloutsv1.ModelRollout) (o *observed, result ctrl.Result, err error) {
	key := client.ObjectKeyFromObject(ro)
	now := r.now()
	o = &observed{Observation: plan.Observation{Now: now, Requests: readRequests(ro), Hooks: r.hooks.results(key)}}
	direct := r.direct.merge(ro, &o.Requests)
	o.direct = direct
	defer func() {
		// A reconcile that ends here hands a direct abort back at once.
		if o == nil || err != nil {
			r.direct.release(direct)
			o = nil
		}
	}()
	cacheLag := ctrl.Result{RequeueAfter: cacheLagRetry}
	routes, err := r.observeRoutes(ctx, ro)
	if err != nil {
		return o, ctrl.Result{}, err
	}
	if o.dropped, err = r.observeDropped(ctx, ro); err != nil {
		return o, ctrl.Result{}, err
	}
	o.found = routes.Found
	for _, m := range slices.Concat(o.found, o.dropped) {
		if r.writes.stale(m.Route.UID, m.Route.Generation) {
			return nil, cacheLag, nil
		}
	}
	o.Routes, o.Found, o.Conflict, o.OwnsAny = routes.Problem, routes.Found, routes.Conflict, routes.OwnsAny
	o.Rejected = r.writes.rejection(key)
	if o.Owned, err = r.observeHeaderRoutes(ctx, ro); err != nil {
		return o, ctrl.Result{}, err
	}
	if r.writes.headerStale(key, o.Owned, now) {
		return nil, cacheLag, nil
	}
	o.HeaderRoute = r.writes.headerProblem(key)
	if o.backoff = r.checkDrift(ctx, ro, &o.Observation); o.backoff > 0 && o.Contended == nil {
		// The cache holds an older copy of the rollout than the API
		// server: a decision from it would be refused.
		return nil, cacheLag, nil
	}
	// A pending abort is the fast path: it reads nothing more (no canary
	// backend, no Secret, no Prometheus), writes the routes first, all at
	// once, then the status. Until the status records the abort token it
	// stays pending, so a crash in between only repeats it.
	if abortPending(ro, o.Requests) && abortable(ro.Status.Phase) && ro.Status.Revision == ro.Spec.Revision() {
		return o, ctrl.Result{}, nil
	}
	if ro.Spec.Canary != nil {
		if err := r.observeCanaryAndGates(ctx, ro, &o.Observation); err != nil {
			return o, ctrl.Result{}, err
		}
	}
	if len(ro.Status.Workloads) > 0 {
		o.Handoff = r.runHandoffs(ctx, ro, now)
	}
	return o, ctrl.Result{}, nil
}

// observeCanaryAndGates reads the canary's readiness and capacity, validates
// the gates and takes the round of gate evaluations that is due, if any.
func (r *ModelRolloutReconciler) observeCanaryAndGates(ctx context.Context, ro *rolloutsv1.ModelRollout, obs *plan.Observation) (err error) {
	if obs.Canary, err = r.observeCanary(ctx, ro); err != nil {
		return err
	}
	if ro.Spec.CapacityFactor != nil && plan.CapacityMatters(ro) {
		if obs.Capacity, err = r.observeCapacity(ctx, ro); err != nil {
			return err
		}
	}
	switch {
	case ro.Spec.Analysis == nil:
		return nil
	case r.Gates == nil:
		obs.Analysis = &plan.Problem{Reason: rolloutsv1.ReasonInvalidConfig, Message: "the operator runs without gate evaluation"}
		return nil
	case abortPending(ro, obs.Requests):
		return nil
	}
	if obs.Analysis, err = r.Gates.Validate(ctx, ro); err != nil || obs.Analysis != nil {
		return err
	}
	// Pre-traffic gates judge the canary itself: only once it is available.
	preTraffic := obs.Canary == nil && plan.PreTrafficDue(ro, obs.Now)
	if !plan.GatesDue(ro, obs.Now) && !preTraffic {
		return nil
	}
	if r.background != nil {
		// Off the worker: nil until the round is back.
		obs.Gates = r.background.take(ctx, ro, obs.Now)
	} else {
		obs.Gates = r.Gates.Evaluate(ctx, ro, obs.Now)
	}
	return nil
}

// apply carries out a decision in its write order: the routes (weights, then
// header routes), then the status, then what may only follow the status
// (webhook calls, superseded gate rounds, Events, metrics). A refused route
// write is decided again, knowing the refusal, so that the status says why
// the rollout waits.
func (r *ModelRolloutReconciler) apply(ctx context.Context, ro *rolloutsv1.ModelRollout, o *observed, d plan.Decision) (ctrl.Result, error) {
	key := client.ObjectKeyFromObject(ro)
	result := ctrl.Result{RequeueAfter: d.RequeueAfter}
	if d.WriteRoutes {
		retry, err := r.applyRoutes(ctx, ro, d.Routes, o.found, o.dropped)
		if retry > 0 {
			result = minRequeue(result, retry)
		}
		if result, err = r.withHeaderRoutes(ctx, ro, &d, o.Owned, result, err); err != nil {
			// Not written, or not all: this status would claim what the
			// routes do not carry. It stays as it was; decided again.
			return result, err
		}
		r.direct.release(o.direct)
		rejected, headerProblem := r.writes.rejection(key), r.writes.headerProblem(key)
		switch {
		case rejected != nil || (headerProblem != nil && o.HeaderRoute == nil):
			o.Rejected, o.HeaderRoute, o.Refused = rejected, headerProblem, true
			d = plan.Plan(ro, o.Observation)
			if d.RequeueAfter > 0 {
				result = minRequeue(result, d.RequeueAfter)
			}
		case retry == 0:
			plan.Landed(&d, r.now())
		}
	}
	previous := ro.Status.Phase
	if !equality.Semantic.DeepEqual(ro.Status, d.Status) {
		if err := r.patchStatus(ctx, ro, d.Status); err != nil {
			return ctrl.Result{}, err
		}
	}
	// The status records the calls and folds the answers: only now may the
	// answers go and the calls be made.
	r.hooks.ack(key, o.Hooks)
	r.hooks.start(ro, d.Calls)
	r.background.supersede(ro, &d.Status)
	if previous != d.Status.Phase {
		r.hooks.notifyTransition(ro, previous, d.Events)
	}
	r.Metrics.observe(ro, &d)
	r.record(ctx, ro, d.Events, d.Status.Phase)
	if o.backoff > 0 && o.Conflict == nil {
		// The weights wait for the drift correction's backoff; the header
		// routes do not.
		return r.withHeaderRoutes(ctx, ro, &d, o.Owned, minRequeue(result, o.backoff), nil)
	}
	// With a conflict, another rollout owns a rule: nothing is written. Its
	// release changes the route's annotation, which brings this rollout
	// back.
	return result, nil
}

// withHeaderRoutes applies the header routes after the weights, and folds
// its retry and error into the reconcile's.
func (r *ModelRolloutReconciler) withHeaderRoutes(ctx context.Context, ro *rolloutsv1.ModelRollout, d *plan.Decision,
	owned []*gatewayv1.HTTPRoute, result ctrl.Result, err error) (ctrl.Result, error) {
	retry, herr := r.applyHeaderRoutes(ctx, ro, d, owned)
	if retry > 0 {
		result = minRequeue(result, retry)
	}
	return result, errors.Join(err, herr)
}
