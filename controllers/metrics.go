package controllers

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Metrics are the operator's own series, served on the controller-runtime
// metrics endpoint next to its controller_runtime_reconcile_* series (whose
// controller_runtime_reconcile_errors_total{controller="modelrollout"}
// counts reconcile errors).
type Metrics struct {
	Phase           *prometheus.GaugeVec
	CanaryWeight    *prometheus.GaugeVec
	Step            *prometheus.GaugeVec
	GateValue       *prometheus.GaugeVec
	GateEvaluations *prometheus.CounterVec
	Rollbacks       *prometheus.CounterVec
	StepTransitions *prometheus.CounterVec
	AlertsReceived  *prometheus.CounterVec
	AlertsMatched   prometheus.Counter
	// GateThreshold is a gate's bound (bound="min" or "max"), to draw next
	// to GateValue.
	GateThreshold *prometheus.GaugeVec
	// StepStarted and StepDue are when the current step's clock started and
	// when its pause ends; time() - StepDue is how far a step has run past
	// its schedule (held by a gate, a pause or a missing promote). Both
	// exist only while the rollout is Progressing or Paused, StepDue only
	// for a step with a pause.
	StepStarted *prometheus.GaugeVec
	StepDue     *prometheus.GaugeVec
	// QueueDepth is the number of calls of a namespace waiting for a slot
	// of a shared pool (pool="webhook", "gate" or "prompt"); a namespace
	// with none waiting has no series.
	QueueDepth *prometheus.GaugeVec
	// NotificationsDropped counts the OnTransition notifications dropped
	// from a full queue (notifyQueueMax waiting for one rollout's webhook).
	NotificationsDropped *prometheus.CounterVec

	mu sync.Mutex
	// gates lists, per rollout, the gate names that have series, so that
	// the series of a gate removed from the spec are deleted.
	gates map[string]map[string]bool
}

// NewMetrics creates the series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelrollout_phase",
			Help: "1, with the rollout's current phase as the phase label; other phases have no series.",
		}, []string{"namespace", "name", "phase"}),
		CanaryWeight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelrollout_canary_weight",
			Help: "Canary weight in percent that the rollout holds its routes at.",
		}, []string{"namespace", "name"}),
		Step: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelrollout_step",
			Help: "Current step, counted from 1; 0 before the first step.",
		}, []string{"namespace", "name"}),
		GateValue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelrollout_gate_value",
			Help: "Latest value measured by a gate.",
		}, []string{"namespace", "name", "gate"}),
		GateEvaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelrollout_gate_evaluations_total",
			Help: "Gate evaluations by verdict (Pass, Fail, NoData, Error).",
		}, []string{"namespace", "name", "gate", "verdict"}),
		Rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelrollout_rollbacks_total",
			Help: "Rollbacks by reason (GateFailed, AlertFiring, Aborted, ProgressDeadlineExceeded, InconclusiveAnalysis).",
		}, []string{"namespace", "name", "reason"}),
		StepTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelrollout_step_transitions_total",
			Help: "Steps started, by the weight they set.",
		}, []string{"namespace", "name", "weight"}),
		AlertsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelrollout_alerts_received_total",
			Help: "Alerts received from Alertmanager, by status (firing, resolved).",
		}, []string{"status"}),
		AlertsMatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "modelrollout_alerts_matched_total",
			Help: "Firing alerts that matched at least one rollout.",
		}),
		GateThreshold: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelrollout_gate_threshold",
			Help: "A gate's bound: its value passes when >= the min and <= the max.",
		}, []string{"namespace", "name", "gate", "bound"}),
		StepStarted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelrollout_step_started_timestamp_seconds",
			Help: "Unix time the current step's clock started, while the rollout is Progressing or Paused.",
		}, []string{"namespace", "name"}),
		StepDue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelrollout_step_due_timestamp_seconds",
			Help: "Unix time the current step's pause ends, while the rollout is Progressing or Paused; absent for a step that waits for a promote.",
		}, []string{"namespace", "name"}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modelrollout_queue_depth",
			Help: "Calls of a namespace waiting for a slot of a shared pool: webhook calls, gate rounds or prompt gate evaluations (pool label). Absent while none waits.",
		}, []string{"pool", "namespace"}),
		NotificationsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelrollout_webhook_notifications_dropped_total",
			Help: "OnTransition notifications dropped because too many of the rollout's notifications to that webhook were waiting to be sent.",
		}, []string{"namespace", "name", "webhook"}),
	}
	reg.MustRegister(m.Phase, m.CanaryWeight, m.Step, m.GateValue, m.GateEvaluations, m.Rollbacks, m.StepTransitions, m.AlertsReceived, m.AlertsMatched,
		m.GateThreshold, m.StepStarted, m.StepDue, m.NotificationsDropped)
	reg.MustRegister(m.QueueDepth)
	return m
}

// DefaultMetrics registers the series with the controller-runtime registry.
func DefaultMetrics() *Metrics { return NewMetrics(metrics.Registry) }

var allPhases = []rolloutsv1.Phase{rolloutsv1.PhaseIdle, rolloutsv1.PhaseWaiting, rolloutsv1.PhaseProgressing,
	rolloutsv1.PhasePaused, rolloutsv1.PhaseSucceeded, rolloutsv1.PhaseRolledBack}

// queueDepth is the queue-depth gauge, nil without metrics.
func (m *Metrics) queueDepth() *prometheus.GaugeVec {
	if m == nil {
		return nil
	}
	return m.QueueDepth
}

// observe records a rollout's status and the transitions of a decision.
func (m *Metrics) observe(ro *rolloutsv1.ModelRollout, d *plan.Decision) {
	if m == nil {
		return
	}
	st := &d.Status
	// One series per rollout, its current phase: with one per phase (0 for
	// the others), a fleet of mostly settled rollouts kept five idle series
	// each in memory and in every scrape.
	for _, p := range allPhases {
		if p != st.Phase {
			m.Phase.DeleteLabelValues(ro.Namespace, ro.Name, string(p))
		}
	}
	m.Phase.WithLabelValues(ro.Namespace, ro.Name, string(st.Phase)).Set(1)
	if st.Phase == rolloutsv1.PhaseIdle {
		// No canary: no weight and no step to show.
		m.CanaryWeight.DeleteLabelValues(ro.Namespace, ro.Name)
		m.Step.DeleteLabelValues(ro.Namespace, ro.Name)
	} else {
		m.CanaryWeight.WithLabelValues(ro.Namespace, ro.Name).Set(float64(st.CanaryWeight))
		step := 0.0
		if st.CurrentStepIndex != nil {
			step = float64(*st.CurrentStepIndex + 1)
		}
		m.Step.WithLabelValues(ro.Namespace, ro.Name).Set(step)
	}
	m.observeStepClock(ro, st)
	m.pruneGates(ro)
	for _, e := range d.Events {
		switch e.Reason {
		case "StepStarted":
			m.StepTransitions.WithLabelValues(ro.Namespace, ro.Name, itoa32(st.CanaryWeight)).Inc()
		case "RolledBack":
			reason := rolloutsv1.ReasonRolledBack
			if st.Rollback != nil {
				reason = st.Rollback.Reason
			}
			m.Rollbacks.WithLabelValues(ro.Namespace, ro.Name, reason).Inc()
		}
	}
}

// observeStepClock records when the current step started and when its
// pause ends, for Progressing and Paused rollouts; it drops both otherwise.
func (m *Metrics) observeStepClock(ro *rolloutsv1.ModelRollout, st *rolloutsv1.ModelRolloutStatus) {
	key := prometheus.Labels{"namespace": ro.Namespace, "name": ro.Name}
	running := st.Phase == rolloutsv1.PhaseProgressing || st.Phase == rolloutsv1.PhasePaused
	if !running || st.StepStartedAt == nil || st.CurrentStepIndex == nil {
		m.StepStarted.Delete(key)
		m.StepDue.Delete(key)
		return
	}
	start := st.StepStartedAt.Time
	m.StepStarted.With(key).Set(float64(start.UnixNano()) / 1e9)
	// The pause of the step in force, which an edit of spec.steps may have
	// removed (status.stepPause); spec.steps for a status without it.
	stepPause := st.StepPause
	if steps, i := ro.Spec.EffectiveSteps(), int(*st.CurrentStepIndex); stepPause == nil && i >= 0 && i < len(steps) && steps[i].Weight == st.CanaryWeight {
		stepPause = steps[i].Pause
	}
	if stepPause == nil {
		m.StepDue.Delete(key)
		return
	}
	pause, err := stepPause.Parse()
	if err != nil {
		m.StepDue.Delete(key)
		return
	}
	m.StepDue.With(key).Set(float64(start.Add(pause).UnixNano()) / 1e9)
}

// pruneGates deletes the series of gates no longer in the rollout's spec.
func (m *Metrics) pruneGates(ro *rolloutsv1.ModelRollout) {
	key := ro.Namespace + "/" + ro.Name
	inSpec := map[string]bool{}
	if ro.Spec.Analysis != nil {
		for _, g := range ro.Spec.Analysis.Gates {
			inSpec[g.Name] = true
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.gates[key] {
		if inSpec[name] {
			continue
		}
		l := prometheus.Labels{"namespace": ro.Namespace, "name": ro.Name, "gate": name}
		m.GateValue.DeletePartialMatch(l)
		m.GateEvaluations.DeletePartialMatch(l)
		m.GateThreshold.DeletePartialMatch(l)
		delete(m.gates[key], name)
	}
	if len(m.gates[key]) == 0 {
		delete(m.gates, key)
	}
}

// observeGate records an evaluation of gate, as evaluated: for a gate with
// a templateRef, resolved, so its thresholds are the template's unless the
// gate overrides them.
func (m *Metrics) observeGate(ro *rolloutsv1.ModelRollout, g rolloutsv1.Gate, gs rolloutsv1.GateStatus) {
	if m == nil {
		return
	}
	m.mu.Lock()
	if m.gates == nil {
		m.gates = map[string]map[string]bool{}
	}
	key := ro.Namespace + "/" + ro.Name
	if m.gates[key] == nil {
		m.gates[key] = map[string]bool{}
	}
	m.gates[key][gs.Name] = true
	m.mu.Unlock()
	m.GateEvaluations.WithLabelValues(ro.Namespace, ro.Name, gs.Name, string(gs.Verdict)).Inc()
	if v, err := parseFloat(gs.Value); err == nil {
		m.GateValue.WithLabelValues(ro.Namespace, ro.Name, gs.Name).Set(v)
	}
	for bound, v := range map[string]*float64{"min": g.Min, "max": g.Max} {
		l := prometheus.Labels{"namespace": ro.Namespace, "name": ro.Name, "gate": g.Name, "bound": bound}
		if v == nil {
			m.GateThreshold.Delete(l)
			continue
		}
		m.GateThreshold.With(l).Set(*v)
	}
}

// forget drops the series of a deleted rollout.
func (m *Metrics) forget(namespace, name string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	delete(m.gates, namespace+"/"+name)
	m.mu.Unlock()
	l := prometheus.Labels{"namespace": namespace, "name": name}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.Phase, m.CanaryWeight, m.Step, m.GateValue, m.GateEvaluations, m.Rollbacks, m.StepTransitions,
		m.GateThreshold, m.StepStarted, m.StepDue, m.NotificationsDropped,
	} {
		v.DeletePartialMatch(l)
	}
}

// sizes counts the rollouts with gate series, for tests and docs/performance/memory.md.
func (m *Metrics) sizes(into map[string]int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	into["metrics.gates"] = len(m.gates)
}
