package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/controllers/alerts"
	"github.com/modelrollout/modelrollout/internal/plan"
)

var _ = Describe("Alert aborts handed over in memory on the leader", func() {
	It("roll back at once, even when the receiver's annotation patch fails, and the status records the alert's token", func() {
		ns := newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		const token = "direct-abort-test-token"
		var receiver *alerts.Receiver
		op := startOperator(func(r *ModelRolloutReconciler, mgr ctrl.Manager) {
			// A receiver whose every patch is refused: only the in-memory
			// hand-over can reach the controller.
			refusing := refusingPatches{Client: mgr.GetClient()}
			var err error
			receiver, err = alerts.New(alerts.Options{Client: refusing, Token: token, BindAddress: "127.0.0.1:0", Direct: r.AbortNow})
			Expect(err).NotTo(HaveOccurred())
			Expect(mgr.Add(receiver)).To(Succeed())
		})
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Eventually(func() rolloutsv1.Phase { return getRollout(ns, "gpt4").Status.Phase }).Should(Equal(rolloutsv1.PhaseProgressing))

		var code int
		Eventually(func() int {
			code = postFiringAlert(receiver, token, ns, "direct-abort")
			return code
		}).ShouldNot(BeZero())
		Expect(code).To(Equal(http.StatusInternalServerError), "the failed patch is reported, so that Alertmanager sends the alert again")

		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonAlertFiring))
		Expect(got.Status.LastHandledAbort).To(HavePrefix("alert-"))
		Expect(got.Annotations).NotTo(HaveKey(rolloutsv1.AnnotationAbort), "the annotation patch never landed")
	})
})

var _ = Describe("Alert aborts handed over in memory on the leader, in order", func() {
	It("patch the abort annotation only once the controller's route patch has landed", func() {
		ns := newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		const token = "direct-order-test-token"
		order := &orderLog{ns: ns}
		var receiver *alerts.Receiver
		var cached client.Client
		op := startOperator(func(r *ModelRolloutReconciler, mgr ctrl.Manager) {
			cached = mgr.GetClient()
			r.Client = &orderedClient{Client: r.Client, log: order, what: "controller"}
			var err error
			receiver, err = alerts.New(alerts.Options{Client: &orderedClient{Client: mgr.GetClient(), log: order, what: "receiver"},
				Token: token, BindAddress: "127.0.0.1:0", Direct: r.AbortNow})
			Expect(err).NotTo(HaveOccurred())
			Expect(mgr.Add(receiver)).To(Succeed())
		})
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Eventually(func() rolloutsv1.Phase { return getRollout(ns, "gpt4").Status.Phase }).Should(Equal(rolloutsv1.PhaseProgressing))
		Eventually(func() *rolloutsv1.MicroTime { return getRollout(ns, "gpt4").Status.StepStartedAt }).ShouldNot(BeNil())
		// The status lands after the route patch: wait until the receiver's
		// cache has it too, or the alert finds a rollout not yet in progress.
		Eventually(func() rolloutsv1.Phase {
			ro := &rolloutsv1.ModelRollout{}
			_ = cached.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: "gpt4"}, ro)
			return ro.Status.Phase
		}).Should(Equal(rolloutsv1.PhaseProgressing))
		before := len(order.entries())

		Eventually(func() int { return postFiringAlert(receiver, token, ns, "direct-order") }).Should(Equal(http.StatusOK))

		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		Expect(getRollout(ns, "gpt4").Annotations).To(HaveKey(rolloutsv1.AnnotationAbort), "the annotation landed too")
		got := order.entries()[before:]
		Expect(got).To(ContainElement("controller: HTTPRoute patched"))
		Expect(got).To(ContainElement("receiver: ModelRollout patching"))
		Expect(slices.Index(got, "controller: HTTPRoute patched")).To(BeNumerically("<", slices.Index(got, "receiver: ModelRollout patching")),
			"the route patch lands before the annotation patch starts: %v", got)
	})
})

// postFiringAlert posts a firing HighErrorRate alert for rollout gpt4 of ns
// to the receiver and returns the answer's status code, or 0 while the
// receiver does not listen or cannot be reached.
func postFiringAlert(receiver *alerts.Receiver, token, ns, fingerprint string) int {
	if receiver.Addr() == nil {
		return 0
	}
	payload := fmt.Sprintf(`{"version":"4","status":"firing","receiver":"modelrollout","alerts":[{"status":"firing",`+
		`"labels":{"alertname":"HighErrorRate","modelrollout":"gpt4","namespace":%q},`+
		`"startsAt":%q,"fingerprint":%q}]}`, ns, time.Now().UTC().Format(time.RFC3339), fingerprint)
	req, _ := http.NewRequest(http.MethodPost, "http://"+receiver.Addr().String()+alerts.Path, strings.NewReader(payload))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// orderLog records, in order, when patches of one namespace start and end.
type orderLog struct {
	ns  string
	mu  sync.Mutex
	log []string
}

func (o *orderLog) add(obj client.Object, s string) {
	if obj.GetNamespace() != o.ns {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.log = append(o.log, s)
}

func (o *orderLog) entries() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.log)
}

// orderedClient logs its patches in an orderLog.
type orderedClient struct {
	client.Client
	log  *orderLog
	what string
}

func (c *orderedClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	c.log.add(obj, c.what+": "+writeKind(obj)+" patching")
	err := c.Client.Patch(ctx, obj, patch, opts...)
	if err == nil {
		c.log.add(obj, c.what+": "+writeKind(obj)+" patched")
	}
	return err
}

var _ = Describe("directAborts", func() {
	It("takes nothing before this process leads, and forgets what status handled or a re-created rollout", func() {
		elected := make(chan struct{})
		r := &ModelRolloutReconciler{direct: newDirectAborts(elected)}
		key := types.NamespacedName{Namespace: "ai", Name: "gpt4"}
		ro := &rolloutsv1.ModelRollout{}
		ro.Namespace, ro.Name, ro.UID = "ai", "gpt4", "uid-1"

		Expect(r.AbortNow(key, "uid-1", "alert-1", "HighErrorRate", "")).To(BeNil(), "the receiver does not wait on a replica that does not lead")
		req := plan.Requests{}
		Expect(r.direct.merge(ro, &req)).To(BeNil())
		Expect(req.Abort).To(BeEmpty(), "a replica that does not lead leaves the abort to the annotation")

		close(elected)
		sent := r.AbortNow(key, "uid-1", "alert-1", "HighErrorRate", "")
		Expect(sent).NotTo(BeNil())
		Expect(r.direct.queue).To(HaveLen(1))
		merged := r.direct.merge(ro, &req)
		Expect(req.Abort).To(Equal("alert-1"))
		Expect(req.AbortReason).To(Equal("HighErrorRate"))
		Expect(sent).NotTo(BeClosed(), "held until the routes are sent")
		r.direct.release(merged)
		Expect(sent).To(BeClosed())
		r.direct.release(merged) // a second release (the reconcile's deferred one) is harmless

		ro.Status.LastHandledAbort = "alert-1"
		req = plan.Requests{}
		Expect(r.direct.merge(ro, &req)).To(BeNil())
		Expect(req.Abort).To(BeEmpty())
		Expect(r.direct.pending).To(BeEmpty(), "handled: forgotten")

		sent = r.AbortNow(key, "uid-0", "alert-2", "x", "")
		Expect(r.direct.merge(ro, &req)).To(BeNil())
		Expect(req.Abort).To(BeEmpty(), "meant for an earlier rollout of the same name")
		Expect(r.direct.pending).To(BeEmpty())
		Expect(sent).To(BeClosed(), "dropped: the receiver need not wait")

		ro.Status.LastHandledAbort = ""
		first := r.AbortNow(key, "uid-1", "alert-3", "x", "")
		second := r.AbortNow(key, "uid-1", "alert-4", "x", "")
		Expect(first).To(BeClosed(), "replaced by a newer abort")
		Expect(second).NotTo(BeClosed())
		req = plan.Requests{Abort: "alert-4"}
		Expect(r.direct.merge(ro, &req)).To(BeNil())
		Expect(second).To(BeClosed(), "the annotation carries it already")

		third := r.AbortNow(key, "uid-1", "alert-5", "x", "")
		r.direct.forget(key)
		Expect(third).To(BeClosed(), "the rollout is gone")
	})
})

// refusingPatches is a client whose patches all fail.
type refusingPatches struct{ client.Client }

func (refusingPatches) Patch(context.Context, client.Object, client.Patch, ...client.PatchOption) error {
	return errors.New("patch refused by the test")
}
