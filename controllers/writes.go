package controllers

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Route writes that did not stick: patches the API server rejected, and
// weights that another field manager keeps changing back. Both are kept in
// memory per rollout; what the user must see of them goes into status
// through the next decision (observation.Rejected and .Contended). After a
// restart the first write fails again, or the first drift starts a new
// episode, so nothing depends on this memory for safety.

// Backoff bounds.
const (
	rejectRetryMin = time.Second
	rejectRetryMax = 5 * time.Minute
	fightDelayMin  = time.Second
	fightDelayMax  = 5 * time.Minute
	// fightQuiet is the least time the routes must stay as decided before a
	// drift starts a new episode instead of continuing the last one.
	fightQuiet = 30 * time.Second
)

type writeState struct {
	mu       sync.Mutex
	rejected map[types.NamespacedName]*rejection
	fights   map[types.NamespacedName]*fight
	// written is the generation of each route after this process's last
	// patch of it. A cached route older than that is a view from before the
	// rollout's own write; deciding from it could drop a retirement or
	// redo a step, so the reconcile waits for the cache instead. An entry
	// goes once the cache shows that generation, when the rollout that
	// wrote it goes, or after writtenMaxAge (the route was deleted, or
	// left the rollout's spec, so that no cache read comes).
	written map[types.UID]routeWrite
	// sweptAt is when written was last swept for entries past
	// writtenMaxAge.
	sweptAt time.Time
	// statusFrom is, for each rollout, the resourceVersion its last status
	// write replaced. A cached rollout still at that version predates the
	// write: deciding from it would redo the decision, and its write would
	// only meet a conflict.
	statusFrom map[types.NamespacedName]string
	// header holds, per rollout, why its header routes could not be
	// written last time, and how many times in a row.
	header map[types.NamespacedName]*rejection
	// headerWritten is, per rollout, the generation of each header route
	// after this process created or restored it, and when. A cache that
	// lacks it, or holds an older generation, predates the write.
	headerWritten map[types.NamespacedName]map[string]headerWrite
}

// routeWrite is one route's generation after a patch of this process, the
// rollout that sent it, and when.
type routeWrite struct {
	generation int64
	by         types.NamespacedName
	at         time.Time
}

// writtenMaxAge bounds how long a route write is remembered when no cache
// read shows it: a cache that has not shown a write in that time never
// will (the route is gone or no longer read by the rollout).
const writtenMaxAge = 10 * time.Minute

type headerWrite struct {
	generation int64
	at         time.Time
}

// headerLagMax bounds how long a reconcile waits for the cache to show a
// header route this process wrote: one deleted by someone else right after
// the write never shows up.
const headerLagMax = 10 * time.Second

// wroteHeader records the generation a header route write produced.
func (w *writeState) wroteHeader(key types.NamespacedName, name string, generation int64, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.headerWritten == nil {
		w.headerWritten = map[types.NamespacedName]map[string]headerWrite{}
	}
	if w.headerWritten[key] == nil {
		w.headerWritten[key] = map[string]headerWrite{}
	}
	w.headerWritten[key][name] = headerWrite{generation: generation, at: now}
}

// headerStale says whether the cached header routes predate this process's
// last write of one of them. Entries the cache has caught up with, or older
// than headerLagMax, are forgotten.
func (w *writeState) headerStale(key types.NamespacedName, owned []*gatewayv1.HTTPRoute, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	stale := false
	for name, hw := range w.headerWritten[key] {
		i := slices.IndexFunc(owned, func(o *gatewayv1.HTTPRoute) bool { return o.Name == name })
		switch {
		case now.Sub(hw.at) > headerLagMax, i >= 0 && owned[i].Generation >= hw.generation:
			delete(w.headerWritten[key], name)
		default:
			stale = true
		}
	}
	if len(w.headerWritten[key]) == 0 {
		delete(w.headerWritten, key)
	}
	return stale
}

// setHeaderProblem records the outcome of writing a rollout's header routes:
// a problem, kept for the next decision, and when to try again (with
// backoff); or nil, which forgets a past problem.
func (w *writeState) setHeaderProblem(key types.NamespacedName, p *plan.Problem) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p == nil {
		delete(w.header, key)
		return 0
	}
	if w.header == nil {
		w.header = map[types.NamespacedName]*rejection{}
	}
	r := w.header[key]
	if r == nil {
		r = &rejection{}
		w.header[key] = r
	}
	r.reason, r.message = p.Reason, p.Message
	r.attempts++
	return backoffDelay(r.attempts, rejectRetryMin, rejectRetryMax)
}

// headerProblem is the problem of the last write of a rollout's header
// routes, if any.
func (w *writeState) headerProblem(key types.NamespacedName) *plan.Problem {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r := w.header[key]; r != nil {
		return &plan.Problem{Reason: r.reason, Message: r.message}
	}
	return nil
}

// wroteStatus records that a status write replaced resourceVersion from
// with to. A write that changed nothing (from == to) leaves no mark.
func (w *writeState) wroteStatus(rollout types.NamespacedName, from, to string) {
	if from == to || from == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.statusFrom == nil {
		w.statusFrom = map[types.NamespacedName]string{}
	}
	w.statusFrom[rollout] = from
}

// statusStale says whether a cached rollout is the version this process's
// last status write replaced. Any other version clears the mark: the cache
// has moved past it.
func (w *writeState) statusStale(rollout types.NamespacedName, resourceVersion string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	from, ok := w.statusFrom[rollout]
	if !ok {
		return false
	}
	if from == resourceVersion {
		return true
	}
	delete(w.statusFrom, rollout)
	return false
}

// wrote records the generation a route patch of the rollout by produced.
func (w *writeState) wrote(by types.NamespacedName, route types.UID, generation int64) {
	w.wroteAt(by, route, generation, time.Now())
}

func (w *writeState) wroteAt(by types.NamespacedName, route types.UID, generation int64, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.written == nil {
		w.written = map[types.UID]routeWrite{}
	}
	if generation > w.written[route].generation {
		w.written[route] = routeWrite{generation: generation, by: by, at: now}
	}
	if now.Sub(w.sweptAt) < writtenMaxAge/2 {
		return
	}
	// At most twice per writtenMaxAge: one pass over what is left.
	w.sweptAt = now
	for uid, rw := range w.written {
		if now.Sub(rw.at) > writtenMaxAge {
			delete(w.written, uid)
		}
	}
}

// stale says whether a cached route is older than this process's last
// write of it. Once the cache shows that write, it forgets it: the cache
// never goes back.
func (w *writeState) stale(route types.UID, generation int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	rw, ok := w.written[route]
	if !ok {
		return false
	}
	if generation < rw.generation {
		return true
	}
	delete(w.written, route)
	return false
}

type rejection struct {
	reason   string
	message  string
	attempts int
}

// fight is one episode of another field manager changing the managed
// weights back.
type fight struct {
	since, lastDrift, nextAt time.Time
	// corrections made so far in the episode.
	corrections int
	manager     string
}

// backoffDelay is min·2^(n-1), at most max; 0 for n = 0.
func backoffDelay(n int, lo, hi time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

func (w *writeState) rejection(key types.NamespacedName) *plan.Problem {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r := w.rejected[key]; r != nil {
		return &plan.Problem{Reason: rolloutsv1.ReasonPatchRejected, Message: r.message}
	}
	return nil
}

// reject records a rejected patch and returns when to try again.
func (w *writeState) reject(key types.NamespacedName, msg string) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rejected == nil {
		w.rejected = map[types.NamespacedName]*rejection{}
	}
	r := w.rejected[key]
	if r == nil {
		r = &rejection{}
		w.rejected[key] = r
	}
	r.message = msg
	r.attempts++
	return backoffDelay(r.attempts, rejectRetryMin, rejectRetryMax)
}

// accepted forgets a past rejection once the routes took the patch.
func (w *writeState) accepted(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.rejected, key)
}

func (w *writeState) forget(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.rejected, key)
	delete(w.fights, key)
	delete(w.statusFrom, key)
	delete(w.header, key)
	delete(w.headerWritten, key)
	// The route writes of the rollout: another rollout on the same route
	// reads it as patched by the deleted one at worst, and its own patches
	// are pinned to the resourceVersion they read.
	for uid, rw := range w.written {
		if rw.by == key {
			delete(w.written, uid)
		}
	}
}

// sizes counts the entries of each map, for tests and docs/performance/memory.md.
func (w *writeState) sizes(into map[string]int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	into["writes.rejected"] = len(w.rejected)
	into["writes.fights"] = len(w.fights)
	into["writes.written"] = len(w.written)
	into["writes.statusFrom"] = len(w.statusFrom)
	into["writes.header"] = len(w.header)
	into["writes.headerWritten"] = len(w.headerWritten)
}

// inFight says whether a drift episode is open.
func (w *writeState) inFight(key types.NamespacedName) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fights[key] != nil
}

// drift records that the routes differ from the decision. It returns the
// episode, whether this drift opened it, and how long the correction must
// wait (0: correct now, which counts as a correction).
func (w *writeState) drift(key types.NamespacedName, now time.Time, manager string) (f fight, opened bool, wait time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fights == nil {
		w.fights = map[types.NamespacedName]*fight{}
	}
	cur := w.fights[key]
	if cur == nil || now.Sub(cur.lastDrift) >= max(fightQuiet, 2*backoffDelay(cur.corrections, fightDelayMin, fightDelayMax)) {
		cur = &fight{since: now}
		w.fights[key] = cur
		opened = true
	}
	cur.lastDrift = now
	if manager != "" {
		cur.manager = manager
	}
	if now.Before(cur.nextAt) {
		return *cur, opened, cur.nextAt.Sub(now)
	}
	cur.corrections++
	cur.nextAt = now.Add(backoffDelay(cur.corrections, fightDelayMin, fightDelayMax))
	return *cur, opened, 0
}

// landedThenChanged says whether a route records (applied-weights
// annotation) that the rollout's write of w landed, yet no longer carries w.
func landedThenChanged(found []plan.ManagedRoute, rollout string, w plan.Weights) bool {
	want := plan.DescribeIntent(w)
	for _, m := range found {
		if plan.AppliedWeights(m.Route)[rollout] != want {
			continue
		}
		if ops, _ := plan.WeightOps(m.Route, m.Rules, w); len(ops) > 0 {
			return true
		}
	}
	return false
}

// checkDrift compares the routes with what the last decision wanted. A
// difference in a route that records the rollout's write of those weights
// (applied-weights annotation), or during an open episode, is another
// writer's change: the first one of an episode is
// recorded as one Warning Event naming the other field manager, and each
// further correction waits twice as long as the one before, so that a tool
// that keeps writing its own weights meets a bounded write rate instead of a
// loop. It returns how long the correction waits, and sets obs.Contended
// meanwhile.
func (r *ModelRolloutReconciler) checkDrift(ctx context.Context, ro *rolloutsv1.ModelRollout, obs *plan.Observation) time.Duration {
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	before := plan.IntentOf(&ro.Status)
	if !before.Holds() || obs.Conflict != nil || len(obs.Found) == 0 || obs.Carries(before) {
		return 0
	}
	if abortPending(ro, obs.Requests) {
		// An abort writes the routes before the status: a route at stable
		// may be this abort's own write, landed before a crash.
		return 0
	}
	if !landedThenChanged(obs.Found, ro.Name, before) && !r.writes.inFight(key) {
		// The rollout's own write has not landed yet (a crash or a failed
		// patch after the status write): not drift.
		return 0
	}
	if r.rolloutStale(ctx, ro) {
		// The cache has not seen the rollout's latest status: the route
		// may carry a decision (a rollback, a step) made after the copy
		// this reconcile holds. Decide again once the cache catches up;
		// the status patch of this reconcile would be refused anyway.
		obs.Contended = nil
		return cacheLagRetry
	}
	manager, changes := otherWriter(r.withManagedFields(ctx, obs.Found), before)
	f, opened, wait := r.writes.drift(key, obs.Now, manager)
	who := "another writer"
	if f.manager != "" {
		who = fmt.Sprintf("field manager %q", f.manager)
	}
	if opened {
		r.event(ro, plan.DriftEvent(plan.Drift{Writer: who, Changes: changes, Restores: before, BackoffMax: fightDelayMax}))
	}
	log.FromContext(ctx).Info("HTTPRoute weights changed outside the rollout", "by", f.manager, "changes", changes, "corrections", f.corrections, "wait", wait)
	if wait > 0 {
		obs.Contended = &plan.Problem{Reason: rolloutsv1.ReasonContended, Message: fmt.Sprintf(
			"%s changed the managed weights back %d times since %s; next correction at %s. Exclude the weights from that tool's sync (see config/argocd) to end this",
			who, f.corrections, f.since.UTC().Format(time.RFC3339), f.nextAt.UTC().Format(time.RFC3339))}
	}
	return wait
}

// rolloutStale says whether the API server holds a newer version of the
// rollout than the cached copy. Asked only before a drift is reported, so
// it costs a read only when something looks wrong.
func (r *ModelRolloutReconciler) rolloutStale(ctx context.Context, ro *rolloutsv1.ModelRollout) bool {
	if r.APIReader == nil {
		return false
	}
	live := &rolloutsv1.ModelRollout{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}, live); err != nil {
		return false
	}
	return live.ResourceVersion != ro.ResourceVersion
}

// withManagedFields returns the found routes with their managedFields, which
// the cache does not keep, read from the API server. A route that cannot be
// read is returned as cached.
func (r *ModelRolloutReconciler) withManagedFields(ctx context.Context, found []plan.ManagedRoute) []plan.ManagedRoute {
	if r.APIReader == nil {
		return found
	}
	out := make([]plan.ManagedRoute, 0, len(found))
	for _, m := range found {
		live := m.Route.DeepCopy()
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: live.Namespace, Name: live.Name}, live); err == nil {
			m.Route = live
		}
		out = append(out, m)
	}
	return out
}

// otherWriter names the field manager that most recently changed the spec
// of a route that differs from the weights, from its managedFields, and
// describes the difference.
func otherWriter(found []plan.ManagedRoute, w plan.Weights) (manager, changes string) {
	var latest time.Time
	var all []string
	for _, m := range found {
		ops, ch := plan.WeightOps(m.Route, m.Rules, w)
		if len(ops) == 0 {
			continue
		}
		all = append(all, fmt.Sprintf("HTTPRoute %s: %s", m.Route.Name, plan.DescribeChanges(ch)))
		for _, mf := range m.Route.ManagedFields {
			if mf.Manager == FieldOwner || mf.FieldsV1 == nil || !bytes.Contains(mf.FieldsV1.Raw, []byte(`"f:spec"`)) {
				continue
			}
			if t := mf.Time; t != nil && (manager == "" || t.After(latest)) {
				latest = t.Time
				manager = mf.Manager
			} else if t == nil && manager == "" {
				manager = mf.Manager
			}
		}
	}
	return manager, strings.Join(all, "; ")
}
