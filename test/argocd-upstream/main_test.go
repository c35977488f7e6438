package argocdupstream

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// The cluster every test of this package shares: a test API server with the
// ModelRollout and Gateway API CRDs, and the operator running as a process
// against it.
var (
	root       string // the repository root
	skipReason string
	restCfg    *rest.Config
	kubeconfig string
	pluginBin  string // kubectl-modelrollout, built from this repository
	dyn        dynamic.Interface
	clientset  kubernetes.Interface
	managerLog = &syncBuffer{}
)

var (
	rolloutGVR    = schema.GroupVersionResource{Group: "rollouts.modelrollout.io", Version: "v1alpha1", Resource: "modelrollouts"}
	routeGVR      = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	deploymentGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
)

// gvrOf maps the kinds these tests write to their resources.
func gvrOf(kind string) schema.GroupVersionResource {
	switch kind {
	case "ModelRollout":
		return rolloutGVR
	case "HTTPRoute":
		return routeGVR
	case "Deployment":
		return deploymentGVR
	}
	panic("no resource for kind " + kind)
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	root = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		skipReason = "KUBEBUILDER_ASSETS is not set; `make test` sets it to bin/control-plane/<k8s version>, " +
			"or export KUBEBUILDER_ASSETS=$PWD/bin/control-plane/v1.37.2 from the repository root"
		return m.Run()
	}
	stop, err := startCluster()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start the test cluster: %v\nmanager log:\n%s\n", err, managerLog.String())
		if stop != nil {
			stop()
		}
		return 1
	}
	code := m.Run()
	stop()
	return code
}

// startCluster starts the API server, installs the CRDs, builds the
// operator from this repository and starts it. The returned function stops
// everything it started.
func startCluster() (func(), error) {
	var stops []func()
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	gatewayCRDs := os.Getenv("GATEWAY_API_CRDS")
	if gatewayCRDs == "" {
		// The Gateway API CRDs of the operator's own module, the files its
		// suites install.
		cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api")
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("locate the gateway-api module of %s: %w", root, err)
		}
		gatewayCRDs = filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases"), gatewayCRDs},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { _ = env.Stop() })
	restCfg = cfg
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return stopAll, err
	}
	raw, err := admin.KubeConfig()
	if err != nil {
		return stopAll, err
	}
	tmp, err := os.MkdirTemp("", "argocd-upstream-")
	if err != nil {
		return stopAll, err
	}
	stops = append(stops, func() { _ = os.RemoveAll(tmp) })
	kubeconfig = filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfig, raw, 0o600); err != nil {
		return stopAll, err
	}
	if dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return stopAll, err
	}
	if clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return stopAll, err
	}

	// The operator, built from this repository as cmd/manager and run as a
	// process, and the kubectl plugin: this module cannot import the
	// operator's packages (their k8s.io modules are newer than Argo CD's).
	manager := filepath.Join(tmp, "manager")
	pluginBin = filepath.Join(tmp, "kubectl-modelrollout")
	for bin, pkg := range map[string]string{manager: "./cmd/manager", pluginBin: "./cmd/kubectl-modelrollout"} {
		build := exec.Command("go", "build", "-C", root, "-o", bin, pkg)
		if out, err := build.CombinedOutput(); err != nil {
			return stopAll, fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	cmd := exec.Command(manager, "--kubeconfig", kubeconfig, "--leader-elect=false",
		"--metrics-bind-address=0", "--health-probe-bind-address=0")
	cmd.Env = append(os.Environ(), "HOME="+tmp)
	cmd.Stdout, cmd.Stderr = managerLog, managerLog
	if err := cmd.Start(); err != nil {
		return stopAll, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stops = append(stops, func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return stopAll, nil
}

// cluster skips the test when there is no test API server.
func cluster(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager log (tail):\n%s", tail(managerLog.String(), 6000))
		}
	})
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// namespace creates a namespace of its own for a test.
func namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns, err := clientset.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	must(t, err)
	return ns.Name
}

// backend creates a Service with one endpoint, ready or not.
func backend(t *testing.T, ns, name string, port int32, ready bool) {
	t.Helper()
	ctx := context.Background()
	_, err := clientset.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: port}}}}, metav1.CreateOptions{})
	must(t, err)
	_, err = clientset.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port)}},
	}, metav1.CreateOptions{})
	must(t, err)
}

// fromYAML parses one object.
func fromYAML(t testing.TB, text string) *unstructured.Unstructured {
	t.Helper()
	m := map[string]any{}
	must(t, yaml.Unmarshal([]byte(text), &m))
	return &unstructured.Unstructured{Object: m}
}

// create writes an object to the API server and returns it as the server
// answered.
func create(t testing.TB, ns string, obj *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	out, err := dyn.Resource(gvrOf(obj.GetKind())).Namespace(ns).Create(context.Background(), obj, metav1.CreateOptions{})
	must(t, err)
	return out
}

// live reads an object from the API server.
func live(t testing.TB, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	out, err := dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	must(t, err)
	return out
}

func exists(t testing.TB, gvr schema.GroupVersionResource, ns, name string) bool {
	t.Helper()
	_, err := dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	must(t, err)
	return true
}

// mergePatch patches an object with a JSON merge patch, as a person or a
// tool other than Argo CD would.
func mergePatch(t testing.TB, gvr schema.GroupVersionResource, ns, name string, patch string) {
	t.Helper()
	_, err := dyn.Resource(gvr).Namespace(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	must(t, err)
}

// waitFor polls cond until it holds, for two minutes at most (the machine
// may be loaded); cond returns what it saw, for the failure message.
func waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 2*time.Minute, true,
		func(context.Context) (bool, error) {
			ok, seen := cond()
			last = seen
			return ok, nil
		})
	if err != nil {
		t.Fatalf("waiting for %s: %v; last seen: %s", what, err, last)
	}
}

// rolloutState is what the tests read of a live rollout's status.
type rolloutState struct {
	Phase, Message string
	Step           int64 // -1 without a current step
	CanaryWeight   int64
	Settled        bool // the controller observed the current generation
}

func (s rolloutState) String() string {
	return fmt.Sprintf("phase %q step %d canary %d%% settled %v: %s", s.Phase, s.Step, s.CanaryWeight, s.Settled, s.Message)
}

func stateOf(obj *unstructured.Unstructured) rolloutState {
	s := rolloutState{Step: -1}
	s.Phase, _, _ = unstructured.NestedString(obj.Object, "status", "phase")
	s.Message, _, _ = unstructured.NestedString(obj.Object, "status", "message")
	if step, found, _ := unstructured.NestedInt64(obj.Object, "status", "currentStepIndex"); found {
		s.Step = step
	}
	s.CanaryWeight, _, _ = unstructured.NestedInt64(obj.Object, "status", "canaryWeight")
	observed, _, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	s.Settled = observed == obj.GetGeneration()
	return s
}

// waitRollout waits until the rollout ns/name is settled in phase at step
// (any step when step is -2), and returns it.
func waitRollout(t testing.TB, ns, name, phase string, step int64) *unstructured.Unstructured {
	t.Helper()
	var obj *unstructured.Unstructured
	waitFor(t, fmt.Sprintf("rollout %s/%s %s at step %d", ns, name, phase, step), func() (bool, string) {
		obj = live(t, rolloutGVR, ns, name)
		s := stateOf(obj)
		return s.Settled && s.Phase == phase && (step == -2 || s.Step == step), s.String()
	})
	return obj
}
