package controllers

import (
	"context"
	"reflect"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// handlerRecorder is a cache that remembers, per kind, the event handler
// registrations added to its informers (the controller's watches).
type handlerRecorder struct {
	cache.Cache
	mu   sync.Mutex
	regs map[string][]toolscache.ResourceEventHandlerRegistration
}

func (h *handlerRecorder) GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error) {
	i, err := h.Cache.GetInformer(ctx, obj, opts...)
	if err != nil {
		return nil, err
	}
	return &recordingInformer{Informer: i, kind: reflect.TypeOf(obj).Elem().Name(), h: h}, nil
}

// synced lists the kinds with a handler that has received its initial list.
func (h *handlerRecorder) synced() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for kind, regs := range h.regs {
		for _, r := range regs {
			if r.HasSynced() {
				out = append(out, kind)
				break
			}
		}
	}
	return out
}

type recordingInformer struct {
	cache.Informer
	kind string
	h    *handlerRecorder
}

func (i *recordingInformer) AddEventHandlerWithOptions(handler toolscache.ResourceEventHandler, options toolscache.HandlerOptions) (toolscache.ResourceEventHandlerRegistration, error) {
	reg, err := i.Informer.AddEventHandlerWithOptions(handler, options)
	if err == nil {
		i.h.mu.Lock()
		i.h.regs[i.kind] = append(i.h.regs[i.kind], reg)
		i.h.mu.Unlock()
	}
	return reg, err
}

var _ = Describe("A standby replica", func() {
	It("has every watch of the controller started and synced before it leads", func(ctx SpecContext) {
		// Another replica holds the Lease for a minute: this manager stays
		// a standby for the whole spec.
		const id = "modelrollout-warmup-test"
		now := metav1.NewMicroTime(time.Now())
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: "default"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("another-replica"), LeaseDurationSeconds: ptr.To[int32](60),
				AcquireTime: &now, RenewTime: &now},
		}
		Expect(k8sClient.Create(ctx, lease)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, lease))).To(Succeed()) })

		// A rollout already in the cluster, so that the rollout handler's
		// initial list is not empty.
		Expect(k8sClient.Create(ctx, newRollout(newNamespace(), step(10, "1h"), step(100, "1h")))).To(Succeed())

		rec := &handlerRecorder{regs: map[string][]toolscache.ResourceEventHandlerRegistration{}}
		mgr, err := ctrl.NewManager(operatorCfg, ctrl.Options{
			Scheme:                  scheme,
			Cache:                   cache.Options{DefaultTransform: CacheTransform()},
			Metrics:                 metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress:  "0",
			LeaderElection:          true,
			LeaderElectionID:        id,
			LeaderElectionNamespace: "default",
			LeaseDuration:           ptrDuration(4 * time.Second),
			RenewDeadline:           ptrDuration(3 * time.Second),
			RetryPeriod:             ptrDuration(500 * time.Millisecond),
			Controller:              ctrlConfigSkipNameValidation(),
			NewCache: func(config *rest.Config, opts cache.Options) (cache.Cache, error) {
				c, err := cache.New(config, opts)
				rec.Cache = c
				return rec, err
			},
		})
		Expect(err).NotTo(HaveOccurred())
		r := &ModelRolloutReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("modelrollout-controller")}
		mctx, cancel := context.WithCancel(suiteCtx)
		Expect(r.SetupWithManager(mctx, mgr)).To(Succeed())
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			Expect(mgr.Start(mctx)).To(Succeed())
		}()
		DeferCleanup(func() { cancel(); Eventually(done).Should(BeClosed()) })

		// Without warm-up, the controller registers its handlers (and lists
		// Services and gate templates for the first time) only once elected.
		Eventually(rec.synced).WithTimeout(20 * time.Second).Should(ContainElements(
			"ModelRollout", "HTTPRoute", "Service", "EndpointSlice", "GateTemplate", "ClusterGateTemplate"))
		Expect(mgr.Elected()).NotTo(BeClosed(), "the manager leads: the Lease held by another replica was not respected")
	})
})
