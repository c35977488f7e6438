package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// kubectl returns the kubectl on PATH, else the one linked beside the test
// control plane.
func kubectl(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		if p := filepath.Join(dir, "kubectl"); fileExists(p) {
			return p
		}
	}
	t.Skip("skipping: kubectl is not on PATH")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestKustomizeDefault(t *testing.T) {
	objs := decode(t, run(t, kubectl(t), "kustomize", filepath.Join(repoRoot(t), "config", "default")))
	for _, o := range objs {
		switch o.GetKind() {
		case "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding":
		case "Namespace":
			if o.GetName() != releaseNamespace {
				t.Errorf("Namespace %s, want %s", o.GetName(), releaseNamespace)
			}
		default:
			if o.GetNamespace() != releaseNamespace {
				t.Errorf("%s %s is in namespace %q, want %s", o.GetKind(), o.GetName(), o.GetNamespace(), releaseNamespace)
			}
		}
		if o.GetKind() != "CustomResourceDefinition" && o.GetKind() != "Namespace" && !strings.HasPrefix(o.GetName(), "modelrollout-") {
			t.Errorf("%s %s lacks the modelrollout- prefix", o.GetKind(), o.GetName())
		}
	}
	d, c := manager(t, objs)
	checkHardened(t, d, c)
	if d.Name != "modelrollout-controller-manager" || d.Spec.Template.Spec.ServiceAccountName != "modelrollout-controller-manager" {
		t.Errorf("Deployment %s runs as %s", d.Name, d.Spec.Template.Spec.ServiceAccountName)
	}
	if c.Image == "controller:latest" || !strings.HasPrefix(c.Image, "ghcr.io/modelrollout/modelrollout:") {
		t.Errorf("image %q was not set by the images transformer", c.Image)
	}

	// The generated ClusterRole is bound to the manager's ServiceAccount.
	var role *rbacv1.ClusterRole
	for _, o := range find(objs, "ClusterRole") {
		if o.GetName() == "modelrollout-manager-role" {
			role = &rbacv1.ClusterRole{}
			toTyped(t, o, role)
		}
	}
	if role == nil {
		t.Fatal("ClusterRole modelrollout-manager-role is missing")
	}
	crb := &rbacv1.ClusterRoleBinding{}
	toTyped(t, only(t, objs, "ClusterRoleBinding"), crb)
	if crb.RoleRef.Name != role.Name || len(crb.Subjects) != 1 || crb.Subjects[0].Name != "modelrollout-controller-manager" || crb.Subjects[0].Namespace != releaseNamespace {
		t.Errorf("ClusterRoleBinding %+v", crb)
	}
}
