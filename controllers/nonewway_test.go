package controllers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Attack suite on the real API server: a rollout author who may create
// ModelRollouts but not read Secrets names Secrets that are not meant for a
// gate, another namespace's Secret, and endpoints that echo credentials.
// Every server is on loopback.

// withWebGatesAndHooks lets web gates and webhooks reach loopback.
func withWebGatesAndHooks(r *ModelRolloutReconciler, mgr ctrl.Manager) {
	withWebGates(r, mgr)
	r.Egress = egress.MustNew(nil, []string{"127.0.0.0/8"})
}

// typedSecret is a Secret of type t that also holds a "token", so that
// only its type can keep it from being sent.
func typedSecret(ns, name string, t corev1.SecretType) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: t,
		Data: map[string][]byte{"token": []byte("stolen-" + strings.ReplaceAll(string(t), "/", "-"))}}
	switch t {
	case corev1.SecretTypeServiceAccountToken:
		s.Annotations = map[string]string{corev1.ServiceAccountNameKey: "default"}
	case corev1.SecretTypeDockerConfigJson:
		s.Data[corev1.DockerConfigJsonKey] = []byte(`{"auths":{}}`)
	case corev1.SecretTypeDockercfg:
		s.Data[corev1.DockerConfigKey] = []byte(`{}`)
	case corev1.SecretTypeSSHAuth:
		s.Data[corev1.SSHAuthPrivateKey] = []byte("key")
	case corev1.SecretTypeBasicAuth:
		s.Data = map[string][]byte{corev1.BasicAuthUsernameKey: []byte("svc"), corev1.BasicAuthPasswordKey: []byte("pw-basic-0123")}
	case corev1.SecretTypeTLS:
		s.Data[corev1.TLSCertKey] = []byte("cert")
		s.Data[corev1.TLSPrivateKeyKey] = []byte("key")
	}
	return s
}

// echoServer answers every request with code and a body quoting its
// Authorization header.
type echoServer struct {
	*httptest.Server
	code  atomic.Int32
	hits  atomic.Int32
	auths chan string
}

func newEchoServer(code int, body func(auth string) string) *echoServer {
	s := &echoServer{auths: make(chan string, 1000)}
	s.code.Store(int32(code))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		a := r.Header.Get("Authorization")
		select {
		case s.auths <- a:
		default:
		}
		w.WriteHeader(int(s.code.Load()))
		fmt.Fprint(w, body(a))
	}))
	DeferCleanup(s.Close)
	return s
}

func rolloutEventNotes(ns string) []string {
	list := &eventsv1.EventList{}
	Expect(k8sClient.List(suiteCtx, list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Note)
	}
	return out
}

var _ = Describe("No new way in: Secrets and echoes", func() {
	It("refuses every Secret type but Opaque, basic-auth and tls for a web gate, and sends nothing", func() {
		srv := newEchoServer(http.StatusOK, func(string) string { return `{"data": {"score": 0.9}}` })
		op := startOperator(withWebGates)
		DeferCleanup(op.stop)

		refused := []corev1.SecretType{corev1.SecretTypeServiceAccountToken, corev1.SecretTypeDockerConfigJson,
			corev1.SecretTypeDockercfg, corev1.SecretTypeSSHAuth, "bootstrap.kubernetes.io/token", "example.com/credentials"}
		nss := map[corev1.SecretType]string{}
		for _, t := range refused {
			ns := newNamespace()
			nss[t] = ns
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			Expect(k8sClient.Create(suiteCtx, typedSecret(ns, "creds", t))).To(Succeed())
			ro := webRollout(ns, srv.URL, step(10, "1h"), step(100, "1h"))
			ro.Spec.Analysis.Gates[0].Web.AuthSecretRef = &rolloutsv1.LocalObjectReference{Name: "creds"}
			Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		}
		for _, t := range refused {
			ns := nss[t]
			Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionStalled)).Should(And(Not(BeNil()), HaveField("Reason", rolloutsv1.ReasonInvalidConfig)), string(t))
			Expect(getRollout(ns, "gpt4").Status.Message).To(ContainSubstring(
				`gate "quality": web auth Secret creds is of type %s: authSecretRef reads only Opaque, kubernetes.io/basic-auth and kubernetes.io/tls Secrets; nothing was sent`, t))
			Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 1}))
		}
		Expect(srv.hits.Load()).To(BeZero(), "no request carried a refused Secret's token")

		By("basic-auth and tls Secrets are read")
		for _, t := range []corev1.SecretType{corev1.SecretTypeBasicAuth, corev1.SecretTypeTLS} {
			ns := newNamespace()
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			Expect(k8sClient.Create(suiteCtx, typedSecret(ns, "creds", t))).To(Succeed())
			ro := webRollout(ns, srv.URL, step(10, "1h"), step(100, "1h"))
			ro.Spec.Analysis.Gates[0].Web.AuthSecretRef = &rolloutsv1.LocalObjectReference{Name: "creds"}
			Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
			Eventually(func() string { return getRollout(ns, "gpt4").Status.Step }, time.Minute).Should(Equal("1/2"), string(t))
		}
		Eventually(srv.auths).Should(Receive(HavePrefix("Basic ")))
	})

	It("refuses a service account token for a webhook and a registry Secret for Prometheus", func() {
		hook := newEchoServer(http.StatusOK, func(string) string { return "ok" })
		op := startOperator(withWebGatesAndHooks)
		DeferCleanup(op.stop)

		ns := newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v1", true)
		createBackend(ns, "vllm-gpt4-v2", true)
		Expect(k8sClient.Create(suiteCtx, typedSecret(ns, "sa-token", corev1.SecretTypeServiceAccountToken))).To(Succeed())
		ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
		ro.Spec.Webhooks = []rolloutsv1.Webhook{{Name: "eval", Type: rolloutsv1.WebhookPreRollout, URL: hook.URL + "/run",
			AuthSecretRef: &rolloutsv1.LocalObjectReference{Name: "sa-token"}}}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(func() string { return webhookEntry(ns, "gpt4", "eval").Message }).Should(ContainSubstring(
			"InvalidConfig: webhook auth Secret sa-token is of type kubernetes.io/service-account-token: authSecretRef reads only"))
		Expect(hook.hits.Load()).To(BeZero())

		ns2 := newNamespace()
		createRoute(ns2, "header-routing.yaml")
		createBackend(ns2, "vllm-gpt4-v2", true)
		sec := typedSecret(ns2, "prom-auth", corev1.SecretTypeDockerConfigJson)
		Expect(k8sClient.Create(suiteCtx, sec)).To(Succeed())
		Expect(k8sClient.Create(suiteCtx, authRollout(ns2))).To(Succeed())
		Eventually(conditionOf(ns2, "gpt4", rolloutsv1.ConditionStalled)).Should(And(Not(BeNil()), HaveField("Reason", rolloutsv1.ReasonInvalidConfig)))
		Expect(getRollout(ns2, "gpt4").Status.Message).To(ContainSubstring("Prometheus auth Secret prom-auth is of type kubernetes.io/dockerconfigjson"))
	})

	It("cannot name another namespace's Secret", func() {
		srv := newEchoServer(http.StatusOK, func(string) string { return `{"data": {"score": 0.9}}` })
		op := startOperator(withWebGates)
		DeferCleanup(op.stop)
		victim := newNamespace()
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: victim},
			Data: map[string][]byte{"token": []byte("victim-token")}})).To(Succeed())

		ns := newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)

		By("a namespace field is no part of the reference: the API server drops it")
		ro := webRollout(ns, srv.URL, step(10, "1h"), step(100, "1h"))
		ro.Spec.Analysis.Gates[0].Web.AuthSecretRef = &rolloutsv1.LocalObjectReference{Name: "creds"}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ro)
		Expect(err).NotTo(HaveOccurred())
		u := &unstructured.Unstructured{Object: obj}
		u.SetAPIVersion(rolloutsv1.GroupVersion.String())
		u.SetKind("ModelRollout")
		gates, _, _ := unstructured.NestedSlice(u.Object, "spec", "analysis", "gates")
		Expect(unstructured.SetNestedField(gates[0].(map[string]any), victim, "web", "authSecretRef", "namespace")).To(Succeed())
		Expect(unstructured.SetNestedSlice(u.Object, gates, "spec", "analysis", "gates")).To(Succeed())
		Expect(k8sClient.Create(suiteCtx, u)).To(Succeed())
		Expect(getRollout(ns, "gpt4").Spec.Analysis.Gates[0].Web.AuthSecretRef).To(Equal(&rolloutsv1.LocalObjectReference{Name: "creds"}))
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Message }).Should(ContainSubstring("web auth Secret creds not found in namespace " + ns))

		By("a name with a slash is no Secret name")
		ns2 := newNamespace()
		createRoute(ns2, "header-routing.yaml")
		createBackend(ns2, "vllm-gpt4-v2", true)
		ro2 := webRollout(ns2, srv.URL, step(10, "1h"), step(100, "1h"))
		ro2.Spec.Analysis.Gates[0].Web.AuthSecretRef = &rolloutsv1.LocalObjectReference{Name: "../" + victim + "/creds"}
		Expect(k8sClient.Create(suiteCtx, ro2)).To(Succeed())
		Eventually(conditionOf(ns2, "gpt4", rolloutsv1.ConditionStalled)).Should(And(Not(BeNil()), HaveField("Reason", rolloutsv1.ReasonInvalidConfig)))
		Expect(getRollout(ns2, "gpt4").Status.Message).To(ContainSubstring("is not a Secret name"))
		Expect(srv.hits.Load()).To(BeZero())
	})

	It("keeps echoed credentials out of status and Events", func() {
		const token = "echoed-t0ken-5f4e3d2c1b"
		echo := func(a string) string {
			b, _ := json.Marshal(map[string]string{"error": "unauthorized", "got": a})
			return string(b)
		}
		gate := newEchoServer(http.StatusUnauthorized, echo)
		hook := newEchoServer(http.StatusForbidden, echo)
		op := startOperator(withWebGatesAndHooks)
		DeferCleanup(op.stop)

		ns := newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v1", true)
		createBackend(ns, "vllm-gpt4-v2", true)
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns},
			Data: map[string][]byte{"token": []byte(token)}})).To(Succeed())
		ro := webRollout(ns, gate.URL, step(10, "1h"), step(100, "1h"))
		ro.Spec.Analysis.Gates[0].Web.AuthSecretRef = &rolloutsv1.LocalObjectReference{Name: "creds"}
		ro.Spec.Webhooks = []rolloutsv1.Webhook{{Name: "eval", Type: rolloutsv1.WebhookPreRollout, URL: hook.URL + "/run",
			AuthSecretRef: &rolloutsv1.LocalObjectReference{Name: "creds"}, FailureLimit: ptr.To[int32](1)}}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())

		Eventually(func() string { return webhookEntry(ns, "gpt4", "eval").Message }).Should(ContainSubstring("HTTP 403"))
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		Eventually(hook.auths).Should(Receive(Equal("Bearer "+token)), "the token was sent")
		got := getRollout(ns, "gpt4")
		raw, err := json.Marshal(got.Status)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(raw)).To(ContainSubstring("[redacted]"))
		Expect(string(raw)).NotTo(ContainSubstring("t0ken"))
		Expect(strings.Join(rolloutEventNotes(ns), "\n")).NotTo(ContainSubstring("t0ken"))

		By("the web gate's 401 echo, at the first step")
		ns2 := newNamespace()
		createRoute(ns2, "header-routing.yaml")
		createBackend(ns2, "vllm-gpt4-v2", true)
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns2},
			Data: map[string][]byte{"token": []byte(token)}})).To(Succeed())
		ro2 := webRollout(ns2, gate.URL, step(10, "1h"), step(100, "1h"))
		ro2.Spec.Analysis.Gates[0].Web.AuthSecretRef = &rolloutsv1.LocalObjectReference{Name: "creds"}
		Expect(k8sClient.Create(suiteCtx, ro2)).To(Succeed())
		Eventually(func() string {
			gs := getRollout(ns2, "gpt4").Status.Gates
			if len(gs) == 0 {
				return ""
			}
			return gs[0].Message
		}, time.Minute).Should(ContainSubstring("HTTP 401"))
		raw, err = json.Marshal(getRollout(ns2, "gpt4").Status)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(raw)).To(ContainSubstring("Bearer [redacted]"))
		Expect(string(raw)).NotTo(ContainSubstring("t0ken"))
		Expect(strings.Join(rolloutEventNotes(ns2), "\n")).NotTo(ContainSubstring("t0ken"))
	})
})

// longName is a DNS subdomain of exactly n characters starting with prefix.
func longName(prefix string, n int) string {
	return prefix + strings.Repeat("x", n-len(prefix))
}

var _ = Describe("Names at their maximum lengths", func() {
	It("walks a step, a gate failure and a rollback with every status write landing", func() {
		var (
			rollout  = longName("ro", 253)
			route    = longName("route", 253)
			rule     = longName("rule", 253)
			stable   = longName("stable", 253)
			canary   = longName("canary", 253)
			workload = longName("deploy", 253)
			gateName = longName("gate", 63)
			tmplName = longName("tmpl", 253)
			hookName = longName("hook", 63)
		)
		score := newScoreServer("0.9", "")
		hook := newEchoServer(http.StatusOK, func(string) string { return "ok" })
		op := startOperator(withWebGatesAndHooks)
		DeferCleanup(op.stop)

		ns := newNamespace()
		pool := func(name, app string) {
			Expect(k8sClient.Create(suiteCtx, &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": rolloutsv1.InferenceGroup + "/v1",
				"kind":       "InferencePool",
				"metadata":   map[string]any{"name": name, "namespace": ns},
				"spec": map[string]any{
					"selector":          map[string]any{"matchLabels": map[string]any{"app": app}},
					"targetPorts":       []any{map[string]any{"number": int64(8000)}},
					"endpointPickerRef": map[string]any{"name": app + "-epp", "port": map[string]any{"number": int64(9002)}},
				},
			}})).To(Succeed())
			createPoolPod(ns, app+"-0", app, true)
		}
		pool(stable, "v1")
		pool(canary, "v2")
		group := gatewayv1.Group(rolloutsv1.InferenceGroup)
		kind := gatewayv1.Kind("InferencePool")
		Expect(k8sClient.Create(suiteCtx, &gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Name: route, Namespace: ns},
			Spec: gatewayv1.HTTPRouteSpec{
				CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "gw"}}},
				Rules: []gatewayv1.HTTPRouteRule{{Name: ptr.To(gatewayv1.SectionName(rule)),
					BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
						Group: &group, Kind: &kind, Name: gatewayv1.ObjectName(stable)}}}}}},
			},
		})).To(Succeed())
		Expect(k8sClient.Create(suiteCtx, &rolloutsv1.GateTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: tmplName, Namespace: ns},
			Spec: rolloutsv1.GateTemplateSpec{Gate: rolloutsv1.GateSpec{Min: ptr.To(0.8),
				Web: &rolloutsv1.WebGate{URL: score.URL + "/score/{{ .Canary }}", JSONPath: "$.data.score", Timeout: "5s"}}},
		})).To(Succeed())

		backend := func(name string) rolloutsv1.BackendRef {
			return rolloutsv1.BackendRef{Group: rolloutsv1.InferenceGroup, Kind: rolloutsv1.BackendKindInferencePool, Name: name,
				WorkloadRef: &rolloutsv1.WorkloadRef{Group: "apps", Kind: "Deployment", Name: workload}}
		}
		st, ca := backend(stable), backend(canary)
		ca.WorkloadRef = &rolloutsv1.WorkloadRef{Group: "apps", Kind: "Deployment", Name: longName("canary-deploy", 253)}
		ro := &rolloutsv1.ModelRollout{
			ObjectMeta: metav1.ObjectMeta{Name: rollout, Namespace: ns},
			Spec: rolloutsv1.ModelRolloutSpec{
				Routes: []rolloutsv1.RouteTarget{{Name: route, Rules: []rolloutsv1.RuleName{rolloutsv1.RuleName(rule)}}},
				Stable: st,
				Canary: &ca,
				Steps:  []rolloutsv1.Step{step(10, "1h"), step(100, "1h")},
				Analysis: &rolloutsv1.Analysis{Interval: "1s", Gates: []rolloutsv1.Gate{{Name: gateName,
					TemplateRef: &rolloutsv1.GateTemplateRef{Name: tmplName}}}},
				Webhooks: []rolloutsv1.Webhook{{Name: hookName, Type: rolloutsv1.WebhookPreRollout, URL: hook.URL + "/" + longName("p", 200)}},
			},
		}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())

		By("the first step, with the gate passing")
		Eventually(func() string { return getRollout(ns, rollout).Status.Step }, time.Minute).Should(Equal("1/2"))
		Eventually(func() rolloutsv1.GateVerdict {
			gs := getRollout(ns, rollout).Status.Gates
			if len(gs) == 0 {
				return ""
			}
			return gs[0].Verdict
		}, time.Minute).Should(Equal(rolloutsv1.VerdictPass))

		By("the gate fails: a rollback")
		score.score.Store("0.5")
		Eventually(phaseOf(ns, rollout), time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		got := getRollout(ns, rollout)
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonGateFailed))
		Expect(got.Status.Rollback.Message).To(ContainSubstring(gateName))
		Expect(got.Status.Gates[0].Name).To(Equal(gateName))
		Expect(got.Status.Gates[0].Template).To(Equal("GateTemplate/" + tmplName))
		Expect(got.Status.Webhooks).To(ContainElement(HaveField("Name", hookName)))
		Expect(got.Status.Workloads).To(ContainElement(And(
			HaveField("WorkloadRef.Name", ca.WorkloadRef.Name),
			HaveField("Why", HavePrefix("failed canary "+canary[:100])),
			HaveField("Why", HaveLen(256)))))
		route2 := &gatewayv1.HTTPRoute{}
		Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: route}, route2)).To(Succeed())
		for _, b := range route2.Spec.Rules[0].BackendRefs {
			if string(b.Name) == canary {
				Expect(*b.Weight).To(BeZero())
			}
		}
	})
})
