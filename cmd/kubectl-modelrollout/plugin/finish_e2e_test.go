package plugin_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/controllers"
)

const finishRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: model-header-routing
  namespace: ai-gateway
  annotations:
    team.example.com/owner: ml-platform
spec:
  parentRefs:
  - name: ai-inference-gateway
  rules:
  - name: gpt4
    matches:
    - headers:
      - name: x-model-id
        value: gpt-4
    backendRefs:
    - name: vllm-gpt4-v1
      port: 8000
      weight: 100
    - name: vllm-gpt4-v2
      port: 8000
      weight: 0
    timeouts:
      request: 120s
  - name: health
    backendRefs:
    - name: vllm-gpt4-v1
      port: 8000
`

// TestFinishEndToEnd runs `kubectl modelrollout finish` against a real API
// server with the real operator: a refusal before success, --print (the Git
// change), then the finish itself, after which the live route equals what
// --print said Git should hold.
func TestFinishEndToEnd(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set: this test needs kube-apiserver and etcd")
	}
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	g := newG(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "kubectl-modelrollout")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kubectl-modelrollout")
	build.Dir = repoRoot
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "go build: %s", out)

	gw, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	g.Expect(err).NotTo(HaveOccurred())
	env := &envtest.Environment{
		CRDDirectoryPaths: []string{filepath.Join(repoRoot, "config", "crd", "bases"),
			filepath.Join(strings.TrimSpace(string(gw)), "config", "crd", "standard")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	kc, err := admin.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := clientcmd.Load(kc)
	g.Expect(err).NotTo(HaveOccurred())
	raw.Contexts[raw.CurrentContext].Namespace = "ai-gateway"
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	g.Expect(clientcmd.WriteToFile(*raw, kubeconfig)).To(Succeed())

	scheme := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	utilruntime.Must(rolloutsv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	e := &e2e{t: t, g: g, c: c, bin: bin, kubeconfig: kubeconfig, home: tmp}
	ctx := context.Background()

	// The operator, in this process.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	g.Expect(err).NotTo(HaveOccurred())
	octx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	t.Cleanup(func() { cancel(); <-done })
	r := &controllers.ModelRolloutReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("modelrollout-controller")}
	g.Expect(r.SetupWithManager(octx, mgr)).To(Succeed())
	go func() { done <- mgr.Start(octx) }()

	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ai-gateway"}})).To(Succeed())
	for _, name := range []string{"vllm-gpt4-v1", "vllm-gpt4-v2"} {
		g.Expect(c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ai-gateway"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8000}}}})).To(Succeed())
		g.Expect(c.Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "ai-gateway", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8000)}},
		})).To(Succeed())
	}
	route := &unstructured.Unstructured{}
	g.Expect(yaml.Unmarshal([]byte(finishRoute), &route.Object)).To(Succeed())
	g.Expect(c.Create(ctx, route)).To(Succeed())

	ro := newRollout("ai-gateway", "gpt4")
	ro.Spec.Analysis = nil
	ro.Spec.Routes = []rolloutsv1.RouteTarget{{Name: "model-header-routing", Rules: []rolloutsv1.RuleName{"gpt4"}}}
	// The first step waits for a promote, the last ends the rollout.
	ro.Spec.Steps = []rolloutsv1.Step{{Weight: 50}, {Weight: 100, Pause: ptr.To(rolloutsv1.Duration("0s"))}}
	g.Expect(c.Create(ctx, ro)).To(Succeed())
	phase := func() rolloutsv1.Phase {
		ro := e.rollout("ai-gateway", "gpt4")
		if ro.Status.ObservedGeneration != ro.Generation {
			return ""
		}
		return ro.Status.Phase
	}
	g.Eventually(phase).Should(Equal(rolloutsv1.PhasePaused))

	// Not finished before success, nor printed.
	r1 := e.expect(1, "finish", "gpt4")
	g.Expect(r1.stderr).To(ContainSubstring("only a Succeeded rollout (its canary holds 100%) can be finished"))
	e.expect(1, "finish", "gpt4", "--print")
	g.Expect(e.rollout("ai-gateway", "gpt4").Spec.Canary).NotTo(BeNil())

	e.expect(0, "promote", "gpt4")
	g.Eventually(phase).Should(Equal(rolloutsv1.PhaseSucceeded))

	// --print: the Git change, and nothing changes.
	printed := e.expect(0, "finish", "gpt4", "--print").stdout
	g.Expect(e.rollout("ai-gateway", "gpt4").Spec.Canary).NotTo(BeNil(), "--print changes nothing")
	docs := strings.Split(printed, "\n---\n")
	g.Expect(docs).To(HaveLen(2))
	gitRollout := &rolloutsv1.ModelRollout{}
	g.Expect(yaml.Unmarshal([]byte(docs[0]), gitRollout)).To(Succeed())
	g.Expect(gitRollout.Spec.Stable.Name).To(Equal("vllm-gpt4-v2"))
	g.Expect(gitRollout.Spec.Canary).To(BeNil())
	g.Expect(gitRollout.Kind).To(Equal("ModelRollout"))
	g.Expect(docs[1]).To(ContainSubstring(`# HTTPRoute model-header-routing: rule "gpt4": backendRef Service/vllm-gpt4-v1:8000 removed`))
	gitRoute := &gatewayv1.HTTPRoute{}
	g.Expect(yaml.Unmarshal([]byte(docs[1]), gitRoute)).To(Succeed())
	g.Expect(gitRoute.Annotations).To(Equal(map[string]string{"team.example.com/owner": "ml-platform"}), "no operator annotations in Git")
	g.Expect(gitRoute.Spec.Rules[0].BackendRefs).To(HaveLen(1))
	g.Expect(string(gitRoute.Spec.Rules[0].BackendRefs[0].Name)).To(Equal("vllm-gpt4-v2"))
	g.Expect(*gitRoute.Spec.Rules[0].BackendRefs[0].Weight).To(Equal(int32(100)))
	g.Expect(string(gitRoute.Spec.Rules[1].BackendRefs[0].Name)).To(Equal("vllm-gpt4-v1"), "the unmanaged rule keeps the old backend")

	// The finish itself: the rollout Idle, and the live route's rules what
	// --print said Git holds.
	r2 := e.expect(0, "finish", "gpt4", "--wait")
	g.Expect(r2.stdout).To(ContainSubstring(`modelrollout "gpt4" is Idle: Service/vllm-gpt4-v2:8000 is the stable backend`))
	live := &gatewayv1.HTTPRoute{}
	g.Eventually(func() []gatewayv1.HTTPRouteRule {
		g.Expect(c.Get(ctx, types.NamespacedName{Namespace: "ai-gateway", Name: "model-header-routing"}, live)).To(Succeed())
		return live.Spec.Rules
	}).Should(Equal(gitRoute.Spec.Rules))
	g.Expect(live.Annotations).NotTo(HaveKey(rolloutsv1.AnnotationRuleOwners))
	final := e.rollout("ai-gateway", "gpt4")
	g.Expect(final.Spec.Stable.Name).To(Equal("vllm-gpt4-v2"))
	g.Expect(final.Spec.Canary).To(BeNil())

	// Finished already: nothing more to finish.
	g.Expect(e.expect(1, "finish", "gpt4").stderr).To(ContainSubstring("gpt4 is Idle"))
}
