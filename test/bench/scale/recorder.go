package scale

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// group is the phase of the bench a namespace belongs to.
type group int

const (
	groupOther group = iota
	groupMain
	groupResident
	groupFailover
	numGroups
)

func groupOf(ns string) group {
	switch {
	case strings.HasPrefix(ns, mainPrefix):
		return groupMain
	case strings.HasPrefix(ns, residentPrefix):
		return groupResident
	case ns == failoverNS:
		return groupFailover
	}
	return groupOther
}

// counts are the writes the API server persisted, as seen by the watches:
// every MODIFIED event is one write that changed the object.
type counts struct {
	routes, rollouts, events [numGroups]int64
	// finalizers counts the rollout writes that changed its finalizers
	// (once when it is created, once when it is deleted); rollouts counts
	// the others, status writes.
	finalizers [numGroups]int64
	lease      int64
}

type weightAt struct {
	weight int32
	at     time.Time
}

// recorder watches HTTPRoutes, ModelRollouts, Events and the manager's
// Lease across the cluster and records, with the time each change was
// observed, every canary weight of the main phase's routes, every
// rollout's phase, and the number of writes.
type recorder struct {
	mu          sync.Mutex
	c           counts
	weights     map[string][]weightAt // ns/route -> distinct canary weights
	phases      map[string]rolloutsv1.Phase
	finalizers  map[string]int       // rollout -> number of finalizers last seen
	succeededAt map[string]time.Time // main rollouts
	phaseCount  [numGroups]map[rolloutsv1.Phase]int
	errs        []string
	// gate evaluations of the main rollouts: the last one seen per
	// rollout and gate, and how late each was against its schedule.
	gateInterval time.Duration
	lastEval     map[string]time.Time
	evalLate     []time.Duration // round started (status) − due
	evalSeenLate []time.Duration // verdict seen by the watch − due
}

func newRecorder() *recorder {
	r := &recorder{weights: map[string][]weightAt{}, phases: map[string]rolloutsv1.Phase{},
		finalizers: map[string]int{}, lastEval: map[string]time.Time{}, succeededAt: map[string]time.Time{}}
	for g := range r.phaseCount {
		r.phaseCount[g] = map[rolloutsv1.Phase]int{}
	}
	return r
}

// start establishes the watches and returns once all are running.
func (r *recorder) start(ctx context.Context, c client.WithWatch) error {
	type spec struct {
		list   client.ObjectList
		handle func(watch.Event)
	}
	specs := []spec{
		{&gatewayv1.HTTPRouteList{}, r.onRoute},
		{&rolloutsv1.ModelRolloutList{}, r.onRollout},
		{&corev1.EventList{}, r.onEvent},
		{&coordinationv1.LeaseList{}, r.onLease},
	}
	for _, s := range specs {
		rv, err := currentRV(ctx, c, s.list)
		if err != nil {
			return err
		}
		go r.watchLoop(ctx, c, s.list, rv, s.handle)
	}
	return nil
}

func currentRV(ctx context.Context, c client.WithWatch, list client.ObjectList) (string, error) {
	l := list.DeepCopyObject().(client.ObjectList)
	if err := c.List(ctx, l, client.Limit(1)); err != nil {
		return "", err
	}
	return l.GetResourceVersion(), nil
}

// watchLoop watches from rv and re-establishes the watch when it ends,
// from the last resourceVersion seen (bookmarks keep it fresh).
func (r *recorder) watchLoop(ctx context.Context, c client.WithWatch, list client.ObjectList, rv string, handle func(watch.Event)) {
	for ctx.Err() == nil {
		w, err := c.Watch(ctx, list.DeepCopyObject().(client.ObjectList),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err != nil {
			r.errorf("watch %T: %v", list, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second): // back-off before re-watching
			}
			if nrv, err := currentRV(ctx, c, list); err == nil {
				rv = nrv
			}
			continue
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				r.errorf("watch %T: %v (events may be missed)", list, ev.Object)
				if nrv, err := currentRV(ctx, c, list); err == nil {
					rv = nrv
				}
				break
			}
			if a, err := meta.Accessor(ev.Object); err == nil {
				rv = a.GetResourceVersion()
			}
			if ev.Type != watch.Bookmark {
				handle(ev)
			}
		}
		w.Stop()
	}
}

func (r *recorder) errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) < 20 {
		r.errs = append(r.errs, strings.TrimSpace(fmt.Sprintf(format, args...)))
	}
}

// canaryWeight is the weight of the route's canary-* backendRef, 0 when
// it has none.
func canaryWeight(rt *gatewayv1.HTTPRoute) int32 {
	for _, rule := range rt.Spec.Rules {
		for _, b := range rule.BackendRefs {
			if strings.HasPrefix(string(b.Name), "canary-") {
				if b.Weight == nil {
					return 1
				}
				return *b.Weight
			}
		}
	}
	return 0
}

func (r *recorder) onRoute(ev watch.Event) {
	now := time.Now()
	rt, ok := ev.Object.(*gatewayv1.HTTPRoute)
	if !ok {
		return
	}
	g := groupOf(rt.Namespace)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Type == watch.Modified {
		r.c.routes[g]++
	}
	if g != groupMain {
		return
	}
	key := rt.Namespace + "/" + rt.Name
	w := canaryWeight(rt)
	if h := r.weights[key]; len(h) == 0 || h[len(h)-1].weight != w {
		r.weights[key] = append(h, weightAt{w, now})
	}
}

func (r *recorder) onRollout(ev watch.Event) {
	now := time.Now()
	ro, ok := ev.Object.(*rolloutsv1.ModelRollout)
	if !ok {
		return
	}
	g := groupOf(ro.Namespace)
	key := ro.Namespace + "/" + ro.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Type == watch.Modified {
		if len(ro.Finalizers) != r.finalizers[key] {
			r.c.finalizers[g]++
		} else {
			r.c.rollouts[g]++
		}
	}
	r.finalizers[key] = len(ro.Finalizers)
	old, had := r.phases[key]
	phase := ro.Status.Phase
	if ev.Type == watch.Deleted {
		phase = ""
		delete(r.phases, key)
		delete(r.finalizers, key)
	} else {
		r.phases[key] = phase
	}
	if had {
		r.phaseCount[g][old]--
	}
	if phase != "" {
		r.phaseCount[g][phase]++
	}
	if g == groupMain {
		r.recordEvaluations(key, ro, now)
	}
	if g == groupMain && phase == rolloutsv1.PhaseSucceeded {
		if _, seen := r.succeededAt[key]; !seen {
			r.succeededAt[key] = now
		}
	}
}

func (r *recorder) onEvent(ev watch.Event) {
	e, ok := ev.Object.(*corev1.Event)
	if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.c.events[groupOf(e.Namespace)]++
}

func (r *recorder) onLease(ev watch.Event) {
	if !leaseWatchEvent(ev) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.c.lease++
}

func (r *recorder) counts() counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c
}

func (r *recorder) phaseCountOf(g group, p rolloutsv1.Phase) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phaseCount[g][p]
}

// routeWeights returns the recorded weight changes of a main-phase route.
func (r *recorder) routeWeights(key string) []weightAt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]weightAt(nil), r.weights[key]...)
}

func (r *recorder) lastSucceeded() (time.Time, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last time.Time
	for _, t := range r.succeededAt {
		if t.After(last) {
			last = t
		}
	}
	return last, len(r.succeededAt)
}

func (r *recorder) succeeded(key string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.succeededAt[key]
	return t, ok
}

func (r *recorder) watchErrors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// recordEvaluations notes each new gate evaluation of a main rollout and
// how late it was. An evaluation is due one interval after the previous
// one of the same step, and never before one interval into the step (see
// nextEvaluationAt in the controller). Status times have one-second
// precision, so each lateness is known to about a second.
func (r *recorder) recordEvaluations(key string, ro *rolloutsv1.ModelRollout, now time.Time) {
	st := &ro.Status
	for _, gs := range st.Gates {
		if gs.LastEvaluatedAt == nil {
			continue
		}
		k := key + "/" + gs.Name
		at := gs.LastEvaluatedAt.Time
		prev, seen := r.lastEval[k]
		if seen && !at.After(prev) {
			continue
		}
		r.lastEval[k] = at
		if st.StepStartedAt == nil || at.Before(st.StepStartedAt.Time) {
			continue // judged for an earlier step, or the clock stopped
		}
		due := st.StepStartedAt.Add(r.gateInterval)
		if seen && !prev.Before(st.StepStartedAt.Time) && prev.Add(r.gateInterval).After(due) {
			due = prev.Add(r.gateInterval)
		}
		r.evalLate = append(r.evalLate, at.Sub(due))
		r.evalSeenLate = append(r.evalSeenLate, now.Sub(due))
	}
}

// gateLateness returns copies of the evaluation lateness recorded so far.
func (r *recorder) gateLateness() (started, seen []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.evalLate...), append([]time.Duration(nil), r.evalSeenLate...)
}
