package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// The data planes a stack can run.
const (
	// GatewayTest is the test gateway of test/gateway, in process.
	GatewayTest = "test"
	// GatewayTraefik is Traefik (its kubernetesGateway provider), built by
	// test/scripts/traefik.sh and run as a child process.
	GatewayTraefik = "traefik"
)

// TraefikVersion is the Traefik release test/scripts/traefik.sh builds.
const TraefikVersion = "v3.7.13"

// Traefik's names on this stack.
const (
	// TraefikGatewayClass is the GatewayClass Traefik's provider serves
	// (its default controllerName).
	TraefikGatewayClass      = "traefik"
	traefikControllerName    = "traefik.io/gateway-controller"
	traefikEntryPoint        = "web"
	traefikProviderSuffix    = "@kubernetesgateway"
	traefikAdminEntryPoint   = "traefik"
	traefikMetricsPath       = "/metrics"
	traefikLatencyBucketsArg = "0.05,0.1,0.25,0.5,1,2.5,5,10"
)

// TraefikBinary returns the Traefik binary test/scripts/traefik.sh caches
// in <root>/bin/traefik/<version>/, or an error that says how to build it.
func TraefikBinary(root string) (string, error) {
	p := filepath.Join(root, "bin", "traefik", TraefikVersion, "traefik")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found: run `make traefik` (test/scripts/traefik.sh builds it from the Go module proxy)", p)
	}
	return p, nil
}

// IsTraefik says whether the stack's data plane is Traefik.
func (s *Stack) IsTraefik() bool { return s.opts.Gateway == GatewayTraefik }

// traefikGateway returns the GatewayClass and Gateway of gateway.yaml for
// Traefik: its GatewayClass, and the listener on the port of Traefik's web
// entry point (Traefik maps a listener to the entry point with its port).
func traefikGateway(port int) (*gatewayv1.GatewayClass, *gatewayv1.Gateway) {
	gc := &gatewayv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: TraefikGatewayClass},
		Spec:       gatewayv1.GatewayClassSpec{ControllerName: traefikControllerName},
	}
	from := gatewayv1.NamespacesFromSame
	gw := &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: GatewayName, Namespace: Namespace},
		Spec: gatewayv1.GatewaySpec{
			GatewayClassName: TraefikGatewayClass,
			Listeners: []gatewayv1.Listener{{
				Name: "http", Protocol: gatewayv1.HTTPProtocolType, Port: gatewayv1.PortNumber(port),
				AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &from}},
			}},
		},
	}
	return gc, gw
}

// startTraefik runs Traefik against the stack's API server: the web entry
// point is the Gateway's listener, the traefik entry point serves /ping, the
// API (/api/http/routers, /api/http/services) and Prometheus metrics.
func (s *Stack) startTraefik(ctx context.Context, webAddr, adminAddr string) error {
	args := []string{
		"--entryPoints." + traefikEntryPoint + ".address=" + webAddr,
		"--entryPoints." + traefikAdminEntryPoint + ".address=" + adminAddr,
		"--providers.kubernetesGateway=true",
		"--providers.kubernetesGateway.statusAddress.ip=127.0.0.1",
		"--ping=true",
		"--api=true", "--api.insecure=true", "--api.dashboard=false",
		"--metrics.prometheus=true",
		"--metrics.prometheus.buckets=" + traefikLatencyBucketsArg,
		"--log.level=INFO",
		"--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
	}
	// Out of cluster: the provider reads KUBECONFIG when
	// KUBERNETES_SERVICE_HOST is unset.
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KUBERNETES_SERVICE_HOST=") && !strings.HasPrefix(e, "KUBECONFIG=") {
			env = append(env, e)
		}
	}
	env = append(env, "KUBECONFIG="+s.Kubeconfig)
	p, err := startProcessEnv("traefik", s.opts.TraefikBinary, args, env, filepath.Join(s.Dir, "traefik.log"))
	if err != nil {
		return err
	}
	s.Traefik = p
	// Ready once the gpt-4 rule routes to the stable simulator.
	return poll(ctx, 3*time.Minute, "Traefik to route gpt-4 to "+Stable, func() (bool, error) {
		if p.Exited() {
			return false, p.ExitError()
		}
		w, ok := s.GatewayWeights()
		return ok && w[Stable] > 0, nil
	})
}

// startProcessEnv is StartProcess with the child's environment.
func startProcessEnv(name, binary string, args, env []string, logPath string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// TraefikRouter is a router of Traefik's API (/api/http/routers).
type TraefikRouter struct {
	Name     string `json:"name"`
	Rule     string `json:"rule"`
	Service  string `json:"service"`
	Priority int    `json:"priority"`
	Status   string `json:"status"`
}

// TraefikService is a service of Traefik's API (/api/http/services).
type TraefikService struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Weighted *struct {
		Services []struct {
			Name   string `json:"name"`
			Weight *int   `json:"weight"`
		} `json:"services"`
	} `json:"weighted"`
	LoadBalancer *struct {
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
	} `json:"loadBalancer"`
}

// TraefikRouters lists Traefik's HTTP routers, from its own API.
func (s *Stack) TraefikRouters(ctx context.Context) ([]TraefikRouter, error) {
	var out []TraefikRouter
	return out, s.traefikAPI(ctx, "/api/http/routers?per_page=1000", &out)
}

// TraefikServices lists Traefik's HTTP services, from its own API.
func (s *Stack) TraefikServices(ctx context.Context) ([]TraefikService, error) {
	var out []TraefikService
	return out, s.traefikAPI(ctx, "/api/http/services?per_page=1000", &out)
}

func (s *Stack) traefikAPI(ctx context.Context, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.GatewayMetricsURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := localHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %s: %s", req.URL, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// traefikRouterPrefix is the start of the names Traefik's Gateway provider
// gives the routers of an HTTPRoute of the namespace on the stack's Gateway:
// httproute-<ns>-<route>-gw-<ns>-<gateway>-ep-<entry point>-<rule index>-
// followed by a hash of the rule.
func traefikRouterPrefix(route string, ruleIndex int) string {
	return fmt.Sprintf("httproute-%s-%s-gw-%s-%s-ep-%s-%d-", Namespace, route, Namespace, GatewayName, traefikEntryPoint, ruleIndex)
}

// traefikBackendRE takes the Service name out of the name Traefik gives a
// backendRef: <router>-svc-<namespace>-<service>-<index>@kubernetesgateway.
var traefikBackendRE = regexp.MustCompile(`-svc-` + regexp.QuoteMeta(Namespace) + `-([a-z0-9-]+?)-[0-9]+` + regexp.QuoteMeta(traefikProviderSuffix) + `$`)

// TraefikBackendService returns the Service of one of Traefik's backendRef
// services, or "" when name is not one.
func TraefikBackendService(name string) string {
	if !strings.HasSuffix(name, traefikProviderSuffix) {
		name += traefikProviderSuffix
	}
	m := traefikBackendRE.FindStringSubmatch(name)
	if m == nil {
		return ""
	}
	return m[1]
}

// traefikWeights returns the weights of the gpt-4 rule in Traefik's
// running configuration (its API), by Service name, counting only
// backends that have a server, as GatewayWeights does for the test gateway.
func (s *Stack) traefikWeights(ctx context.Context) (map[string]int32, bool) {
	routers, err := s.TraefikRouters(ctx)
	if err != nil {
		return nil, false
	}
	services, err := s.TraefikServices(ctx)
	if err != nil {
		return nil, false
	}
	idx := s.gpt4RuleIndex()
	if idx < 0 {
		return nil, false
	}
	prefix := traefikRouterPrefix(RouteName, idx)
	var svcName string
	for _, r := range routers {
		if strings.HasPrefix(r.Name, prefix) && r.Status != "disabled" {
			svcName = r.Service
			break
		}
	}
	if svcName == "" {
		return nil, false
	}
	byName := map[string]TraefikService{}
	for _, sv := range services {
		byName[sv.Name] = sv
	}
	wrr, ok := byName[qualify(svcName)]
	if !ok || wrr.Weighted == nil {
		return nil, false
	}
	out := map[string]int32{}
	for _, b := range wrr.Weighted.Services {
		leaf, ok := byName[qualify(b.Name)]
		if !ok || leaf.LoadBalancer == nil || len(leaf.LoadBalancer.Servers) == 0 {
			continue
		}
		w := int32(1)
		if b.Weight != nil {
			w = int32(*b.Weight)
		}
		out[TraefikBackendService(b.Name)] = w
	}
	return out, true
}

func qualify(name string) string {
	if strings.Contains(name, "@") {
		return name
	}
	return name + traefikProviderSuffix
}

// gpt4RuleIndex is the index of the gpt4 rule in the route as applied from
// Git, which Traefik's router names carry.
func (s *Stack) gpt4RuleIndex() int {
	if s.initialRoute == nil {
		return -1
	}
	return slices.IndexFunc(s.initialRoute.Spec.Rules, func(r gatewayv1.HTTPRouteRule) bool {
		return r.Name != nil && string(*r.Name) == RuleName
	})
}

// GatewayServesRoute says whether the data plane serves an HTTPRoute of the
// namespace: the test gateway's routing table, or Traefik's enabled routers.
func (s *Stack) GatewayServesRoute(ctx context.Context, route string) (bool, error) {
	if !s.IsTraefik() {
		for _, r := range s.Gateway.Table().Rules() {
			if r.RouteNamespace == Namespace && r.RouteName == route {
				return true, nil
			}
		}
		return false, nil
	}
	routers, err := s.TraefikRouters(ctx)
	if err != nil {
		return false, err
	}
	prefix := fmt.Sprintf("httproute-%s-%s-gw-", Namespace, route)
	for _, r := range routers {
		if strings.HasPrefix(r.Name, prefix) && r.Status != "disabled" {
			return true, nil
		}
	}
	return false, nil
}

// TraefikCounters scrapes Traefik's metrics and returns
// traefik_service_requests_total summed by the Service of each backendRef
// (all routes and rules of the namespace), and traefik_config_reloads_total.
func (s *Stack) TraefikCounters(ctx context.Context) (requests map[string]float64, reloads float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.GatewayMetricsURL+traefikMetricsPath, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := localHTTP.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, 0, err
	}
	requests = map[string]float64{}
	if mf, ok := families["traefik_service_requests_total"]; ok {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "service" {
					if svc := TraefikBackendService(l.GetValue()); svc != "" {
						requests[svc] += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if mf, ok := families["traefik_config_reloads_total"]; ok {
		for _, m := range mf.GetMetric() {
			reloads += m.GetCounter().GetValue()
		}
	}
	return requests, reloads, nil
}

// GatewayGates replaces, on a Traefik stack, the rollout's gates on the
// test gateway's Envoy metrics with the same gates on Traefik's own
// metrics: envoy-error-ratio becomes traefik-error-ratio and
// envoy-latency-p99 traefik-latency-p99.
func (s *Stack) GatewayGates(ro *rolloutsv1.ModelRollout) {
	if !s.IsTraefik() || ro.Spec.Analysis == nil {
		return
	}
	for i := range ro.Spec.Analysis.Gates {
		g := &ro.Spec.Analysis.Gates[i]
		switch g.Preset {
		case "envoy-error-ratio":
			g.Preset = "traefik-error-ratio"
		case "envoy-latency-p99":
			g.Preset = "traefik-latency-p99"
		}
	}
}

// traefikDiagnostics writes Traefik's routers and services and the end of
// its log.
func (s *Stack) traefikDiagnostics(ctx context.Context, w io.Writer, section func(string)) {
	for _, p := range []string{"/api/http/routers", "/api/http/services"} {
		section("Traefik " + p)
		fmt.Fprintln(w, getText(ctx, s.GatewayMetricsURL+p))
	}
	if s.Traefik != nil {
		section("Traefik log (last 60 lines of " + s.Traefik.LogPath + ")")
		fmt.Fprintln(w, s.Traefik.LogTail(60))
	}
}

// portOf returns the port of a host:port address.
func portOf(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	p, _ := strconv.Atoi(addr[i+1:])
	return p
}
