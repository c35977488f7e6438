package scale

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/promharness"
)

// Options configure a run. The zero value of a field means its default;
// the defaults are the goals of issue 10.
type Options struct {
	// Rollouts (N) are applied at once, each with its own HTTPRoute, canary
	// Service and EndpointSlice. Default 1000.
	Rollouts int
	// Steps (S) of the schedule, each with pause Pause (P). Defaults 5, 30s.
	Steps int
	Pause time.Duration
	// Namespaces the rollouts are spread over. Default 4.
	Namespaces int
	// IdleWindow is how long writes and queries are counted once every
	// rollout is Succeeded. Default 60s.
	IdleWindow time.Duration
	// Resident rollouts (Idle, with their routes, Services and
	// EndpointSlices) are created after the idle window; the manager's RSS
	// is read once they are settled. Negative skips; default 0 (skip).
	Resident int
	// Failover runs a second manager, kills the leader with SIGKILL and
	// measures until the other one resumes FailoverRollouts rollouts
	// (default 20).
	Failover         bool
	FailoverRollouts int
	// LeaseDuration, RenewDeadline and RetryPeriod are passed to both
	// managers when they have the --leader-elect-* flags; zero keeps the
	// manager's defaults.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// CeilingPatches bare HTTPRoute PATCHes on CeilingWorkers goroutines
	// measure the API server's write rate. Defaults 2000 and 8.
	CeilingPatches, CeilingWorkers int
	// Workers is the manager's --max-concurrent-reconciles; 0 keeps its
	// default.
	Workers int
	// ApplyWorkers create the objects in parallel. Default 16.
	ApplyWorkers int
	// Timeout bounds the wait for all rollouts to succeed. Default
	// 10 min + 10 × the schedule.
	Timeout time.Duration
	// Root is the repository root; found with `go env GOMOD` when empty.
	Root string
	// Dir holds the binaries, kubeconfig and logs; a temporary directory
	// (removed at the end) when empty.
	Dir string
	// HeapProfile, when set, is where the manager's heap profile is saved
	// once the resident rollouts have settled.
	HeapProfile string
	// Gates is the number of PromQL gates of every main rollout, evaluated
	// every GateInterval (default 10s) against a real Prometheus the run
	// starts; 0 runs without gates.
	Gates        int
	GateInterval time.Duration
	promAddress  string
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
}

func (o *Options) defaults() error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Rollouts, 1000)
	def(&o.Steps, 5)
	def(&o.Namespaces, 4)
	def(&o.FailoverRollouts, 20)
	def(&o.CeilingPatches, 2000)
	def(&o.CeilingWorkers, 8)
	def(&o.ApplyWorkers, 16)
	if o.Pause == 0 {
		o.Pause = 30 * time.Second
	}
	if o.GateInterval == 0 {
		o.GateInterval = 10 * time.Second
	}
	if o.Gates < 0 || o.Gates > 16 {
		return fmt.Errorf("need 0 <= gates <= 16")
	}
	if o.IdleWindow == 0 {
		o.IdleWindow = 60 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 10*time.Minute + 10*time.Duration(o.Steps)*o.Pause
	}
	if o.Steps < 1 || o.Steps > 20 || o.Rollouts < 1 || o.Namespaces < 1 {
		return fmt.Errorf("need 1 <= steps <= 20, rollouts >= 1, namespaces >= 1")
	}
	if o.Namespaces > o.Rollouts {
		o.Namespaces = o.Rollouts
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Root == "" {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
			return fmt.Errorf("find the repository root (go env GOMOD): %v", err)
		}
		o.Root = filepath.Dir(strings.TrimSpace(string(out)))
	}
	return nil
}

// Run runs the benchmark and returns its report.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	rep = &Report{Opts: o}
	logf := o.Logf
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "bench-scale-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		o.Dir = dir
	}

	// The control plane and the manager binary, in parallel.
	logf("starting kube-apiserver and etcd, building cmd/manager")
	var (
		api      *apiServer
		bin      string
		apiErr   error
		buildErr error
		wg       sync.WaitGroup
	)
	wg.Add(2)
	go func() { defer wg.Done(); api, apiErr = startAPIServer(o.Root, o.Dir) }()
	go func() { defer wg.Done(); bin, buildErr = buildManager(ctx, o.Root, o.Dir) }()
	wg.Wait()
	if api != nil {
		defer func() { _ = api.stop() }()
	}
	if err := errors.Join(apiErr, buildErr); err != nil {
		return nil, err
	}
	flags := managerFlags(bin)
	extra := []string{}
	if o.Workers > 0 {
		extra = append(extra, fmt.Sprintf("--max-concurrent-reconciles=%d", o.Workers))
	}
	if flags["zap-time-encoding"] {
		// Sub-second times in the logs, which time the failover's stages.
		extra = append(extra, "--zap-time-encoding=rfc3339nano")
	}
	rep.LeaseFlags = flags["leader-elect-lease-duration"] && flags["leader-elect-renew-deadline"] && flags["leader-elect-retry-period"]
	rep.LeaseDuration = 15 * time.Second // controller-runtime's default
	if rep.LeaseFlags {
		for _, f := range []struct {
			name string
			d    time.Duration
		}{{"leader-elect-lease-duration", o.LeaseDuration}, {"leader-elect-renew-deadline", o.RenewDeadline}, {"leader-elect-retry-period", o.RetryPeriod}} {
			if f.d > 0 {
				extra = append(extra, fmt.Sprintf("--%s=%s", f.name, f.d))
			}
		}
		if o.LeaseDuration > 0 {
			rep.LeaseDuration = o.LeaseDuration
		}
	}

	if o.Gates > 0 {
		logf("starting Prometheus for %d gates per rollout", o.Gates)
		prom, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{})
		if err != nil {
			return nil, fmt.Errorf("start Prometheus: %w", err)
		}
		defer func() { _ = prom.Close() }()
		o.promAddress = prom.URL()
		if flags["egress-allow"] {
			// Prometheus queries go through the egress policy, and this
			// Prometheus listens on loopback.
			extra = append(extra, "--egress-allow=127.0.0.0/8")
		}
	}

	rec := newRecorder()
	rec.gateInterval = o.GateInterval
	wctx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	if err := rec.start(wctx, api.c); err != nil {
		return nil, fmt.Errorf("start the watches: %w", err)
	}

	logf("measuring the API server's write ceiling: %d HTTPRoute PATCHes on %d goroutines", o.CeilingPatches, o.CeilingWorkers)
	if err := ceiling(ctx, api.c, o, rep); err != nil {
		return nil, fmt.Errorf("write ceiling: %w", err)
	}

	logf("starting the manager (leader election on, metrics on 127.0.0.1)")
	mgrA, err := startManager("manager-a", bin, api.kubeconfig, o.Dir, extra)
	if err != nil {
		return nil, err
	}
	managers := []*managerProc{mgrA}
	defer func() {
		for _, m := range managers {
			m.stop()
		}
	}()
	if err := poll(ctx, 3*time.Minute, 100*time.Millisecond, "the manager to lead", func() (bool, error) { return isLeader(ctx, mgrA) }); err != nil {
		return nil, err
	}
	if err := mainPhase(ctx, api, mgrA, rec, o, rep); err != nil {
		return rep, err
	}
	if err := idlePhase(ctx, mgrA, rec, o, rep); err != nil {
		return rep, err
	}
	if o.Resident > 0 {
		if err := residentPhase(ctx, api, mgrA, rec, o, rep); err != nil {
			return rep, err
		}
	}
	if o.Failover {
		b, err := failoverPhase(ctx, api, bin, extra, mgrA, rec, o, rep)
		if b != nil {
			managers = append(managers, b)
		}
		if err != nil {
			return rep, err
		}
	}
	rep.WatchErrors = rec.watchErrors()
	return rep, nil
}

// ceiling measures how many HTTPRoute PATCHes per second a plain,
// unthrottled client gets from this API server.
func ceiling(ctx context.Context, c client.Client, o Options, rep *Report) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ceilingNS}}); err != nil {
		return err
	}
	routes := make([]*gatewayv1.HTTPRoute, o.CeilingWorkers)
	for i := range routes {
		routes[i] = httpRoute(ceilingNS, fmt.Sprintf("ceiling-%d", i), "stable")
		if err := c.Create(ctx, routes[i]); err != nil {
			return err
		}
	}
	var (
		n   atomic.Int64
		mu  sync.Mutex
		lat []time.Duration
	)
	start := time.Now()
	err := parallel(ctx, o.CeilingWorkers, o.CeilingWorkers, func(ctx context.Context, w int) error {
		var mine []time.Duration
		for {
			i := n.Add(1)
			if i > int64(o.CeilingPatches) {
				break
			}
			patch := fmt.Sprintf(`[{"op":"add","path":"/spec/rules/0/backendRefs/0/weight","value":%d}]`, 100-i%2)
			t := time.Now()
			if err := c.Patch(ctx, routes[w], client.RawPatch(types.JSONPatchType, []byte(patch))); err != nil {
				return err
			}
			mine = append(mine, time.Since(t))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	el := time.Since(start)
	rep.CeilingPerSec = float64(o.CeilingPatches) / el.Seconds()
	rep.CeilingP50, rep.CeilingP99 = percentile(lat, 0.5), percentile(lat, 0.99)
	return nil
}

type snapshot struct {
	at     time.Time
	m      metrics
	w      writes
	c      counts
	rss    int64
	hwm    int64
	evals  float64
	heapIn float64
}

func snap(ctx context.Context, m *managerProc, rec *recorder) (snapshot, error) {
	s := snapshot{at: time.Now(), c: rec.counts()}
	mm, err := scrape(ctx, m.metricsAddr)
	if err != nil {
		return s, fmt.Errorf("scrape %s: %w", m.name, err)
	}
	s.m, s.w = mm, writesOf(mm)
	s.evals = mm.sum("modelrollout_gate_evaluations_total")
	s.heapIn = mm.sum("go_memstats_heap_inuse_bytes")
	s.rss, s.hwm, err = procStatus(m.pid())
	return s, err
}

// operatorWrites are the manager's writes between two snapshots, without
// its Lease renewals (PUTs the watch saw on the Lease).
func operatorWrites(a, b snapshot) writes {
	d := b.w.minus(a.w)
	d.put -= float64(b.c.lease - a.c.lease)
	if d.put < 0 {
		d.put = 0
	}
	return d
}

// gated gives a main rollout o.Gates PromQL gates against the run's
// Prometheus: constant expressions, so that every round passes and what is
// measured is the evaluator's timing, not the data.
func gated(ro *rolloutsv1.ModelRollout, o Options) *rolloutsv1.ModelRollout {
	if o.Gates == 0 {
		return ro
	}
	a := &rolloutsv1.Analysis{
		Interval:   durationString(o.GateInterval),
		Prometheus: &rolloutsv1.PrometheusSource{Address: o.promAddress},
	}
	for g := range o.Gates {
		a.Gates = append(a.Gates, rolloutsv1.Gate{Name: fmt.Sprintf("g%d", g), GateSpec: rolloutsv1.GateSpec{Query: fmt.Sprintf("vector(%d)", g), Max: ptrTo(float64(g + 1))}})
	}
	ro.Spec.Analysis = a
	return ro
}

// settled waits until the manager's work queue is empty.
func settled(ctx context.Context, m *managerProc) error {
	return poll(ctx, 5*time.Minute, 200*time.Millisecond, "the manager's work queue to drain", func() (bool, error) {
		if m.exited() {
			return false, m.exitError()
		}
		mm, err := scrape(ctx, m.metricsAddr)
		if err != nil {
			return false, nil
		}
		return mm.has("workqueue_depth") && mm.sum("workqueue_depth", `name="modelrollout"`) == 0, nil
	})
}

func mainPhase(ctx context.Context, api *apiServer, mgr *managerProc, rec *recorder, o Options, rep *Report) error {
	ws := weights(o.Steps)
	steps := make([]rolloutsv1.Step, len(ws))
	pause := durationString(o.Pause)
	for i, w := range ws {
		steps[i] = rolloutsv1.Step{Weight: w, Pause: ptrTo(pause)}
	}
	nsOf := func(i int) string { return fmt.Sprintf("%s%d", mainPrefix, i%o.Namespaces) }
	for k := range o.Namespaces {
		if err := api.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s%d", mainPrefix, k)}}); err != nil {
			return err
		}
	}
	before, err := snap(ctx, mgr, rec)
	if err != nil {
		return err
	}
	o.Logf("applying %d rollouts with their routes, canary Services and EndpointSlices (%d steps of %s)", o.Rollouts, o.Steps, o.Pause)
	applyStart := time.Now()
	err = parallel(ctx, o.Rollouts, o.ApplyWorkers, func(ctx context.Context, i int) error {
		ns := nsOf(i)
		for _, obj := range []client.Object{service(ns, canaryName(i)), endpointSlice(ns, canaryName(i)),
			httpRoute(ns, routeName(i), stableName(i)), gated(rollout(ns, i, true, steps), o)} {
			if err := api.c.Create(ctx, obj); err != nil {
				return fmt.Errorf("create %T %s/%s: %w", obj, ns, obj.GetName(), err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep.Apply = time.Since(applyStart)
	o.Logf("applied in %s; waiting for all %d to succeed (schedule %s)", rep.Apply.Round(time.Millisecond), o.Rollouts, time.Duration(o.Steps)*o.Pause)
	lastLog := time.Now()
	err = poll(ctx, o.Timeout, 200*time.Millisecond, "every rollout to succeed", func() (bool, error) {
		if mgr.exited() {
			return false, mgr.exitError()
		}
		_, n := rec.lastSucceeded()
		if time.Since(lastLog) > 15*time.Second {
			lastLog = time.Now()
			o.Logf("  %d/%d Succeeded after %s", n, o.Rollouts, time.Since(applyStart).Round(time.Second))
		}
		return n == o.Rollouts, nil
	})
	if err != nil {
		return err
	}
	last, _ := rec.lastSucceeded()
	rep.AllSucceeded = last.Sub(applyStart)
	rep.Schedule = time.Duration(o.Steps) * o.Pause
	if err := settled(ctx, mgr); err != nil {
		return err
	}
	after, err := snap(ctx, mgr, rec)
	if err != nil {
		return err
	}
	rep.PeakRSS = max(after.hwm, after.rss)
	rep.mainBefore, rep.mainAfter = before, after

	// Writes per transition: every rollout starts S steps, then succeeds.
	// Its finalizer, added once in its life before its first route write,
	// is counted apart.
	rep.Transitions = o.Rollouts * (o.Steps + 1)
	rep.FinalizerWrites = after.c.finalizers[groupMain] - before.c.finalizers[groupMain]
	rep.MainWrites = operatorWrites(before, after)
	rep.StatusWrites = after.c.rollouts[groupMain] - before.c.rollouts[groupMain]
	rep.RouteWrites = after.c.routes[groupMain] - before.c.routes[groupMain]
	rep.EventWrites = after.c.events[groupMain] - before.c.events[groupMain]
	rep.WriteRate = rep.MainWrites.total() / after.at.Sub(applyStart).Seconds()
	rep.GateLate, rep.GateSeenLate = rec.gateLateness()

	// Step lag: route written with step i+1's weight − (stepHistory[i].startedAt + pause).
	for k := range o.Namespaces {
		list := &rolloutsv1.ModelRolloutList{}
		if err := api.c.List(ctx, list, client.InNamespace(fmt.Sprintf("%s%d", mainPrefix, k))); err != nil {
			return err
		}
		for _, ro := range list.Items {
			var i int
			if _, err := fmt.Sscanf(ro.Name, "m-%d", &i); err != nil {
				continue
			}
			hist := ro.Status.StepHistory
			rw := rec.routeWeights(ro.Namespace + "/" + routeName(i))
			if len(hist) != len(ws) {
				rep.LagMissing += len(ws) - 1
				continue
			}
			for s := 0; s+1 < len(ws); s++ {
				end := hist[s].StartedAt.Add(o.Pause)
				at, ok := firstAt(rw, ws[s+1])
				if !ok {
					rep.LagMissing++
					continue
				}
				rep.StepLags = append(rep.StepLags, at.Sub(end))
				if prev, ok := firstAt(rw, ws[s]); ok {
					rep.StepBake = append(rep.StepBake, at.Sub(prev)-o.Pause)
				}
			}
			if t, ok := rec.succeeded(ro.Namespace + "/" + ro.Name); ok {
				rep.FinalLags = append(rep.FinalLags, t.Sub(hist[len(hist)-1].StartedAt.Add(o.Pause)))
			}
			if at, ok := firstAt(rw, ws[0]); ok {
				rep.FirstStep = append(rep.FirstStep, at.Sub(ro.CreationTimestamp.Time))
			}
		}
	}
	return nil
}

func firstAt(h []weightAt, w int32) (time.Time, bool) {
	for _, x := range h {
		if x.weight == w {
			return x.at, true
		}
	}
	return time.Time{}, false
}

func idlePhase(ctx context.Context, mgr *managerProc, rec *recorder, o Options, rep *Report) error {
	o.Logf("counting writes and queries over an idle window of %s", o.IdleWindow)
	start, err := snap(ctx, mgr, rec)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.IdleWindow): // the measurement window itself
	}
	end, err := snap(ctx, mgr, rec)
	if err != nil {
		return err
	}
	rep.IdleWindow = end.at.Sub(start.at)
	rep.IdleWrites = operatorWrites(start, end)
	rep.IdleQueries = end.evals - start.evals
	rep.IdlePersisted = 0
	for g := range numGroups {
		rep.IdlePersisted += (end.c.routes[g] - start.c.routes[g]) + (end.c.rollouts[g] - start.c.rollouts[g]) + (end.c.finalizers[g] - start.c.finalizers[g]) + (end.c.events[g] - start.c.events[g])
	}
	rep.RSSAfterRun, rep.HeapAfterRun = end.rss, end.heapIn
	rep.PeakRSS = max(rep.PeakRSS, end.hwm)
	return nil
}

func residentPhase(ctx context.Context, api *apiServer, mgr *managerProc, rec *recorder, o Options, rep *Report) error {
	nsCount := max(1, min(o.Namespaces, o.Resident))
	o.Logf("creating %d resident (Idle) rollouts with their routes, Services and EndpointSlices in %d namespaces", o.Resident, nsCount)
	for k := range nsCount {
		if err := api.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s%d", residentPrefix, k)}}); err != nil {
			return err
		}
	}
	pause := durationString(o.Pause)
	steps := []rolloutsv1.Step{{Weight: 100, Pause: ptrTo(pause)}}
	start := time.Now()
	err := parallel(ctx, o.Resident, o.ApplyWorkers, func(ctx context.Context, i int) error {
		ns := fmt.Sprintf("%s%d", residentPrefix, i%nsCount)
		for _, obj := range []client.Object{service(ns, canaryName(i)), endpointSlice(ns, canaryName(i)),
			httpRoute(ns, routeName(i), stableName(i)), rollout(ns, i, false, steps)} {
			if err := api.c.Create(ctx, obj); err != nil {
				return fmt.Errorf("create %T %s/%s: %w", obj, ns, obj.GetName(), err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep.ResidentApply = time.Since(start)
	if err := poll(ctx, 15*time.Minute, 500*time.Millisecond, "every resident rollout to be Idle", func() (bool, error) {
		if mgr.exited() {
			return false, mgr.exitError()
		}
		return rec.phaseCountOf(groupResident, rolloutsv1.PhaseIdle) == o.Resident, nil
	}); err != nil {
		return err
	}
	if err := settled(ctx, mgr); err != nil {
		return err
	}
	rep.ResidentSettle = time.Since(start)
	// The goal is RSS after GC: the heap profile endpoint runs one first.
	if err := mgr.heapProfile(ctx, o.HeapProfile); err != nil {
		return err
	}
	s, err := snap(ctx, mgr, rec)
	if err != nil {
		return err
	}
	rep.ResidentRSS, rep.ResidentHeap, rep.ResidentHWM = s.rss, s.heapIn, s.hwm
	return nil
}

func failoverPhase(ctx context.Context, api *apiServer, bin string, extra []string, leader *managerProc, rec *recorder, o Options, rep *Report) (*managerProc, error) {
	n := o.FailoverRollouts
	o.Logf("failover: %d rollouts at their first step, a standby manager, then kill -9 of the leader", n)
	if err := api.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: failoverNS}}); err != nil {
		return nil, err
	}
	long, short := rolloutsv1.Duration("1h"), rolloutsv1.Duration("1s")
	steps := []rolloutsv1.Step{{Weight: 10, Pause: &long}, {Weight: 100, Pause: &short}}
	if err := parallel(ctx, n, o.ApplyWorkers, func(ctx context.Context, i int) error {
		for _, obj := range []client.Object{service(failoverNS, canaryName(i)), endpointSlice(failoverNS, canaryName(i)),
			httpRoute(failoverNS, routeName(i), stableName(i)), rollout(failoverNS, i, true, steps)} {
			if err := api.c.Create(ctx, obj); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	list := func() ([]rolloutsv1.ModelRollout, error) {
		l := &rolloutsv1.ModelRolloutList{}
		err := api.c.List(ctx, l, client.InNamespace(failoverNS))
		return l.Items, err
	}
	if err := poll(ctx, 5*time.Minute, 200*time.Millisecond, "the failover rollouts to reach their first step", func() (bool, error) {
		items, err := list()
		ready := 0
		for _, ro := range items {
			if ro.Status.Phase == rolloutsv1.PhaseProgressing && ro.Status.CanaryWeight == 10 {
				ready++
			}
		}
		return ready == n, err
	}); err != nil {
		return nil, err
	}
	standby, err := startManager("manager-b", bin, api.kubeconfig, o.Dir, extra)
	if err != nil {
		return nil, err
	}
	standbyStart := time.Now()
	// Serving metrics is not ready: the metrics server starts before the
	// caches sync, and the leader elector after. Kill the leader only once
	// the standby is a candidate that has seen the Lease, and idle.
	if err := standbyReady(ctx, standby, 5*time.Minute); err != nil {
		return standby, err
	}
	rep.FailoverStandbyReady = time.Since(standbyStart)
	if ok, _ := isLeader(ctx, standby); ok {
		return standby, errors.New("the standby leads before the leader was killed")
	}
	killed := time.Now()
	leader.kill()
	token := fmt.Sprintf("failover-%d", killed.UnixNano())
	if err := parallel(ctx, n, o.ApplyWorkers, func(ctx context.Context, i int) error {
		ro := &rolloutsv1.ModelRollout{ObjectMeta: metav1.ObjectMeta{Namespace: failoverNS, Name: rolloutName(i)}}
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, rolloutsv1.AnnotationPromote, token)
		return api.c.Patch(ctx, ro, client.RawPatch(types.MergePatchType, []byte(patch)))
	}); err != nil {
		return standby, err
	}
	var leads time.Duration
	resumed := map[string]time.Duration{}
	err = poll(ctx, 5*time.Minute, 100*time.Millisecond, "the standby to resume every rollout", func() (bool, error) {
		if standby.exited() {
			return false, standby.exitError()
		}
		if leads == 0 {
			if ok, _ := isLeader(ctx, standby); ok {
				leads = time.Since(killed)
			}
		}
		items, err := list()
		if err != nil {
			return false, err
		}
		for _, ro := range items {
			if _, seen := resumed[ro.Name]; !seen && ro.Status.LastHandledPromote == token {
				resumed[ro.Name] = time.Since(killed)
			}
		}
		return len(resumed) == n && leads > 0, nil
	})
	if err != nil {
		return standby, err
	}
	all := make([]time.Duration, 0, n)
	for _, d := range resumed {
		all = append(all, d)
	}
	slices.Sort(all)
	rep.FailoverRan = true
	rep.FailoverLeads, rep.FailoverFirst, rep.FailoverAll = leads, all[0], all[len(all)-1]
	// The standby's own log times the stages without the polling above.
	if ts, err := logTimes(standby.logPath, logLeaseAcquired, logWorkersStarted); err == nil {
		acquired, workers := ts[logLeaseAcquired], ts[logWorkersStarted]
		if !acquired.IsZero() {
			rep.FailoverAcquired = acquired.Sub(killed)
			if !workers.IsZero() {
				rep.FailoverWorkers = workers.Sub(acquired)
			}
		}
	}
	return standby, nil
}

func ptrTo[T any](v T) *T { return &v }

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p+0.5)]
}
