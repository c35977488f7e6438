package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// The integration suite runs the controller against a real kube-apiserver
// and etcd (envtest) with the Gateway API CRDs from the gateway-api module,
// the InferencePool CRDs from the Gateway API Inference Extension module and
// this project's CRDs from config/crd/bases.

var (
	testEnv *envtest.Environment
	cfg     *rest.Config
	// operatorCfg is the operator's least-privilege identity.
	operatorCfg *rest.Config
	k8sClient   client.Client
	scheme      = runtime.NewScheme()
	suiteCtx    context.Context
	cancelAll   context.CancelFunc
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers Suite")
}

// gatewayAPICRDs finds the standard-channel CRDs in the gateway-api module.
func gatewayAPICRDs() (string, error) {
	if dir := os.Getenv("GATEWAY_API_CRDS"); dir != "" {
		return dir, nil
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return "", fmt.Errorf("locate the gateway-api module: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard"), nil
}

// inferenceExtensionModule is the Gateway API Inference Extension release
// whose InferencePool CRDs the suite installs. The operator does not import
// its Go code (it reads InferencePools as unstructured objects), so the module
// is not in go.mod; `go mod download` fetches it into the module cache.
const inferenceExtensionModule = "sigs.k8s.io/gateway-api-inference-extension@v1.0.0"

// inferencePoolCRDs finds the InferencePool CRDs (v1 and v1alpha2).
func inferencePoolCRDs() (string, error) {
	if dir := os.Getenv("INFERENCE_EXTENSION_CRDS"); dir != "" {
		return dir, nil
	}
	out, err := exec.Command("go", "mod", "download", "-json", inferenceExtensionModule).Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", inferenceExtensionModule, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", fmt.Errorf("go mod download %s: %w", inferenceExtensionModule, err)
	}
	if mod.Error != "" || mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s", inferenceExtensionModule, mod.Error)
	}
	return filepath.Join(mod.Dir, "config", "crd", "bases"), nil
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	SetDefaultConsistentlyDuration(2 * time.Second)

	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		Fail("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds kube-apiserver and etcd into bin/control-plane")
	}
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	utilruntime.Must(rolloutsv1.AddToScheme(scheme))

	gw, err := gatewayAPICRDs()
	Expect(err).NotTo(HaveOccurred())
	pools, err := inferencePoolCRDs()
	Expect(err).NotTo(HaveOccurred())
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases"), gw, pools},
		ErrorIfCRDPathMissing: true,
	}
	// Every spec creates its Services in a namespace of its own and none is
	// deleted: the crash-injection table alone creates 19 per transition.
	// envtest's default range (a /24) runs out before the suite ends.
	testEnv.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16")
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	suiteCtx, cancelAll = context.WithCancel(context.Background())
	operatorCfg = operatorIdentity()
})

// operatorIdentity returns a rest.Config for a service account bound only to
// the generated ClusterRole (config/rbac/role.yaml) and the leader election
// Role, so the suite proves the operator works under least privilege.
func operatorIdentity() *rest.Config {
	const user = "system:serviceaccount:modelrollout-system:modelrollout-controller"
	raw, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.ClusterRole{}
	Expect(yaml.Unmarshal(raw, role)).To(Succeed())
	for _, rule := range role.Rules {
		for _, v := range append(append(rule.Verbs, rule.Resources...), rule.APIGroups...) {
			Expect(v).NotTo(Equal("*"), "the operator's ClusterRole must not use wildcards")
		}
	}
	role.Name = "modelrollout-manager-role"
	Expect(k8sClient.Create(suiteCtx, role)).To(Succeed())
	Expect(k8sClient.Create(suiteCtx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "modelrollout-manager"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	})).To(Succeed())
	// Leader election, in the namespace the test managers use.
	Expect(k8sClient.Create(suiteCtx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "modelrollout-leader-election", Namespace: "default"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
				Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		},
	})).To(Succeed())
	Expect(k8sClient.Create(suiteCtx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "modelrollout-leader-election", Namespace: "default"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "modelrollout-leader-election"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	})).To(Succeed())
	u, err := testEnv.AddUser(envtest.User{Name: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	c := u.Config()
	// As cmd/manager: no client-side throttling (client-go's default is 5
	// requests a second).
	c.QPS = -1
	return c
}

var _ = AfterSuite(func() {
	if cancelAll != nil {
		cancelAll()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// operator is one running instance of the controller manager.
type operator struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startOperator runs a manager with the ModelRollout controller and leader
// election, the way cmd/manager wires it. Stop it with stop().
func startOperator(opts ...func(*ModelRolloutReconciler, ctrl.Manager)) *operator {
	return startOperatorOn("0", opts...)
}

// startOperatorOn is startOperator with the metrics endpoint on addr.
func startOperatorOn(metricsAddr string, opts ...func(*ModelRolloutReconciler, ctrl.Manager)) *operator {
	mgr, err := ctrl.NewManager(operatorCfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cache.Options{DefaultTransform: CacheTransform()},
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        "0",
		LeaderElection:                true,
		LeaderElectionID:              "modelrollout-test",
		LeaderElectionNamespace:       "default",
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 ptrDuration(4 * time.Second),
		RenewDeadline:                 ptrDuration(3 * time.Second),
		RetryPeriod:                   ptrDuration(500 * time.Millisecond),
		Controller:                    ctrlConfigSkipNameValidation(),
	})
	Expect(err).NotTo(HaveOccurred())
	r := &ModelRolloutReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("modelrollout-controller"),
	}
	for _, o := range opts {
		o(r, mgr)
	}
	ctx, cancel := context.WithCancel(suiteCtx)
	Expect(r.SetupWithManager(ctx, mgr)).To(Succeed())
	op := &operator{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer GinkgoRecover()
		defer close(op.done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	return op
}

func (o *operator) stop() {
	o.cancel()
	Eventually(o.done).Should(BeClosed())
}

func ptrDuration(d time.Duration) *time.Duration { return &d }

// ctrlConfigSkipNameValidation lets every spec start its own controller of
// the same name, and turns off controller-runtime's recovery of a panicking
// reconcile: a panic fails the suite instead of being logged and retried.
func ctrlConfigSkipNameValidation() config.Controller {
	skip, recoverPanic := true, false
	return config.Controller{SkipNameValidation: &skip, RecoverPanic: &recoverPanic}
}
