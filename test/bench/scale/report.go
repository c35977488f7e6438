package scale

import (
	"fmt"
	"strings"
	"time"
)

// Report holds a run's measurements.
type Report struct {
	Opts Options

	CeilingPerSec          float64
	CeilingP50, CeilingP99 time.Duration

	Apply        time.Duration
	AllSucceeded time.Duration // from the first create to the last Succeeded seen
	Schedule     time.Duration
	StepLags     []time.Duration // route written − previous pause end
	FinalLags    []time.Duration // Succeeded seen − last pause end
	StepBake     []time.Duration // route written with step i+1 − with step i − pause, both seen by the watch
	FirstStep    []time.Duration // first weight written − rollout created
	LagMissing   int

	PeakRSS      int64
	RSSAfterRun  int64
	HeapAfterRun float64

	Transitions  int
	MainWrites   writes
	StatusWrites int64
	// GateLate and GateSeenLate are, for every gate evaluation of the main
	// rollouts, the round's start (status) and the watch seeing its verdict,
	// each minus when it was due.
	GateLate, GateSeenLate []time.Duration
	// FinalizerWrites are the rollouts' finalizer additions: one per
	// rollout in its life, not per transition.
	FinalizerWrites int64
	RouteWrites     int64
	EventWrites     int64
	WriteRate       float64

	IdleWindow    time.Duration
	IdleWrites    writes
	IdlePersisted int64
	IdleQueries   float64

	ResidentApply, ResidentSettle time.Duration
	ResidentRSS, ResidentHWM      int64
	ResidentHeap                  float64

	LeaseFlags                                bool
	LeaseDuration                             time.Duration
	FailoverRan                               bool
	FailoverLeads, FailoverFirst, FailoverAll time.Duration
	// FailoverStandbyReady is how long the standby took, from its start,
	// to run its leader elector and go idle; the leader is killed then.
	FailoverStandbyReady time.Duration
	// FailoverAcquired (lease acquired, after the kill) and FailoverWorkers
	// (workers started, after the lease was acquired) are read from the
	// standby's log; zero when it lacks the lines.
	FailoverAcquired, FailoverWorkers time.Duration

	WatchErrors []string

	mainBefore, mainAfter snapshot
}

// Row is one line of the table: a measure, its goal in issue 10 and what
// this run measured.
type Row struct {
	Measure, Goal, Measured string
}

func mib(b int64) string    { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
func mibf(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }
func secs(d time.Duration) string {
	if d < time.Second && d > -time.Second {
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func lagSummary(d []time.Duration) string {
	if len(d) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s, p99 %s, max %s", secs(percentile(d, 0.5)), secs(percentile(d, 0.99)), secs(percentile(d, 1)))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// Rows lists every measure of the table, in order. Rows of skipped phases
// say so.
func (r *Report) Rows() []Row {
	o := r.Opts
	run := fmt.Sprintf("%d rollouts, %d × %s", o.Rollouts, o.Steps, o.Pause)
	rows := []Row{
		{"API server write ceiling (bare HTTPRoute PATCH, unthrottled client)",
			"reference for the stress run",
			fmt.Sprintf("%.0f PATCH/s (%d patches on %d goroutines; p50 %s, p99 %s)", r.CeilingPerSec, o.CeilingPatches, o.CeilingWorkers, secs(r.CeilingP50), secs(r.CeilingP99))},
		{"apply (" + run + ", each with route, canary Service, EndpointSlice)",
			"—", fmt.Sprintf("%s (4 objects per rollout, %d in parallel)", secs(r.Apply), o.ApplyWorkers)},
	}
	lag := fmt.Sprintf("%s over %d transitions", lagSummary(r.StepLags), len(r.StepLags))
	if r.LagMissing > 0 {
		lag += fmt.Sprintf(" (%d not observed)", r.LagMissing)
	}
	if len(r.StepLags) > 0 {
		lag += "; " + verdict(percentile(r.StepLags, 0.99) < time.Second) + " at this schedule"
	}
	bake := fmt.Sprintf("min %s, %s over %d transitions", secs(percentile(r.StepBake, 0)), lagSummary(r.StepBake), len(r.StepBake))
	if len(r.StepBake) > 0 {
		bake += "; " + verdict(percentile(r.StepBake, 0) >= 0) + " (never short)"
	}
	rows = append(rows,
		Row{"step lag: route written − (stepHistory[i].startedAt + pause)", "p99 < 1 s (1,000 × 5 × 30 s)", lag},
		Row{"step baked − pause: route write to route write, as users see it (watch, harness clock; startedAt to the µs)", "≥ 0 (a step never bakes short), p99 < 1 s", bake},
		Row{"  last pause end → Succeeded seen", "—", lagSummary(r.FinalLags)},
		Row{"  rollout created → first weight written", "—", lagSummary(r.FirstStep)},
		Row{"all Succeeded (from the first create)", "report against the schedule and the write ceiling",
			fmt.Sprintf("%s for a %s schedule (%.2f×); operator wrote %.0f/s on average = %.0f%% of the ceiling",
				secs(r.AllSucceeded), r.Schedule, r.AllSucceeded.Seconds()/r.Schedule.Seconds(), r.WriteRate, 100*r.WriteRate/r.CeilingPerSec)},
		Row{"manager RSS, " + run, "— (issue: 118 MiB peak at 1,000)",
			fmt.Sprintf("peak %s (VmHWM); %s after the run, Go heap in use %s (no forced GC: the manager exposes no trigger)",
				mib(r.PeakRSS), mib(r.RSSAfterRun), mibf(r.HeapAfterRun))},
	)
	t := float64(max(1, r.Transitions))
	per := func(v float64) string { return fmt.Sprintf("%.3f", v/t) }
	w := r.MainWrites
	// The goal's words, one route per rollout: up to 2 route writes, plus
	// the status write, plus one Event: at most 4 persisted writes per
	// transition. Each part is shown too, with the status writes beyond one
	// per transition counted.
	sum := float64(r.RouteWrites+r.StatusWrites+r.EventWrites) / t
	met := float64(r.RouteWrites)/t <= 2 && sum <= 4
	extra := max(0, r.StatusWrites-int64(r.Transitions))
	rows = append(rows, Row{"writes per step transition (" + fmt.Sprint(r.Transitions) + " = N × (S step starts + Succeeded), one route each)",
		"≤ 2 object writes per route touched, plus status, plus one Event (≤ 4 per transition here)",
		fmt.Sprintf("%.3f persisted (watch): %s status (%d beyond one per transition), %s route, %s Event, and %d finalizer writes apart (%.2f per rollout, once in its life); %s API writes (PATCH %s, POST %s, PUT %s, DELETE %s; client-go rest_client_requests_total, lease renewals excluded); %s",
			sum, per(float64(r.StatusWrites)), extra, per(float64(r.RouteWrites)), per(float64(r.EventWrites)),
			r.FinalizerWrites, float64(r.FinalizerWrites)/float64(max(1, o.Rollouts)),
			per(w.total()), per(w.patch), per(w.post), per(w.put), per(w.del), verdict(met))})
	if o.Gates > 0 {
		within := 0
		for _, d := range r.GateLate {
			if d >= -time.Second && d <= time.Second {
				within++
			}
		}
		rows = append(rows, Row{fmt.Sprintf("gate evaluations (%d PromQL gates per rollout every %s, real Prometheus)", o.Gates, o.GateInterval),
			"every evaluation on time ± 1 s; no step waits on another rollout's query",
			fmt.Sprintf("%d evaluations; round started − due (status, 1 s precision): min %s, p50 %s, p99 %s, max %s, %d within ± 1 s; verdict in status − due (harness clock): p50 %s, p99 %s, max %s; %s",
				len(r.GateLate), secs(percentile(r.GateLate, 0)), secs(percentile(r.GateLate, 0.5)), secs(percentile(r.GateLate, 0.99)), secs(percentile(r.GateLate, 1)), within,
				secs(percentile(r.GateSeenLate, 0.5)), secs(percentile(r.GateSeenLate, 0.99)), secs(percentile(r.GateSeenLate, 1)),
				verdict(len(r.GateLate) > 0 && within == len(r.GateLate)))})
	} else {
		rows = append(rows, Row{"gate evaluations", "every evaluation on time ± 1 s (1,000 rollouts × 3 gates)", "skipped (-gates=0)"})
	}
	rows = append(rows,
		Row{fmt.Sprintf("idle writes (%s after all Succeeded)", secs(r.IdleWindow)), "0 over 10 minutes",
			fmt.Sprintf("%.0f API writes (PATCH %.0f, POST %.0f, PUT %.0f, DELETE %.0f), %d persisted; %s",
				r.IdleWrites.total(), r.IdleWrites.patch, r.IdleWrites.post, r.IdleWrites.put, r.IdleWrites.del, r.IdlePersisted, verdict(r.IdleWrites.total() == 0))},
		Row{"idle Prometheus queries (same window)", "0 over 10 minutes",
			fmt.Sprintf("%.0f gate evaluations (modelrollout_gate_evaluations_total)", r.IdleQueries)},
	)
	if o.Resident > 0 {
		rows = append(rows, Row{fmt.Sprintf("resident: %d Idle rollouts + routes, Services, EndpointSlices", o.Resident),
			"manager RSS ≤ 256 MiB after GC (10,000 resident)",
			fmt.Sprintf("RSS %s settled, after a GC (/debug/pprof/heap?gc=1), heap in use %s, peak %s (the manager also holds the %d rollouts above); applied in %s, settled after %s; %s",
				mib(r.ResidentRSS), mibf(r.ResidentHeap), mib(r.ResidentHWM), o.Rollouts, secs(r.ResidentApply), secs(r.ResidentSettle),
				verdict(r.ResidentRSS <= 256<<20))})
	} else {
		rows = append(rows, Row{"resident rollouts", "manager RSS ≤ 256 MiB after GC (10,000 resident)", "skipped (-resident=0)"})
	}
	lease := fmt.Sprintf("lease %s", r.LeaseDuration)
	if !r.LeaseFlags {
		lease += " (controller-runtime default: the manager has no --leader-elect-lease-duration flag)"
	}
	if r.FailoverRan {
		rows = append(rows, Row{"leader failover after kill -9", "every rollout resumed ≤ lease duration + 2 s; lease flags exposed",
			fmt.Sprintf("standby leads after %s; first of %d rollouts resumed after %s, all after %s%s; %s; %s",
				secs(r.FailoverLeads), o.FailoverRollouts, secs(r.FailoverFirst), secs(r.FailoverAll), failoverStages(r), lease,
				verdict(r.FailoverAll <= r.LeaseDuration+2*time.Second && r.LeaseFlags))})
	} else {
		rows = append(rows, Row{"leader failover after kill -9", "every rollout resumed ≤ lease duration + 2 s; lease flags exposed", "skipped (-failover=false)"})
	}
	return rows
}

// failoverStages renders the failover's stages from the standby's log and
// how long the standby took to be ready before the kill.
func failoverStages(r *Report) string {
	s := fmt.Sprintf(" (standby ready %s after its start, then the kill", secs(r.FailoverStandbyReady))
	if r.FailoverAcquired != 0 {
		s += fmt.Sprintf("; its log: lease acquired %s after the kill", secs(r.FailoverAcquired))
		if r.FailoverWorkers != 0 {
			s += fmt.Sprintf(", workers started %s after that", secs(r.FailoverWorkers))
		}
	}
	return s + ")"
}

// Table renders the rows as a Markdown table.
func (r *Report) Table() string {
	var b strings.Builder
	o := r.Opts
	fmt.Fprintf(&b, "ModelRollout scale bench: N=%d rollouts in %d namespaces, S=%d steps × P=%s, no gates, manager workers=%s\n\n",
		o.Rollouts, o.Namespaces, o.Steps, o.Pause, workersString(o.Workers))
	b.WriteString("| measure | goal (issue 10) | measured |\n|---|---|---|\n")
	for _, row := range r.Rows() {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", row.Measure, row.Goal, row.Measured)
	}
	for _, e := range r.WatchErrors {
		fmt.Fprintf(&b, "\nwatch error: %s", e)
	}
	return b.String()
}

func workersString(w int) string {
	if w == 0 {
		return "manager default"
	}
	return fmt.Sprint(w)
}
