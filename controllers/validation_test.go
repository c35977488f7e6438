package controllers

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// baseRollout is a valid rollout; each case edits it into an invalid one.
const baseRollout = `
apiVersion: rollouts.modelrollout.io/v1alpha1
kind: ModelRollout
metadata:
  name: cel
spec:
  routes:
  - name: model-header-routing
  stable: {name: vllm-gpt4-v1, port: 8000}
  canary: {name: vllm-gpt4-v2, port: 8000}
  steps:
  - {weight: 10, pause: 30s}
  - {weight: 100, pause: 1m}
  analysis:
    prometheus: {address: "http://prometheus.monitoring:9090"}
    gates:
    - {name: errors, preset: vllm-error-ratio, max: 0.05}
`

func rolloutFrom(edit func(spec map[string]any)) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	Expect(yaml.Unmarshal([]byte(baseRollout), &u.Object)).To(Succeed())
	edit(u.Object["spec"].(map[string]any))
	return u
}

func gateOf(spec map[string]any) map[string]any {
	return spec["analysis"].(map[string]any)["gates"].([]any)[0].(map[string]any)
}

func webSpec() map[string]any {
	return map[string]any{"url": "http://eval.ml/score?model={{ .Canary }}", "jsonPath": "$.score"}
}

// webGateOf turns the first gate into a valid web gate and returns it.
func webGateOf(spec map[string]any) map[string]any {
	g := gateOf(spec)
	delete(g, "preset")
	g["web"] = webSpec()
	return g
}

// webOf turns the first gate into a web gate and returns its web field.
func webOf(spec map[string]any) map[string]any {
	return webGateOf(spec)["web"].(map[string]any)
}

// promptGateOf replaces the first gate with a valid prompt gate and
// returns it.
func promptGateOf(spec map[string]any) map[string]any {
	g := map[string]any{"name": "answers", "min": 1, "prompt": map[string]any{
		"prompts": []any{map[string]any{"prompt": "Capital of France?", "expect": map[string]any{"contains": "Paris"}}},
	}}
	spec["analysis"].(map[string]any)["gates"].([]any)[0] = g
	return g
}

// firstPrompt makes the first gate a prompt gate and returns its first
// prompt.
func firstPrompt(spec map[string]any) map[string]any {
	return promptGateOf(spec)["prompt"].(map[string]any)["prompts"].([]any)[0].(map[string]any)
}

var _ = Describe("Admission validation (CEL and schema)", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("rejects invalid rollouts with a message the user can act on",
		func(edit func(spec map[string]any), message string) {
			u := rolloutFrom(edit)
			u.SetNamespace(ns)
			err := k8sClient.Create(suiteCtx, u, client.DryRunAll)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("workloadRef kind not a kind name", func(s map[string]any) {
			s["stable"].(map[string]any)["workloadRef"] = map[string]any{"kind": "deployments", "name": "vllm-gpt4-v1"}
		}, "spec.stable.workloadRef.kind"),
		Entry("workloadRef without a name", func(s map[string]any) {
			s["canary"].(map[string]any)["workloadRef"] = map[string]any{"kind": "Deployment"}
		}, "spec.canary.workloadRef.name: Required value"),
		Entry("scaleDownDelay not a duration", func(s map[string]any) {
			s["scaleDownDelay"] = "ten minutes"
		}, "must be a duration such as 30s, 5m or 1h30m"),
		Entry("decreasing weights", func(s map[string]any) {
			s["steps"] = []any{map[string]any{"weight": 50}, map[string]any{"weight": 25}, map[string]any{"weight": 100}}
		}, "step weights must be strictly increasing"),
		Entry("repeated weights", func(s map[string]any) {
			s["steps"] = []any{map[string]any{"weight": 50}, map[string]any{"weight": 50}, map[string]any{"weight": 100}}
		}, "step weights must be strictly increasing"),
		Entry("last weight not 100", func(s map[string]any) {
			s["steps"] = []any{map[string]any{"weight": 10}, map[string]any{"weight": 50}}
		}, "the last step must have weight 100"),
		Entry("weight 0 without a match", func(s map[string]any) {
			s["steps"] = []any{map[string]any{"weight": 0}, map[string]any{"weight": 100}}
		}, "weight 0 is allowed only on a step with a match"),
		Entry("step without weight or match", func(s map[string]any) {
			s["steps"] = []any{map[string]any{"pause": "1m"}, map[string]any{"weight": 100}}
		}, "weight 0 is allowed only on a step with a match"),
		Entry("negative weight", func(s map[string]any) {
			s["steps"] = []any{map[string]any{"weight": -1}, map[string]any{"weight": 100}}
		}, "should be greater than or equal to 0"),
		Entry("empty match", func(s map[string]any) {
			s["steps"] = []any{map[string]any{"weight": 0, "match": map[string]any{}}, map[string]any{"weight": 100}}
		}, "match needs at least one header or query parameter"),
		Entry("match header without value", func(s map[string]any) {
			s["steps"] = []any{map[string]any{"weight": 0, "match": map[string]any{"headers": []any{map[string]any{"name": "x-ab-test-group"}}}}, map[string]any{"weight": 100}}
		}, "spec.steps[0].match.headers[0].value: Required value"),
		Entry("match header with a bad name", func(s map[string]any) {
			s["steps"] = []any{map[string]any{"weight": 0, "match": map[string]any{"headers": []any{map[string]any{"name": "x ab", "value": "canary"}}}}, map[string]any{"weight": 100}}
		}, "spec.steps[0].match.headers[0].name"),
		Entry("weight over 100", func(s map[string]any) {
			s["steps"] = []any{map[string]any{"weight": 10}, map[string]any{"weight": 150}}
		}, "should be less than or equal to 100"),
		Entry("empty steps", func(s map[string]any) { s["steps"] = []any{} }, "should have at least 1 items"),
		Entry("too many steps", func(s map[string]any) {
			var steps []any
			for i := 1; i <= 21; i++ {
				steps = append(steps, map[string]any{"weight": i})
			}
			s["steps"] = steps
		}, "must have at most 20 items"),
		Entry("stable equal to canary", func(s map[string]any) {
			s["canary"] = map[string]any{"name": "vllm-gpt4-v1", "port": 8001}
		}, "canary must name a different backend than stable"),
		Entry("no routes", func(s map[string]any) { delete(s, "routes") }, "spec.routes: Required value"),
		Entry("empty routes", func(s map[string]any) { s["routes"] = []any{} }, "should have at least 1 items"),
		Entry("malformed pause", func(s map[string]any) {
			s["steps"] = []any{map[string]any{"weight": 10, "pause": "5 minutes"}, map[string]any{"weight": 100}}
		}, "must be a duration such as 30s, 5m or 1h30m"),
		Entry("malformed progress deadline", func(s map[string]any) { s["progressDeadline"] = "1d" }, "must be a duration such as 30s, 5m or 1h30m"),
		Entry("unknown backend kind", func(s map[string]any) {
			s["canary"] = map[string]any{"name": "v2", "kind": "Deployment", "port": 8000}
		}, `Unsupported value: "Deployment"`),
		Entry("Service without port", func(s map[string]any) { s["canary"] = map[string]any{"name": "v2"} }, "port is required when kind is Service"),
		Entry("InferencePool in the core group", func(s map[string]any) {
			s["canary"] = map[string]any{"name": "pool-v2", "kind": "InferencePool"}
		}, "kind InferencePool takes group inference.networking.k8s.io"),
		Entry("bad rule name", func(s map[string]any) {
			s["routes"] = []any{map[string]any{"name": "r", "rules": []any{"Bad_Rule"}}}
		}, "spec.routes[0].rules[0]"),
		Entry("gate with preset and query", func(s map[string]any) { gateOf(s)["query"] = "vector(1)" }, "set exactly one gate kind: preset, query, web, prompt or templateRef"),
		Entry("gate with preset and web", func(s map[string]any) { gateOf(s)["web"] = webSpec() }, "set exactly one gate kind: preset, query, web, prompt or templateRef"),
		Entry("gate of no kind", func(s map[string]any) { delete(gateOf(s), "preset") }, "set exactly one gate kind: preset, query, web, prompt or templateRef"),
		Entry("web gate with minRequests", func(s map[string]any) { webGateOf(s)["minRequests"] = 10 }, "minRequests, requestsQuery and selector apply only to PromQL gates"),
		Entry("web gate with selector", func(s map[string]any) { webGateOf(s)["selector"] = `service="a"` }, "apply only to PromQL gates"),
		Entry("web gate with requestsQuery", func(s map[string]any) { webGateOf(s)["requestsQuery"] = "vector(1)" }, "apply only to PromQL gates"),
		Entry("web gate without url", func(s map[string]any) { delete(webOf(s), "url") }, "spec.analysis.gates[0].web.url: Required value"),
		Entry("web gate without jsonPath", func(s map[string]any) { delete(webOf(s), "jsonPath") }, "spec.analysis.gates[0].web.jsonPath: Required value"),
		Entry("web url without scheme", func(s map[string]any) { webOf(s)["url"] = "eval.ml/score" }, "url must start with http:// or https://"),
		Entry("web url file scheme", func(s map[string]any) { webOf(s)["url"] = "file:///etc/passwd" }, "url must start with http:// or https://"),
		Entry("web url too long", func(s map[string]any) { webOf(s)["url"] = "http://h/" + strings.Repeat("a", 2048) }, "Too long"),
		Entry("web jsonPath without root", func(s map[string]any) { webOf(s)["jsonPath"] = "data.score" }, "jsonPath must start with $"),
		Entry("web method PUT", func(s map[string]any) { webOf(s)["method"] = "PUT" }, `Unsupported value: "PUT"`),
		Entry("web body with GET", func(s map[string]any) { webOf(s)["body"] = `{"a": 1}` }, "body is sent only with method: POST"),
		Entry("web header Host", func(s map[string]any) {
			webOf(s)["headers"] = []any{map[string]any{"name": "Host", "value": "evil"}}
		}, "put the host in url"),
		Entry("web header name with a space", func(s map[string]any) {
			webOf(s)["headers"] = []any{map[string]any{"name": "X Bad", "value": "v"}}
		}, "spec.analysis.gates[0].web.headers[0].name"),
		Entry("web Authorization header and authSecretRef", func(s map[string]any) {
			w := webOf(s)
			w["headers"] = []any{map[string]any{"name": "authorization", "value": "Bearer x"}}
			w["authSecretRef"] = map[string]any{"name": "eval-token"}
		}, "set the Authorization header or authSecretRef, not both"),
		Entry("web too many headers", func(s map[string]any) {
			var hs []any
			for i := range 17 {
				hs = append(hs, map[string]any{"name": "X-H" + strconv.Itoa(i), "value": "v"})
			}
			webOf(s)["headers"] = hs
		}, "Too many: 17: must have at most 16 items"),
		Entry("web timeout too long", func(s map[string]any) { webOf(s)["timeout"] = "5m" }, "timeout must be between 100ms and 60s"),
		Entry("web timeout too short", func(s map[string]any) { webOf(s)["timeout"] = "1ms" }, "timeout must be between 100ms and 60s"),
		Entry("web maxResponseBytes too large", func(s map[string]any) { webOf(s)["maxResponseBytes"] = 1 << 30 }, "should be less than or equal to 16777216"),
		Entry("prompt gate with a preset", func(s map[string]any) {
			g := promptGateOf(s)
			g["preset"] = "vllm-error-ratio"
		}, "set exactly one gate kind: preset, query, web, prompt or templateRef"),
		Entry("prompt gate without prompts", func(s map[string]any) { delete(promptGateOf(s)["prompt"].(map[string]any), "prompts") }, "set exactly one of prompts or promptsFrom"),
		Entry("prompt gate with prompts and promptsFrom", func(s map[string]any) {
			promptGateOf(s)["prompt"].(map[string]any)["promptsFrom"] = map[string]any{"name": "evals", "key": "prompts.yaml"}
		}, "set exactly one of prompts or promptsFrom"),
		Entry("prompt without expectation", func(s map[string]any) { firstPrompt(s)["expect"] = map[string]any{} }, "set exactly one of contains, regex or jsonSchema"),
		Entry("prompt with two expectations", func(s map[string]any) { firstPrompt(s)["expect"].(map[string]any)["regex"] = "Paris" }, "set exactly one of contains, regex or jsonSchema"),
		Entry("too many prompts", func(s map[string]any) {
			pg := promptGateOf(s)["prompt"].(map[string]any)
			var ps []any
			for range 33 {
				ps = append(ps, map[string]any{"prompt": "hi", "expect": map[string]any{"contains": "x"}})
			}
			pg["prompts"] = ps
		}, "must have at most 32 items"),
		Entry("prompt too long", func(s map[string]any) { firstPrompt(s)["prompt"] = strings.Repeat("x", 8193) }, "may not be more than 8192 bytes"),
		Entry("prompt maxTokens 0", func(s map[string]any) { firstPrompt(s)["maxTokens"] = 0 }, "should be greater than or equal to 1"),
		Entry("prompt maxLatency malformed", func(s map[string]any) { firstPrompt(s)["maxLatency"] = "2 seconds" }, "must be a duration such as 30s"),
		Entry("prompt gate url without scheme", func(s map[string]any) { promptGateOf(s)["prompt"].(map[string]any)["url"] = "vllm-v2:8000" }, "url must be an http:// or https:// URL"),
		Entry("prompt gate path without slash", func(s map[string]any) { promptGateOf(s)["prompt"].(map[string]any)["path"] = "v1/chat" }, "path must start with /"),
		Entry("prompt gate unknown API", func(s map[string]any) { promptGateOf(s)["prompt"].(map[string]any)["api"] = "Responses" }, `Unsupported value: "Responses"`),
		Entry("prompt gate concurrency 17", func(s map[string]any) { promptGateOf(s)["prompt"].(map[string]any)["concurrency"] = 17 }, "should be less than or equal to 16"),
		Entry("compareStable with url but no stableURL", func(s map[string]any) {
			pg := promptGateOf(s)["prompt"].(map[string]any)
			pg["url"] = "http://127.0.0.1:8000"
			pg["compareStable"] = true
		}, "compareStable with url needs stableURL"),
		Entry("stableURL without compareStable", func(s map[string]any) {
			pg := promptGateOf(s)["prompt"].(map[string]any)
			pg["url"] = "http://127.0.0.1:8000"
			pg["stableURL"] = "http://127.0.0.1:8001"
		}, "stableURL needs url and compareStable: true"),
		Entry("prompt gate with minRequests", func(s map[string]any) { promptGateOf(s)["minRequests"] = 5 }, "apply to PromQL gates only"),
		Entry("gate that never runs", func(s map[string]any) {
			g := promptGateOf(s)
			g["preTraffic"] = false
		}, "would never run"),
		Entry("PromQL gate that never runs", func(s map[string]any) { gateOf(s)["everyStep"] = false }, "would never run"),
		Entry("gate without threshold", func(s map[string]any) { delete(gateOf(s), "max") }, "set min, max or both"),
		Entry("gate with min above max", func(s map[string]any) { gateOf(s)["min"] = 0.5 }, "min must not be greater than max"),
		Entry("unknown preset", func(s map[string]any) { gateOf(s)["preset"] = "vllm-error-rate" }, `Unsupported value: "vllm-error-rate"`),
		Entry("minRequests on a custom query without requestsQuery", func(s map[string]any) {
			g := gateOf(s)
			delete(g, "preset")
			g["query"] = "vector(0)"
			g["minRequests"] = 10
		}, "minRequests on a custom query needs requestsQuery"),
		Entry("failureLimit 0", func(s map[string]any) { gateOf(s)["failureLimit"] = 0 }, "should be greater than or equal to 1"),
		Entry("noData policy unknown", func(s map[string]any) { gateOf(s)["noData"] = "Ignore" }, `Unsupported value: "Ignore"`),
		Entry("Prometheus address without scheme", func(s map[string]any) {
			s["analysis"].(map[string]any)["prometheus"] = map[string]any{"address": "prometheus:9090"}
		}, "address must be an http:// or https:// URL"),
		Entry("analysis interval 0s", func(s map[string]any) { s["analysis"].(map[string]any)["interval"] = "0s" }, "interval must be at least 1s"),
		Entry("analysis interval 1ms", func(s map[string]any) { s["analysis"].(map[string]any)["interval"] = "1ms" }, "interval must be at least 1s"),
		Entry("analysis interval 999ms", func(s map[string]any) { s["analysis"].(map[string]any)["interval"] = "999ms" }, "interval must be at least 1s"),
		Entry("unknown deletion policy", func(s map[string]any) { s["deletionPolicy"] = "Orphan" }, `Unsupported value: "Orphan"`),
		Entry("malformed canary grace", func(s map[string]any) { s["canaryUnavailableGrace"] = "soon" }, "must be a duration such as 30s, 5m or 1h30m"),
		Entry("empty alert selector", func(s map[string]any) {
			s["rollbackOnAlerts"] = map[string]any{"matchLabels": map[string]any{}}
		}, "should have at least 1 properties"),
		Entry("webhook with a non-HTTP URL", func(s map[string]any) {
			s["webhooks"] = []any{map[string]any{"name": "eval", "type": "PreRollout", "url": "ftp://eval.ml/run"}}
		}, "url must be an http:// or https:// URL"),
		Entry("webhook of an unknown type", func(s map[string]any) {
			s["webhooks"] = []any{map[string]any{"name": "eval", "type": "PostRollout", "url": "http://eval.ml/run"}}
		}, `Unsupported value: "PostRollout"`),
		Entry("failureLimit on a ConfirmPromotion webhook", func(s map[string]any) {
			s["webhooks"] = []any{map[string]any{"name": "ok", "type": "ConfirmPromotion", "url": "http://ok.ml/", "failureLimit": 3}}
		}, "failureLimit applies to PreRollout webhooks only"),
		Entry("webhook timeout over 10m", func(s map[string]any) {
			s["webhooks"] = []any{map[string]any{"name": "eval", "type": "PreRollout", "url": "http://eval.ml/", "timeout": "11m"}}
		}, "timeout must be between 1s and 10m"),
		Entry("two webhooks of one name", func(s map[string]any) {
			h := map[string]any{"name": "eval", "type": "PreRollout", "url": "http://eval.ml/"}
			s["webhooks"] = []any{h, h}
		}, "Duplicate value"),
	)

	It("accepts the base rollout and fills in the documented defaults", func() {
		u := rolloutFrom(func(s map[string]any) { delete(s, "steps") })
		u.SetNamespace(ns)
		Expect(k8sClient.Create(suiteCtx, u)).To(Succeed())
		ro := getRollout(ns, "cel")
		Expect(ro.Spec.Steps).To(Equal(rolloutsv1.DefaultSteps()))
		Expect(*ro.Spec.ProgressDeadline).To(BeEquivalentTo("10m"))
		Expect(ro.Spec.Analysis.Interval).To(BeEquivalentTo("1m"))
		// noData and failureLimit have no CRD default: a default would be
		// written into the gate and override its template's (Hold and 1
		// apply when neither the gate nor a template sets them).
		Expect(ro.Spec.Analysis.Gates[0].NoData).To(BeEmpty())
		Expect(ro.Spec.Analysis.Gates[0].FailureLimit).To(BeZero())
		Expect(ro.Spec.Canary.Kind).To(Equal(rolloutsv1.BackendKindService))
		Expect(ro.Spec.DeletionPolicy).To(Equal(rolloutsv1.DeletionReturnToStable))
		Expect(*ro.Spec.CanaryUnavailableGrace).To(BeEquivalentTo("30s"))
		Expect(ro.Spec.AllowStableSwing).To(BeFalse())
	})

	It("accepts a workloadRef with only a name, defaulting it to an apps Deployment, and a default scaleDownDelay", func() {
		u := rolloutFrom(func(s map[string]any) {
			s["stable"].(map[string]any)["workloadRef"] = map[string]any{"name": "vllm-gpt4-v1"}
		})
		u.SetNamespace(ns)
		Expect(k8sClient.Create(suiteCtx, u)).To(Succeed())
		ro := getRollout(ns, "cel")
		Expect(*ro.Spec.Stable.WorkloadRef).To(Equal(rolloutsv1.WorkloadRef{Group: "apps", Kind: "Deployment", Name: "vllm-gpt4-v1"}))
		Expect(*ro.Spec.ScaleDownDelay).To(BeEquivalentTo("10m"))
	})

	It("accepts a dark-launch step: weight 0 with a match, defaulting the match type", func() {
		u := rolloutFrom(func(s map[string]any) {
			s["steps"] = []any{
				map[string]any{"match": map[string]any{"headers": []any{map[string]any{"name": "x-ab-test-group", "value": "canary"}}}, "pause": "1m"},
				map[string]any{"weight": 10, "match": map[string]any{"queryParams": []any{map[string]any{"name": "ab", "value": "canary"}}}},
				map[string]any{"weight": 100},
			}
		})
		u.SetNamespace(ns)
		Expect(k8sClient.Create(suiteCtx, u)).To(Succeed())
		steps := getRollout(ns, "cel").Spec.Steps
		Expect(steps[0].Weight).To(BeEquivalentTo(0))
		Expect(steps[0].Match.Headers[0].Type).To(HaveValue(BeEquivalentTo("Exact")))
		Expect(steps[1].Match.QueryParams[0].Value).To(Equal("canary"))
	})

	It("accepts a web gate and fills in its defaults", func() {
		u := rolloutFrom(func(s map[string]any) {
			w := webOf(s)
			w["headers"] = []any{map[string]any{"name": "X-Scope-OrgID", "value": "{{ .Namespace }}"}}
			w["authSecretRef"] = map[string]any{"name": "eval-token"}
			post := map[string]any{"name": "judge", "min": 0.8, "web": map[string]any{
				"url": "https://eval.ml/judge", "method": "POST", "body": `{"model": "{{ .Canary }}"}`,
				"jsonPath": "$.results[?@.name=='accuracy'].value", "timeout": "60s", "maxResponseBytes": 16777216,
			}}
			s["analysis"].(map[string]any)["gates"] = append(s["analysis"].(map[string]any)["gates"].([]any), post)
		})
		u.SetNamespace(ns)
		Expect(k8sClient.Create(suiteCtx, u)).To(Succeed())
		ro := getRollout(ns, "cel")
		w := ro.Spec.Analysis.Gates[0].Web
		Expect(w).NotTo(BeNil())
		Expect(w.Method).To(Equal(rolloutsv1.WebMethodGet))
		Expect(w.Timeout).To(BeEquivalentTo("10s"))
		Expect(w.MaxResponseBytes).To(BeEquivalentTo(1 << 20))
		Expect(ro.Spec.Analysis.Gates[1].Web.Method).To(Equal(rolloutsv1.WebMethodPost))
	})

	It("accepts sixteen gates of the largest web shape within the CEL cost budget", func() {
		u := rolloutFrom(func(s map[string]any) {
			var gates []any
			for i := range 16 {
				var hs []any
				for j := range 16 {
					hs = append(hs, map[string]any{"name": "X-H" + strconv.Itoa(j) + strings.Repeat("h", 120), "value": strings.Repeat("v", 1024)})
				}
				gates = append(gates, map[string]any{"name": "g" + strconv.Itoa(i), "max": 1, "web": map[string]any{
					"url": "http://h/" + strings.Repeat("u", 2000), "method": "POST", "body": strings.Repeat("b", 8192),
					"jsonPath": "$" + strings.Repeat("x", 1023), "headers": hs,
				}})
			}
			s["analysis"].(map[string]any)["gates"] = gates
		})
		u.SetNamespace(ns)
		Expect(k8sClient.Create(suiteCtx, u, client.DryRunAll)).To(Succeed())
	})

	It("accepts a prompt gate and fills in its defaults", func() {
		u := rolloutFrom(func(s map[string]any) {
			promptGateOf(s)["prompt"].(map[string]any)["url"] = "http://127.0.0.1:8000"
		})
		u.SetNamespace(ns)
		Expect(k8sClient.Create(suiteCtx, u)).To(Succeed())
		g := getRollout(ns, "cel").Spec.Analysis.Gates[0]
		Expect(g.Prompt.API).To(Equal(rolloutsv1.PromptAPIChat))
		Expect(g.Prompt.Concurrency).To(BeEquivalentTo(4))
		Expect(g.Prompt.Timeout).To(BeEquivalentTo("60s"))
		Expect(g.Prompt.Prompts[0].MaxTokens).To(BeEquivalentTo(64))
		Expect(g.Prompt.Prompts[0].MaxLatency).To(BeEquivalentTo("10s"))
		Expect(g.RunsPreTraffic()).To(BeTrue())
		Expect(g.RunsAtSteps()).To(BeFalse())
	})

	It("accepts an analysis interval of exactly 1s", func() {
		u := rolloutFrom(func(s map[string]any) { s["analysis"].(map[string]any)["interval"] = "1s" })
		u.SetNamespace(ns)
		Expect(k8sClient.Create(suiteCtx, u, client.DryRunAll)).To(Succeed())
	})
})

// kubeconfig writes an admin kubeconfig for the test API server.
func kubeconfig() string {
	user, err := testEnv.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	kc, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(path, kc, 0o600)).To(Succeed())
	return path
}

// kubectl runs the kubectl in KUBEBUILDER_ASSETS as a user would.
func kubectl(kc string, args ...string) (string, error) {
	bin := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	cmd := exec.Command(bin, append([]string{"--kubeconfig", kc}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = io.MultiWriter(&out, GinkgoWriter)
	err := cmd.Run()
	return out.String(), err
}

var _ = Describe("kubectl", func() {
	It("applies the sample and lists it with the on-call columns", func() {
		ns := newNamespace()
		kc := kubeconfig()
		out, err := kubectl(kc, "apply", "-n", ns, "-f", filepath.Join("..", "config", "samples", "rollouts_v1alpha1_modelrollout.yaml"))
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("modelrollout.rollouts.modelrollout.io/gpt4 created"))

		// No controller runs here: the status columns are empty, the
		// columns themselves are what is checked.
		out, err = kubectl(kc, "get", "modelrollouts", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
		Expect(header).To(Equal([]string{"NAME", "ROUTE", "CANARY", "WEIGHT", "STEP", "PHASE", "AGE"}))
		Expect(out).To(MatchRegexp(`gpt4\s+model-header-routing\s+vllm-gpt4-v2\s`))

		out, err = kubectl(kc, "get", "mro", "-n", ns, "-o", "wide")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(strings.Fields(strings.SplitN(out, "\n", 2)[0])).To(Equal([]string{"NAME", "ROUTE", "CANARY", "WEIGHT", "STEP", "PHASE", "AGE", "STABLE", "MESSAGE"}))
	})

	It("shows a running rollout's weight, step and phase", func() {
		ns := newNamespace()
		kc := kubeconfig()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		op := startOperator()
		defer op.stop()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(25, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(func() string {
			out, _ := kubectl(kc, "get", "modelrollouts", "-n", ns, "--no-headers")
			return out
		}).Should(MatchRegexp(`gpt4\s+model-header-routing\s+vllm-gpt4-v2\s+25\s+1/2\s+Progressing\s`))

		out, err := kubectl(kc, "wait", "-n", ns, "--for=condition=Reconciling", "modelrollout/gpt4", "--timeout=30s")
		Expect(err).NotTo(HaveOccurred(), out)
	})
})
