package controllers

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/modelrollout/modelrollout/analysis"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/promharness"
	"github.com/modelrollout/modelrollout/test/vllmsim"
)

// withTemplateGates is withPrometheusGates reading gate templates from the
// manager's cache, as cmd/manager does.
func withTemplateGates(r *ModelRolloutReconciler, mgr ctrl.Manager) {
	r.Gates = &PrometheusGates{Secrets: mgr.GetAPIReader(), Templates: mgr.GetClient(), Clients: analysis.NewClientCache(16), Egress: loopbackEgress}
}

// baseGateTemplate is a valid GateTemplate; each case edits it into an
// invalid one.
const baseGateTemplate = `
apiVersion: rollouts.modelrollout.io/v1alpha1
kind: GateTemplate
metadata:
  name: error-ratio
spec:
  args:
  - name: job
    description: the scrape job of the model servers
  - name: reason
    default: error
  gate:
    query: sum(rate(vllm:request_success_total{job="{{ .Args.job }}",finished_reason="{{ .Args.reason }}",service="{{ .Canary }}"}[1m]))
    max: 0.05
`

func gateTemplateFrom(kind string, edit func(spec map[string]any)) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	Expect(yaml.Unmarshal([]byte(baseGateTemplate), &u.Object)).To(Succeed())
	u.SetKind(kind)
	edit(u.Object["spec"].(map[string]any))
	return u
}

func templateGateOf(spec map[string]any) map[string]any { return spec["gate"].(map[string]any) }

// refGate turns the base rollout's gate into one that references a template.
func refGate(s map[string]any) map[string]any {
	g := gateOf(s)
	delete(g, "preset")
	g["templateRef"] = map[string]any{"name": "error-ratio"}
	g["args"] = []any{map[string]any{"name": "job", "value": "vllm"}}
	return g
}

var _ = Describe("Gate template admission (CEL and schema)", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("rejects invalid templates with a message the user can act on",
		func(kind string, edit func(spec map[string]any), message string) {
			u := gateTemplateFrom(kind, edit)
			if kind == "GateTemplate" {
				u.SetNamespace(ns)
			}
			err := k8sClient.Create(suiteCtx, u, client.DryRunAll)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("no gate kind", "GateTemplate", func(s map[string]any) { delete(templateGateOf(s), "query") }, "set exactly one gate kind: preset, query, web or prompt"),
		Entry("preset and query", "GateTemplate", func(s map[string]any) { templateGateOf(s)["preset"] = "vllm-error-ratio" }, "set exactly one gate kind: preset, query, web or prompt"),
		Entry("min above max", "ClusterGateTemplate", func(s map[string]any) { templateGateOf(s)["min"] = 0.5 }, "min must not be greater than max"),
		Entry("minRequests on a query without requestsQuery", "GateTemplate", func(s map[string]any) {
			templateGateOf(s)["minRequests"] = 10
		}, "minRequests on a custom query needs requestsQuery"),
		Entry("an argument name that is not an identifier", "GateTemplate", func(s map[string]any) {
			s["args"] = []any{map[string]any{"name": "scrape-job"}}
			templateGateOf(s)["query"] = "vector(0)"
		}, "spec.args[0].name"),
		Entry("an argument declared twice", "GateTemplate", func(s map[string]any) {
			s["args"] = append(s["args"].([]any), map[string]any{"name": "job"})
		}, `spec.args[2]: Duplicate value: {"name":"job"}`),
		Entry("too many arguments", "ClusterGateTemplate", func(s map[string]any) {
			var args []any
			for i := range 17 {
				args = append(args, map[string]any{"name": "a" + itoa32(int32(i))})
			}
			s["args"] = args
			templateGateOf(s)["query"] = "vector(0)"
		}, "must have at most 16 items"),
		Entry("a query using an undeclared argument", "GateTemplate", func(s map[string]any) {
			s["args"] = s["args"].([]any)[:1]
		}, "the gate uses an argument {{ .Args.<name> }} that spec.args does not declare"),
		Entry("a selector using an undeclared argument", "ClusterGateTemplate", func(s map[string]any) {
			g := templateGateOf(s)
			delete(g, "query")
			g["preset"] = "vllm-error-ratio"
			g["selector"] = `service="{{ .Canary }}",region="{{ .Args.region }}"`
		}, "the gate uses an argument {{ .Args.<name> }} that spec.args does not declare"),
		Entry("a default too long", "GateTemplate", func(s map[string]any) {
			s["args"].([]any)[1].(map[string]any)["default"] = strings.Repeat("x", 1025)
		}, "spec.args[1].default"),
		Entry("no gate", "GateTemplate", func(s map[string]any) { delete(s, "gate") }, "spec.gate: Required value"),
	)

	DescribeTable("rejects invalid gate references in a rollout",
		func(edit func(spec map[string]any), message string) {
			u := rolloutFrom(edit)
			u.SetNamespace(ns)
			err := k8sClient.Create(suiteCtx, u, client.DryRunAll)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("templateRef and preset", func(s map[string]any) { refGate(s)["preset"] = "vllm-error-ratio" }, "set exactly one gate kind: preset, query, web, prompt or templateRef"),
		Entry("templateRef and query", func(s map[string]any) { refGate(s)["query"] = "vector(0)" }, "set exactly one gate kind: preset, query, web, prompt or templateRef"),
		Entry("args without templateRef", func(s map[string]any) {
			gateOf(s)["args"] = []any{map[string]any{"name": "job", "value": "vllm"}}
		}, "args are passed to a template: set templateRef"),
		Entry("templateRef with a selector", func(s map[string]any) { refGate(s)["selector"] = `service="x"` }, "takes its selector and requestsQuery from the template"),
		Entry("an unknown template kind", func(s map[string]any) {
			refGate(s)["templateRef"] = map[string]any{"name": "error-ratio", "kind": "AnalysisTemplate"}
		}, `Unsupported value: "AnalysisTemplate"`),
		Entry("a template name that is not a DNS name", func(s map[string]any) {
			refGate(s)["templateRef"] = map[string]any{"name": "Error_Ratio"}
		}, "templateRef.name"),
		Entry("an argument passed twice", func(s map[string]any) {
			g := refGate(s)
			g["args"] = append(g["args"].([]any), map[string]any{"name": "job", "value": "other"})
		}, "Duplicate value"),
		Entry("an argument value too long", func(s map[string]any) {
			refGate(s)["args"] = []any{map[string]any{"name": "job", "value": strings.Repeat("x", 1025)}}
		}, "args[0].value"),
	)

	It("accepts a gate with a templateRef and no threshold, defaulting the kind to GateTemplate", func() {
		u := rolloutFrom(func(s map[string]any) { delete(refGate(s), "max") })
		u.SetNamespace(ns)
		Expect(k8sClient.Create(suiteCtx, u)).To(Succeed())
		g := getRollout(ns, "cel").Spec.Analysis.Gates[0]
		Expect(g.TemplateRef.Kind).To(Equal(rolloutsv1.GateTemplateKindNamespaced))
		Expect(g.Args).To(Equal([]rolloutsv1.GateArg{{Name: "job", Value: "vllm"}}))
	})

	It("accepts the base templates and lists them with their columns", func() {
		gt := gateTemplateFrom("GateTemplate", func(map[string]any) {})
		gt.SetNamespace(ns)
		Expect(k8sClient.Create(suiteCtx, gt)).To(Succeed())
		cgt := gateTemplateFrom("ClusterGateTemplate", func(map[string]any) {})
		cgt.SetName("error-ratio-" + ns)
		Expect(k8sClient.Create(suiteCtx, cgt)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, cgt))).To(Succeed()) })

		kc := kubeconfig()
		out, err := kubectl(kc, "get", "gatetemplates", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(strings.Fields(strings.SplitN(out, "\n", 2)[0])).To(Equal([]string{"NAME", "PRESET", "MIN", "MAX", "AGE"}))
		Expect(out).To(MatchRegexp(`(?m)^error-ratio\s+0.05\s`))
		out, err = kubectl(kc, "get", "cgt", "error-ratio-"+ns, "-o", "wide")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(strings.Fields(strings.SplitN(out, "\n", 2)[0])).To(Equal([]string{"NAME", "PRESET", "MIN", "MAX", "AGE", "QUERY"}))
	})
})

var _ = Describe("The docs' gate template example", func() {
	It("is accepted by the API server and renders the query the team's gate asks for", func() {
		raw, err := os.ReadFile(filepath.Join("..", "docs", "concepts", "gates.md"))
		Expect(err).NotTo(HaveOccurred())
		_, section, found := strings.Cut(string(raw), "\n## Gate templates\n")
		Expect(found).To(BeTrue(), "docs/concepts/gates.md has no Gate templates section")
		_, block, found := strings.Cut(section, "```yaml\n")
		Expect(found).To(BeTrue())
		block, _, _ = strings.Cut(block, "```")
		docs := strings.Split(block, "\n---\n")
		Expect(docs).To(HaveLen(2))

		tmpl := &unstructured.Unstructured{}
		Expect(yaml.Unmarshal([]byte(docs[0]), &tmpl.Object)).To(Succeed())
		Expect(k8sClient.Create(suiteCtx, tmpl, client.DryRunAll)).To(Succeed())
		cgt := &rolloutsv1.ClusterGateTemplate{}
		Expect(yaml.Unmarshal([]byte(docs[0]), cgt)).To(Succeed())
		ro := &rolloutsv1.ModelRollout{}
		Expect(yaml.Unmarshal([]byte(docs[1]), ro)).To(Succeed())
		Expect(ro.Spec.Analysis.Gates).To(HaveLen(1))

		gate, err := resolveGate(ro.Spec.Analysis.Gates[0], &cgt.Spec)
		Expect(err).NotTo(HaveOccurred())
		Expect(*gate.Max).To(Equal(0.02), "the gate's max overrides the template's")
		r, err := analysis.RenderGate(gate, analysis.Vars{Namespace: "team-a", Canary: "vllm-gpt4-v2", Interval: time.Minute})
		Expect(err).NotTo(HaveOccurred())
		Expect(r.Query).To(ContainSubstring(`finished_reason="error",job="team-a-vllm",service="vllm-gpt4-v2"`))
		Expect(r.RequestsQuery).To(ContainSubstring(`job="team-a-vllm"`))
	})
})

// errorRatioTemplate is the cluster-wide template of the specs below: the
// share of the canary's finished vLLM requests that ended in error, for the
// scrape job passed as an argument.
func errorRatioTemplate(name string) *rolloutsv1.ClusterGateTemplate {
	sel := `job="{{ .Args.job }}",service="{{ .Canary }}",namespace="{{ .Namespace }}"`
	return &rolloutsv1.ClusterGateTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: rolloutsv1.GateTemplateSpec{
			Args: []rolloutsv1.GateTemplateArg{
				{Name: "job", Description: "the scrape job of the team's model servers"},
				{Name: "reason", Default: ptr.To("error")},
			},
			Gate: rolloutsv1.GateSpec{
				Query: `(sum(rate(vllm:request_success_total{finished_reason="{{ .Args.reason }}",` + sel + `}[{{ .Interval }}])) or vector(0))` +
					` / sum(rate(vllm:request_success_total{` + sel + `}[{{ .Interval }}]))`,
				RequestsQuery: `sum(increase(vllm:request_success_total{` + sel + `}[{{ .StepWindow }}]))`,
				MinRequests:   ptr.To[int64](5),
				Max:           ptr.To(0.05),
			},
		},
	}
}

// templatedRollout is a rollout whose only gate references the template.
func templatedRollout(ns, prom string, ref rolloutsv1.GateTemplateRef, args []rolloutsv1.GateArg, steps ...rolloutsv1.Step) *rolloutsv1.ModelRollout {
	ro := newRollout(ns, steps...)
	ro.Spec.Analysis = &rolloutsv1.Analysis{
		Interval:   "2s",
		Prometheus: &rolloutsv1.PrometheusSource{Address: prom},
		Gates:      []rolloutsv1.Gate{{Name: "errors", TemplateRef: &ref, Args: args}},
	}
	return ro
}

var _ = Describe("Gate templates against a real Prometheus", func() {
	It("judges rollouts of two namespaces with one ClusterGateTemplate and their own arguments", func() {
		// Two teams, each with a stable and a canary, scraped under their
		// own job. Team B's canary fails a fifth of its requests.
		nsA, nsB := newNamespace(), newNamespace()
		var targets []promharness.Target
		team := func(ns, job string, canaryErrors float64) {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			stable := simulator("vllm-gpt4-v1", nil)
			canary := simulator("vllm-gpt4-v2", func(c *vllmsim.Config) { c.ErrorRate = canaryErrors })
			load(stable, canary)
			for _, s := range []*vllmsim.Server{stable, canary} {
				targets = append(targets, promharness.Target{Job: job, Addr: s.Addr(),
					Labels: map[string]string{"service": s.Config().Name, "namespace": ns}})
			}
		}
		team(nsA, "team-a-vllm", 0)
		team(nsB, "team-b-vllm", 0.2)
		Expect(promharness.Available()).To(Succeed())
		ctx, cancel := context.WithTimeout(suiteCtx, 2*time.Minute)
		defer cancel()
		prom, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{Targets: targets, LogWriter: GinkgoWriter})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(prom.Close)
		Expect(prom.WaitForTargetsUp(ctx)).To(Succeed())

		name := "error-ratio-" + nsA
		Expect(k8sClient.Create(suiteCtx, errorRatioTemplate(name))).To(Succeed())
		DeferCleanup(func() {
			Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, &rolloutsv1.ClusterGateTemplate{ObjectMeta: metav1.ObjectMeta{Name: name}}))).To(Succeed())
		})
		op := startOperator(withTemplateGates)
		DeferCleanup(op.stop)

		ref := rolloutsv1.GateTemplateRef{Kind: rolloutsv1.GateTemplateKindCluster, Name: name}
		// Without its argument, a team's query would select no series and
		// hold the step: each verdict below needs the team's own job.
		Expect(k8sClient.Create(suiteCtx, templatedRollout(nsA, prom.URL(), ref, []rolloutsv1.GateArg{{Name: "job", Value: "team-a-vllm"}},
			step(10, "2s"), step(50, "2s"), step(100, "2s")))).To(Succeed())
		Expect(k8sClient.Create(suiteCtx, templatedRollout(nsB, prom.URL(), ref, []rolloutsv1.GateArg{{Name: "job", Value: "team-b-vllm"}},
			step(10, "1h"), step(100, "1h")))).To(Succeed())

		Eventually(phaseOf(nsA, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseSucceeded))
		Eventually(phaseOf(nsB, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		Eventually(routeWeights(nsA, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
		Eventually(routeWeights(nsB, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))

		a := getRollout(nsA, "gpt4")
		Expect(a.Status.Gates).To(HaveLen(1))
		Expect(a.Status.Gates[0].Verdict).To(Equal(rolloutsv1.VerdictPass), a.Status.Gates[0].Message)
		Expect(a.Status.Gates[0].Threshold).To(Equal("<= 0.05"))
		Expect(a.Status.Gates[0].Template).To(Equal("ClusterGateTemplate/" + name))
		Expect(a.Status.Gates[0].TemplateGeneration).To(BeEquivalentTo(1))

		b := getRollout(nsB, "gpt4")
		Expect(b.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonGateFailed))
		Expect(b.Status.Rollback.Message).To(MatchRegexp(`gate "errors" value 0\.\d+ outside <= 0\.05`))
		Expect(b.Status.Gates[0].Template).To(Equal("ClusterGateTemplate/" + name))
	})

	It("waits for a missing template with a clear message and goes on once it is created", func() {
		ns := newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		prom := prometheusFor(ns)
		op := startOperator(withTemplateGates)
		DeferCleanup(op.stop)

		ref := rolloutsv1.GateTemplateRef{Name: "quality"}
		Expect(k8sClient.Create(suiteCtx, templatedRollout(ns, prom.URL(), ref, []rolloutsv1.GateArg{{Name: "model", Value: "gpt4"}},
			step(10, "1s"), step(100, "1s")))).To(Succeed())
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionStalled) }).Should(Equal(rolloutsv1.ReasonGateTemplateNotFound))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))
		Expect(got.Status.Message).To(ContainSubstring("GateTemplate/quality not found in namespace " + ns))
		Expect(conditionReason(ns, "gpt4", rolloutsv1.ConditionGatesPassing)).To(Equal(rolloutsv1.ReasonGateTemplateNotFound))
		Consistently(routeWeights(ns, "model-header-routing", "gpt4"), 2*time.Second).Should(Equal(map[string]int32{"vllm-gpt4-v1": 1}))

		// A template that requires an argument the gate does not pass.
		tmpl := &rolloutsv1.GateTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "quality", Namespace: ns},
			Spec: rolloutsv1.GateTemplateSpec{
				Args: []rolloutsv1.GateTemplateArg{{Name: "model"}, {Name: "suite", Description: "the evaluation suite"}},
				Gate: rolloutsv1.GateSpec{Query: `vector(0.9) or on() absent(score{model="{{ .Args.model }}",suite="{{ .Args.suite }}"})`, Min: ptr.To(0.8)},
			},
		}
		Expect(k8sClient.Create(suiteCtx, tmpl)).To(Succeed())
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionStalled) }).Should(Equal(rolloutsv1.ReasonInvalidGateArgs))
		Expect(getRollout(ns, "gpt4").Status.Message).To(ContainSubstring(`gate "errors" (GateTemplate/quality): missing required argument "suite" (the evaluation suite)`))

		// The argument gets a default: the rollout goes on.
		Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(tmpl), tmpl)).To(Succeed())
		tmpl.Spec.Args[1].Default = ptr.To("smoke")
		Expect(k8sClient.Update(suiteCtx, tmpl)).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), time.Minute).Should(Equal(rolloutsv1.PhaseSucceeded))
		got = getRollout(ns, "gpt4")
		Expect(got.Status.Gates[0].Template).To(Equal("GateTemplate/quality"))
		Expect(got.Status.Gates[0].TemplateGeneration).To(BeEquivalentTo(2))
	})

	It("uses an edited template at the next evaluation and records its generation", func() {
		ns := newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		prom := prometheusFor(ns)
		op := startOperator(withTemplateGates)
		DeferCleanup(op.stop)

		tmpl := &rolloutsv1.GateTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "score", Namespace: ns},
			Spec:       rolloutsv1.GateTemplateSpec{Gate: rolloutsv1.GateSpec{Query: `vector(0.1)`, Max: ptr.To(0.5)}},
		}
		Expect(k8sClient.Create(suiteCtx, tmpl)).To(Succeed())
		// A long first step: the gate is evaluated every second meanwhile.
		ro := templatedRollout(ns, prom.URL(), rolloutsv1.GateTemplateRef{Name: "score"}, nil, step(10, "1h"), step(100, "1h"))
		ro.Spec.Analysis.Interval = "1s"
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		gate := func() rolloutsv1.GateStatus {
			if gs := getRollout(ns, "gpt4").Status.Gates; len(gs) == 1 {
				return gs[0]
			}
			return rolloutsv1.GateStatus{}
		}
		Eventually(gate, time.Minute).Should(And(
			HaveField("Value", "0.1"), HaveField("Verdict", rolloutsv1.VerdictPass),
			HaveField("Template", "GateTemplate/score"), HaveField("TemplateGeneration", BeEquivalentTo(1))))

		Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(tmpl), tmpl)).To(Succeed())
		tmpl.Spec.Gate.Query = `vector(0.25)`
		Expect(k8sClient.Update(suiteCtx, tmpl)).To(Succeed())
		Eventually(gate, time.Minute).Should(And(
			HaveField("Value", "0.25"), HaveField("Verdict", rolloutsv1.VerdictPass),
			HaveField("TemplateGeneration", BeEquivalentTo(2))))

		// A threshold on the gate overrides the template's: 0.25 now fails.
		Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(ro), ro)).To(Succeed())
		ro.Spec.Analysis.Gates[0].Max = ptr.To(0.2)
		Expect(k8sClient.Update(suiteCtx, ro)).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		Expect(getRollout(ns, "gpt4").Status.Rollback.Message).To(ContainSubstring(`gate "errors" value 0.25 outside <= 0.2`))
	})
})
