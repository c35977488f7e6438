package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/authproxy"
)

// These specs cover the Prometheus auth modes: admission rejects what
// cannot work, a Secret that does not fit stalls the rollout with a message,
// and a real Prometheus behind an authenticating proxy judges the canary.

var _ = Describe("Prometheus auth modes", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("admission rejects auth settings that cannot work",
		func(edit func(prom map[string]any), message string) {
			u := rolloutFrom(func(spec map[string]any) {
				edit(spec["analysis"].(map[string]any)["prometheus"].(map[string]any))
			})
			u.SetNamespace(ns)
			err := k8sClient.Create(suiteCtx, u, client.DryRunAll)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("oauth2 and sigv4 together", func(p map[string]any) {
			p["authSecretRef"] = map[string]any{"name": "s"}
			p["oauth2"] = map[string]any{"clientID": "c", "tokenURL": "https://login.example.com/token"}
			p["sigv4"] = map[string]any{"region": "us-east-1"}
		}, "set at most one of oauth2 and sigv4"),
		Entry("oauth2 without a Secret", func(p map[string]any) {
			p["oauth2"] = map[string]any{"clientID": "c", "tokenURL": "https://login.example.com/token"}
		}, `oauth2 needs authSecretRef: the client secret is read from key "client_secret"`),
		Entry("oauth2 with a token URL that is no URL", func(p map[string]any) {
			p["authSecretRef"] = map[string]any{"name": "s"}
			p["oauth2"] = map[string]any{"clientID": "c", "tokenURL": "login.example.com"}
		}, "tokenURL must be an http:// or https:// URL"),
		Entry("a header with a value and a secretKey", func(p map[string]any) {
			p["authSecretRef"] = map[string]any{"name": "s"}
			p["headers"] = []any{map[string]any{"name": "X-Scope-OrgID", "value": "a", "secretKey": "tenant"}}
		}, "set exactly one of value and secretKey"),
		Entry("a header with neither", func(p map[string]any) {
			p["headers"] = []any{map[string]any{"name": "X-Scope-OrgID"}}
		}, "set exactly one of value and secretKey"),
		Entry("a secret header without a Secret", func(p map[string]any) {
			p["headers"] = []any{map[string]any{"name": "X-Api-Key", "secretKey": "key"}}
		}, "a header with secretKey needs authSecretRef"),
		Entry("an Authorization header", func(p map[string]any) {
			p["headers"] = []any{map[string]any{"name": "authorization", "value": "Bearer x"}}
		}, "this header is set by the HTTP client or an auth mode"),
		Entry("a header name with a space", func(p map[string]any) {
			p["headers"] = []any{map[string]any{"name": "X Scope", "value": "a"}}
		}, "should match"),
		Entry("the same header twice", func(p map[string]any) {
			p["headers"] = []any{map[string]any{"name": "X-Scope-OrgID", "value": "a"}, map[string]any{"name": "X-Scope-OrgID", "value": "b"}}
		}, "Duplicate value"),
		Entry("a sigv4 role that is no IAM role ARN", func(p map[string]any) {
			p["sigv4"] = map[string]any{"region": "us-east-1", "roleARN": "prometheus-reader"}
		}, "roleARN"),
		Entry("sigv4 without a region", func(p map[string]any) {
			p["sigv4"] = map[string]any{}
		}, "region"),
	)

	It("admits every auth mode with the fields it needs", func() {
		for _, edit := range []func(p map[string]any){
			func(p map[string]any) {
				p["authSecretRef"] = map[string]any{"name": "s"}
				p["headers"] = []any{map[string]any{"name": "X-Scope-OrgID", "value": "team-a"}, map[string]any{"name": "X-Api-Key", "secretKey": "api-key"}}
				p["serverName"] = "prometheus.monitoring.svc"
			},
			func(p map[string]any) {
				p["authSecretRef"] = map[string]any{"name": "s"}
				p["oauth2"] = map[string]any{"clientID": "c", "tokenURL": "https://login.example.com/token",
					"scopes": []any{"metrics:read"}, "endpointParams": map[string]any{"audience": "mimir"}}
			},
			func(p map[string]any) {
				p["sigv4"] = map[string]any{"region": "us-east-1", "roleARN": "arn:aws:iam::123456789012:role/prometheus-query"}
			},
		} {
			u := rolloutFrom(func(spec map[string]any) { edit(spec["analysis"].(map[string]any)["prometheus"].(map[string]any)) })
			u.SetNamespace(ns)
			Expect(k8sClient.Create(suiteCtx, u, client.DryRunAll)).To(Succeed())
		}
	})

	stalledWith := func(ro *rolloutsv1.ModelRollout, data map[string][]byte, message string) {
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "prom-auth", Namespace: ns}, Data: data})).To(Succeed())
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionStalled)).Should(And(Not(BeNil()), HaveField("Reason", rolloutsv1.ReasonInvalidConfig)))
		Expect(getRollout(ns, "gpt4").Status.Message).To(ContainSubstring(message))
		Consistently(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 1}))
	}

	Context("with a Secret that does not fit", func() {
		var op *operator
		BeforeEach(func() {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			op = startOperator(withPrometheusGates)
			DeferCleanup(op.stop)
		})

		It("stalls on a client certificate that is not PEM", func() {
			stalledWith(authRollout(ns), map[string][]byte{"tls.crt": []byte("not a certificate"), "tls.key": []byte("nor a key")},
				"Prometheus auth Secret prom-auth: prometheus TLS client certificate and key: tls: failed to find any PEM data")
		})

		It("stalls on a certificate without its key", func() {
			stalledWith(authRollout(ns), map[string][]byte{"tls.crt": []byte("x")}, `Prometheus auth Secret prom-auth has "tls.crt" but no "tls.key"`)
		})

		It("stalls on a secret header whose key is missing", func() {
			ro := authRollout(ns)
			ro.Spec.Analysis.Prometheus.Headers = []rolloutsv1.PrometheusHeader{{Name: "X-Api-Key", SecretKey: "api-key"}}
			stalledWith(ro, map[string][]byte{"token": []byte("t")}, `Prometheus auth Secret prom-auth has no key "api-key" for header X-Api-Key`)
		})

		It("stalls on oauth2 without a client secret", func() {
			ro := authRollout(ns)
			ro.Spec.Analysis.Prometheus.OAuth2 = &rolloutsv1.PrometheusOAuth2{ClientID: "c", TokenURL: "http://127.0.0.1:9/token"}
			stalledWith(ro, map[string][]byte{"ca.crt": []byte("x")}, `Prometheus auth Secret prom-auth has no key "client_secret"`)
		})

		It("stalls on oauth2 next to a bearer token", func() {
			ro := authRollout(ns)
			ro.Spec.Analysis.Prometheus.OAuth2 = &rolloutsv1.PrometheusOAuth2{ClientID: "c", TokenURL: "http://127.0.0.1:9/token"}
			stalledWith(ro, map[string][]byte{"client_secret": []byte("s"), "token": []byte("t")}, `has "token" but spec.analysis.prometheus sets oauth2`)
		})

		It("stalls on sigv4 without keys unless the operator lends its AWS identity", func() {
			ro := authRollout(ns)
			ro.Spec.Analysis.Prometheus.SigV4 = &rolloutsv1.PrometheusSigV4{Region: "us-east-1"}
			stalledWith(ro, map[string][]byte{"ca.crt": []byte("x")}, "sigv4 has no AWS access key: add keys \"access_key\" and \"secret_key\" to Prometheus auth Secret prom-auth")
		})
	})

	It("judges a canary through a proxy that requires a tenant header and a client certificate", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		stable, canary := simulator("vllm-gpt4-v1", nil), simulator("vllm-gpt4-v2", nil)
		load(stable, canary)
		prom := prometheusFor(ns, stable, canary)

		// Client -> mTLS proxy -> tenant-header proxy -> Prometheus.
		tenant, err := authproxy.Start(prom.URL(), authproxy.RequireHeader("X-Scope-OrgID", "team-a"))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(tenant.Close)
		ca, err := authproxy.NewCA()
		Expect(err).NotTo(HaveOccurred())
		mtls, err := authproxy.Start(tenant.URL(), authproxy.RequireClientCert(ca, "prometheus.monitoring.svc"))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(mtls.Close)
		cert, key, err := ca.Issue(true, "modelrollout")
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "prom-mtls", Namespace: ns},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"ca.crt": ca.PEM, "tls.crt": cert, "tls.key": key},
		})).To(Succeed())

		op := startOperator(withPrometheusGates)
		DeferCleanup(op.stop)
		ro := gatedRollout(ns, mtls.URL(), step(10, "2s"), step(100, "2s"))
		ro.Spec.Analysis.Prometheus.AuthSecretRef = &rolloutsv1.LocalObjectReference{Name: "prom-mtls"}
		ro.Spec.Analysis.Prometheus.ServerName = "prometheus.monitoring.svc"
		ro.Spec.Analysis.Prometheus.Headers = []rolloutsv1.PrometheusHeader{{Name: "X-Scope-OrgID", Value: ptr.To("team-a")}}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())

		Eventually(phaseOf(ns, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseSucceeded))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Gates).To(HaveLen(2))
		for _, g := range got.Status.Gates {
			Expect(g.Verdict).To(Equal(rolloutsv1.VerdictPass), g.Message)
		}
		Expect(tenant.Passed()).To(BeNumerically(">", 0), "the queries went through both proxies")
		Expect(tenant.Refused()).To(BeZero())
	})

	It("holds a canary whose queries the tenant proxy refuses, and goes on once the header is set", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		stable, canary := simulator("vllm-gpt4-v1", nil), simulator("vllm-gpt4-v2", nil)
		load(stable, canary)
		prom := prometheusFor(ns, stable, canary)
		tenant, err := authproxy.Start(prom.URL(), authproxy.RequireHeader("X-Scope-OrgID", "team-a"))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(tenant.Close)

		op := startOperator(withPrometheusGates)
		DeferCleanup(op.stop)
		Expect(k8sClient.Create(suiteCtx, gatedRollout(ns, tenant.URL(), step(10, "2s"), step(100, "2s")))).To(Succeed())

		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionGatesPassing) }, time.Minute).Should(Equal(rolloutsv1.ReasonPrometheusError))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Step).To(Equal("1/2"))
		Expect(got.Status.Gates).NotTo(BeEmpty())
		Expect(got.Status.Gates[0].Verdict).To(Equal(rolloutsv1.VerdictError))
		Expect(got.Status.Gates[0].Message).To(ContainSubstring(`401: authproxy: header X-Scope-OrgID must be "team-a"; the server refused the query's credentials`))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))

		Eventually(func() error {
			ro := getRollout(ns, "gpt4")
			ro.Spec.Analysis.Prometheus.Headers = []rolloutsv1.PrometheusHeader{{Name: "X-Scope-OrgID", Value: ptr.To("team-a")}}
			return k8sClient.Update(suiteCtx, ro)
		}).Should(Succeed())
		Eventually(phaseOf(ns, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseSucceeded))
		for _, g := range getRollout(ns, "gpt4").Status.Gates {
			Expect(g.Verdict).To(Equal(rolloutsv1.VerdictPass), g.Message)
		}
	})
})
