package workloads

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/controllers"
)

var (
	testEnv    *envtest.Environment
	k8sClient  client.Client
	scheme     = runtime.NewScheme()
	suiteCtx   context.Context
	cancelAll  context.CancelFunc
	kubeconfig string
	// nodeName is the kwok node every pod template is pinned to (the suite
	// runs no scheduler).
	nodeName = "gpu-node-0"
)

func TestWorkloads(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Workloads suite (kube-controller-manager, kwok)")
}

// assets is the folder with kube-apiserver, etcd, kube-controller-manager
// and kwok.
func assets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		return "", fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test`")
	}
	for _, b := range []string{"kube-controller-manager", "kwok", "kwok-stages.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make workload-plane`", b, dir)
		}
	}
	return dir, nil
}

func gatewayAPICRDs() string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	Expect(err).NotTo(HaveOccurred())
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
}

// process runs a binary until the suite ends, its output in a log file
// that a failure prints.
func process(dir, name string, args ...string) {
	logPath := filepath.Join(GinkgoT().TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	Expect(err).NotTo(HaveOccurred())
	cmd := exec.CommandContext(suiteCtx, filepath.Join(dir, name), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.WaitDelay = 5 * time.Second
	Expect(cmd.Start()).To(Succeed())
	DeferCleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if CurrentSpecReport().Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			fmt.Fprintf(GinkgoWriter, "--- %s log (tail) ---\n%s\n", name, b)
		}
	})
}

var _ = BeforeSuite(func(_ SpecContext) {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(2 * time.Minute)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)

	dir, err := assets()
	if err != nil {
		Skip("the workloads suite needs kube-controller-manager and kwok: " + err.Error())
	}
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	utilruntime.Must(rolloutsv1.AddToScheme(scheme))

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases"), gatewayAPICRDs()},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(testEnv.Stop()).To(Succeed()) })
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	suiteCtx, cancelAll = context.WithCancel(context.Background())
	DeferCleanup(func() { cancelAll() })

	admin, err := testEnv.AddUser(envtest.User{Name: "workload-admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	raw, err := admin.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	kubeconfig = filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(kubeconfig, raw, 0o600)).To(Succeed())

	By("starting kube-controller-manager: Deployments, ReplicaSets, EndpointSlices, ServiceAccounts")
	process(dir, "kube-controller-manager",
		"--kubeconfig="+kubeconfig,
		"--controllers=deployment,replicaset,endpointslice,serviceaccount",
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10",
	)
	By("starting kwok: fake GPU nodes whose pods become Running and Ready")
	process(dir, "kwok",
		"--kubeconfig="+kubeconfig,
		"--manage-all-nodes=true",
		"-c", filepath.Join(dir, "kwok-stages.yaml"),
	)
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName, Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{"type": "kwok", "nvidia.com/gpu.product": "H100"}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("512Gi"),
				corev1.ResourcePods: resource.MustParse("110"), "nvidia.com/gpu": resource.MustParse("8")},
			Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("512Gi"),
				corev1.ResourcePods: resource.MustParse("110"), "nvidia.com/gpu": resource.MustParse("8")},
		},
	}
	Expect(k8sClient.Create(suiteCtx, node)).To(Succeed())
	Eventually(func() bool {
		n := &corev1.Node{}
		Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(node), n)).To(Succeed())
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}).Should(BeTrue(), "kwok marks its node Ready")

	By("starting the operator")
	startOperator(cfg)
}, NodeTimeout(5*time.Minute))

// startOperator runs the ModelRollout controller in this process, wired as
// cmd/manager wires it.
func startOperator(cfg *rest.Config) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cache.Options{DefaultTransform: controllers.CacheTransform()},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	r := &controllers.ModelRolloutReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("modelrollout-controller"),
	}
	Expect(r.SetupWithManager(suiteCtx, mgr)).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(suiteCtx)).To(Succeed())
	}()
}

// kubectl runs kubectl against the suite's API server, as a user would.
func kubectl(args ...string) string {
	cmd := exec.CommandContext(suiteCtx, "kubectl", append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	Expect(cmd.Run()).To(Succeed(), "kubectl %s: %s", strings.Join(args, " "), errOut.String())
	return out.String()
}
