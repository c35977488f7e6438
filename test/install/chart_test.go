package install

import (
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/prometheus/prometheus/promql/parser"
)

func TestHelmLint(t *testing.T) {
	out := run(t, helm(t), "lint", "--strict", chartDir(t))
	if !strings.Contains(string(out), "0 chart(s) failed") {
		t.Fatalf("helm lint:\n%s", out)
	}
	// The toggles lint too.
	run(t, helm(t), append([]string{"lint", "--strict", chartDir(t)}, allToggles...)...)
}

// allToggles turns on every optional part of the chart.
var allToggles = []string{
	"--set", "metrics.serviceMonitor.enabled=true",
	"--set", "prometheusRule.enabled=true",
	"--set", "alertReceiver.tls.enabled=true",
	"--set", "alertReceiver.tls.secretName=modelrollout-alerts-tls",
	"--set", "watchNamespaces={ai-gateway,ml-team}",
	"--set", "replicaCount=2",
	"--set", "prometheus.address=http://prometheus-operated.monitoring:9090",
	"--set", "prometheusRule.canaryAlerts[0].rollout=gpt4",
	"--set", "prometheusRule.canaryAlerts[0].namespace=ai-gateway",
	"--set", "prometheusRule.canaryAlerts[0].canaryService=vllm-gpt4-v2",
	"--set", "prometheusRule.canaryAlerts[0].labels.model=gpt-4",
	"--set", "grafanaDashboard.enabled=true",
	"--set", "tenancy.queryTenancy=namespace",
	"--set", "prometheus.maxResponseBytes=16777216",
}

func toTyped(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatalf("convert %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

func manager(t *testing.T, objs []*unstructured.Unstructured) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	d := &appsv1.Deployment{}
	toTyped(t, only(t, objs, "Deployment"), d)
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(d.Spec.Template.Spec.Containers))
	}
	return d, d.Spec.Template.Spec.Containers[0]
}

// checkHardened asserts the restricted Pod Security Standard settings, the
// probes and the ports of a manager Deployment, from the chart or kustomize.
func checkHardened(t *testing.T, d *appsv1.Deployment, c corev1.Container) {
	t.Helper()
	pod := d.Spec.Template.Spec.SecurityContext
	if pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if pod == nil || pod.SeccompProfile == nil || pod.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccompProfile is not RuntimeDefault")
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container securityContext is missing")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation is not false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem is not true")
	case sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities are %+v, want drop [ALL] and no add", sc.Capabilities)
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("the container is privileged")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	args := strings.Join(c.Args, " ")
	for name, flag := range map[string]string{"metrics": "--metrics-bind-address", "probes": "--health-probe-bind-address", "alerts": "--alert-receiver-bind-address"} {
		port, ok := ports[name]
		if !ok {
			t.Errorf("container port %q is missing", name)
			continue
		}
		if want := fmt.Sprintf("%s=:%d", flag, port); !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if !strings.Contains(args, "--leader-elect=true") {
		t.Errorf("args %q do not enable leader election", args)
	}
	if !strings.Contains(args, "--alert-receiver-token-file=") {
		t.Errorf("args %q do not name the alert receiver token file", args)
	}
	for _, probe := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if probe.p == nil || probe.p.HTTPGet == nil {
			t.Errorf("%s probe is not an HTTP probe", probe.name)
			continue
		}
		if probe.p.HTTPGet.Path != probe.path || probe.p.HTTPGet.Port.String() != "probes" {
			t.Errorf("%s probe is %s on %s, want %s on the probes port", probe.name, probe.p.HTTPGet.Path, probe.p.HTTPGet.Port.String(), probe.path)
		}
	}
}

func TestChartDefaults(t *testing.T) {
	objs := decode(t, template(t))
	d, c := manager(t, objs)
	checkHardened(t, d, c)
	if *d.Spec.Replicas != 1 {
		t.Errorf("replicas = %d, want 1", *d.Spec.Replicas)
	}
	if !strings.HasPrefix(c.Image, "ghcr.io/modelrollout/modelrollout:") {
		t.Errorf("image %q", c.Image)
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--leader-election-namespace=" + releaseNamespace, "--zap-log-level=info", "--zap-encoder=json", "--max-concurrent-reconciles=16",
		// Prometheus goes through the egress policy by default.
		"--egress-prometheus=true"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	for _, absent := range []string{"--watch-namespaces", "--prometheus-address", "--alert-receiver-tls", "--prometheus-max-response-bytes"} {
		if strings.Contains(args, absent) {
			t.Errorf("default args %q contain %s", args, absent)
		}
	}
	for _, kind := range []string{"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Secret"} {
		if len(find(objs, kind)) == 0 {
			t.Errorf("no %s rendered", kind)
		}
	}
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "PodDisruptionBudget"} {
		if len(find(objs, kind)) != 0 {
			t.Errorf("%s rendered by default", kind)
		}
	}

	// The Service exposes the receiver and the metrics by port name.
	svc := &corev1.Service{}
	toTyped(t, only(t, objs, "Service"), svc)
	got := map[string]string{}
	for _, p := range svc.Spec.Ports {
		got[p.Name] = p.TargetPort.String()
	}
	if !reflect.DeepEqual(got, map[string]string{"alerts": "alerts", "metrics": "metrics"}) {
		t.Errorf("service ports %v", got)
	}
	if !reflect.DeepEqual(svc.Spec.Selector, d.Spec.Selector.MatchLabels) {
		t.Errorf("service selector %v does not match the Deployment's %v", svc.Spec.Selector, d.Spec.Selector.MatchLabels)
	}

	// The generated token Secret is the one mounted.
	sec := only(t, objs, "Secret")
	if v, _, _ := unstructured.NestedString(sec.Object, "data", "token"); v == "" {
		t.Error("the receiver token Secret has no token")
	}
	mounted := false
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == sec.GetName() {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("Secret %s is not mounted", sec.GetName())
	}
	// The leader election Role grants leases and events in the release
	// namespace.
	role := &rbacv1.Role{}
	toTyped(t, only(t, objs, "Role"), role)
	if role.Namespace != releaseNamespace || !grants(role.Rules, "coordination.k8s.io", "leases", "create", "update", "get") || !grants(role.Rules, "", "events", "create") {
		t.Errorf("leader election Role %s/%s: %+v", role.Namespace, role.Name, role.Rules)
	}
}

func grants(rules []rbacv1.PolicyRule, group, resource string, verbs ...string) bool {
	for _, r := range rules {
		if contains(r.APIGroups, group) && contains(r.Resources, resource) {
			all := true
			for _, v := range verbs {
				all = all && contains(r.Verbs, v)
			}
			if all {
				return true
			}
		}
	}
	return false
}

func TestChartToggles(t *testing.T) {
	objs := decode(t, template(t, allToggles...))
	d, c := manager(t, objs)
	checkHardened(t, d, c)
	args := strings.Join(c.Args, " ")
	for _, want := range []string{
		"--watch-namespaces=ai-gateway,ml-team",
		"--prometheus-address=http://prometheus-operated.monitoring:9090",
		"--alert-receiver-tls-cert-file=/etc/modelrollout/alert-receiver-tls/tls.crt",
		"--alert-receiver-tls-key-file=/etc/modelrollout/alert-receiver-tls/tls.key",
		"--query-tenancy=namespace",
		"--webhook-concurrency-per-namespace=8",
		"--gate-concurrency-per-namespace=8",
		"--prompt-concurrency-per-namespace=8",
		"--prometheus-max-response-bytes=16777216",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	tlsMounted := false
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "modelrollout-alerts-tls" {
			tlsMounted = true
		}
	}
	if !tlsMounted {
		t.Error("the TLS Secret is not mounted")
	}

	// Watching namespaces: the ClusterRole is bound in each, never cluster-wide.
	if n := len(find(objs, "ClusterRoleBinding")); n != 0 {
		t.Errorf("%d ClusterRoleBindings rendered with watchNamespaces set", n)
	}
	bound := map[string]bool{}
	for _, o := range find(objs, "RoleBinding") {
		rb := &rbacv1.RoleBinding{}
		toTyped(t, o, rb)
		if rb.RoleRef.Kind == "ClusterRole" {
			bound[rb.Namespace] = true
		}
	}
	if !reflect.DeepEqual(bound, map[string]bool{"ai-gateway": true, "ml-team": true}) {
		t.Errorf("ClusterRole bound in %v", bound)
	}
	// The egress policy still learns where the API server is: the kubernetes
	// Service and EndpointSlice in default, and nothing else there.
	apiRead := false
	for _, o := range find(objs, "Role") {
		r := &rbacv1.Role{}
		toTyped(t, o, r)
		if r.Namespace != "default" {
			continue
		}
		apiRead = grants(r.Rules, "", "services", "get") && grants(r.Rules, "discovery.k8s.io", "endpointslices", "get")
		for _, rule := range r.Rules {
			if !reflect.DeepEqual(rule.ResourceNames, []string{"kubernetes"}) || !reflect.DeepEqual(rule.Verbs, []string{"get"}) {
				t.Errorf("Role %s in default grants more than get on the kubernetes objects: %+v", r.Name, rule)
			}
		}
	}
	if !apiRead {
		t.Error("no Role lets the operator read the kubernetes Service and EndpointSlice in default")
	}
	if len(find(objs, "PodDisruptionBudget")) != 1 {
		t.Error("no PodDisruptionBudget with 2 replicas")
	}

	// ServiceMonitor: scrapes the metrics port of the chart's Service.
	sm := only(t, objs, "ServiceMonitor")
	if sm.GetAPIVersion() != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor apiVersion %s", sm.GetAPIVersion())
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != "metrics" {
		t.Errorf("ServiceMonitor endpoints %v", eps)
	}
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	svc := only(t, objs, "Service")
	for k, v := range sel {
		if svc.GetLabels()[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, which the Service lacks", k, v)
		}
	}

	// PrometheusRule: every expression parses as PromQL, and the canary alert
	// carries the labels the receiver matches on.
	pr := only(t, objs, "PrometheusRule")
	groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
	alerts := map[string]map[string]any{}
	for _, g := range groups {
		rules, _ := g.(map[string]any)["rules"].([]any)
		for _, r := range rules {
			rule := r.(map[string]any)
			expr, _ := rule["expr"].(string)
			if _, err := parser.NewParser(parser.Options{}).ParseExpr(expr); err != nil {
				t.Errorf("alert %v: expr %q does not parse: %v", rule["alert"], expr, err)
			}
			alerts[rule["alert"].(string)] = rule
		}
	}
	for _, name := range []string{"HighErrorRate", "ModelRolloutReconcileErrors", "ModelRolloutRolledBack", "ModelRolloutWaiting", "ModelRolloutOperatorDown"} {
		if alerts[name] == nil {
			t.Errorf("alert %s is missing (have %v)", name, keys(alerts))
		}
	}
	if hr := alerts["HighErrorRate"]; hr != nil {
		labels := hr["labels"].(map[string]any)
		want := map[string]any{"modelrollout": "gpt4", "namespace": "ai-gateway", "severity": "critical", "model": "gpt-4"}
		if !reflect.DeepEqual(labels, want) {
			t.Errorf("HighErrorRate labels %v, want %v", labels, want)
		}
		if expr := hr["expr"].(string); !strings.Contains(expr, `service="vllm-gpt4-v2",namespace="ai-gateway"`) || !strings.Contains(expr, "> 0.05") {
			t.Errorf("HighErrorRate expr %q", expr)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestChartAlertReceiverOptions(t *testing.T) {
	// An existing Secret: nothing generated, that Secret mounted.
	objs := decode(t, template(t, "--set", "alertReceiver.token.existingSecret=am-token", "--set", "alertReceiver.token.key=bearer"))
	if n := len(find(objs, "Secret")); n != 0 {
		t.Errorf("%d Secrets rendered with existingSecret", n)
	}
	d, _ := manager(t, objs)
	found := false
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "am-token" && len(v.Secret.Items) == 1 && v.Secret.Items[0].Key == "bearer" {
			found = true
		}
	}
	if !found {
		t.Errorf("Secret am-token key bearer not mounted: %+v", d.Spec.Template.Spec.Volumes)
	}

	// A value: a stable Secret from it.
	objs = decode(t, template(t, "--set", "alertReceiver.token.value=s3cret"))
	if v, _, _ := unstructured.NestedString(only(t, objs, "Secret").Object, "data", "token"); v != "czNjcmV0" {
		t.Errorf("token data %q, want base64 of s3cret", v)
	}

	// Disabled: no port, no Secret, no volume.
	objs = decode(t, template(t, "--set", "alertReceiver.enabled=false"))
	_, c := manager(t, objs)
	for _, p := range c.Ports {
		if p.Name == "alerts" {
			t.Error("alerts port with the receiver disabled")
		}
	}
	if len(find(objs, "Secret")) != 0 || len(c.VolumeMounts) != 0 {
		t.Error("token Secret or mounts with the receiver disabled")
	}

	// TLS without a Secret is refused.
	if _, err := runErr(helm(t), "template", "mr", chartDir(t), "--set", "alertReceiver.tls.enabled=true"); err == nil || !strings.Contains(err.Error(), "alertReceiver.tls.secretName is required") {
		t.Errorf("TLS without secretName: %v", err)
	}
}

// roleRules reads the rules of config/rbac/role.yaml.
func roleRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(repoRoot(t), "config", "rbac", "role.yaml")), role); err != nil {
		t.Fatal(err)
	}
	if len(role.Rules) == 0 {
		t.Fatal("config/rbac/role.yaml has no rules")
	}
	return role.Rules
}

func TestChartClusterRoleIsTheGeneratedRole(t *testing.T) {
	want := roleRules(t)
	for _, args := range [][]string{nil, allToggles} {
		objs := decode(t, template(t, args...))
		var manager *rbacv1.ClusterRole
		for _, o := range find(objs, "ClusterRole") {
			if strings.HasSuffix(o.GetName(), "-manager") {
				manager = &rbacv1.ClusterRole{}
				toTyped(t, o, manager)
			}
		}
		if manager == nil {
			t.Fatal("no manager ClusterRole rendered")
		}
		if !reflect.DeepEqual(manager.Rules, want) {
			t.Errorf("the chart's ClusterRole rules differ from config/rbac/role.yaml:\nchart: %+v\nrole.yaml: %+v", manager.Rules, want)
		}
	}
	// Secrets are read with get only: never listed or watched.
	for _, r := range want {
		if contains(r.Resources, "secrets") && !reflect.DeepEqual(r.Verbs, []string{"get"}) {
			t.Errorf("secrets verbs %v, want [get]", r.Verbs)
		}
	}
}

// checkNoWildcards fails on a "*" in any rule of any Role or ClusterRole.
func checkNoWildcards(t *testing.T, source string, objs []*unstructured.Unstructured) {
	t.Helper()
	n := 0
	for _, o := range objs {
		if o.GetKind() != "Role" && o.GetKind() != "ClusterRole" {
			continue
		}
		n++
		var rules []rbacv1.PolicyRule
		if o.GetKind() == "Role" {
			r := &rbacv1.Role{}
			toTyped(t, o, r)
			rules = r.Rules
		} else {
			r := &rbacv1.ClusterRole{}
			toTyped(t, o, r)
			rules = r.Rules
			if r.AggregationRule != nil {
				t.Errorf("%s: ClusterRole %s aggregates other roles", source, r.Name)
			}
		}
		for _, r := range rules {
			for _, v := range append(append(append(append([]string{}, r.APIGroups...), r.Resources...), r.Verbs...), append(r.ResourceNames, r.NonResourceURLs...)...) {
				if strings.Contains(v, "*") {
					t.Errorf("%s: %s %s has a wildcard rule %+v", source, o.GetKind(), o.GetName(), r)
				}
			}
			for _, v := range r.Verbs {
				if v == "escalate" || v == "bind" || v == "impersonate" {
					t.Errorf("%s: %s %s grants %s", source, o.GetKind(), o.GetName(), v)
				}
			}
		}
	}
	if n == 0 {
		t.Errorf("%s: no Role or ClusterRole rendered", source)
	}
}

func TestNoWildcardRBAC(t *testing.T) {
	checkNoWildcards(t, "chart defaults", decode(t, template(t)))
	checkNoWildcards(t, "chart toggles", decode(t, template(t, allToggles...)))
	checkNoWildcards(t, "config/default", decode(t, run(t, kubectl(t), "kustomize", filepath.Join(repoRoot(t), "config", "default"))))
}

// TestValuesDocumented fails when a value in values.yaml has no row in the
// README's values table, or a row names a value that does not exist.
func TestValuesDocumented(t *testing.T) {
	var values map[string]any
	if err := yaml.Unmarshal(readFile(t, filepath.Join(chartDir(t), "values.yaml")), &values); err != nil {
		t.Fatal(err)
	}
	var paths []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		m, ok := v.(map[string]any)
		// Maps with content the user fills (resources, security contexts,
		// labels...) are documented as a whole.
		if !ok || len(m) == 0 || wholeValues[prefix] {
			paths = append(paths, prefix)
			return
		}
		for k, sub := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, sub)
		}
	}
	walk("", values)
	readme := string(readFile(t, filepath.Join(chartDir(t), "README.md")))
	// Only the rows of the "## Values" section.
	start := strings.Index(readme, "\n## Values\n")
	if start < 0 {
		t.Fatal(`charts/modelrollout/README.md has no "## Values" section`)
	}
	readme = readme[start+1:]
	if end := strings.Index(readme[3:], "\n## "); end >= 0 {
		readme = readme[:end+3]
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(readme, -1) {
		rows[m[1]] = true
	}
	for _, p := range paths {
		if !rows[p] {
			t.Errorf("value %s is not documented in charts/modelrollout/README.md", p)
		}
		delete(rows, p)
	}
	for r := range rows {
		t.Errorf("README documents %s, which values.yaml does not have", r)
	}
}

var wholeValues = map[string]bool{
	"resources":          true,
	"podSecurityContext": true,
	"securityContext":    true,
}
