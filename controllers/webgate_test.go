package controllers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/modelrollout/modelrollout/analysis"
	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// These specs run the operator against web gates served by a test HTTP
// server on loopback, which the egress policy refuses unless told
// otherwise.

// withWebGates is withPrometheusGates with an egress policy that allows
// loopback, as --egress-allow 127.0.0.0/8 would.
func withWebGates(r *ModelRolloutReconciler, mgr ctrl.Manager) {
	r.Gates = &PrometheusGates{
		Secrets:    mgr.GetAPIReader(),
		Clients:    analysis.NewClientCache(4),
		Egress:     egress.MustNew(nil, []string{"127.0.0.0/8"}),
		WebClients: analysis.NewWebClients(4),
	}
}

// scoreServer answers GET /score/<canary> with {"data": {"score": <score>}},
// and 401 when a token is required and missing. It records what it saw.
type scoreServer struct {
	*httptest.Server
	score atomic.Value // string, the JSON number
	token string

	mu    sync.Mutex
	paths []string
	auths []string
}

func newScoreServer(score, token string) *scoreServer {
	s := &scoreServer{token: token}
	s.score.Store(score)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths = append(s.paths, r.URL.Path)
		s.auths = append(s.auths, r.Header.Get("Authorization"))
		s.mu.Unlock()
		if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error": "no or wrong token"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"data": {"score": %s}}`, s.score.Load().(string))
	}))
	DeferCleanup(s.Close)
	return s
}

func (s *scoreServer) seen() (paths, auths []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...), append([]string(nil), s.auths...)
}

func (s *scoreServer) hits() int {
	p, _ := s.seen()
	return len(p)
}

// webRollout is a rollout judged by one web gate only: no Prometheus.
func webRollout(ns, url string, steps ...rolloutsv1.Step) *rolloutsv1.ModelRollout {
	ro := newRollout(ns, steps...)
	ro.Spec.Analysis = &rolloutsv1.Analysis{
		Interval: "1s",
		Gates: []rolloutsv1.Gate{{
			Name: "quality",
			GateSpec: rolloutsv1.GateSpec{Min: ptr.To(0.8),
				Web: &rolloutsv1.WebGate{URL: url + "/score/{{ .Canary }}", JSONPath: "$.data.score", Timeout: "5s"}},
		}},
	}
	return ro
}

var _ = Describe("Web gates", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
	})

	It("walks a canary whose score passes to Succeeded", func() {
		srv := newScoreServer("0.93", "")
		op := startOperator(withWebGates)
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, webRollout(ns, srv.URL, step(10, "1s"), step(100, "1s")))).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), time.Minute).Should(Equal(rolloutsv1.PhaseSucceeded))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Gates).To(HaveLen(1))
		Expect(got.Status.Gates[0].Verdict).To(Equal(rolloutsv1.VerdictPass), got.Status.Gates[0].Message)
		Expect(got.Status.Gates[0].Value).To(Equal("0.93"))
		Expect(got.Status.Gates[0].Threshold).To(Equal(">= 0.8"))
		paths, _ := srv.seen()
		Expect(paths).To(ContainElement("/score/vllm-gpt4-v2"), "the URL template rendered the canary's name")
	})

	It("rolls back a canary whose score fails, at the first gated step", func() {
		srv := newScoreServer("0.5", "")
		op := startOperator(withWebGates)
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, webRollout(ns, srv.URL, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonGateFailed))
		Expect(got.Status.Rollback.Message).To(Equal(`gate "quality" value 0.5 outside >= 0.8`))
		Expect(got.Status.Rollback.FromWeight).To(BeEquivalentTo(10))
		Expect(got.Status.Gates[0].Verdict).To(Equal(rolloutsv1.VerdictFail))
	})

	It("sends the bearer token from the Secret named by authSecretRef", func() {
		srv := newScoreServer("0.9", "s3cret-token")
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "eval-token", Namespace: ns},
			Data:       map[string][]byte{"token": []byte("s3cret-token\n")},
		})).To(Succeed())
		op := startOperator(withWebGates)
		DeferCleanup(op.stop)

		ro := webRollout(ns, srv.URL, step(10, "1s"), step(100, "1s"))
		ro.Spec.Analysis.Gates[0].Web.AuthSecretRef = &rolloutsv1.LocalObjectReference{Name: "eval-token"}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), time.Minute).Should(Equal(rolloutsv1.PhaseSucceeded))
		_, auths := srv.seen()
		Expect(auths).NotTo(BeEmpty())
		Expect(auths).To(HaveEach("Bearer s3cret-token"))
	})

	It("holds with an Error verdict naming the egress policy when the URL is refused", func() {
		srv := newScoreServer("0.9", "")
		// The operator's policy does not allow loopback: the default.
		op := startOperator(withStrictGates)
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, webRollout(ns, srv.URL, step(10, "1s"), step(100, "1s")))).To(Succeed())
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionGatesPassing) }, time.Minute).Should(Equal(rolloutsv1.ReasonGateError))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Gates).To(HaveLen(1))
		Expect(got.Status.Gates[0].Verdict).To(Equal(rolloutsv1.VerdictError))
		Expect(got.Status.Gates[0].Message).To(ContainSubstring("refused by the operator's egress policy: 127.0.0.1 is a loopback address; an operator admin can allow it with --egress-allow"))
		Expect(got.Status.Message).To(ContainSubstring(`gate "quality" holds: GET http://127.0.0.1:`))
		Consistently(func() string { return getRollout(ns, "gpt4").Status.Step }, 3*time.Second).Should(Equal("1/2"))
		Expect(getRollout(ns, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
		Expect(srv.hits()).To(BeZero(), "no request reached the refused server")
	})

	It("stalls a gate with a bad JSONPath before any weight moves", func() {
		srv := newScoreServer("0.9", "")
		op := startOperator(withWebGates)
		DeferCleanup(op.stop)

		ro := webRollout(ns, srv.URL, step(10, "1s"), step(100, "1s"))
		ro.Spec.Analysis.Gates[0].Web.JSONPath = "$.data[?@.score >"
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionStalled) }).Should(Equal(rolloutsv1.ReasonInvalidQuery))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))
		Expect(conditionMessage(got, rolloutsv1.ConditionStalled)).To(ContainSubstring(`gate "quality": web.jsonPath "$.data[?@.score >"`))
		Consistently(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 1}))
		Expect(srv.hits()).To(BeZero())
	})

	It("stalls on a missing auth Secret before any weight moves", func() {
		srv := newScoreServer("0.9", "")
		op := startOperator(withWebGates)
		DeferCleanup(op.stop)

		ro := webRollout(ns, srv.URL, step(10, "1s"), step(100, "1s"))
		ro.Spec.Analysis.Gates[0].Web.AuthSecretRef = &rolloutsv1.LocalObjectReference{Name: "eval-token"}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionStalled)).Should(And(Not(BeNil()), HaveField("Reason", rolloutsv1.ReasonInvalidConfig)))
		Expect(getRollout(ns, "gpt4").Status.Message).To(ContainSubstring(`gate "quality": web auth Secret eval-token not found in namespace ` + ns))
		Consistently(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 1}))
	})
})

// A web gate's verdicts are accounted exactly as a PromQL gate's: noData,
// failureLimit and inconclusiveLimit, round after round.
func TestWebGateAccounting(t *testing.T) {
	var answer atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		a := answer.Load().(string)
		if a == "500" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, a)
	}))
	defer srv.Close()
	gates := &PrometheusGates{Egress: egress.MustNew(nil, []string{"127.0.0.0/8"}), WebClients: analysis.NewWebClients(1)}

	ro := newRollout("ai", step(10, "1h"), step(100, "1h"))
	ro.Status.CanaryWeight = 10
	ro.Status.CurrentStepIndex = ptr.To[int32](0) // at a step: gates that run at every step are due
	ro.Spec.Analysis = &rolloutsv1.Analysis{InconclusiveLimit: 2, Gates: []rolloutsv1.Gate{{
		Name: "quality", GateSpec: rolloutsv1.GateSpec{Min: ptr.To(0.8), NoData: rolloutsv1.NoDataFail, FailureLimit: 2,
			Web: &rolloutsv1.WebGate{URL: srv.URL + "/", JSONPath: "$.score"}},
	}}}
	now := time.Now()
	round := func(body string) *plan.GateRound {
		t.Helper()
		answer.Store(body)
		now = now.Add(time.Second)
		r := gates.Evaluate(context.Background(), ro, now)
		ro.Status.Gates = r.Gates
		return r
	}

	// No data under noData: Fail counts as a failure: the second in a row
	// rolls back.
	r := round(`{}`)
	if r.Rollback != nil || r.Holding == nil || r.Holding.Reason != rolloutsv1.ReasonGateNoData ||
		!strings.Contains(r.Holding.Message, "counted as a failure (noData: Fail): no data: jsonPath $[\"score\"] selected nothing (failure 1 of 2 in a row)") {
		t.Fatalf("round 1: rollback %+v, holding %+v", r.Rollback, r.Holding)
	}
	r = round(`{"score": null}`)
	if r.Rollback == nil || r.Rollback.Reason != rolloutsv1.ReasonGateFailed {
		t.Fatalf("round 2: rollback %+v, holding %+v", r.Rollback, r.Holding)
	}

	// A pass resets the count.
	if r = round(`{"score": "0.9"}`); r.Rollback != nil || r.Holding != nil || ro.Status.Gates[0].ConsecutiveFailures != 0 {
		t.Fatalf("round 3: rollback %+v, holding %+v, gates %+v", r.Rollback, r.Holding, ro.Status.Gates)
	}

	// Errors are inconclusive: they hold with GateError, and the second in
	// a row reaches inconclusiveLimit.
	r = round("500")
	if r.Rollback != nil || r.Holding == nil || r.Holding.Reason != rolloutsv1.ReasonGateError || !strings.Contains(r.Holding.Message, "HTTP 500") {
		t.Fatalf("round 4: rollback %+v, holding %+v", r.Rollback, r.Holding)
	}
	r = round(`not json`)
	if r.Rollback == nil || r.Rollback.Reason != rolloutsv1.ReasonInconclusive || !strings.Contains(r.Rollback.Message, "the answer is not JSON") {
		t.Fatalf("round 5: rollback %+v, holding %+v", r.Rollback, r.Holding)
	}
	if h := ro.Status.Gates[0].History; len(h) != 5 || h[2].Value != "0.9" || h[2].Verdict != rolloutsv1.VerdictPass {
		t.Errorf("history %+v", h)
	}
}
