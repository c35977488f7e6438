// Package demo is the whole ModelRollout story on one machine: the stack
// that `make demo` (test/cmd/demo) shows and the e2e suite (test/e2e)
// asserts. TEST-ONLY scaffolding; nothing here ships.
//
// # The stack (Start, Close)
//
// Everything listens on 127.0.0.1, on free ports:
//
//   - kube-apiserver and etcd (controller-runtime envtest, binaries from
//     $KUBEBUILDER_ASSETS or bin/control-plane/v1.37.2), with the CRDs of
//     config/crd/bases and of the gateway-api module's standard channel. An
//     admin kubeconfig (context namespace ai-gateway) is written to
//     <Dir>/kubeconfig. The operator gets its own identity, bound only to
//     config/rbac/role.yaml and a leader election Role in "default".
//   - seven vLLM simulators (test/vllmsim), in process: vllm-gpt4-v1
//     (stable), vllm-gpt4-v2 (good canary), vllm-gpt4-v3 (bad canary: 25%
//     errors), vllm-gpt4-v4 (wrong canary: fast, no errors, every answer
//     wrong), and the backends of the route's other rules (tgi-claude, vllm-mixtral,
//     health-check-service). Each has a Service from
//     test/testdata/demo/services.yaml and an EndpointSlice holding the
//     documentation address 192.0.2.10 and the simulator's loopback port,
//     which the gateway dials on 127.0.0.1 (see test/gateway).
//   - the test gateway (test/gateway), in process, serving Gateway
//     ai-gateway/ai-inference-gateway and the HTTPRoute of
//     test/testdata/demo/httproute.yaml (the seed's header routing), with
//     its Envoy-style metrics on a second listener.
//   - Prometheus and Alertmanager (test/promharness, child processes):
//     Prometheus scrapes the simulators (target labels service and
//     namespace, as a ServiceMonitor gives them), the gateway and the
//     operator every second and evaluates test/testdata/demo/alert-rules.yaml
//     (HighErrorRate per vLLM Service); Alertmanager posts every alert at
//     once to the operator's receiver with a bearer token.
//   - the operator, built from ./cmd/manager into <Dir>/bin and run as a
//     process with --kubeconfig, leader election, --prometheus-address and
//     the alert receiver flags; its log is <Dir>/operator.log. The kubectl
//     plugin is built beside it when its source exists.
//
// With Options.Gateway = GatewayTraefik (`make demo GATEWAY=traefik`, and
// the test/traefik suite) Traefik replaces the test gateway: the binary
// test/scripts/traefik.sh builds, run as a child process against the API
// server (the admin kubeconfig) with its kubernetesGateway provider, its web
// entry point as the Gateway's listener (GatewayClass traefik, listener
// port = the entry point's port), and its API, ping and Prometheus metrics
// on the traefik entry point, which Prometheus scrapes as the gateway job.
// The simulators' EndpointSlices then hold 127.0.0.1 itself in slices of
// addressType FQDN (the API server refuses loopback IPv4 endpoints), which
// Traefik dials. GatewayWeights reads Traefik's API, and GatewayGates turns
// the rollouts' envoy-* gates into the matching traefik-* gates.
//
// Child processes die with the stack's process (PR_SET_PDEATHSIG; the
// control plane through `setpriv --pdeathsig`), Close stops them in order
// and removes <Dir>, and the next Start removes the directory of a stack
// that was killed with SIGKILL.
//
// # Load
//
// StartLoad sends OpenAI chat completions with x-model-id: gpt-4 through
// the gateway (some streamed, some with x-ab-test-group: canary), always
// bounded in count and time, counting responses by the x-backend header,
// and those with the header apart; RunBatch sends an exact number.
// Traffic is only ever sent to loopback addresses.
//
// # The story (RunStory)
//
// With load running, it applies rollout-gpt4-v2.yaml (v1 -> v2, a dark
// launch at weight 0 that sends the requests with x-ab-test-group: canary to
// v2 through the rollout's own header route, then 10/25/50/75/100, all with
// 10s pauses and the gates vllm-error-ratio, vllm-e2e-latency-p99 and
// envoy-error-ratio) until Succeeded, then rollout-gpt4-v3.yaml (the same
// rollout edited as in Git: stable v2, canary v3) until a gate or the
// HighErrorRate alert rolls it back, then rollout-gpt4-v4.yaml (stable v2,
// canary v4), whose prompt gate, pointed at v4's simulator on loopback (the
// operator runs with --egress-allow=127.0.0.0/8), rolls it back before the
// first step, with no traffic moved; it shows the rollout as `kubectl get
// modelrollouts -w` does, the route's weights, the traffic split seen by
// the load generator and the gates, then a summary and how to poke the stack
// by hand.
package demo
