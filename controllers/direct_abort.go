package controllers

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	crevent "sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Aborts handed over in memory by the alert receiver of this process
// (alerts.Options.Direct). On the leader an alert's abort then starts at
// once, at the head of the work queue, instead of after its annotation
// patch and that patch's watch event. The receiver patches the annotation
// once the controller has sent the abort's route patches (the channel
// AbortNow returns): the two writes would otherwise reach the API server
// and etcd together, and the route's would wait for the annotation's. With
// the annotation second, the routes go back to stable in about one API
// round trip from the alert. The annotation stays the durable request: it
// reaches the other replicas, and a leader that restarts before the status
// records the abort; the receiver answers Alertmanager only once it landed,
// so that a leader that dies in between gets the alert again.

type directAbort struct {
	uid                     types.UID
	token, reason, revision string
	// sent is closed once the controller has sent the abort's route
	// patches, or knows it will not (see release).
	sent     chan struct{}
	released bool
}

type directAborts struct {
	mu      sync.Mutex
	pending map[types.NamespacedName]*directAbort
	queue   chan crevent.TypedGenericEvent[client.Object]
	elected <-chan struct{}
}

func newDirectAborts(elected <-chan struct{}) *directAborts {
	return &directAborts{
		pending: map[types.NamespacedName]*directAbort{},
		queue:   make(chan crevent.TypedGenericEvent[client.Object], 1024),
		elected: elected,
	}
}

// AbortNow takes an abort from the alert receiver and returns a channel that
// is closed once the controller has sent the rollout's route patches for it
// (or will not send them: the abort was handled, dropped or replaced). It
// does nothing and returns nil unless this process leads (then the
// controller is not running here, and the annotation carries the abort to
// the leader). It never blocks.
func (r *ModelRolloutReconciler) AbortNow(key types.NamespacedName, uid types.UID, token, reason, revision string) <-chan struct{} {
	d := r.direct
	if d == nil || token == "" {
		return nil
	}
	select {
	case <-d.elected:
	default:
		return nil
	}
	a := &directAbort{uid: uid, token: token, reason: reason, revision: revision, sent: make(chan struct{})}
	d.mu.Lock()
	if old := d.pending[key]; old != nil {
		old.release()
	}
	d.pending[key] = a
	d.mu.Unlock()
	obj := &rolloutsv1.ModelRollout{}
	obj.Namespace, obj.Name = key.Namespace, key.Name
	select {
	case d.queue <- crevent.TypedGenericEvent[client.Object]{Object: obj}:
	default:
		// A full queue: the annotation's watch event brings the abort;
		// let the receiver patch it at once.
		d.release(a)
	}
	return a.sent
}

// release closes a's channel, once. Call it with d.mu held.
func (a *directAbort) release() {
	if a != nil && !a.released {
		a.released = true
		close(a.sent)
	}
}

// release lets the receiver patch the annotation of a merged abort: its
// routes were sent, or the reconcile ended without sending them.
func (d *directAborts) release(a *directAbort) {
	if d == nil || a == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a.release()
}

// merge adds a pending direct abort of the rollout to its requests, unless
// the annotation already carries it, and returns it: the caller releases it
// once the routes are sent, or when the reconcile ends. It forgets one that
// status records as handled, or that was meant for an earlier rollout of
// the same name.
func (d *directAborts) merge(ro *rolloutsv1.ModelRollout, req *plan.Requests) *directAbort {
	if d == nil {
		return nil
	}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.pending[key]
	switch {
	case !ok:
		return nil
	case (a.uid != "" && a.uid != ro.UID) || ro.Status.LastHandledAbort == a.token:
		a.release()
		delete(d.pending, key)
		return nil
	case req.Abort == a.token:
		// The annotation carries it already: nothing to hold back.
		a.release()
		return nil
	}
	req.Abort, req.AbortReason, req.AbortRevision = a.token, a.reason, a.revision
	return a
}

func (d *directAborts) forget(key types.NamespacedName) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending[key].release()
	delete(d.pending, key)
}

// directAbortHandler queues a rollout handed over by AbortNow at the abort
// priority.
func directAbortHandler() handler.TypedEventHandler[client.Object, reconcile.Request] {
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		GenericFunc: func(_ context.Context, e crevent.TypedGenericEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(e.Object)}
			if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
				pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(abortPriority)}, req)
				return
			}
			q.Add(req)
		},
	}
}

// sizes counts the entries of each map, for tests and docs/performance/memory.md.
func (d *directAborts) sizes(into map[string]int) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	into["direct.pending"] = len(d.pending)
}
