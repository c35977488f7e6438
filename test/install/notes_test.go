package install

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/modelrollout/modelrollout/controllers/alerts"
)

// receiverEndpoint is where an install serves the alert receiver, read from
// its rendered objects: the Service port named "alerts", its scheme, and the
// Secret and key the manager reads the token from.
type receiverEndpoint struct {
	url         string
	tokenSecret string
	tokenKey    string
}

func endpointOf(t *testing.T, objs []*unstructured.Unstructured, tls bool) receiverEndpoint {
	t.Helper()
	d, c := manager(t, objs)
	// The container port named alerts is the one the receiver binds.
	bind := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--alert-receiver-bind-address="); ok {
			bind = v
		}
	}
	var containerPort int32
	for _, p := range c.Ports {
		if p.Name == "alerts" {
			containerPort = p.ContainerPort
		}
	}
	if bind != fmt.Sprintf(":%d", containerPort) {
		t.Fatalf("the receiver binds %q but the container port alerts is %d", bind, containerPort)
	}
	svc := &corev1.Service{}
	toTyped(t, only(t, objs, "Service"), svc)
	var port *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if p.Name == "alerts" {
			port = &svc.Spec.Ports[i]
		}
	}
	if port == nil || port.TargetPort.String() != "alerts" {
		t.Fatalf("Service %s has no port alerts targeting the container port alerts: %+v", svc.Name, svc.Spec.Ports)
	}
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Fatalf("Service %s selects %s=%s, which the manager pods lack", svc.Name, k, v)
		}
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	if port.AppProtocol == nil || *port.AppProtocol != scheme {
		t.Errorf("Service port alerts has appProtocol %v, want %s", port.AppProtocol, scheme)
	}
	return receiverEndpoint{
		url:         fmt.Sprintf("%s://%s.%s.svc:%d%s", scheme, svc.Name, svc.Namespace, port.Port, alerts.Path),
		tokenSecret: tokenSecretOf(t, d),
		tokenKey:    tokenKeyOf(t, d),
	}
}

// tokenVolume is the volume mounted where --alert-receiver-token-file points.
func tokenVolume(t *testing.T, d *appsv1.Deployment) *corev1.Volume {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	file := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--alert-receiver-token-file="); ok {
			file = v
		}
	}
	for _, m := range c.VolumeMounts {
		if filepath.Dir(file) == m.MountPath {
			for i, v := range d.Spec.Template.Spec.Volumes {
				if v.Name == m.Name && v.Secret != nil {
					return &d.Spec.Template.Spec.Volumes[i]
				}
			}
		}
	}
	t.Fatalf("no Secret volume is mounted where the token file %q is", file)
	return nil
}

func tokenSecretOf(t *testing.T, d *appsv1.Deployment) string {
	return tokenVolume(t, d).Secret.SecretName
}

func tokenKeyOf(t *testing.T, d *appsv1.Deployment) string {
	v := tokenVolume(t, d)
	for _, it := range v.Secret.Items {
		if it.Path == "token" {
			return it.Key
		}
	}
	t.Fatalf("volume %s does not project a key to the token file", v.Name)
	return ""
}

// notesServer starts a test API server for `helm install --dry-run`, which
// checks that a cluster is reachable even when it changes nothing, and
// returns a kubeconfig for it.
func notesServer(t *testing.T) string {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("skipping: helm install --dry-run needs an API server and KUBEBUILDER_ASSETS is not set; " +
			"export KUBEBUILDER_ASSETS=$PWD/bin/control-plane/v1.37.2")
	}
	env := &envtest.Environment{}
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
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// notes renders the chart's NOTES.txt for a release, as `helm install`
// prints it, in a client-side dry run that installs nothing.
func notes(t *testing.T, kubeconfig, release string, args ...string) string {
	t.Helper()
	base := []string{"install", release, chartDir(t), "--namespace", releaseNamespace, "--dry-run=client", "--kubeconfig", kubeconfig}
	cmd := append(base, args...)
	out, err := runErr(helm(t), cmd...)
	if err != nil {
		t.Fatalf("helm %s: %v", strings.Join(cmd, " "), err)
	}
	s := string(out)
	i := strings.Index(s, "\nNOTES:\n")
	if i < 0 {
		t.Fatalf("helm install --dry-run printed no NOTES:\n%s", tail(s, 2000))
	}
	return s[i+len("\nNOTES:\n"):]
}

// alertmanagerSnippet is the Alertmanager configuration NOTES prints.
type alertmanagerSnippet struct {
	Route struct {
		Routes []struct {
			Receiver      string   `json:"receiver"`
			Matchers      []string `json:"matchers"`
			GroupWait     string   `json:"group_wait"`
			GroupInterval string   `json:"group_interval"`
			Continue      bool     `json:"continue"`
		} `json:"routes"`
	} `json:"route"`
	Receivers []struct {
		Name           string `json:"name"`
		WebhookConfigs []struct {
			URL          string `json:"url"`
			SendResolved *bool  `json:"send_resolved"`
			HTTPConfig   struct {
				Authorization struct {
					CredentialsFile string `json:"credentials_file"`
				} `json:"authorization"`
				TLSConfig *struct {
					CAFile     string `json:"ca_file"`
					ServerName string `json:"server_name"`
				} `json:"tls_config"`
			} `json:"http_config"`
		} `json:"webhook_configs"`
	} `json:"receivers"`
}

// snippet parses the YAML block of NOTES that starts at "route:" and ends
// at the first blank line.
func snippet(t *testing.T, notes string) alertmanagerSnippet {
	t.Helper()
	i := strings.Index(notes, "\nroute:\n")
	if i < 0 {
		t.Fatalf("NOTES hold no Alertmanager snippet:\n%s", notes)
	}
	block := notes[i+1:]
	if j := strings.Index(block, "\n\n"); j >= 0 {
		block = block[:j+1]
	}
	checkAlertmanagerConfig(t, block)
	var s alertmanagerSnippet
	if err := yaml.UnmarshalStrict([]byte(block), &s); err != nil {
		t.Fatalf("the NOTES snippet is not valid Alertmanager YAML: %v\n%s", err, block)
	}
	if len(s.Receivers) != 1 || len(s.Receivers[0].WebhookConfigs) != 1 || len(s.Route.Routes) != 1 || s.Route.Routes[0].Receiver != s.Receivers[0].Name {
		t.Fatalf("the NOTES snippet does not route to one webhook receiver:\n%s", block)
	}
	return s
}

// checkAlertmanagerConfig has Alertmanager's amtool check the snippet, as
// the routes and receivers of an otherwise empty configuration.
func checkAlertmanagerConfig(t *testing.T, snippet string) {
	t.Helper()
	amtool, err := exec.LookPath("amtool")
	if err != nil {
		t.Logf("amtool is not on PATH (Debian package prometheus-alertmanager): the snippet is only parsed")
		return
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(snippet), &cfg); err != nil {
		t.Fatalf("the NOTES snippet is not YAML: %v\n%s", err, snippet)
	}
	route, _ := cfg["route"].(map[string]any)
	if route == nil {
		t.Fatalf("the NOTES snippet has no route:\n%s", snippet)
	}
	// The root route of a whole configuration needs a default receiver.
	route["receiver"] = "default"
	receivers, _ := cfg["receivers"].([]any)
	cfg["receivers"] = append(receivers, map[string]any{"name": "default"})
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runErr(amtool, "check-config", file); err != nil {
		t.Errorf("amtool check-config refuses the NOTES snippet: %v\n%s", err, b)
	} else {
		t.Logf("amtool check-config: %s", strings.TrimSpace(string(out)))
	}
}

func TestNotesAlertmanagerSnippet(t *testing.T) {
	kc := notesServer(t)
	for _, tt := range []struct {
		name    string
		release string
		tls     bool
		args    []string
	}{
		{name: "defaults", release: "modelrollout"},
		{name: "release name without the chart's", release: "canary"},
		{name: "TLS", release: "modelrollout", tls: true,
			args: []string{"--set", "alertReceiver.tls.enabled=true", "--set", "alertReceiver.tls.secretName=alerts-tls"}},
		{name: "own names, port and Secret", release: "mr",
			args: []string{"--set", "fullnameOverride=rollouts", "--set", "alertReceiver.port=9443",
				"--set", "alertReceiver.token.existingSecret=am-token", "--set", "alertReceiver.token.key=bearer"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rendered := run(t, helm(t), append([]string{"template", tt.release, chartDir(t), "--namespace", releaseNamespace}, tt.args...)...)
			want := endpointOf(t, decode(t, rendered), tt.tls)
			n := notes(t, kc, tt.release, tt.args...)
			t.Logf("NOTES:\n%s", n)
			wh := snippet(t, n).Receivers[0].WebhookConfigs[0]
			if wh.URL != want.url {
				t.Errorf("NOTES send alerts to %s; the chart serves the receiver at %s", wh.URL, want.url)
			}
			if u, err := url.Parse(wh.URL); err != nil || u.Path != alerts.Path {
				t.Errorf("webhook URL %q does not end in %s", wh.URL, alerts.Path)
			}
			if wh.SendResolved == nil || *wh.SendResolved {
				t.Error("send_resolved is not false: resolved alerts only cost the receiver a request")
			}
			file := fmt.Sprintf("/etc/alertmanager/secrets/%s/%s", want.tokenSecret, want.tokenKey)
			if got := wh.HTTPConfig.Authorization.CredentialsFile; got != file {
				t.Errorf("credentials_file %q, want %q (Secret %s, key %s, as mounted by the manager)", got, file, want.tokenSecret, want.tokenKey)
			}
			copyCmd := fmt.Sprintf("kubectl -n monitoring create secret generic %s --from-literal=%s=\"$(kubectl -n %s get secret %s -o jsonpath='{.data.%s}' | base64 -d)\"",
				want.tokenSecret, want.tokenKey, releaseNamespace, want.tokenSecret, want.tokenKey)
			if !strings.Contains(n, copyCmd) {
				t.Errorf("NOTES lack the command that copies the token:\n%s", copyCmd)
			}
			tlsc := wh.HTTPConfig.TLSConfig
			switch {
			case tt.tls && tlsc == nil:
				t.Error("no tls_config with TLS on")
			case tt.tls:
				if u, _ := url.Parse(want.url); tlsc.ServerName != u.Hostname() {
					t.Errorf("tls_config.server_name %q, want %q", tlsc.ServerName, u.Hostname())
				}
			case tlsc != nil:
				t.Error("tls_config with TLS off")
			}
		})
	}
	t.Run("receiver disabled", func(t *testing.T) {
		if n := notes(t, kc, "modelrollout", "--set", "alertReceiver.enabled=false"); strings.Contains(n, "webhook_configs") {
			t.Errorf("NOTES print a webhook with the receiver disabled:\n%s", n)
		}
	})
	t.Run("Grafana dashboard", func(t *testing.T) {
		n := notes(t, kc, "modelrollout", "--set", "grafanaDashboard.enabled=true")
		cm := dashboardConfigMap(t, "--set", "grafanaDashboard.enabled=true")
		want := releaseNamespace + "/modelrollout-grafana-dashboard"
		if cm.Name != "mr-modelrollout-grafana-dashboard" || !strings.Contains(n, "ConfigMap "+want+",") {
			t.Errorf("NOTES do not name ConfigMap %s:\n%s", want, n)
		}
	})
}

// alertURL finds the receiver URLs a document gives.
var alertURL = regexp.MustCompile(`https?://[a-z0-9.-]+\.svc:[0-9]+/alerts`)

// TestDocsMatchTheInstalls checks that the alerts guide and the receiver's package
// documentation give the URL, port, token file and Secret that the chart
// (release modelrollout, as the install guide installs it) and config/default
// really create, and no other.
func TestDocsMatchTheInstalls(t *testing.T) {
	chart := decode(t, run(t, helm(t), "template", "modelrollout", chartDir(t), "--namespace", releaseNamespace))
	kust := decode(t, run(t, kubectl(t), "kustomize", filepath.Join(repoRoot(t), "config", "default")))
	helmEP, kustEP := endpointOf(t, chart, false), endpointOf(t, kust, false)
	if helmEP.tokenSecret != kustEP.tokenSecret || helmEP.tokenKey != kustEP.tokenKey {
		t.Fatalf("the installs read the token from different Secrets: chart %s/%s, kustomize %s/%s",
			helmEP.tokenSecret, helmEP.tokenKey, kustEP.tokenSecret, kustEP.tokenKey)
	}
	_, c := manager(t, kust)
	_, hc := manager(t, chart)
	var flags []string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--alert-receiver-") {
			flags = append(flags, a)
			if !contains(hc.Args, a) {
				t.Errorf("the chart's manager lacks %s, which config/default has: the docs describe both as one", a)
			}
		}
	}
	if len(flags) != 2 {
		t.Fatalf("config/default passes %v, want the bind address and the token file", flags)
	}
	credentials := fmt.Sprintf("credentials_file: /etc/alertmanager/secrets/%s/%s", helmEP.tokenSecret, helmEP.tokenKey)

	guide := string(readFile(t, filepath.Join(repoRoot(t), "docs", "guides", "alerts.md")))
	doc := string(readFile(t, filepath.Join(repoRoot(t), "controllers", "alerts", "doc.go")))
	for _, d := range []struct {
		name, text string
		want       []string
	}{
		{"docs/guides/alerts.md", guide, append([]string{helmEP.url, kustEP.url, credentials, "Secret `" + helmEP.tokenSecret + "`"}, quoted(flags)...)},
		{"controllers/alerts/doc.go", doc, []string{helmEP.url, kustEP.url, credentials, helmEP.tokenSecret,
			strings.TrimPrefix(flags[1], "--alert-receiver-token-file=")}},
	} {
		for _, w := range d.want {
			if !strings.Contains(d.text, w) {
				t.Errorf("%s does not give %q", d.name, w)
			}
		}
		for _, u := range alertURL.FindAllString(d.text, -1) {
			if u != helmEP.url && u != kustEP.url {
				t.Errorf("%s gives the receiver URL %s, which no install creates (chart: %s, kustomize: %s)", d.name, u, helmEP.url, kustEP.url)
			}
		}
		for _, m := range regexp.MustCompile(`credentials_file: \S+`).FindAllString(d.text, -1) {
			if m != credentials {
				t.Errorf("%s gives %q, want %q", d.name, m, credentials)
			}
		}
	}
	port := strings.TrimPrefix(flags[0], "--alert-receiver-bind-address=:")
	if _, err := strconv.Atoi(port); err != nil || !strings.Contains(kustEP.url, ":"+port+"/") {
		t.Errorf("the receiver binds %s but the Service port is not the same number: %s", flags[0], kustEP.url)
	}
}

func quoted(flags []string) []string {
	out := make([]string, len(flags))
	for i, f := range flags {
		out[i] = "`" + f + "`"
	}
	return out
}
