package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/gateway"
)

var localHTTP = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}

// File returns the path of a manifest in test/testdata/demo.
func (s *Stack) File(name string) string { return s.filePath(name) }

// Route reads the HTTPRoute.
func (s *Stack) Route(ctx context.Context) (*gatewayv1.HTTPRoute, error) {
	r := &gatewayv1.HTTPRoute{}
	err := s.Client.Get(ctx, types.NamespacedName{Namespace: Namespace, Name: RouteName}, r)
	return r, err
}

// RouteWeights returns the weights of the gpt-4 rule of the HTTPRoute, by
// Service name.
func (s *Stack) RouteWeights(ctx context.Context) (map[string]int32, error) {
	r, err := s.Route(ctx)
	if err != nil {
		return nil, err
	}
	return RuleWeights(r, RuleName)
}

// ChangedRules compares the HTTPRoute with the route as applied from Git
// and returns the rules that differ, ignoring the backendRefs of the gpt4
// rule, which the rollouts manage.
func (s *Stack) ChangedRules(ctx context.Context) ([]string, error) {
	got, err := s.Route(ctx)
	if err != nil {
		return nil, err
	}
	want := s.initialRoute
	if len(got.Spec.Rules) != len(want.Spec.Rules) {
		return []string{fmt.Sprintf("%d rules instead of %d", len(got.Spec.Rules), len(want.Spec.Rules))}, nil
	}
	var changed []string
	for i := range want.Spec.Rules {
		g, w := *got.Spec.Rules[i].DeepCopy(), *want.Spec.Rules[i].DeepCopy()
		name := fmt.Sprintf("#%d", i)
		if w.Name != nil {
			name = string(*w.Name)
		}
		if name == RuleName {
			g.BackendRefs, w.BackendRefs = nil, nil
		}
		if !equality.Semantic.DeepEqual(g, w) {
			changed = append(changed, name)
		}
	}
	if !equality.Semantic.DeepEqual(got.Spec.ParentRefs, want.Spec.ParentRefs) || !equality.Semantic.DeepEqual(got.Labels, want.Labels) {
		changed = append(changed, "parentRefs or labels")
	}
	return changed, nil
}

// Rollout reads a ModelRollout of the namespace.
func (s *Stack) Rollout(ctx context.Context, name string) (*rolloutsv1.ModelRollout, error) {
	ro := &rolloutsv1.ModelRollout{}
	err := s.Client.Get(ctx, types.NamespacedName{Namespace: Namespace, Name: name}, ro)
	return ro, err
}

// Annotate merge-patches annotations onto a ModelRollout, the way the
// kubectl plugin steers it.
func (s *Stack) Annotate(ctx context.Context, name string, annotations map[string]string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		return err
	}
	ro := &rolloutsv1.ModelRollout{}
	ro.Namespace, ro.Name = Namespace, name
	return s.Client.Patch(ctx, ro, client.RawPatch(types.MergePatchType, body), client.FieldOwner(FieldManager))
}

// SimulatorURL is the base URL of a simulator (its /control endpoint turns it
// bad at run time).
func (s *Stack) SimulatorURL(name string) string { return s.Sims[name].URL() }

// SetSimulator changes a simulator at run time with a partial JSON
// configuration such as {"error_rate":0.3} or {"latency":"2s"}, through its
// PUT /control endpoint.
func (s *Stack) SetSimulator(ctx context.Context, name, patch string) error {
	sim, ok := s.Sims[name]
	if !ok {
		return fmt.Errorf("no simulator %q", name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, sim.URL()+"/control", strings.NewReader(patch))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := localHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s/control %s: %s: %s", sim.URL(), patch, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// ResetSimulators puts every simulator back to the configuration it started
// with.
func (s *Stack) ResetSimulators() error {
	for name, sim := range s.Sims {
		if err := sim.SetConfig(s.simConfigs[name]); err != nil {
			return fmt.Errorf("reset %s: %w", name, err)
		}
	}
	return nil
}

// SetEndpoints rewrites the endpoints of a simulator's EndpointSlice: one
// endpoint per entry of ready, with that readiness, as a Deployment's pods
// would give. The gateway dials the simulator for the slice as long as one
// endpoint is ready (test/gateway/doc.go); the addresses only count.
func (s *Stack) SetEndpoints(ctx context.Context, service string, ready ...bool) error {
	es := &discoveryv1.EndpointSlice{}
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: Namespace, Name: service + "-loopback"}, es); err != nil {
		return err
	}
	es.Endpoints = nil
	for i, r := range ready {
		addr := fmt.Sprintf("192.0.2.%d", 10+i)
		if s.IsTraefik() {
			addr = "127.0.0.1" // Traefik dials it (FQDN slice, see endpointSlice)
		}
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{addr},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r), Serving: ptr.To(r), Terminating: ptr.To(false)},
		})
	}
	return s.Client.Update(ctx, es)
}

// ResetEndpoints gives every simulator's EndpointSlice its one ready
// endpoint back.
func (s *Stack) ResetEndpoints(ctx context.Context) error {
	for _, sim := range simulators {
		if err := s.SetEndpoints(ctx, sim.service, true); err != nil {
			return fmt.Errorf("reset the endpoints of %s: %w", sim.service, err)
		}
	}
	return nil
}

// DeleteRollouts deletes every ModelRollout of the namespace (deleting a
// rollout leaves the routes as they are).
func (s *Stack) DeleteRollouts(ctx context.Context) error {
	return deleteAllRollouts(ctx, s.Client, Namespace)
}

// ResetRoute re-applies the HTTPRoute as written in Git, which takes the
// gpt4 rule's backendRefs back to vllm-gpt4-v1 alone.
func (s *Stack) ResetRoute(ctx context.Context) error {
	return ApplyFile(ctx, s.Client, s.filePath(RouteManifest))
}

// RolloutsGone reports whether the namespace has no ModelRollout left.
func (s *Stack) RolloutsGone(ctx context.Context) (bool, error) {
	list := &rolloutsv1.ModelRolloutList{}
	if err := s.Client.List(ctx, list, client.InNamespace(Namespace)); err != nil {
		return false, err
	}
	return len(list.Items) == 0, nil
}

// ClusterName is the gateway's Envoy cluster of a Service port of the
// namespace, e.g. kube_ai-gateway_vllm-gpt4-v2_8000.
func ClusterName(service string) string {
	return gateway.ClusterName(Namespace, service, BackendPort)
}

// ClusterRequests scrapes the gateway's metrics and returns
// envoy_cluster_upstream_rq_total by envoy_cluster_name.
func (s *Stack) ClusterRequests(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.GatewayMetricsURL+"/stats/prometheus", nil)
	if err != nil {
		return nil, err
	}
	resp, err := localHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	if mf, ok := families["envoy_cluster_upstream_rq_total"]; ok {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "envoy_cluster_name" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out, nil
}

// Alert is an alert as Prometheus or Alertmanager reports it.
type Alert struct {
	Source string // "prometheus" or "alertmanager"
	State  string // pending, firing (Prometheus), active (Alertmanager)
	Labels map[string]string
}

func (a Alert) String() string {
	var ls []string
	for _, k := range sortedKeys(a.Labels) {
		ls = append(ls, fmt.Sprintf("%s=%q", k, a.Labels[k]))
	}
	return fmt.Sprintf("%s %s {%s}", a.Source, a.State, strings.Join(ls, ","))
}

// ActiveAlerts lists the alerts Prometheus has pending or firing and those
// Alertmanager holds active.
func (s *Stack) ActiveAlerts(ctx context.Context) ([]Alert, error) {
	var out []Alert
	res, err := s.Prometheus.API().Alerts(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range res.Alerts {
		labels := map[string]string{}
		for k, v := range a.Labels {
			labels[string(k)] = string(v)
		}
		out = append(out, Alert{Source: "prometheus", State: string(a.State), Labels: labels})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Alertmanager.URL()+"/api/v2/alerts?active=true", nil)
	if err != nil {
		return nil, err
	}
	resp, err := localHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	var am []struct {
		Labels map[string]string `json:"labels"`
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&am); err != nil {
		return nil, err
	}
	for _, a := range am {
		out = append(out, Alert{Source: "alertmanager", State: a.Status.State, Labels: a.Labels})
	}
	return out, nil
}

// troubleQueries find, per backend, what a gate or the demo's HighErrorRate
// alert would still hold against it: slow requests in the last 15 seconds
// (further back than the gates' 5s windows, to allow for scrape and rule
// delays) and failed ones in the last 30 (the alert's window).
var troubleQueries = []string{
	`histogram_quantile(0.99, sum by (service, le) (rate(vllm:e2e_request_latency_seconds_bucket{namespace="` + Namespace + `",model_name="` + ModelID + `"}[15s]))) > 1`,
	`sum by (service) (rate(vllm:request_success_total{namespace="` + Namespace + `",model_name="` + ModelID + `",finished_reason="error"}[30s])) > 0`,
	`sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}[30s])) > 0`,
	`sum by (service) (rate(traefik_service_requests_total{code=~"5.."}[30s])) > 0`,
}

// RecentTrouble lists the gpt-4 backends whose recent metrics would fail a
// gate or fire the alert: slow (p99 over 1s) requests in the last 15
// seconds, failed ones in the last 30. A rollout started while a backend
// still shows trouble from an earlier experiment could be judged on it; the
// e2e suite waits for none. Call it after Prometheus.WaitForScrapesAfter,
// or trouble that ended just before may not be stored yet.
func (s *Stack) RecentTrouble(ctx context.Context) ([]string, error) {
	var out []string
	api := s.Prometheus.API()
	for _, q := range troubleQueries {
		v, _, _, err := api.Query(ctx, q, time.Now())
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", q, err)
		}
		if vec, ok := v.(model.Vector); ok {
			for _, smp := range vec {
				out = append(out, fmt.Sprintf("%s = %s", smp.Metric, smp.Value))
			}
		}
	}
	return out, nil
}

// Events lists the Events of a ModelRollout, oldest first.
func (s *Stack) Events(ctx context.Context, name string) ([]eventsv1.Event, error) {
	list := &eventsv1.EventList{}
	if err := s.Client.List(ctx, list, client.InNamespace(Namespace)); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "ModelRollout" && (name == "" || e.Regarding.Name == name) {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return eventTime(out[i]).Before(eventTime(out[j])) })
	return out, nil
}

func eventTime(e eventsv1.Event) time.Time {
	switch {
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// Diagnostics writes what explains a failure: every ModelRollout (status
// included) as YAML, their events, the HTTPRoute, the gateway's routing
// table, the end of the operator's log, and Prometheus' targets and alerts.
func (s *Stack) Diagnostics(ctx context.Context, w io.Writer) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	section := func(title string) { fmt.Fprintf(w, "\n===== %s =====\n", title) }

	section("ModelRollouts in " + Namespace)
	list := &rolloutsv1.ModelRolloutList{}
	if err := s.Client.List(ctx, list, client.InNamespace(Namespace)); err != nil {
		fmt.Fprintf(w, "list: %v\n", err)
	}
	for i := range list.Items {
		ro := &list.Items[i]
		stripForDisplay(ro)
		b, _ := yaml.Marshal(ro)
		fmt.Fprintf(w, "---\n%s", b)
	}
	section("ModelRollout events")
	if evs, err := s.Events(ctx, ""); err != nil {
		fmt.Fprintf(w, "list: %v\n", err)
	} else {
		for _, e := range evs {
			fmt.Fprintf(w, "%s  %-8s %-22s %s/%s: %s\n", eventTime(e).Format(time.RFC3339), e.Type, e.Reason, e.Regarding.Kind, e.Regarding.Name, e.Note)
		}
	}
	section("HTTPRoute " + RouteName)
	if r, err := s.Route(ctx); err != nil {
		fmt.Fprintf(w, "get: %v\n", err)
	} else {
		stripForDisplay(r)
		b, _ := yaml.Marshal(r)
		fmt.Fprintf(w, "%s", b)
	}
	if s.Gateway != nil {
		section("gateway routing table")
		fmt.Fprintln(w, s.Gateway.Table().String())
	}
	if s.IsTraefik() {
		s.traefikDiagnostics(ctx, w, section)
	}
	if s.Operator != nil {
		section("operator log (last 80 lines of " + s.Operator.LogPath + ")")
		fmt.Fprintln(w, s.Operator.LogTail(80))
	}
	if s.Prometheus != nil {
		for _, p := range []string{"/api/v1/targets", "/api/v1/alerts"} {
			section("Prometheus " + p)
			fmt.Fprintln(w, getText(ctx, s.Prometheus.URL()+p))
		}
	}
}

func getText(ctx context.Context, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := localHTTP.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	var pretty bytes.Buffer
	if json.Indent(&pretty, b, "", "  ") == nil {
		return pretty.String()
	}
	return resp.Status + "\n" + string(b)
}
