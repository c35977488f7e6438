package release_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/release"
)

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

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestImageManagerReconciles takes /manager out of the image's layer for
// this machine's platform and runs it against the test API server until it
// moves a rollout's canary to its first step.
func TestImageManagerReconciles(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("the image's binaries are for Linux; this is %s", runtime.GOOS)
	}
	g := NewWithT(t)
	built := buildImage(t)
	_, kcfg := apiServer(t)

	idx, _ := readIndex(t, built.files.Layout)
	m, err := idx.IndexManifest()
	g.Expect(err).NotTo(HaveOccurred())
	bin := filepath.Join(t.TempDir(), "manager")
	for _, d := range m.Manifests {
		if d.Platform.Architecture != runtime.GOARCH {
			continue
		}
		img, err := idx.Image(d.Digest)
		g.Expect(err).NotTo(HaveOccurred())
		_, data := layerContent(t, img)
		entry := strings.TrimPrefix(release.Entrypoint, "/")
		g.Expect(data).To(HaveKey(entry))
		g.Expect(os.WriteFile(bin, data[entry], 0o755)).To(Succeed())
	}
	g.Expect(bin).To(BeAnExistingFile(), "the image has no %s/%s manager", runtime.GOOS, runtime.GOARCH)

	scheme := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	utilruntime.Must(rolloutsv1.AddToScheme(scheme))
	restCfg, err := clientcmd.BuildConfigFromFlags("", kcfg)
	g.Expect(err).NotTo(HaveOccurred())
	c, err := client.New(restCfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())

	ctx, cancel := context.WithCancel(context.Background())
	probes := freePort(t)
	cmd := exec.CommandContext(ctx, bin,
		"--kubeconfig", kcfg,
		"--leader-elect=true", "--leader-election-namespace=default",
		"--metrics-bind-address=0", "--health-probe-bind-address="+probes,
		"--zap-encoder=json")
	cmd.Env = []string{"HOME=" + t.TempDir()}
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	g.Expect(cmd.Start()).To(Succeed())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.String())
		}
	})

	// The version stamped at link time is the one `git describe` gave.
	b := sourceBuild(t)
	g.Eventually(logs.String, time.Minute).Should(ContainSubstring(fmt.Sprintf(`"msg":"Starting the manager","version":%q`, b.Describe)))

	ns := "image-run"
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	g.Expect(c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "canary", Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8000}}}})).To(Succeed())
	g.Expect(c.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "canary", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "canary"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8000)}},
	})).To(Succeed())
	g.Expect(c.Create(ctx, &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "route", Namespace: ns},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "gw"}}},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: "stable", Port: ptr.To[gatewayv1.PortNumber](8000)}}}}}},
		},
	})).To(Succeed())
	pause := rolloutsv1.Duration("1h")
	g.Expect(c.Create(ctx, &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "rollout", Namespace: ns},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{{Name: "route"}},
			Stable: rolloutsv1.BackendRef{Name: "stable", Port: ptr.To[int32](8000)},
			Canary: &rolloutsv1.BackendRef{Name: "canary", Port: ptr.To[int32](8000)},
			Steps:  []rolloutsv1.Step{{Weight: 10, Pause: &pause}, {Weight: 100, Pause: &pause}},
		},
	})).To(Succeed())

	// The manager in the image moves the canary to 10 % on the route and
	// reports the step in status.
	g.Eventually(func(g Gomega) {
		ro := &rolloutsv1.ModelRollout{}
		g.Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "rollout"}, ro)).To(Succeed())
		g.Expect(ro.Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
		g.Expect(ro.Status.CanaryWeight).To(BeEquivalentTo(10))
		g.Expect(ro.Status.StepStartedAt).NotTo(BeNil())
		r := &gatewayv1.HTTPRoute{}
		g.Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "route"}, r)).To(Succeed())
		weights := map[string]int32{}
		for _, ref := range r.Spec.Rules[0].BackendRefs {
			weights[string(ref.Name)] = ptr.Deref(ref.Weight, -1)
		}
		g.Expect(weights).To(Equal(map[string]int32{"stable": 90, "canary": 10}))
	}, 2*time.Minute, 200*time.Millisecond).Should(Succeed(), func() string { return "manager log:\n" + tailString(logs.String(), 4000) })

	// It serves its probes and holds the leader election Lease.
	g.Eventually(func() (int, error) {
		resp, err := http.Get("http://" + probes + "/readyz")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}, time.Minute).Should(Equal(http.StatusOK))
	g.Eventually(func() (string, error) {
		return runErr(nil, kubectl(t), "--kubeconfig", kcfg, "get", "lease", "-n", "default", "-o", "name")
	}, time.Minute).Should(ContainSubstring("modelrollout-controller.rollouts.modelrollout.io"))
	g.Expect(strings.Contains(logs.String(), `"level":"error"`)).To(BeFalse(), "the manager logged errors:\n%s", logs.String())
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
