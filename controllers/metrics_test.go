package controllers

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/modelrollout/modelrollout/analysis"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/config/grafana"
	"github.com/modelrollout/modelrollout/controllers/alerts"
	"github.com/modelrollout/modelrollout/internal/plan"
	"github.com/modelrollout/modelrollout/test/promharness"
)

// suiteMetrics is registered once with the controller-runtime registry,
// which the manager's metrics endpoint serves.
var suiteMetrics *Metrics

func withMetrics(r *ModelRolloutReconciler, _ ctrl.Manager) {
	if suiteMetrics == nil {
		suiteMetrics = DefaultMetrics()
	}
	r.Metrics = suiteMetrics
}

// scrape reads the value of one series from a metrics endpoint, or -1.
func scrape(url, name string, labels map[string]string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	Expect(err).NotTo(HaveOccurred())
	mf, ok := families[name]
	if !ok {
		return -1
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

var _ = Describe("Operator metrics", func() {
	It("exports phase, weight, step, transitions and rollbacks on /metrics", func() {
		ns := newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		createBackend(ns, "vllm-mixtral-v2", true)
		port, err := promharness.FreePort()
		Expect(err).NotTo(HaveOccurred())
		op := startOperatorOn(fmt.Sprintf("127.0.0.1:%d", port), withMetrics)
		DeferCleanup(op.stop)
		url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)

		moved := newRollout(ns, step(10, "1s"), step(100, "1s"))
		Expect(k8sClient.Create(suiteCtx, moved)).To(Succeed())
		back := newRollout(ns, step(20, "1h"), step(100, "1h"))
		back.Name = "mixtral"
		back.Spec.Routes[0].Rules = []rolloutsv1.RuleName{"mixtral"}
		back.Spec.Stable.Name = "vllm-mixtral"
		back.Spec.Canary.Name = "vllm-mixtral-v2"
		Expect(k8sClient.Create(suiteCtx, back)).To(Succeed())
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded))
		Eventually(func() int32 { return getRollout(ns, "mixtral").Status.CanaryWeight }).Should(BeEquivalentTo(20))
		annotate(ns, "mixtral", map[string]string{rolloutsv1.AnnotationAbort: "t1", rolloutsv1.AnnotationAbortReason: "bad outputs"})
		Eventually(phaseOf(ns, "mixtral")).Should(Equal(rolloutsv1.PhaseRolledBack))

		gpt := map[string]string{"namespace": ns, "name": "gpt4"}
		mix := map[string]string{"namespace": ns, "name": "mixtral"}
		with := func(l map[string]string, k, v string) map[string]string {
			out := map[string]string{k: v}
			for a, b := range l {
				out[a] = b
			}
			return out
		}
		Eventually(func() float64 { return scrape(url, "modelrollout_phase", with(gpt, "phase", "Succeeded")) }).Should(Equal(1.0))
		// Only the current phase has a series: one per rollout, not one per phase.
		Expect(scrape(url, "modelrollout_phase", with(gpt, "phase", "Progressing"))).To(Equal(-1.0))
		Expect(scrape(url, "modelrollout_canary_weight", gpt)).To(Equal(100.0))
		Expect(scrape(url, "modelrollout_step", gpt)).To(Equal(2.0))
		Expect(scrape(url, "modelrollout_step_transitions_total", with(gpt, "weight", "10"))).To(Equal(1.0))
		Expect(scrape(url, "modelrollout_step_transitions_total", with(gpt, "weight", "100"))).To(Equal(1.0))

		Eventually(func() float64 { return scrape(url, "modelrollout_phase", with(mix, "phase", "RolledBack")) }).Should(Equal(1.0))
		Expect(scrape(url, "modelrollout_canary_weight", mix)).To(Equal(0.0))
		Expect(scrape(url, "modelrollout_rollbacks_total", with(mix, "reason", rolloutsv1.ReasonAborted))).To(Equal(1.0))
		Expect(scrape(url, "controller_runtime_reconcile_total", map[string]string{"controller": "modelrollout", "result": "success"})).To(BeNumerically(">", 0))

		// A deleted rollout's series go away.
		Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "mixtral"))).To(Succeed())
		Eventually(func() float64 { return scrape(url, "modelrollout_canary_weight", mix) }).Should(Equal(-1.0))
	})
})

func TestGateThresholdAndStepClockSeries(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	ro := newRollout("ai-gateway", step(10, "30m"), step(50, ""), step(100, "1h"))
	ro.Spec.Analysis = &rolloutsv1.Analysis{Gates: []rolloutsv1.Gate{
		{Name: "errors", GateSpec: rolloutsv1.GateSpec{Max: ptr.To(0.05)}},
		{Name: "quality", GateSpec: rolloutsv1.GateSpec{Min: ptr.To(0.8), Max: ptr.To(1.0)}},
	}}
	m.observeGate(ro, ro.Spec.Analysis.Gates[0], rolloutsv1.GateStatus{Name: "errors", Verdict: rolloutsv1.VerdictPass, Value: "0.01"})
	m.observeGate(ro, ro.Spec.Analysis.Gates[1], rolloutsv1.GateStatus{Name: "quality", Verdict: rolloutsv1.VerdictFail, Value: "0.5"})
	for _, c := range []struct {
		gate, bound string
		want        float64
	}{{"errors", "max", 0.05}, {"quality", "min", 0.8}, {"quality", "max", 1}} {
		if got := testutil.ToFloat64(m.GateThreshold.WithLabelValues("ai-gateway", "gpt4", c.gate, c.bound)); got != c.want {
			t.Errorf("threshold %s %s = %v, want %v", c.gate, c.bound, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.GateThreshold); n != 3 {
		t.Errorf("%d threshold series, want 3 (errors has no min)", n)
	}

	started := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(phase rolloutsv1.Phase, idx int32) *plan.Decision {
		weight := ro.Spec.Steps[idx].Weight
		return &plan.Decision{Status: rolloutsv1.ModelRolloutStatus{Phase: phase, CurrentStepIndex: ptr.To(idx), CanaryWeight: weight, StepStartedAt: microTime(started)}}
	}
	m.observe(ro, at(rolloutsv1.PhaseProgressing, 0))
	if got := testutil.ToFloat64(m.StepStarted.WithLabelValues("ai-gateway", "gpt4")); got != float64(started.Unix()) {
		t.Errorf("step started = %v, want %d", got, started.Unix())
	}
	if got := testutil.ToFloat64(m.StepDue.WithLabelValues("ai-gateway", "gpt4")); got != float64(started.Add(30*time.Minute).Unix()) {
		t.Errorf("step due = %v, want the start + 30m", got)
	}
	// A step without a pause waits for a promote: it has no due time.
	m.observe(ro, at(rolloutsv1.PhasePaused, 1))
	if n := testutil.CollectAndCount(m.StepDue); n != 0 {
		t.Errorf("%d step due series for a step without a pause", n)
	}
	if n := testutil.CollectAndCount(m.StepStarted); n != 1 {
		t.Errorf("%d step started series while Paused, want 1", n)
	}
	// Finished rollouts have no step clock.
	m.observe(ro, at(rolloutsv1.PhaseRolledBack, 1))
	if n := testutil.CollectAndCount(m.StepStarted) + testutil.CollectAndCount(m.StepDue); n != 0 {
		t.Errorf("%d step clock series after a rollback", n)
	}
	// A gate removed from the spec loses its series at the next decision.
	ro.Spec.Analysis.Gates = ro.Spec.Analysis.Gates[:1]
	m.observe(ro, at(rolloutsv1.PhaseProgressing, 0))
	for _, v := range []prometheus.Collector{m.GateValue, m.GateEvaluations, m.GateThreshold} {
		if n := testutil.CollectAndCount(v); n != 1 {
			t.Errorf("%d series of a vector after the quality gate was removed, want 1 (errors)", n)
		}
	}
	m.forget("ai-gateway", "gpt4")
	if n := testutil.CollectAndCount(m.GateThreshold) + testutil.CollectAndCount(m.GateValue) + testutil.CollectAndCount(m.GateEvaluations); n != 0 {
		t.Errorf("%d gate series after the rollout was deleted", n)
	}
}

// families scrapes a metrics endpoint.
func families(url string) map[string]*dto.MetricFamily {
	resp, err := http.Get(url)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return fams
}

// exported records which metric names a scrape showed for one namespace:
// series with a namespace label count only for that namespace; series
// without one (the alert receiver's, controller-runtime's) always count.
func exported(fams map[string]*dto.MetricFamily, ns string, into map[string]bool) {
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			own := true
			for _, l := range m.GetLabel() {
				if l.GetName() == "namespace" && l.GetValue() != ns {
					own = false
				}
			}
			if !own {
				continue
			}
			into[name] = true
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				into[name+"_bucket"], into[name+"_sum"], into[name+"_count"] = true, true, true
			case dto.MetricType_SUMMARY:
				into[name+"_sum"], into[name+"_count"] = true, true
			}
		}
	}
}

var _ = Describe("The Grafana dashboard", func() {
	It("names only series that a running operator exports, after a rollout and a rollback", func() {
		ns := newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		createBackend(ns, "vllm-mixtral-v2", true)
		stable, canary := simulator("vllm-gpt4-v1", nil), simulator("vllm-gpt4-v2", nil)
		load(stable, canary)
		prom := prometheusFor(ns, stable, canary)

		// The operator as cmd/manager wires it: metrics, Prometheus gates
		// and the alert receiver sharing one set of series.
		port, err := promharness.FreePort()
		Expect(err).NotTo(HaveOccurred())
		const token = "dashboard-test-token"
		var receiver *alerts.Receiver
		op := startOperatorOn(fmt.Sprintf("127.0.0.1:%d", port), withMetrics, func(r *ModelRolloutReconciler, mgr ctrl.Manager) {
			r.Gates = &PrometheusGates{Secrets: mgr.GetAPIReader(), Clients: analysis.NewClientCache(16), Metrics: suiteMetrics, Egress: loopbackEgress}
			var err error
			receiver, err = alerts.New(alerts.Options{Client: mgr.GetClient(), Token: token, BindAddress: "127.0.0.1:0",
				AlertsReceived: suiteMetrics.AlertsReceived, AlertsMatched: suiteMetrics.AlertsMatched})
			Expect(err).NotTo(HaveOccurred())
			Expect(mgr.Add(receiver)).To(Succeed())
		})
		DeferCleanup(op.stop)
		url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
		seen := map[string]bool{}

		// A gated rollout walks to Succeeded; another holds its first
		// step for an hour, until an alert rolls it back.
		Expect(k8sClient.Create(suiteCtx, gatedRollout(ns, prom.URL(), step(10, "2s"), step(100, "2s")))).To(Succeed())
		held := newRollout(ns, step(20, "1h"), step(100, "1h"))
		held.Name = "mixtral"
		held.Spec.Routes[0].Rules = []rolloutsv1.RuleName{"mixtral"}
		held.Spec.Stable.Name, held.Spec.Canary.Name = "vllm-mixtral", "vllm-mixtral-v2"
		Expect(k8sClient.Create(suiteCtx, held)).To(Succeed())
		Eventually(phaseOf(ns, "mixtral")).Should(Equal(rolloutsv1.PhaseProgressing))
		Eventually(func() float64 {
			return scrape(url, "modelrollout_step_due_timestamp_seconds", map[string]string{"namespace": ns, "name": "mixtral"})
		}).Should(BeNumerically(">", 0))
		exported(families(url), ns, seen)

		Eventually(phaseOf(ns, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseSucceeded))
		payload := fmt.Sprintf(`{"version":"4","status":"firing","receiver":"modelrollout","alerts":[{"status":"firing",`+
			`"labels":{"alertname":"HighErrorRate","modelrollout":"mixtral","namespace":%q,"severity":"critical"},`+
			`"startsAt":%q,"fingerprint":"dashboard-test"}]}`, ns, time.Now().UTC().Format(time.RFC3339))
		Eventually(func() int {
			req, _ := http.NewRequest(http.MethodPost, "http://"+receiver.Addr().String()+alerts.Path, strings.NewReader(payload))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return 0
			}
			resp.Body.Close()
			return resp.StatusCode
		}).Should(Equal(http.StatusOK))
		Eventually(phaseOf(ns, "mixtral")).Should(Equal(rolloutsv1.PhaseRolledBack))
		Expect(getRollout(ns, "mixtral").Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonAlertFiring))
		Eventually(func() float64 {
			return scrape(url, "modelrollout_rollbacks_total", map[string]string{"namespace": ns, "name": "mixtral", "reason": rolloutsv1.ReasonAlertFiring})
		}).Should(Equal(1.0))
		exported(families(url), ns, seen)

		queries, err := grafana.Queries(grafana.JSON)
		Expect(err).NotTo(HaveOccurred())
		named := 0
		for _, q := range queries {
			e, err := grafana.Parse(q.Expr, grafana.Variables(ns, ".*"))
			Expect(err).NotTo(HaveOccurred(), q.Where)
			for _, name := range grafana.Metrics(e) {
				named++
				Expect(seen).To(HaveKey(name), "%s names %s, which the operator did not export for namespace %s", q.Where, name, ns)
			}
		}
		Expect(named).To(BeNumerically(">=", 10))
	})
})
