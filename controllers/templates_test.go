package controllers

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

func templateSpec() *rolloutsv1.GateTemplateSpec {
	return &rolloutsv1.GateTemplateSpec{
		Args: []rolloutsv1.GateTemplateArg{
			{Name: "job", Description: "the scrape job of the model servers"},
			{Name: "code", Default: ptr.To("5..")},
		},
		Gate: rolloutsv1.GateSpec{
			Query:        `sum(rate(http_requests_total{job="{{ .Args.job }}",code=~"{{ .Args.code }}",service="{{ .Canary }}"}[1m])) / sum(rate(http_requests_total{job="{{ .Args.job }}",service="{{ .Canary }}"}[1m]))`,
			Max:          ptr.To(0.05),
			NoData:       rolloutsv1.NoDataFail,
			FailureLimit: 3,
		},
	}
}

func templatedGate(args ...rolloutsv1.GateArg) rolloutsv1.Gate {
	return rolloutsv1.Gate{Name: "errors", TemplateRef: &rolloutsv1.GateTemplateRef{Kind: rolloutsv1.GateTemplateKindCluster, Name: "error-ratio"},
		Args: args}
}

func TestResolveGate(t *testing.T) {
	tests := []struct {
		name    string
		gate    rolloutsv1.Gate
		tmpl    func(*rolloutsv1.GateTemplateSpec)
		check   func(t *testing.T, g rolloutsv1.Gate)
		wantErr []string
	}{{
		name: "args given and defaults filled in, in declared order; the template's thresholds and policies",
		gate: templatedGate(rolloutsv1.GateArg{Name: "job", Value: "vllm"}),
		check: func(t *testing.T, g rolloutsv1.Gate) {
			want := []rolloutsv1.GateArg{{Name: "job", Value: "vllm"}, {Name: "code", Value: "5.."}}
			if len(g.Args) != 2 || g.Args[0] != want[0] || g.Args[1] != want[1] {
				t.Errorf("args = %v, want %v", g.Args, want)
			}
			if g.Max == nil || *g.Max != 0.05 || g.Min != nil {
				t.Errorf("thresholds = %v, %v; want the template's max 0.05", g.Min, g.Max)
			}
			if g.NoData != rolloutsv1.NoDataFail || g.FailureLimit != 3 {
				t.Errorf("noData %s failureLimit %d; want the template's Fail and 3 (the gate sets neither)", g.NoData, g.FailureLimit)
			}
			if g.Name != "errors" || g.TemplateRef == nil || !strings.Contains(g.Query, `{{ .Args.job }}`) {
				t.Errorf("resolved gate = %+v", g)
			}
		},
	}, {
		name: "a given arg overrides the default",
		gate: templatedGate(rolloutsv1.GateArg{Name: "job", Value: "vllm"}, rolloutsv1.GateArg{Name: "code", Value: "4..|5.."}),
		check: func(t *testing.T, g rolloutsv1.Gate) {
			if g.Args[1].Value != "4..|5.." {
				t.Errorf("code = %q, want the gate's 4..|5..", g.Args[1].Value)
			}
		},
	}, {
		name: "the gate's thresholds and non-default policies override the template's",
		gate: func() rolloutsv1.Gate {
			g := templatedGate(rolloutsv1.GateArg{Name: "job", Value: "vllm"})
			g.Min, g.MinRequests, g.NoData, g.FailureLimit = ptr.To(0.01), ptr.To[int64](50), rolloutsv1.NoDataPass, 5
			return g
		}(),
		tmpl: func(s *rolloutsv1.GateTemplateSpec) { s.Gate.RequestsQuery = "vector(100)" },
		check: func(t *testing.T, g rolloutsv1.Gate) {
			if g.Min == nil || *g.Min != 0.01 || g.Max != nil {
				t.Errorf("thresholds = %v, %v; want the gate's range [0.01, none], the template's max replaced", g.Min, g.Max)
			}
			if *g.MinRequests != 50 || g.NoData != rolloutsv1.NoDataPass || g.FailureLimit != 5 || g.RequestsQuery != "vector(100)" {
				t.Errorf("resolved gate = %+v", g.GateSpec)
			}
		},
	}, {
		name: "the gate's Hold and 1, the built-in defaults, override the template's Fail and 3",
		gate: func() rolloutsv1.Gate {
			g := templatedGate(rolloutsv1.GateArg{Name: "job", Value: "vllm"})
			g.NoData, g.FailureLimit = rolloutsv1.NoDataHold, 1
			return g
		}(),
		check: func(t *testing.T, g rolloutsv1.Gate) {
			if g.NoData != rolloutsv1.NoDataHold || g.FailureLimit != 1 {
				t.Errorf("noData %s failureLimit %d; want the gate's Hold and 1", g.NoData, g.FailureLimit)
			}
		},
	}, {
		name:    "a required argument missing",
		gate:    templatedGate(),
		wantErr: []string{`gate "errors" (ClusterGateTemplate/error-ratio)`, `missing required argument "job" (the scrape job of the model servers)`},
	}, {
		name:    "an argument the template does not declare",
		gate:    templatedGate(rolloutsv1.GateArg{Name: "job", Value: "vllm"}, rolloutsv1.GateArg{Name: "region", Value: "eu"}),
		wantErr: []string{`unknown argument "region" (it declares job, code)`},
	}, {
		name:    "an argument to a template without arguments",
		gate:    templatedGate(rolloutsv1.GateArg{Name: "job", Value: "vllm"}),
		tmpl:    func(s *rolloutsv1.GateTemplateSpec) { s.Args = nil; s.Gate.Query = "vector(0)" },
		wantErr: []string{`unknown argument "job" (it declares none)`},
	}, {
		name:    "the template uses an argument it does not declare",
		gate:    templatedGate(rolloutsv1.GateArg{Name: "job", Value: "vllm"}),
		tmpl:    func(s *rolloutsv1.GateTemplateSpec) { s.Gate.Selector = `region="{{ .Args.region }}"` },
		wantErr: []string{"the template uses {{ .Args.region }} but does not declare it in spec.args"},
	}, {
		name:    "no threshold on either side",
		gate:    templatedGate(rolloutsv1.GateArg{Name: "job", Value: "vllm"}),
		tmpl:    func(s *rolloutsv1.GateTemplateSpec) { s.Gate.Max = nil },
		wantErr: []string{"neither the gate nor the template sets min or max"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := templateSpec()
			if tt.tmpl != nil {
				tt.tmpl(spec)
			}
			before := spec.DeepCopy()
			got, err := resolveGate(tt.gate, spec)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, resolved %+v", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("resolveGate: %v", err)
			}
			tt.check(t, got)
			if !equalSpec(before, spec) {
				t.Errorf("resolveGate changed the template")
			}
		})
	}
}

func equalSpec(a, b *rolloutsv1.GateTemplateSpec) bool {
	return a.Gate.Query == b.Gate.Query && ptr.Equal(a.Gate.Max, b.Gate.Max) && ptr.Equal(a.Gate.Min, b.Gate.Min) && len(a.Args) == len(b.Args)
}

func TestResolveGates(t *testing.T) {
	cgt := &rolloutsv1.ClusterGateTemplate{ObjectMeta: metav1.ObjectMeta{Name: "error-ratio", Generation: 4}, Spec: *templateSpec()}
	gt := &rolloutsv1.GateTemplate{ObjectMeta: metav1.ObjectMeta{Name: "quality", Namespace: "ai", Generation: 2},
		Spec: rolloutsv1.GateTemplateSpec{Gate: rolloutsv1.GateSpec{Query: `avg(score{model="{{ .Canary }}"})`, Min: ptr.To(0.8)}}}
	sch := runtime.NewScheme()
	if err := rolloutsv1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(sch).WithObjects(cgt, gt).Build()

	ro := newRollout("ai")
	ro.Spec.Analysis = &rolloutsv1.Analysis{Gates: []rolloutsv1.Gate{
		{Name: "inline", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-error-ratio", Max: ptr.To(0.05)}},
		templatedGate(rolloutsv1.GateArg{Name: "job", Value: "vllm"}),
		{Name: "quality", TemplateRef: &rolloutsv1.GateTemplateRef{Name: "quality"}},
		{Name: "other-namespace", TemplateRef: &rolloutsv1.GateTemplateRef{Kind: rolloutsv1.GateTemplateKindNamespaced, Name: "missing"}},
	}}
	got, err := resolveGates(context.Background(), c, ro)
	if err != nil {
		t.Fatalf("resolveGates: %v", err)
	}
	if len(got) != 4 {
		t.Fatalf("%d gates, want 4", len(got))
	}
	if got[0].Template != "" || got[0].Problem != nil || got[0].Preset != "vllm-error-ratio" {
		t.Errorf("inline gate = %+v", got[0])
	}
	if got[1].Template != "ClusterGateTemplate/error-ratio" || got[1].Generation != 4 || got[1].Problem != nil || got[1].Max == nil {
		t.Errorf("cluster template gate = %+v", got[1])
	}
	if got[2].Template != "GateTemplate/quality" || got[2].Generation != 2 || got[2].Problem != nil || *got[2].Min != 0.8 {
		t.Errorf("namespaced template gate = %+v", got[2])
	}
	p := got[3].Problem
	if p == nil || p.Reason != rolloutsv1.ReasonGateTemplateNotFound || p.Message != "GateTemplate/missing not found in namespace ai; the rollout goes on once it exists" || p.Unwatched {
		t.Errorf("missing template: problem %+v", p)
	}
	if fp := firstProblem(got); fp != p {
		t.Errorf("firstProblem = %+v, want the missing template's", fp)
	}
	if keys := gateTemplateKeys(ro); strings.Join(keys, ",") != "ClusterGateTemplate/error-ratio,GateTemplate/quality,GateTemplate/missing" {
		t.Errorf("index keys = %v", keys)
	}

	// The same template from another namespace: a GateTemplate is looked up
	// in the rollout's own namespace only.
	ro.Namespace = "other"
	got, err = resolveGates(context.Background(), c, ro)
	if err != nil {
		t.Fatalf("resolveGates: %v", err)
	}
	if got[1].Problem != nil || got[2].Problem == nil || got[2].Problem.Reason != rolloutsv1.ReasonGateTemplateNotFound {
		t.Errorf("from namespace other: cluster %+v, namespaced %+v", got[1].Problem, got[2].Problem)
	}
}

func TestNoDataPassed(t *testing.T) {
	inline := rolloutsv1.Gate{Name: "g", GateSpec: rolloutsv1.GateSpec{NoData: rolloutsv1.NoDataPass}}
	if !plan.NoDataPassed(inline, rolloutsv1.GateStatus{Verdict: rolloutsv1.VerdictNoData}) {
		t.Error("inline gate with noData Pass")
	}
	tg := templatedGate()
	if !plan.NoDataPassed(tg, rolloutsv1.GateStatus{Verdict: rolloutsv1.VerdictNoData}) {
		t.Error("templated gate whose NoData was counted as a pass (both counts reset)")
	}
	if plan.NoDataPassed(tg, rolloutsv1.GateStatus{Verdict: rolloutsv1.VerdictNoData, ConsecutiveInconclusive: 1}) {
		t.Error("templated gate held by NoData")
	}
	if plan.NoDataPassed(tg, rolloutsv1.GateStatus{Verdict: rolloutsv1.VerdictNoData, ConsecutiveFailures: 1}) {
		t.Error("templated gate failed by NoData")
	}
}

func TestTemplateGateThresholdSeries(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	ro := newRollout("ai")
	g := templatedGate(rolloutsv1.GateArg{Name: "job", Value: "vllm"})
	ro.Spec.Analysis = &rolloutsv1.Analysis{Gates: []rolloutsv1.Gate{g}}
	resolved, err := resolveGate(g, templateSpec())
	if err != nil {
		t.Fatal(err)
	}
	m.observeGate(ro, resolved, rolloutsv1.GateStatus{Name: "errors", Verdict: rolloutsv1.VerdictPass, Value: "0.01"})
	if got := testutil.ToFloat64(m.GateThreshold.WithLabelValues("ai", "gpt4", "errors", "max")); got != 0.05 {
		t.Errorf("threshold max = %v, want the template's 0.05", got)
	}
}
