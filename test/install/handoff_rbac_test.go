package install

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// TestWorkloadHandoffRBACIsOptIn checks that the scale subresource is in
// neither the generated role nor the default chart, and that
// workloadHandoff.enabled adds exactly config/rbac/workload-handoff's rules,
// bound to the manager's ServiceAccount.
func TestWorkloadHandoffRBACIsOptIn(t *testing.T) {
	for _, r := range roleRules(t) {
		for _, res := range r.Resources {
			if strings.HasSuffix(res, "/scale") || res == "deployments" || res == "statefulsets" {
				t.Errorf("config/rbac/role.yaml grants %s: workload handoff RBAC must stay opt-in", res)
			}
		}
	}
	isHandoff := func(name string) bool { return strings.HasSuffix(name, "-workload-handoff") }
	for _, o := range decode(t, template(t)) {
		if isHandoff(o.GetName()) {
			t.Errorf("the default chart renders %s %s", o.GetKind(), o.GetName())
		}
	}

	want := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(repoRoot(t), "config", "rbac", "workload-handoff", "role.yaml")), want); err != nil {
		t.Fatal(err)
	}
	if !grants(want.Rules, "apps", "deployments/scale", "get", "patch") || !grants(want.Rules, "apps", "deployments", "get", "patch") {
		t.Fatalf("config/rbac/workload-handoff/role.yaml lacks the Deployment rules: %+v", want.Rules)
	}
	if copy := readFile(t, filepath.Join(chartDir(t), "files", "workload-handoff-role.yaml")); string(copy) != string(readFile(t, filepath.Join(repoRoot(t), "config", "rbac", "workload-handoff", "role.yaml"))) {
		t.Error("charts/modelrollout/files/workload-handoff-role.yaml differs from config/rbac/workload-handoff/role.yaml: run make manifests")
	}
	objs := decode(t, template(t, "--set", "workloadHandoff.enabled=true"))
	var role *rbacv1.ClusterRole
	var binding *rbacv1.ClusterRoleBinding
	for _, o := range objs {
		switch {
		case o.GetKind() == "ClusterRole" && isHandoff(o.GetName()):
			role = &rbacv1.ClusterRole{}
			toTyped(t, o, role)
		case o.GetKind() == "ClusterRoleBinding" && isHandoff(o.GetName()):
			binding = &rbacv1.ClusterRoleBinding{}
			toTyped(t, o, binding)
		}
	}
	if role == nil || binding == nil {
		t.Fatal("workloadHandoff.enabled=true renders no ClusterRole and ClusterRoleBinding")
	}
	if !reflect.DeepEqual(role.Rules, want.Rules) {
		t.Errorf("chart rules %+v, want %+v", role.Rules, want.Rules)
	}
	if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" {
		t.Errorf("binding %+v does not bind %s to the ServiceAccount", binding, role.Name)
	}
	checkNoWildcards(t, "workloadHandoff.enabled=true", objs)
}
