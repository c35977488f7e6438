package release_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestBundleInstallYAML applies dist/install.yaml to the test API server
// with a server-side dry run (schema validation, defaulting and admission
// run; nothing is stored), into a namespace enforcing the restricted Pod
// Security Standard, and checks that the manager's pod passes it.
func TestBundleInstallYAML(t *testing.T) {
	b := buildBundle(t)
	_, kcfg := apiServer(t)
	kc := kubectl(t)
	k := func(args ...string) (string, error) {
		return runErr(nil, kc, append([]string{"--kubeconfig", kcfg}, args...)...)
	}

	raw, err := os.ReadFile(b.Install)
	if err != nil {
		t.Fatal(err)
	}
	objs := decode(t, raw)
	kinds := map[string]int{}
	var ns string
	for _, o := range objs {
		kinds[o.GetKind()]++
		if o.GetKind() == "Namespace" {
			ns = o.GetName()
			if o.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
				t.Errorf("namespace %s does not enforce the restricted Pod Security Standard: %v", ns, o.GetLabels())
			}
		}
	}
	for _, kind := range []string{"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount", "Deployment", "Service", "Namespace"} {
		if kinds[kind] == 0 {
			t.Errorf("install.yaml has no %s (kinds: %v)", kind, kinds)
		}
	}
	if want := chart(t).Repository + ":" + version; strings.Join(deploymentImages(t, objs), " ") != want {
		t.Errorf("install.yaml runs %q, want %s", deploymentImages(t, objs), want)
	}

	// Namespaced objects need their namespace to exist, even in a dry run.
	if _, err := k("create", "namespace", ns); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		t.Fatal(err)
	}
	if _, err := k("label", "--overwrite", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range [][]string{{}, {"--server-side"}} {
		args := append([]string{"apply", "--dry-run=server", "-f", b.Install}, mode...)
		out, err := k(args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
		}
		for _, o := range objs {
			if !strings.Contains(out, "/"+o.GetName()+" ") {
				t.Errorf("kubectl %s did not report %s %s:\n%s", strings.Join(args, " "), o.GetKind(), o.GetName(), out)
			}
		}
	}

	// Pod Security admission judges pods (it only warns about Deployments):
	// the Deployment's pod, as the ReplicaSet would create it, passes; the
	// same pod allowing privilege escalation is refused, so the check is
	// live.
	var deploy *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			deploy = o
		}
	}
	pod := func(mutate func(map[string]any)) string {
		tmpl, _, _ := unstructured.NestedMap(deploy.Object, "spec", "template")
		if mutate != nil {
			mutate(tmpl)
		}
		p := &unstructured.Unstructured{Object: tmpl}
		p.SetAPIVersion("v1")
		p.SetKind("Pod")
		p.SetName(deploy.GetName())
		p.SetNamespace(ns)
		out, err := yaml.Marshal(p.Object)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "pod.yaml")
		if err := os.WriteFile(file, out, 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	if out, err := k("apply", "--dry-run=server", "-f", pod(nil)); err != nil {
		t.Errorf("the manager's pod is refused under the restricted Pod Security Standard: %v", err)
	} else {
		t.Logf("restricted Pod Security Standard: %s", strings.TrimSpace(out))
	}
	escalating := pod(func(tmpl map[string]any) {
		containers, _, _ := unstructured.NestedSlice(tmpl, "spec", "containers")
		for _, c := range containers {
			_ = unstructured.SetNestedField(c.(map[string]any), true, "securityContext", "allowPrivilegeEscalation")
		}
		_ = unstructured.SetNestedSlice(tmpl, containers, "spec", "containers")
	})
	if _, err := k("apply", "--dry-run=server", "-f", escalating); err == nil || !strings.Contains(err.Error(), "PodSecurity") {
		t.Errorf("a pod allowing privilege escalation was not refused by Pod Security admission: %v", err)
	}
}
