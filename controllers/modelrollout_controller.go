package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	crevent "sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// FieldOwner is the field manager of every write the controller makes.
const FieldOwner = "modelrollout-controller"

// Field indexes.
const (
	indexRoute                = "spec.routes.name"
	indexBackend              = "spec.backends.name"
	indexEndpointSliceService = "metadata.labels.service-name"
	indexHeaderRouteOf        = "metadata.labels.header-route-of"
)

// GateEvaluator validates a rollout's gates and evaluates them.
type GateEvaluator interface {
	// Validate reports a gate that cannot be rendered or parsed, or
	// Prometheus settings that cannot be used, before any traffic moves.
	// An error is transient (an auth Secret that could not be read) and is
	// retried with backoff.
	Validate(ctx context.Context, ro *rolloutsv1.ModelRollout) (*plan.Problem, error)
	// Evaluate runs every gate once and accounts the results.
	Evaluate(ctx context.Context, ro *rolloutsv1.ModelRollout, now time.Time) *plan.GateRound
}

// ModelRolloutReconciler walks HTTPRoute weights through a ModelRollout's
// steps.
type ModelRolloutReconciler struct {
	client.Client
	// APIReader reads past the cache: the owner of a rule that the cache has
	// not seen yet, and the Namespace of a deleted rollout. Optional.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Clock is the time source; the real clock when nil.
	Clock clock.PassiveClock
	// Gates evaluates analysis gates; rollouts with gates wait when nil.
	Gates GateEvaluator
	// Metrics records the operator's series; optional.
	Metrics *Metrics
	// MaxConcurrentReconciles is the number of workers; DefaultWorkers when zero.
	MaxConcurrentReconciles int
	// GateConcurrency bounds the gate rounds that run at once, off the
	// workers; DefaultGateConcurrency when zero.
	GateConcurrency int
	// GateRoundTimeout bounds one round of a rollout's gates;
	// DefaultGateRoundTimeout when zero.
	GateRoundTimeout time.Duration
	// Shares caps each namespace's share of the webhook and gate pools.
	Shares FairShares
	// ColdStandby turns off the controller's warm-up (controller-runtime's
	// EnableWarmup): a replica that does not lead then starts the
	// controller's watches only once it leads. By default a standby starts
	// them at once, so that after a failover its work queue already holds
	// every rollout and its informers are synced: the new leader starts its
	// workers right after it wins the Lease, instead of first listing the
	// informers no index asked for (Services, gate templates) and replaying
	// every cached rollout, route, Service and EndpointSlice through the
	// event handlers (about 2 s at 11,000 rollouts on two cores).
	ColdStandby bool

	// Egress decides which URLs webhooks may call; the strictest policy
	// (egress.New(nil, nil)) when nil.
	Egress *egress.Policy

	background *backgroundGates
	hooks      *webhookRunner
	direct     *directAborts

	writes writeState
}

// +kubebuilder:rbac:groups=rollouts.modelrollout.io,resources=modelrollouts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=rollouts.modelrollout.io,resources=modelrollouts/status,verbs=get;patch
// +kubebuilder:rbac:groups=rollouts.modelrollout.io,resources=modelrollouts/finalizers,verbs=update
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;patch;create;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=inference.networking.k8s.io;inference.networking.x-k8s.io,resources=inferencepools,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// abortable says whether an abort acts in the phase.
func abortable(p rolloutsv1.Phase) bool {
	return rolloutsv1.ActionAbort.AllowedIn(p)
}

// DefaultWorkers is the number of rollouts reconciled at once. A reconcile
// spends most of its time waiting on API round trips (a status write, a
// route patch), so the workers outnumber the cores: with 4, a thousand
// rollouts stepping together on a 2-core control plane waited up to 3.8 s
// (p99) past their pause; with 16, under 1 s (make bench-scale).
const DefaultWorkers = 16

// cacheLagRetry is how soon a reconcile that found the cache behind the
// operator's own route write tries again.
const cacheLagRetry = 50 * time.Millisecond

// needsFinalizer says whether the rollout may hold weights that a deletion
// must return to stable.
func needsFinalizer(ro *rolloutsv1.ModelRollout) bool {
	return ro.Spec.Canary != nil || len(ro.Status.Retiring) > 0
}

func minRequeue(r ctrl.Result, after time.Duration) ctrl.Result {
	if r.RequeueAfter == 0 || after < r.RequeueAfter {
		r.RequeueAfter = after
	}
	return r
}

// record emits the decision's Events and logs its warnings.
func (r *ModelRolloutReconciler) record(ctx context.Context, ro *rolloutsv1.ModelRollout, evs []plan.Event, phase rolloutsv1.Phase) {
	logger := log.FromContext(ctx)
	for _, e := range evs {
		r.event(ro, e)
		if e.Warning {
			logger.Info(e.Message, "reason", e.Reason, "phase", phase)
		} else {
			logger.V(1).Info(e.Message, "reason", e.Reason, "phase", phase)
		}
	}
}

// abortPending says whether an abort token is waiting to be acted on.
func abortPending(ro *rolloutsv1.ModelRollout, req plan.Requests) bool {
	return req.Abort != "" && req.Abort != ro.Status.LastHandledAbort && plan.AbortMeantFor(req, ro.Status.Revision)
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
	plan.ClampStatus(&status)
	ro.Status = status
	patch := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	err := r.Status().Patch(ctx, ro, patch, client.FieldOwner(FieldOwner))
	if apierrors.IsConflict(err) && r.APIReader != nil {
		// The routes were patched before this write: the status must
		// record them. A conflict from an edit of spec, labels or
		// annotations (a Git sync, the plugin, the alert receiver) leaves
		// the status this decision started from in place, so the decision
		// still holds: write it over the fresh object. A status that
		// changed meanwhile (another writer) is left alone.
		fresh := &rolloutsv1.ModelRollout{}
		if gerr := r.APIReader.Get(ctx, client.ObjectKeyFromObject(ro), fresh); gerr == nil && equality.Semantic.DeepEqual(fresh.Status, base.Status) {
			freshBase := fresh.DeepCopy()
			fresh.Status = status
			err = r.Status().Patch(ctx, fresh, client.MergeFromWithOptions(freshBase, client.MergeFromWithOptimisticLock{}), client.FieldOwner(FieldOwner))
			if err == nil {
				fresh.DeepCopyInto(ro)
				base = freshBase
			}
		}
	}
	if err != nil {
		return fmt.Errorf("patch status of ModelRollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	r.writes.wroteStatus(client.ObjectKeyFromObject(ro), base.ResourceVersion, ro.ResourceVersion)
	return nil
}

// patchFinalizers changes the rollout's finalizers with an optimistic lock.
func (r *ModelRolloutReconciler) patchFinalizers(ctx context.Context, ro *rolloutsv1.ModelRollout, change func()) error {
	base := ro.DeepCopy()
	change()
	patch := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	if err := r.Patch(ctx, ro, patch, client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("patch finalizers of ModelRollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	return nil
}

func (r *ModelRolloutReconciler) event(ro *rolloutsv1.ModelRollout, e plan.Event) {
	if r.Recorder == nil {
		return
	}
	t := corev1.EventTypeNormal
	if e.Warning {
		t = corev1.EventTypeWarning
	}
	r.Recorder.Eventf(ro, nil, t, e.Reason, e.Reason, "%s", plan.Truncate(e.Message, 1000))
}

// applyRoutes brings every found route to the weights and records the
// rollout as the owner of the rules it holds weights in, or releases them
// when it holds none. A rejected patch is kept for the next decision (see
// observation.Rejected) and retried with backoff; a stale copy is retried
// at once with the fresh one. retry is when to try again.
func (r *ModelRolloutReconciler) applyRoutes(ctx context.Context, ro *rolloutsv1.ModelRollout, w plan.Weights, routes, dropped []plan.ManagedRoute) (retry time.Duration, err error) {
	var patches []routePatch
	for _, m := range routes {
		p := routePatch{route: m.Route}
		if w.Holds() {
			p.ops, p.changes = plan.WeightOps(m.Route, m.Rules, w)
			p.ops = append(p.ops, plan.OwnerOps(m.Route, ro.Name, m.Rules, plan.DescribeIntent(w))...)
		} else {
			p.ops = plan.OwnerOps(m.Route, ro.Name, nil, "")
		}
		patches = append(patches, p)
	}
	// Routes removed from spec.routes go back to stable in the same round.
	patches = append(patches, droppedPatches(ro, dropped)...)
	patched, rejections, failures := r.patchRoutes(ctx, client.ObjectKeyFromObject(ro), patches)
	for _, p := range patched {
		log.FromContext(ctx).Info("Patched HTTPRoute", "route", p.route.Name, "changes", plan.DescribeChanges(p.changes))
		if p.dropped {
			r.event(ro, plan.RouteReleased(p.route.Name, p.changes))
		}
	}
	key := client.ObjectKeyFromObject(ro)
	if len(rejections) > 0 {
		retry = r.writes.reject(key, strings.Join(rejections, "; "))
	} else if len(failures) == 0 {
		r.writes.accepted(key)
	}
	return retry, errors.Join(failures...)
}

// routePatch is the operations for one route and the weight changes they
// make.
type routePatch struct {
	route   *gatewayv1.HTTPRoute
	ops     []plan.PatchOp
	changes []string
	// dropped is set for a route removed from spec.routes.
	dropped bool
}

// patchRoutes sends the patches that have operations, concurrently (a
// rollback reaches every route in one round trip, not one per route), each
// pinned to the resourceVersion its route was read at. It returns the
// patches that landed, the API server's message for each route that refused
// its patch, and the other failures; a route deleted meanwhile is neither.
func (r *ModelRolloutReconciler) patchRoutes(ctx context.Context, by types.NamespacedName, patches []routePatch) (patched []routePatch, rejections []string, failures []error) {
	logger := log.FromContext(ctx)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, p := range patches {
		if len(p.ops) == 0 {
			continue
		}
		body, err := plan.PatchBody(p.route.ResourceVersion, p.ops)
		if err != nil {
			return nil, nil, []error{err}
		}
		route := p.route.DeepCopy()
		wg.Go(func() {
			err := r.Patch(ctx, route, client.RawPatch(types.JSONPatchType, body), client.FieldOwner(FieldOwner))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				r.writes.wrote(by, route.UID, route.Generation)
				patched = append(patched, p)
			case apierrors.IsConflict(err):
				logger.Info("HTTPRoute changed since it was read; retrying with the fresh copy", "route", route.Name)
				failures = append(failures, fmt.Errorf("patch HTTPRoute %s/%s: %w", route.Namespace, route.Name, err))
			case apierrors.IsNotFound(err):
				// Deleted since it was read; the watch brings the rollout back.
			case patchRejected(err):
				logger.Info("HTTPRoute patch rejected by the API server", "route", route.Name, "changes", plan.DescribeChanges(p.changes), "error", err.Error())
				rejections = append(rejections, fmt.Sprintf("HTTPRoute %s: %s", route.Name, apiMessage(err)))
			default:
				failures = append(failures, fmt.Errorf("patch HTTPRoute %s/%s: %w", route.Namespace, route.Name, err))
			}
		})
	}
	wg.Wait()
	slices.Sort(rejections)
	return patched, rejections, failures
}

// patchRejected says whether the API server refused the change itself (a
// validation error, an admission policy or webhook, a size limit), which
// retrying unchanged cannot fix.
func patchRejected(err error) bool {
	return apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err)
}

// apiMessage is the API server's message for an error.
func apiMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Message != "" {
		return status.Status().Message
	}
	return err.Error()
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
	if err := idx.IndexField(ctx, &rolloutsv1.ModelRollout{}, indexGateTemplate, gateTemplateKeys); err != nil {
		return fmt.Errorf("index ModelRollouts by gate template: %w", err)
	}
	if err := idx.IndexField(ctx, &gatewayv1.HTTPRoute{}, indexRuleOwner, ruleOwnerKeys); err != nil {
		return fmt.Errorf("index HTTPRoutes by the rollouts that own their rules: %w", err)
	}
	if err := idx.IndexField(ctx, &gatewayv1.HTTPRoute{}, indexHeaderRouteOf, func(o client.Object) []string {
		if owner := o.GetLabels()[rolloutsv1.LabelHeaderRouteOf]; owner != "" {
			return []string{owner}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index HTTPRoutes by the rollout whose header route they are: %w", err)
	}

	workers := r.MaxConcurrentReconciles
	if workers <= 0 {
		workers = DefaultWorkers
	}
	b := ctrl.NewControllerManagedBy(mgr)
	r.hooks = newWebhookRunner(ctx, r.Egress, r.APIReader, mgr.GetLogger().WithName("webhooks"))
	r.hooks.dropped = r.notificationDropped
	b = b.WatchesRawSource(source.Channel(r.hooks.notify, &handler.EnqueueRequestForObject{}))
	r.direct = newDirectAborts(mgr.Elected())
	b = b.WatchesRawSource(source.Channel(r.direct.queue, directAbortHandler()))
	if r.Gates != nil {
		r.background = newBackgroundGates(ctx, r.Gates, r.GateConcurrency, r.GateRoundTimeout)
		b = b.WatchesRawSource(source.Channel(r.background.notify, &handler.EnqueueRequestForObject{}))
	}
	r.shareSlots()
	return b.
		Watches(&rolloutsv1.ModelRollout{}, abortFirstHandler(),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// Annotations too: a rollout that waits on a rule another rollout
		// owns starts when the owner releases it.
		// A header route maps to the rollout that owns it (its label), so
		// that an edit or a deletion of it is corrected.
		Watches(&gatewayv1.HTTPRoute{}, handler.EnqueueRequestsFromMapFunc(withHeaderRouteOwner(r.mapBy(mgr.GetClient(), indexRoute, func(o client.Object) string { return o.GetName() }))),
			builder.WithPredicates(notInInitialList, predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, controllerChanged))).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.mapBy(mgr.GetClient(), indexBackend, func(o client.Object) string { return o.GetName() })),
			builder.WithPredicates(notInInitialList, predicate.GenerationChangedPredicate{})).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(r.mapBy(mgr.GetClient(), indexBackend, func(o client.Object) string {
			return o.GetLabels()[discoveryv1.LabelServiceName]
		})), builder.WithPredicates(notInInitialList)).
		// A rollout waiting on a missing template starts when it appears; an
		// edited template is validated again at once.
		Watches(&rolloutsv1.GateTemplate{}, handler.EnqueueRequestsFromMapFunc(r.mapBy(mgr.GetClient(), indexGateTemplate, templateKey(rolloutsv1.GateTemplateKindNamespaced))),
			builder.WithPredicates(notInInitialList, predicate.GenerationChangedPredicate{})).
		Watches(&rolloutsv1.ClusterGateTemplate{}, handler.EnqueueRequestsFromMapFunc(r.mapBy(mgr.GetClient(), indexGateTemplate, templateKey(rolloutsv1.GateTemplateKindCluster))),
			builder.WithPredicates(notInInitialList, predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers, UsePriorityQueue: ptr.To(true), EnableWarmup: ptr.To(!r.ColdStandby)}).
		Named("modelrollout").
		Complete(r)
}

// withHeaderRouteOwner adds, for a header route, the rollout named in its
// rollouts.modelrollout.io/header-route-of label.
func withHeaderRouteOwner(next handler.MapFunc) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		reqs := next(ctx, o)
		if owner := o.GetLabels()[rolloutsv1.LabelHeaderRouteOf]; owner != "" {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: owner}})
		}
		return reqs
	}
}

// notInInitialList drops the initial list of the watched routes, Services
// and EndpointSlices: every rollout is in its own initial list and reads
// them when reconciled, so mapping tens of thousands of them to rollouts
// when a replica starts leading would only delay the first reconciles.
// controllerChanged passes an update that gives an object a controller
// ownerReference, takes it away or changes it: a route another controller
// owns is not written (RouteOwnedByController) until it is handed over.
var controllerChanged = predicate.Funcs{UpdateFunc: func(e crevent.UpdateEvent) bool {
	before, after := metav1.GetControllerOf(e.ObjectOld), metav1.GetControllerOf(e.ObjectNew)
	if before == nil || after == nil {
		return (before == nil) != (after == nil)
	}
	return before.UID != after.UID
}}

var notInInitialList = predicate.Funcs{CreateFunc: func(e crevent.CreateEvent) bool { return !e.IsInInitialList }}

// abortPriority is the work-queue priority of a rollout with a pending
// abort: above every other event, including the low priority the queue
// gives the initial list after a restart or failover.
const abortPriority = 100

// abortFirstHandler enqueues a rollout for its own events, ahead of the
// rest of the queue when an abort is pending, so that an abort never waits
// behind steps, gate rounds or a thousand other rollouts.
func abortFirstHandler() handler.TypedEventHandler[client.Object, reconcile.Request] {
	add := func(q workqueue.TypedRateLimitingInterface[reconcile.Request], o client.Object, initial bool) {
		req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)}
		pq, isPQ := q.(priorityqueue.PriorityQueue[reconcile.Request])
		ro, isRollout := o.(*rolloutsv1.ModelRollout)
		switch {
		case !isPQ || !isRollout:
		case abortPending(ro, readRequests(ro)):
			pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(abortPriority)}, req)
			return
		case initial && !holdsStill(ro):
			// A new leader's first list holds every rollout, all at low
			// priority (handler.TypedFuncs): those that move come first,
			// the settled ones after them.
			pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(0)}, req)
			return
		}
		q.Add(req)
	}
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(_ context.Context, e crevent.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(q, e.Object, e.IsInInitialList)
		},
		UpdateFunc: func(_ context.Context, e crevent.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(q, e.ObjectNew, false)
		},
		DeleteFunc: func(_ context.Context, e crevent.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(q, e.Object, false)
		},
		GenericFunc: func(_ context.Context, e crevent.TypedGenericEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(q, e.Object, false)
		},
	}
}

// holdsStill says whether a rollout holds still: Idle, Succeeded or RolledBack
// for its current revision, with no manual request waiting and not being
// deleted.
func holdsStill(ro *rolloutsv1.ModelRollout) bool {
	st := &ro.Status
	switch {
	case !ro.DeletionTimestamp.IsZero(), st.ObservedGeneration != ro.Generation:
		return false
	case st.Phase == rolloutsv1.PhaseIdle:
		return ro.Spec.Canary == nil && len(st.Retiring) == 0
	case st.Phase != rolloutsv1.PhaseSucceeded && st.Phase != rolloutsv1.PhaseRolledBack:
		return false
	}
	r := readRequests(ro)
	return st.Revision == ro.Spec.Revision() && len(st.Retiring) == 0 && (r.Retry == "" || r.Retry == st.LastHandledRetry)
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
