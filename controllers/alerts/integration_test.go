package alerts

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// TestIntegration runs the receiver, served by Start, against a real
// kube-apiserver and etcd (envtest) with the project's CRDs: the abort
// annotations land on the Progressing rollout only, a repeat changes
// nothing, and the UID precondition holds on a real server.
func TestIntegration(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is unset: skipping the envtest integration test " +
			"(run `bash test/scripts/control-plane.sh` and set KUBEBUILDER_ASSETS to the folder it prints)")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stop envtest: %v", err)
		}
	})
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(rolloutsv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const ns = "alerts-it"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	sel := map[string]string{"alertname": "HighErrorRate", "model": "gpt-4"}
	create := func(name string, phase rolloutsv1.Phase, sel map[string]string) *rolloutsv1.ModelRollout {
		t.Helper()
		ro := rollout(ns, name, phase, sel)
		ro.UID = ""
		ro.Annotations = map[string]string{"team": "ml"}
		status := ro.Status
		if err := c.Create(ctx, ro); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		ro.Status = status
		if err := c.Status().Update(ctx, ro); err != nil {
			t.Fatalf("set the status of %s: %v", name, err)
		}
		return ro
	}
	create("progressing", rolloutsv1.PhaseProgressing, sel)
	create("succeeded", rolloutsv1.PhaseSucceeded, sel)
	create("unrelated", rolloutsv1.PhaseProgressing, map[string]string{"model": "gpt-3"})
	create("direct", rolloutsv1.PhasePaused, nil)
	for name, phase := range map[string]rolloutsv1.Phase{"progressing": rolloutsv1.PhaseProgressing, "succeeded": rolloutsv1.PhaseSucceeded} {
		if got := getRollout(t, c, ns, name).Status.Phase; got != phase {
			t.Fatalf("%s: phase %q after the status update", name, got)
		}
	}

	r := newTestReceiver(t, c, func(o *Options) { o.BindAddress = "127.0.0.1:0" })
	base, stop := startReceiver(t, r, "http")
	hc := &http.Client{Timeout: 30 * time.Second}

	a := firing("3f1c2a9b8d7e6f50", map[string]string{"alertname": "HighErrorRate", "model": "gpt-4", "severity": "critical"})
	d := firing("aa00bb11cc22dd33", map[string]string{"alertname": "CanaryOOM", "modelrollout": "direct", "namespace": ns})
	body := mustJSON(t, payload(a, d, resolved("0011223344556677", map[string]string{"alertname": "HighErrorRate", "model": "gpt-3"})))
	sendOK := func() Summary {
		t.Helper()
		resp := doPost(t, hc, base+Path, testToken, body)
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, raw)
		}
		var s Summary
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := sendOK(); s.Patched != 2 || s.Skipped != 1 || s.Matched != 2 {
		t.Errorf("summary %+v", s)
	}

	// The 200 comes after the patches were accepted: the API server has them.
	pr := getRollout(t, c, ns, "progressing")
	if pr.Annotations[rolloutsv1.AnnotationAbort] != AbortToken(&a) ||
		pr.Annotations[rolloutsv1.AnnotationAbortReason] != `alert HighErrorRate{model="gpt-4",severity="critical"} firing` ||
		pr.Annotations["team"] != "ml" {
		t.Errorf("progressing: annotations %v", pr.Annotations)
	}
	if got := getRollout(t, c, ns, "direct").Annotations[rolloutsv1.AnnotationAbort]; got != AbortToken(&d) {
		t.Errorf("direct: abort %q", got)
	}
	for _, name := range []string{"succeeded", "unrelated"} {
		if got := getRollout(t, c, ns, name).Annotations; len(got) != 1 {
			t.Errorf("%s: annotations %v, want only team", name, got)
		}
	}

	// Alertmanager repeats the notification: nothing is written.
	if s := sendOK(); s.Patched != 0 || s.Unchanged != 2 {
		t.Errorf("repeat: %+v", s)
	}
	if got := getRollout(t, c, ns, "progressing").ResourceVersion; got != pr.ResourceVersion {
		t.Errorf("repeat moved resourceVersion %s -> %s", pr.ResourceVersion, got)
	}

	// A rollout deleted and re-created under the same name since it was
	// listed is not patched: the UID in the merge patch is a precondition.
	stale := getRollout(t, c, ns, "unrelated")
	if err := c.Delete(ctx, stale); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the rollout to be deleted", func() bool {
		err := c.Get(ctx, client.ObjectKeyFromObject(stale), &rolloutsv1.ModelRollout{})
		return apierrors.IsNotFound(err)
	})
	err = r.patch(ctx, r.log, &target{ro: stale, token: "alert-0000000000000000", reason: "alert X firing"})
	if !apierrors.IsNotFound(err) {
		t.Errorf("patch of a deleted rollout: %v, want NotFound", err)
	}
	create("unrelated", rolloutsv1.PhaseProgressing, map[string]string{"model": "gpt-3"})
	err = r.patch(ctx, r.log, &target{ro: stale, token: "alert-0000000000000000", reason: "alert X firing"})
	if err == nil || apierrors.IsNotFound(err) {
		t.Errorf("patch with a stale UID: %v, want a precondition error", err)
	}
	t.Logf("patch with a stale UID: %v", err)
	gone := getRollout(t, c, ns, "unrelated")
	if _, ok := gone.Annotations[rolloutsv1.AnnotationAbort]; ok {
		t.Errorf("re-created rollout patched: %v", gone.Annotations)
	}

	if err := stop(); err != nil {
		t.Errorf("Start returned %v", err)
	}
}
