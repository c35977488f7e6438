package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/controllers/alerts"
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

		payload := fmt.Sprintf(`{"version":"4","status":"firing","receiver":"modelrollout","alerts":[{"status":"firing",`+
			`"labels":{"alertname":"HighErrorRate","modelrollout":"gpt4","namespace":%q},`+
			`"startsAt":%q,"fingerprint":"direct-abort"}]}`, ns, time.Now().UTC().Format(time.RFC3339))
		var code int
		Eventually(func() bool {
			if receiver.Addr() == nil {
				return false
			}
			req, _ := http.NewRequest(http.MethodPost, "http://"+receiver.Addr().String()+alerts.Path, strings.NewReader(payload))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			code = resp.StatusCode
			return true
		}).Should(BeTrue())
		Expect(code).To(Equal(http.StatusInternalServerError), "the failed patch is reported, so that Alertmanager sends the alert again")

		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonAlertFiring))
		Expect(got.Status.LastHandledAbort).To(HavePrefix("alert-"))
		Expect(got.Annotations).NotTo(HaveKey(rolloutsv1.AnnotationAbort), "the annotation patch never landed")
	})
})

var _ = Describe("directAborts", func() {
	It("takes nothing before this process leads, and forgets what status handled or a re-created rollout", func() {
		elected := make(chan struct{})
		r := &ModelRolloutReconciler{direct: newDirectAborts(elected)}
		key := types.NamespacedName{Namespace: "ai", Name: "gpt4"}
		ro := &rolloutsv1.ModelRollout{}
		ro.Namespace, ro.Name, ro.UID = "ai", "gpt4", "uid-1"

		r.AbortNow(key, "uid-1", "alert-1", "HighErrorRate")
		req := requests{}
		r.direct.merge(ro, &req)
		Expect(req.Abort).To(BeEmpty(), "a replica that does not lead leaves the abort to the annotation")

		close(elected)
		r.AbortNow(key, "uid-1", "alert-1", "HighErrorRate")
		Expect(r.direct.queue).To(HaveLen(1))
		r.direct.merge(ro, &req)
		Expect(req.Abort).To(Equal("alert-1"))
		Expect(req.AbortReason).To(Equal("HighErrorRate"))

		ro.Status.LastHandledAbort = "alert-1"
		req = requests{}
		r.direct.merge(ro, &req)
		Expect(req.Abort).To(BeEmpty())
		Expect(r.direct.pending).To(BeEmpty(), "handled: forgotten")

		r.AbortNow(key, "uid-0", "alert-2", "x")
		r.direct.merge(ro, &req)
		Expect(req.Abort).To(BeEmpty(), "meant for an earlier rollout of the same name")
		Expect(r.direct.pending).To(BeEmpty())
	})
})

// refusingPatches is a client whose patches all fail.
type refusingPatches struct{ client.Client }

func (refusingPatches) Patch(context.Context, client.Object, client.Patch, ...client.PatchOption) error {
	return errors.New("patch refused by the test")
}
