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
)

// Aborts handed over in memory by the alert receiver of this process
// (alerts.Options.Direct). On the leader an alert's abort then starts at
// once, at the head of the work queue, instead of after its annotation
// patch and that patch's watch event: the routes go back to stable about one
// API round trip sooner. The receiver patches the annotation at the same
// time, and the annotation stays the durable request: it reaches the other
// replicas, and a leader that restarts before the status records the abort.

type directAbort struct {
	uid           types.UID
	token, reason string
}

type directAborts struct {
	mu      sync.Mutex
	pending map[types.NamespacedName]directAbort
	queue   chan crevent.TypedGenericEvent[client.Object]
	elected <-chan struct{}
}

func newDirectAborts(elected <-chan struct{}) *directAborts {
	return &directAborts{
		pending: map[types.NamespacedName]directAbort{},
		queue:   make(chan crevent.TypedGenericEvent[client.Object], 1024),
		elected: elected,
	}
}

// AbortNow takes an abort from the alert receiver. It does nothing unless
// this process leads (then the controller is not running here, and the
// annotation carries the abort to the leader), and never blocks.
func (r *ModelRolloutReconciler) AbortNow(key types.NamespacedName, uid types.UID, token, reason string) {
	d := r.direct
	if d == nil || token == "" {
		return
	}
	select {
	case <-d.elected:
	default:
		return
	}
	d.mu.Lock()
	d.pending[key] = directAbort{uid: uid, token: token, reason: reason}
	d.mu.Unlock()
	obj := &rolloutsv1.ModelRollout{}
	obj.Namespace, obj.Name = key.Namespace, key.Name
	select {
	case d.queue <- crevent.TypedGenericEvent[client.Object]{Object: obj}:
	default:
		// A full queue: the annotation's watch event brings the abort.
	}
}

// merge adds a pending direct abort of the rollout to its requests, unless
// the annotation already carries it. It forgets one that status records
// as handled, or that was meant for an earlier rollout of the same name.
func (d *directAborts) merge(ro *rolloutsv1.ModelRollout, req *requests) {
	if d == nil {
		return
	}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.pending[key]
	switch {
	case !ok:
		return
	case (a.uid != "" && a.uid != ro.UID) || ro.Status.LastHandledAbort == a.token:
		delete(d.pending, key)
		return
	case req.Abort == a.token:
		return
	}
	req.Abort, req.AbortReason = a.token, a.reason
}

func (d *directAborts) forget(key types.NamespacedName) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
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
