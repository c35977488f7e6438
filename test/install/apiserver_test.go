package install

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// gatewayAPICRDs is the standard-channel CRD folder of the gateway-api module.
func gatewayAPICRDs(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("GATEWAY_API_CRDS"); dir != "" {
		return dir
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("locate the gateway-api module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
}

// prometheusOperatorKinds are rendered by the chart but have no CRD in the
// test API server: they are left out of the server-side dry runs and
// checked structurally in TestChartToggles instead.
func prometheusOperatorKind(u *unstructured.Unstructured) bool {
	return strings.HasPrefix(u.GetAPIVersion(), "monitoring.coreos.com/")
}

// writeManifests writes objects as one multi-document YAML file.
func writeManifests(t *testing.T, path string, objs []*unstructured.Unstructured) {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestServerDryRun applies the rendered chart and config/default to a real
// kube-apiserver (envtest, with this project's and the Gateway API CRDs)
// with `kubectl apply --dry-run=server`: schema validation, defaulting and
// admission run, nothing is persisted.
func TestServerDryRun(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("skipping the API server dry runs: KUBEBUILDER_ASSETS is not set; " +
			"`make test` sets it to bin/control-plane/<k8s version> (built by `make control-plane`), " +
			"or export KUBEBUILDER_ASSETS=$PWD/bin/control-plane/v1.37.2")
	}
	kc := kubectl(t)
	helmBin := helm(t)
	root := repoRoot(t)

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases"), gatewayAPICRDs(t)},
		ErrorIfCRDPathMissing: true,
	}
	if _, err := env.Start(); err != nil {
		t.Fatalf("start the test API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop the test API server: %v", err)
		}
	})
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kcfg := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcfg, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	k := func(t *testing.T, args ...string) string {
		t.Helper()
		return string(run(t, kc, append([]string{"--kubeconfig", kcfg}, args...)...))
	}

	// Namespaced objects need their namespace to exist, even in a dry run.
	// The operator's namespace enforces the restricted Pod Security Standard.
	for _, ns := range []string{releaseNamespace, "ai-gateway", "ml-team"} {
		k(t, "create", "namespace", ns)
	}
	k(t, "label", "namespace", releaseNamespace, "pod-security.kubernetes.io/enforce=restricted")

	// podOf turns a Deployment's template into a Pod, which Pod Security
	// admission checks in a dry run (it only warns about Deployments).
	podOf := func(t *testing.T, name string, objs []*unstructured.Unstructured) []string {
		t.Helper()
		var files []string
		for _, d := range find(objs, "Deployment") {
			tmpl, _, _ := unstructured.NestedMap(d.Object, "spec", "template")
			pod := &unstructured.Unstructured{Object: tmpl}
			pod.SetAPIVersion("v1")
			pod.SetKind("Pod")
			pod.SetName(d.GetName())
			pod.SetNamespace(releaseNamespace)
			file := filepath.Join(dir, name+"-pod.yaml")
			writeManifests(t, file, []*unstructured.Unstructured{pod})
			files = append(files, file)
		}
		if len(files) == 0 {
			t.Fatalf("%s: no Deployment rendered", name)
		}
		return files
	}
	restricted := func(t *testing.T, name string, objs []*unstructured.Unstructured) {
		t.Helper()
		for _, file := range podOf(t, name, objs) {
			out, err := runErr(kc, "--kubeconfig", kcfg, "apply", "--dry-run=server", "-f", file)
			if err != nil {
				t.Errorf("the manager pod of %s is refused under the restricted Pod Security Standard: %v", name, err)
				continue
			}
			t.Logf("restricted Pod Security Standard: %s", strings.TrimSpace(string(out)))
		}
	}

	chart := func(t *testing.T, name string, args ...string) {
		t.Helper()
		rendered := run(t, helmBin, append([]string{"template", "mr", chartDir(t), "--namespace", releaseNamespace, "--include-crds"}, args...)...)
		var apply, skipped []*unstructured.Unstructured
		for _, o := range decode(t, rendered) {
			if prometheusOperatorKind(o) {
				skipped = append(skipped, o)
				continue
			}
			apply = append(apply, o)
		}
		file := filepath.Join(dir, name+".yaml")
		writeManifests(t, file, apply)
		out := k(t, "apply", "--dry-run=server", "-f", file)
		for _, o := range apply {
			if !strings.Contains(out, strings.ToLower(o.GetName())) {
				t.Errorf("kubectl did not report %s %s:\n%s", o.GetKind(), o.GetName(), out)
			}
		}
		restricted(t, name, apply)
		for _, o := range skipped {
			t.Logf("not applied (no prometheus-operator CRDs in the test API server; checked in TestChartToggles): %s %s", o.GetKind(), o.GetName())
		}
		t.Logf("kubectl apply --dry-run=server:\n%s", out)
	}

	t.Run("chart defaults", func(t *testing.T) { chart(t, "defaults") })
	t.Run("the Pod Security check can fail", func(t *testing.T) {
		bad := decode(t, run(t, helmBin, "template", "mr", chartDir(t), "--namespace", releaseNamespace,
			"--set", "securityContext.allowPrivilegeEscalation=true"))
		for _, file := range podOf(t, "privileged", bad) {
			if _, err := runErr(kc, "--kubeconfig", kcfg, "apply", "--dry-run=server", "-f", file); err == nil || !strings.Contains(err.Error(), "PodSecurity") {
				t.Errorf("a pod allowing privilege escalation was not refused by Pod Security admission: %v", err)
			}
		}
	})
	t.Run("chart toggles", func(t *testing.T) { chart(t, "toggles", allToggles...) })
	t.Run("chart existing token secret", func(t *testing.T) {
		chart(t, "existing-secret", "--set", "alertReceiver.token.existingSecret=am-token", "--set", "rbac.aggregateToDefaultRoles=false")
	})
	t.Run("kustomize config/default", func(t *testing.T) {
		out := k(t, "apply", "--dry-run=server", "-k", filepath.Join(root, "config", "default"))
		for _, want := range []string{
			"customresourcedefinition.apiextensions.k8s.io/modelrollouts.rollouts.modelrollout.io",
			"deployment.apps/modelrollout-controller-manager",
			"clusterrole.rbac.authorization.k8s.io/modelrollout-manager-role",
			"role.rbac.authorization.k8s.io/modelrollout-leader-election-role",
			"service/modelrollout-controller-manager",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl apply -k did not report %s:\n%s", want, out)
			}
		}
		t.Logf("kubectl apply --dry-run=server -k config/default:\n%s", out)
		restricted(t, "kustomize", decode(t, run(t, kc, "kustomize", filepath.Join(root, "config", "default"))))
	})
}
