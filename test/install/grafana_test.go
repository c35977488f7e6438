package install

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/modelrollout/modelrollout/config/grafana"
)

// The chart carries the dashboard of config/grafana inside its ConfigMap
// template, as a Go template raw string between these markers.
const (
	dashboardStart = "{{ `"
	dashboardEnd   = "` | indent 4 }}"
)

func dashboardTemplate(t *testing.T) string {
	return filepath.Join(chartDir(t), "templates", "grafana-dashboard.yaml")
}

func TestGrafanaDashboardInSync(t *testing.T) {
	path := dashboardTemplate(t)
	tmpl := readFile(t, path)
	start := bytes.Index(tmpl, []byte(dashboardStart))
	end := bytes.LastIndex(tmpl, []byte(dashboardEnd))
	if start < 0 || end < start {
		t.Fatalf("%s: no %s...%s block holding the dashboard", path, dashboardStart, dashboardEnd)
	}
	want := bytes.TrimRight(grafana.JSON, "\n")
	if bytes.Contains(want, []byte("`")) {
		t.Fatal("config/grafana/modelrollout.json holds a backquote, which would end the template's raw string")
	}
	var out bytes.Buffer
	out.Write(tmpl[:start+len(dashboardStart)])
	out.Write(want)
	out.Write(tmpl[end:])
	syncFile(t, path, out.Bytes(), fixHint)
}

// dashboardConfigMap renders the chart and returns its dashboard ConfigMap,
// or nil when none is rendered.
func dashboardConfigMap(t *testing.T, args ...string) *corev1.ConfigMap {
	t.Helper()
	var out *corev1.ConfigMap
	for _, o := range find(decode(t, template(t, args...)), "ConfigMap") {
		if !strings.HasSuffix(o.GetName(), "-grafana-dashboard") {
			continue
		}
		if out != nil {
			t.Fatal("two dashboard ConfigMaps rendered")
		}
		out = &corev1.ConfigMap{}
		toTyped(t, o, out)
	}
	return out
}

func TestChartGrafanaDashboard(t *testing.T) {
	if cm := dashboardConfigMap(t); cm != nil {
		t.Errorf("ConfigMap %s rendered by default; the dashboard is opt-in", cm.Name)
	}

	cm := dashboardConfigMap(t, "--set", "grafanaDashboard.enabled=true")
	if cm == nil {
		t.Fatal("no dashboard ConfigMap with grafanaDashboard.enabled=true")
	}
	if cm.Name != "mr-modelrollout-grafana-dashboard" || cm.Namespace != releaseNamespace {
		t.Errorf("ConfigMap %s/%s", cm.Namespace, cm.Name)
	}
	// What the Grafana sidecar of kube-prometheus-stack selects by default.
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("labels %v lack grafana_dashboard: \"1\"", cm.Labels)
	}
	checkValidConfigMap(t, cm)
	if len(cm.Data) != 1 {
		t.Fatalf("data keys %v, want one dashboard", keys(cm.Data))
	}
	got, ok := cm.Data["modelrollout.json"]
	if !ok {
		t.Fatalf("no modelrollout.json in %v", keys(cm.Data))
	}
	// The rendered JSON is the dashboard of config/grafana, byte for byte
	// but the trailing newline, and Grafana's queries still parse.
	if got != strings.TrimRight(string(grafana.JSON), "\n") {
		t.Error("the rendered dashboard differs from config/grafana/modelrollout.json")
	}
	var a, b any
	if err := json.Unmarshal([]byte(got), &a); err != nil {
		t.Fatalf("the rendered dashboard is not JSON: %v", err)
	}
	if err := json.Unmarshal(grafana.JSON, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Error("the rendered dashboard is not the same JSON as config/grafana/modelrollout.json")
	}
	qs, err := grafana.Queries([]byte(got))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if _, err := grafana.Parse(q.Expr, grafana.Variables("ai-gateway", "gpt4")); err != nil {
			t.Errorf("rendered %s: %v", q.Where, err)
		}
	}

	// Another sidecar setup: its own label, namespace and folder.
	cm = dashboardConfigMap(t, "--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.namespace=monitoring",
		"--set", "grafanaDashboard.label=dashboards", "--set", "grafanaDashboard.labelValue=modelrollout",
		"--set", "grafanaDashboard.folder=Inference")
	if cm.Namespace != "monitoring" || cm.Labels["dashboards"] != "modelrollout" || cm.Annotations["grafana_folder"] != "Inference" {
		t.Errorf("ConfigMap %s/%s labels %v annotations %v", cm.Namespace, cm.Name, cm.Labels, cm.Annotations)
	}
	if _, ok := cm.Labels["grafana_dashboard"]; ok {
		t.Error("the default sidecar label is set too")
	}
	checkValidConfigMap(t, cm)
}

// checkValidConfigMap checks what the API server would: names, label keys
// and values, and the 1 MiB size limit. (TestServerDryRun also applies it.)
func checkValidConfigMap(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	for _, msg := range validation.IsDNS1123Subdomain(cm.Name) {
		t.Errorf("name %q: %s", cm.Name, msg)
	}
	for k, v := range cm.Labels {
		for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			t.Errorf("label %s=%s: %s", k, v, msg)
		}
	}
	size := 0
	for k, v := range cm.Data {
		for _, msg := range validation.IsConfigMapKey(k) {
			t.Errorf("data key %q: %s", k, msg)
		}
		size += len(k) + len(v)
	}
	if size > 1<<20 {
		t.Errorf("ConfigMap data is %d bytes, over the 1 MiB limit", size)
	}
}
