package controllers

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/modelrollout/modelrollout/analysis"
	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/promharness"
	"github.com/modelrollout/modelrollout/test/vllmsim"
)

// These specs run the controller against a real Prometheus (the Debian
// package) that scrapes vLLM simulators receiving real requests.

// simulator starts a vLLM simulator serving as the named backend.
func simulator(name string, tweak func(*vllmsim.Config)) *vllmsim.Server {
	cfg := vllmsim.DefaultConfig()
	cfg.Name = name
	cfg.TTFT = 5 * time.Millisecond
	cfg.InterTokenLatency = time.Millisecond
	cfg.Tokens = 4
	cfg.Seed = 7
	if tweak != nil {
		tweak(&cfg)
	}
	s := vllmsim.New(cfg)
	_, err := s.Start("127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(s.Close)
	return s
}

// load sends chat completions to the simulators until stopped, a few
// concurrent requests at a time, bounded by the spec's lifetime.
func load(sims ...*vllmsim.Server) {
	ctx, cancel := context.WithCancel(suiteCtx)
	var wg sync.WaitGroup
	for _, s := range sims {
		for range 2 {
			wg.Add(1)
			go func(url string) {
				defer wg.Done()
				body := []byte(`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}`)
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					if resp, err := http.DefaultClient.Do(req); err == nil {
						resp.Body.Close()
					}
					select {
					case <-ctx.Done():
					case <-time.After(20 * time.Millisecond):
					}
				}
			}(s.URL())
		}
	}
	DeferCleanup(func() { cancel(); wg.Wait() })
}

// prometheusFor starts Prometheus scraping the simulators, each labelled
// with its Service name and namespace as a ServiceMonitor would.
func prometheusFor(ns string, sims ...*vllmsim.Server) *promharness.Prometheus {
	if err := promharness.Available(); err != nil {
		Fail(err.Error())
	}
	var targets []promharness.Target
	for _, s := range sims {
		targets = append(targets, promharness.Target{Job: "vllm", Addr: s.Addr(),
			Labels: map[string]string{"service": s.Config().Name, "namespace": ns}})
	}
	ctx, cancel := context.WithTimeout(suiteCtx, 2*time.Minute)
	defer cancel()
	p, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{Targets: targets, LogWriter: GinkgoWriter})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(p.Close)
	Expect(p.WaitForTargetsUp(ctx)).To(Succeed())
	return p
}

// loopbackEgress lets the operator under test reach the test's Prometheus
// and servers on loopback, as --egress-allow=127.0.0.0/8 would: Prometheus
// queries go through the egress policy by default.
var loopbackEgress = egress.MustNew(nil, []string{"127.0.0.0/8"})

func withPrometheusGates(r *ModelRolloutReconciler, mgr ctrl.Manager) {
	r.Gates = &PrometheusGates{Secrets: mgr.GetAPIReader(), Clients: analysis.NewClientCache(16), Egress: loopbackEgress}
}

// withStrictGates is withPrometheusGates with the default egress policy,
// which refuses loopback.
func withStrictGates(r *ModelRolloutReconciler, mgr ctrl.Manager) {
	r.Gates = &PrometheusGates{Secrets: mgr.GetAPIReader(), Clients: analysis.NewClientCache(16)}
}

// gatedRollout is the rollout of the user story with its two gates, on
// short steps.
func gatedRollout(ns, prom string, steps ...rolloutsv1.Step) *rolloutsv1.ModelRollout {
	ro := newRollout(ns, steps...)
	ro.Spec.Analysis = &rolloutsv1.Analysis{
		Interval:   "3s",
		Prometheus: &rolloutsv1.PrometheusSource{Address: prom},
		Gates: []rolloutsv1.Gate{
			{Name: "errors", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-error-ratio", Max: ptr.To(0.05), MinRequests: ptr.To[int64](5)}},
			{Name: "latency", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-e2e-latency-p99", Max: ptr.To(0.5)}},
		},
	}
	return ro
}

var _ = Describe("Gates against a real Prometheus", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
	})

	It("holds with an Error verdict naming the egress policy when the Prometheus address is refused", func() {
		stable, canary := simulator("vllm-gpt4-v1", nil), simulator("vllm-gpt4-v2", nil)
		prom := prometheusFor(ns, stable, canary)
		// Prometheus queries go through the egress policy by default, and
		// the default policy refuses loopback.
		op := startOperator(withStrictGates)
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, gatedRollout(ns, prom.URL(), step(10, "1s"), step(100, "1s")))).To(Succeed())
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionGatesPassing) }, time.Minute).Should(Equal(rolloutsv1.ReasonPrometheusError))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Gates).NotTo(BeEmpty())
		for _, g := range got.Status.Gates {
			Expect(g.Verdict).To(Equal(rolloutsv1.VerdictError))
			Expect(g.Message).To(ContainSubstring("refused by the operator's egress policy: 127.0.0.1 is a loopback address; an operator admin can allow it with --egress-allow"))
		}
		Consistently(func() string { return getRollout(ns, "gpt4").Status.Step }, 3*time.Second).Should(Equal("1/2"))
	})

	It("walks a healthy canary to Succeeded", func() {
		stable, canary := simulator("vllm-gpt4-v1", nil), simulator("vllm-gpt4-v2", nil)
		load(stable, canary)
		prom := prometheusFor(ns, stable, canary)
		op := startOperator(withPrometheusGates)
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, gatedRollout(ns, prom.URL(), step(10, "2s"), step(50, "2s"), step(100, "2s")))).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseSucceeded))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Gates).To(HaveLen(2))
		for _, g := range got.Status.Gates {
			Expect(g.Verdict).To(Equal(rolloutsv1.VerdictPass), g.Message)
			Expect(g.History).NotTo(BeEmpty())
		}
		Expect(conditionReason(ns, "gpt4", rolloutsv1.ConditionGatesPassing)).To(Equal(rolloutsv1.ReasonGatesPassed))
	})

	It("rolls back a canary with 20% errors at the first gated step", func() {
		stable := simulator("vllm-gpt4-v1", nil)
		canary := simulator("vllm-gpt4-v2", func(c *vllmsim.Config) { c.ErrorRate = 0.2 })
		load(stable, canary)
		prom := prometheusFor(ns, stable, canary)
		op := startOperator(withPrometheusGates)
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, gatedRollout(ns, prom.URL(), step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonGateFailed))
		Expect(got.Status.Rollback.Message).To(MatchRegexp(`gate "errors" value 0\.\d+ outside <= 0\.05`))
		Expect(got.Status.Rollback.FromWeight).To(BeEquivalentTo(10))
		Expect(got.Status.StepHistory).To(HaveLen(1), "caught at the first step")
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElement("RolledBack"))
	})

	It("walks a canary with 20% errors to Succeeded when its error gate is a dry run, and says so", func() {
		stable := simulator("vllm-gpt4-v1", nil)
		canary := simulator("vllm-gpt4-v2", func(c *vllmsim.Config) { c.ErrorRate = 0.2 })
		load(stable, canary)
		prom := prometheusFor(ns, stable, canary)
		op := startOperator(withPrometheusGates)
		DeferCleanup(op.stop)

		ro := gatedRollout(ns, prom.URL(), step(10, "2s"), step(100, "2s"))
		ro.Spec.Analysis.Gates[0].DryRun = true
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseSucceeded))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Rollback).To(BeNil())
		Expect(got.Status.Gates).To(HaveLen(2))
		errs := got.Status.Gates[0]
		Expect(errs.Name).To(Equal("errors"))
		Expect(errs.DryRun).To(BeTrue())
		Expect(errs.Verdict).To(Equal(rolloutsv1.VerdictFail), "the dry-run gate is still judged: %s", errs.Message)
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElement("DryRunGateFailed"))
		Expect(eventReasons(ns, "gpt4")()).NotTo(ContainElement("RolledBack"))
	})

	It("rolls back a canary whose P99 latency exceeds the gate", func() {
		stable := simulator("vllm-gpt4-v1", nil)
		canary := simulator("vllm-gpt4-v2", func(c *vllmsim.Config) { c.Latency = 800 * time.Millisecond })
		load(stable, canary)
		prom := prometheusFor(ns, stable, canary)
		op := startOperator(withPrometheusGates)
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, gatedRollout(ns, prom.URL(), step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		Eventually(func(g Gomega) {
			g.Expect(getRollout(ns, "gpt4").Status.Rollback).To(HaveField("Message", ContainSubstring(`gate "latency"`)))
		}).Should(Succeed()) // the status follows the routes
	})

	It("holds a canary without traffic and never promotes it", func() {
		stable, canary := simulator("vllm-gpt4-v1", nil), simulator("vllm-gpt4-v2", nil)
		load(stable) // the canary gets no requests
		prom := prometheusFor(ns, stable, canary)
		op := startOperator(withPrometheusGates)
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, gatedRollout(ns, prom.URL(), step(10, "1s"), step(100, "1s")))).To(Succeed())
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionGatesPassing) }, time.Minute).Should(Equal(rolloutsv1.ReasonGateNoData))
		Consistently(func() string { return getRollout(ns, "gpt4").Status.Step }, 8*time.Second).Should(Equal("1/2"))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
		Expect(got.Status.Message).To(ContainSubstring(`gate "errors" holds`))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
	})

	It("holds while Prometheus is down and resumes when it returns", func() {
		stable, canary := simulator("vllm-gpt4-v1", nil), simulator("vllm-gpt4-v2", nil)
		load(stable, canary)
		prom := prometheusFor(ns, stable, canary)
		op := startOperator(withPrometheusGates)
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, gatedRollout(ns, prom.URL(), step(10, "6s"), step(100, "2s")))).To(Succeed())
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Step }).Should(Equal("1/2"))
		Expect(prom.Stop()).To(Succeed())

		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionGatesPassing) }, time.Minute).Should(Equal(rolloutsv1.ReasonPrometheusError))
		Expect(getRollout(ns, "gpt4").Status.Step).To(Equal("1/2"))
		// Past the pause, Prometheus still down: the step holds.
		start := getRollout(ns, "gpt4").Status.StepStartedAt.Time
		Eventually(func() bool { return time.Now().After(start.Add(8 * time.Second)) }, time.Minute).Should(BeTrue())
		Expect(getRollout(ns, "gpt4").Status.Step).To(Equal("1/2"))
		Expect(getRollout(ns, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))

		ctx, cancel := context.WithTimeout(suiteCtx, 2*time.Minute)
		defer cancel()
		Expect(prom.Start(ctx)).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseSucceeded))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
	})

	It("stalls a gate with a PromQL syntax error before any weight moves", func() {
		op := startOperator(withPrometheusGates)
		DeferCleanup(op.stop)
		ro := gatedRollout(ns, "http://127.0.0.1:1", step(10, "1s"), step(100, "1s"))
		ro.Spec.Analysis.Gates = append(ro.Spec.Analysis.Gates, rolloutsv1.Gate{
			Name: "quality", GateSpec: rolloutsv1.GateSpec{Query: `avg(eval_quality_score{model="{{ .Canary }}"}`, Min: ptr.To(0.8)},
		})
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionStalled) }).Should(Equal(rolloutsv1.ReasonInvalidQuery))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))
		Expect(got.Status.CanaryWeight).To(BeEquivalentTo(0))
		Expect(conditionMessage(got, rolloutsv1.ConditionStalled)).To(ContainSubstring(`gate "quality"`))
		Expect(conditionMessage(got, rolloutsv1.ConditionStalled)).To(ContainSubstring("parse error"))
		Consistently(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 1}))
	})
})

func conditionMessage(ro *rolloutsv1.ModelRollout, t string) string {
	for _, c := range ro.Status.Conditions {
		if c.Type == t {
			return c.Message
		}
	}
	return ""
}
