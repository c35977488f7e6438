package argocd

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/controllers"
	"github.com/modelrollout/modelrollout/internal/finish"
)

// The recipe's settings, as config/argocd/README.md writes them
// (TestReadmeStatesTheTestedPaths keeps the two in step).
const (
	recipeJQPath = ".spec.rules[].backendRefs[].weight"
	// The positional ignore the README warns about.
	readmePointer = "/spec/rules/0/backendRefs/1/weight"
	// A jq path narrowed to the managed rule, so weights of other rules stay
	// compared.
	narrowJQPath = `.spec.rules[] | select(.name == "gpt4") | .backendRefs[].weight`
)

// gitRoute is the route as the recipe says to keep it in Git: the canary
// listed at weight 0 next to the stable, with matches, a filter, timeouts,
// and a second rule with a backend no rollout manages.
const gitRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: model-header-routing
  annotations:
    team.example.com/owner: ml-platform
spec:
  parentRefs:
  - name: ai-inference-gateway
    sectionName: http
  rules:
  - name: gpt4
    matches:
    - path:
        type: PathPrefix
        value: /v1/chat/completions
      headers:
      - name: x-model-id
        value: gpt-4
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: x-gateway
          value: ai-inference-gateway
    backendRefs:
    - name: vllm-gpt4-v1
      port: 8000
      weight: 100
    - name: vllm-gpt4-v2
      port: 8000
      weight: 0
    timeouts:
      request: 120s
      backendRequest: 60s
  - name: claude
    matches:
    - headers:
      - name: x-model-id
        value: claude-3
    backendRefs:
    - name: tgi-claude
      port: 8080
      weight: 1
    timeouts:
      request: 120s
`

const (
	routeName = "model-header-routing"
	// unlistedRoute is gitRoute without the canary in Git.
	unlistedRoute = "unlisted-canary"
	// movedRoute is gitRoute with a rule inserted before the managed one.
	movedRoute = "moved-rule"
	stable     = "vllm-gpt4-v1"
	canary     = "vllm-gpt4-v2"
	appName    = "ai-gateway"
)

// recipe is the Application's ignoreDifferences of the recipe, one entry
// per managed route.
func recipe(routes ...string) normalizer {
	var n normalizer
	for _, r := range routes {
		n = append(n, ignoreEntry{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: r,
			JQPathExpressions: []string{recipeJQPath}})
	}
	return n
}

// pointers is the positional ignore the README warns about, written for
// rule 0 when the managed rule was first.
func pointers(route string) normalizer {
	return normalizer{{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: route,
		JSONPointers: []string{"/spec/rules/0/backendRefs/0/weight", readmePointer}}}
}

type harness struct {
	t   *testing.T
	ctx context.Context
	c   client.Client
	ns  string
}

func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func gatewayAPICRDs(t testing.TB) string {
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

// start runs a test API server with the Gateway API and ModelRollout CRDs
// and the operator (the same reconciler cmd/manager runs, without gates).
func start(t *testing.T) *harness {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set; `make test` sets it to bin/control-plane/<k8s version>, " +
			"or export KUBEBUILDER_ASSETS=$PWD/bin/control-plane/v1.37.2")
	}
	scheme := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	utilruntime.Must(rolloutsv1.AddToScheme(scheme))
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot(t), "config", "crd", "bases"), gatewayAPICRDs(t)},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start the test API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop the test API server: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	// Each test starts its own operator in this process.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("operator: %v", err)
		}
	})
	r := &controllers.ModelRolloutReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("modelrollout-controller")}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	go func() { done <- mgr.Start(ctx) }()

	h := &harness{t: t, ctx: ctx, c: c, ns: "ai-gateway"}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h.ns}}); err != nil {
		t.Fatal(err)
	}
	return h
}

// backend creates a Service with one ready endpoint.
func (h *harness) backend(name string, port int32) {
	h.t.Helper()
	h.must(h.c.Create(h.ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: port}}}}))
	h.must(h.c.Create(h.ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port)}},
	}))
}

func (h *harness) must(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

// manifest is a Git manifest as Argo CD renders it for the application: in
// the destination namespace, with its tracking annotation.
func (h *harness) manifest(yamlText string, edit ...func(m map[string]any)) map[string]any {
	h.t.Helper()
	m := map[string]any{}
	h.must(yaml.Unmarshal([]byte(yamlText), &m))
	m = fromJSON(h.t, toJSON(h.t, m))
	meta := m["metadata"].(map[string]any)
	meta["namespace"] = h.ns
	a, _ := meta["annotations"].(map[string]any)
	if a == nil {
		a = map[string]any{}
	}
	a["argocd.argoproj.io/tracking-id"] = fmt.Sprintf("%s:gateway.networking.k8s.io/HTTPRoute:%s/%s", appName, h.ns, meta["name"])
	meta["annotations"] = a
	for _, e := range edit {
		e(m)
	}
	return m
}

// live reads a route from the API server.
func (h *harness) live(name string) map[string]any {
	h.t.Helper()
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("gateway.networking.k8s.io/v1")
	u.SetKind("HTTPRoute")
	h.must(h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, u))
	return u.Object
}

// apply writes manifest the way Argo CD's default sync does (`kubectl apply`,
// client-side: create, or a three-way JSON merge patch for a custom
// resource).
func (h *harness) apply(manifest map[string]any) {
	h.t.Helper()
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("gateway.networking.k8s.io/v1")
	u.SetKind("HTTPRoute")
	meta := manifest["metadata"].(map[string]any)
	err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: meta["name"].(string)}, u)
	if apierrors.IsNotFound(err) {
		h.must(h.c.Create(h.ctx, &unstructured.Unstructured{Object: withLastApplied(h.t, manifest)},
			client.FieldOwner("kubectl-client-side-apply")))
		return
	}
	h.must(err)
	patch := applyPatch(h.t, manifest, u.Object)
	h.must(h.c.Patch(h.ctx, u, client.RawPatch(types.MergePatchType, patch), client.FieldOwner("kubectl-client-side-apply")))
}

// waitFor polls cond until it holds (a minute at most).
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	err := wait.PollUntilContextTimeout(h.ctx, 50*time.Millisecond, time.Minute, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		h.t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (h *harness) rollout() *rolloutsv1.ModelRollout {
	h.t.Helper()
	ro := &rolloutsv1.ModelRollout{}
	h.must(h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: "gpt4"}, ro))
	return ro
}

func (h *harness) phase(want rolloutsv1.Phase) func() bool {
	return func() bool {
		ro := h.rollout()
		return ro.Status.ObservedGeneration == ro.Generation && ro.Status.Phase == want
	}
}

// weights returns name=weight of the backendRefs of a rule of obj.
func weights(obj map[string]any, rule string) map[string]int64 {
	out := map[string]int64{}
	rules, _, _ := unstructured.NestedSlice(obj, "spec", "rules")
	for _, r := range rules {
		rm, _ := r.(map[string]any)
		if rm["name"] != rule {
			continue
		}
		refs, _ := rm["backendRefs"].([]any)
		for _, ref := range refs {
			b, _ := ref.(map[string]any)
			w := int64(1)
			switch x := b["weight"].(type) {
			case int64:
				w = x
			case float64:
				w = int64(x)
			}
			out[b["name"].(string)] = w
		}
	}
	return out
}

func (h *harness) weightsAre(route, rule string, want map[string]int64) func() bool {
	return func() bool { return maps.Equal(weights(h.live(route), rule), want) }
}

// rule returns the named rule of obj (a map inside obj: edits change obj).
func rule(t testing.TB, obj map[string]any, name string) map[string]any {
	t.Helper()
	rules := obj["spec"].(map[string]any)["rules"].([]any)
	for _, r := range rules {
		if rm := r.(map[string]any); rm["name"] == name {
			return rm
		}
	}
	t.Fatalf("no rule %q", name)
	return nil
}

func backendRefs(t testing.TB, obj map[string]any, ruleName string) []any {
	return rule(t, obj, ruleName)["backendRefs"].([]any)
}

func expectSynced(t *testing.T, what string, c comparison) {
	t.Helper()
	if c.OutOfSync {
		t.Errorf("%s: want Synced, got %s", what, c)
	}
}

func expectOutOfSync(t *testing.T, what string, c comparison) {
	t.Helper()
	if !c.OutOfSync {
		t.Errorf("%s: want OutOfSync, got Synced (live %s)", what, c.Live)
	}
}

// TestRecipe runs the recipe through a rollout: the routes from Git, the
// operator's weights mid-rollout, syncs with and without
// RespectIgnoreDifferences, an owned header route next to them, and the
// finish.
func TestRecipe(t *testing.T) {
	h := start(t)
	h.backend(stable, 8000)
	h.backend(canary, 8000)
	h.backend("tgi-claude", 8080)

	git := h.manifest(gitRoute)
	unlisted := h.manifest(gitRoute, func(m map[string]any) {
		m["metadata"].(map[string]any)["name"] = unlistedRoute
		r := rule(t, m, "gpt4")
		r["backendRefs"] = r["backendRefs"].([]any)[:1]
	})
	unlisted = h.manifest(string(toJSON(t, unlisted))) // tracking id of its own name
	moved := h.manifest(gitRoute, func(m map[string]any) {
		m["metadata"].(map[string]any)["name"] = movedRoute
		spec := m["spec"].(map[string]any)
		first := map[string]any{"name": "health",
			"matches":     []any{map[string]any{"path": map[string]any{"type": "Exact", "value": "/health"}}},
			"backendRefs": []any{map[string]any{"name": "tgi-claude", "port": float64(8080), "weight": float64(1)}}}
		spec["rules"] = append([]any{first}, spec["rules"].([]any)...)
	})
	moved = h.manifest(string(toJSON(t, moved)))
	for _, m := range []map[string]any{git, unlisted, moved} {
		h.apply(m)
	}

	// Before any rollout the Git routes are in sync with or without the
	// recipe: the comparison does not report the server's defaults.
	for _, m := range []map[string]any{git, unlisted, moved} {
		name := m["metadata"].(map[string]any)["name"].(string)
		expectSynced(t, name+" as applied, no ignore", normalizer(nil).compare(t, m, h.live(name)))
	}

	h.must(h.c.Create(h.ctx, &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "gpt4", Namespace: h.ns},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{
				{Name: routeName, Rules: []rolloutsv1.RuleName{"gpt4"}},
				{Name: unlistedRoute, Rules: []rolloutsv1.RuleName{"gpt4"}},
				{Name: movedRoute, Rules: []rolloutsv1.RuleName{"gpt4"}},
			},
			Stable: rolloutsv1.BackendRef{Name: stable, Port: ptr.To[int32](8000)},
			Canary: &rolloutsv1.BackendRef{Name: canary, Port: ptr.To[int32](8000)},
			// No pause: the first step holds at 25 % until promoted; the
			// last one ends the rollout as soon as it holds.
			Steps: []rolloutsv1.Step{{Weight: 25}, {Weight: 100, Pause: ptr.To(rolloutsv1.Duration("0s"))}},
		},
	}))
	midRollout := map[string]int64{stable: 75, canary: 25}
	for _, r := range []string{routeName, unlistedRoute, movedRoute} {
		h.waitFor(r+" at 75/25", h.weightsAre(r, "gpt4", midRollout))
	}

	t.Run("mid-rollout", func(t *testing.T) {
		live := h.live(routeName)
		if annotation(live, rolloutsv1.AnnotationRuleOwners) == "" {
			t.Fatalf("the operator did not record its rule: %v", live["metadata"])
		}
		// The operator's weights are a difference without the recipe...
		expectOutOfSync(t, "no ignore", normalizer(nil).compare(t, git, live))
		// ...and none with it, nor with the jq path narrowed to the rule.
		expectSynced(t, "recipe jq path", recipe(routeName).compare(t, git, live))
		narrow := normalizer{{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: routeName,
			JQPathExpressions: []string{narrowJQPath}}}
		expectSynced(t, "narrowed jq path", narrow.compare(t, git, live))

		// Git edits other than the managed weights still show.
		edits := map[string]func(m map[string]any){
			"a timeout": func(m map[string]any) {
				rule(t, m, "gpt4")["timeouts"].(map[string]any)["request"] = "180s"
			},
			"a match": func(m map[string]any) {
				match := rule(t, m, "gpt4")["matches"].([]any)[0].(map[string]any)
				match["headers"].([]any)[0].(map[string]any)["value"] = "gpt-4o"
			},
			"a filter": func(m map[string]any) {
				f := rule(t, m, "gpt4")["filters"].([]any)[0].(map[string]any)
				f["requestHeaderModifier"].(map[string]any)["set"].([]any)[0].(map[string]any)["value"] = "other"
			},
			"the unmanaged backend removed": func(m map[string]any) {
				spec := m["spec"].(map[string]any)
				spec["rules"] = spec["rules"].([]any)[:1]
			},
			"the stable backendRef removed": func(m map[string]any) {
				r := rule(t, m, "gpt4")
				r["backendRefs"] = r["backendRefs"].([]any)[1:]
			},
			"a backendRef port": func(m map[string]any) {
				backendRefs(t, m, "claude")[0].(map[string]any)["port"] = float64(8081)
			},
		}
		for what, edit := range edits {
			edited := deepCopy(t, git)
			edit(edited)
			expectOutOfSync(t, "Git edit of "+what+", recipe", recipe(routeName).compare(t, edited, live))
			expectOutOfSync(t, "Git edit of "+what+", narrowed", narrow.compare(t, edited, live))
		}

		// The recipe's path ignores every weight of the route, including
		// the rule no rollout manages; the narrowed path still shows it.
		unmanagedWeight := deepCopy(t, git)
		backendRefs(t, unmanagedWeight, "claude")[0].(map[string]any)["weight"] = float64(5)
		expectSynced(t, "Git edit of an unmanaged weight, recipe (hidden)", recipe(routeName).compare(t, unmanagedWeight, live))
		expectOutOfSync(t, "Git edit of an unmanaged weight, narrowed", narrow.compare(t, unmanagedWeight, live))

		// An ignoreDifferences entry for another route does not apply.
		expectOutOfSync(t, "entry naming another route", recipe("other-route").compare(t, git, live))
	})

	t.Run("json pointers", func(t *testing.T) {
		// Canary not listed in Git: the operator appended it. Neither the
		// README's pointer nor the jq path covers a whole backendRef.
		live := h.live(unlistedRoute)
		if got := len(backendRefs(t, live, "gpt4")); got != 2 {
			t.Fatalf("the operator should have appended the canary: %d backendRefs", got)
		}
		expectOutOfSync(t, "appended canary, pointers", pointers(unlistedRoute).compare(t, unlisted, live))
		expectOutOfSync(t, "appended canary, jq", recipe(unlistedRoute).compare(t, unlisted, live))

		// A rule inserted before the managed one: the pointers name rule 0,
		// which is now another rule; the jq path still matches.
		live = h.live(movedRoute)
		expectOutOfSync(t, "moved rule, pointers", pointers(movedRoute).compare(t, moved, live))
		expectSynced(t, "moved rule, jq", recipe(movedRoute).compare(t, moved, live))

		// The pointers do work where the positions hold (canary listed,
		// rule first): the failure above is positional.
		expectSynced(t, "rule in place, pointers", pointers(routeName).compare(t, git, h.live(routeName)))
	})

	t.Run("RespectIgnoreDifferences", func(t *testing.T) {
		live := h.live(routeName)
		// Without an ignore that applies, a sync writes Git's weights.
		gitWeights := map[string]int64{stable: 100, canary: 0}
		if got := weights(recipe("other-route").syncTarget(t, git, live), "gpt4"); !maps.Equal(got, gitWeights) {
			t.Fatalf("a sync without the recipe would write %v, want Git's %v", got, gitWeights)
		}
		// With it, the live weights are carried over. (Any ignored path
		// inside spec.rules does that: the merge patch of an atomic list
		// is the whole list.)
		target := recipe(routeName).syncTarget(t, git, live)
		if got := weights(target, "gpt4"); !maps.Equal(got, midRollout) {
			t.Fatalf("the sync would write %v, want the live %v", got, midRollout)
		}
		if got, want := string(toJSON(t, target["spec"].(map[string]any)["rules"])), string(toJSON(t, live["spec"].(map[string]any)["rules"])); got != want {
			t.Errorf("the sync target's rules are not the live rules:\n got %s\nwant %s", got, want)
		}
		h.apply(target)
		if got := weights(h.live(routeName), "gpt4"); !maps.Equal(got, midRollout) {
			t.Fatalf("after the sync: %v, want %v", got, midRollout)
		}
		// The sync applied the live rules, with the values the API server
		// filled in, and kubectl apply recorded them as the last-applied
		// configuration: from now on the diff keeps them, and a Git route
		// that leaves them out differs from live.
		expectOutOfSync(t, "Git without the server's defaults, after the sync", recipe(routeName).compare(t, git, h.live(routeName)))
		// Git with the defaults written out is in sync again, and stays so
		// across further syncs.
		git = withDefaults(t, git)
		expectSynced(t, "Git with the defaults, after the sync", recipe(routeName).compare(t, git, h.live(routeName)))
		h.apply(recipe(routeName).syncTarget(t, git, h.live(routeName)))
		if got := weights(h.live(routeName), "gpt4"); !maps.Equal(got, midRollout) {
			t.Fatalf("after the second sync: %v, want %v", got, midRollout)
		}
		expectSynced(t, "Git with the defaults, after a second sync", recipe(routeName).compare(t, git, h.live(routeName)))

		// The cost (README point 3): rules are an atomic list, so the
		// target carries the live rules whole and a Git edit of the
		// managed rule is not applied; the route stays OutOfSync.
		edited := deepCopy(t, git)
		rule(t, edited, "gpt4")["timeouts"].(map[string]any)["request"] = "180s"
		target = recipe(routeName).syncTarget(t, edited, h.live(routeName))
		if got := rule(t, target, "gpt4")["timeouts"].(map[string]any)["request"]; got != "120s" {
			t.Errorf("timeout in the sync target: %v, want the live 120s", got)
		}
		h.apply(target)
		if got := rule(t, h.live(routeName), "gpt4")["timeouts"].(map[string]any)["request"]; got != "120s" {
			t.Errorf("timeout after the sync: %v, want the live 120s", got)
		}
		expectOutOfSync(t, "timeout edit after a RespectIgnoreDifferences sync", recipe(routeName).compare(t, edited, h.live(routeName)))
		h.apply(recipe(routeName).syncTarget(t, git, h.live(routeName))) // back to the Git state
		expectSynced(t, "back to Git", recipe(routeName).compare(t, git, h.live(routeName)))
	})

	t.Run("variant without RespectIgnoreDifferences", func(t *testing.T) {
		// ApplyOutOfSyncOnly applies the route only when it differs beyond
		// weights, i.e. on a Git edit, and then writes Git's weights.
		edited := deepCopy(t, git)
		rule(t, edited, "gpt4")["timeouts"].(map[string]any)["request"] = "180s"
		expectOutOfSync(t, "timeout edit", recipe(routeName).compare(t, edited, h.live(routeName)))
		h.apply(edited)
		// The operator puts its weights back; the edit stays.
		h.waitFor("the operator to restore 75/25", h.weightsAre(routeName, "gpt4", midRollout))
		live := h.live(routeName)
		if got := rule(t, live, "gpt4")["timeouts"].(map[string]any)["request"]; got != "180s" {
			t.Errorf("timeout after the sync: %v, want Git's 180s", got)
		}
		expectSynced(t, "after the sync and the correction", recipe(routeName).compare(t, edited, live))
		git = edited
	})

	t.Run("owned header route", func(t *testing.T) {
		ro := h.rollout()
		// The shape of the header route the operator creates for a step
		// with a match (controllers/headerroute.go; the controllers suite's
		// "Header-routed steps" checks the operator's own, here the test
		// writes one so that no operator runs): the rollout's child, same parentRefs,
		// the managed rule's matches plus a header, same filters and
		// timeouts, the canary as the only backend, and no Argo CD tracking
		// annotation or label.
		user := h.live(routeName)
		r := deepCopy(t, rule(t, user, "gpt4"))
		for _, m := range r["matches"].([]any) {
			mm := m.(map[string]any)
			headers, _ := mm["headers"].([]any)
			mm["headers"] = append(headers, map[string]any{"type": "Exact", "name": "x-ab-test-group", "value": "canary"})
		}
		r["backendRefs"] = []any{map[string]any{"name": canary, "port": float64(8000), "weight": float64(1)}}
		owned := map[string]any{
			"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
			"metadata": map[string]any{"name": "gpt4-header", "namespace": h.ns,
				"ownerReferences": []any{map[string]any{"apiVersion": rolloutsv1.GroupVersion.String(), "kind": "ModelRollout",
					"name": ro.Name, "uid": string(ro.UID), "controller": true, "blockOwnerDeletion": true}}},
			"spec": map[string]any{"parentRefs": user["spec"].(map[string]any)["parentRefs"], "rules": []any{r}},
		}
		h.must(h.c.Create(h.ctx, &unstructured.Unstructured{Object: owned}))
		ownedLive := h.live("gpt4-header")

		// The recipe's entry names the user's route: it does not apply to
		// the owned one.
		for _, e := range recipe(routeName) {
			if e.matches(ownedLive) {
				t.Errorf("the recipe's entry %+v applies to the owned route", e)
			}
		}
		// Argo CD would compare it only if it carried the app's tracking
		// annotation or label (it is not in Git); it carries neither.
		if annotation(ownedLive, "argocd.argoproj.io/tracking-id") != "" {
			t.Errorf("the owned route carries the tracking annotation")
		}
		if labels, _ := ownedLive["metadata"].(map[string]any)["labels"].(map[string]any); labels["app.kubernetes.io/instance"] != nil {
			t.Errorf("the owned route carries the tracking label")
		}

		// Were an entry to apply to it (one without a name, for every
		// HTTPRoute), the jq path removes its weight and nothing else.
		kindWide := normalizer{{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", JQPathExpressions: []string{recipeJQPath}}}
		normalized := kindWide.normalize(t, withoutServerFields(t, ownedLive))
		want := withoutServerFields(t, ownedLive)
		for _, ref := range backendRefs(t, want, "gpt4") {
			delete(ref.(map[string]any), "weight")
		}
		if got, w := string(toJSON(t, normalized)), string(toJSON(t, want)); got != w {
			t.Errorf("the jq path changed more than the weight of the owned route:\n got %s\nwant %s", got, w)
		}
		// ...and changes to it other than its weight still show.
		changed := deepCopy(t, ownedLive)
		backendRefs(t, changed, "gpt4")[0].(map[string]any)["name"] = stable
		expectOutOfSync(t, "owned route, backend changed, kind-wide entry", kindWide.compare(t, changed, ownedLive))

		// The user's route is still in sync next to it.
		expectSynced(t, "user route next to the owned route", recipe(routeName).compare(t, git, h.live(routeName)))
		h.must(h.c.Delete(h.ctx, &unstructured.Unstructured{Object: ownedLive}))
	})

	t.Run("finish", func(t *testing.T) {
		ro := h.rollout()
		ro.Annotations = map[string]string{rolloutsv1.AnnotationPromote: time.Now().UTC().Format(time.RFC3339)}
		h.must(h.c.Update(h.ctx, ro))
		h.waitFor("Succeeded", h.phase(rolloutsv1.PhaseSucceeded))
		done := map[string]int64{stable: 0, canary: 100}
		h.waitFor("canary at 100", h.weightsAre(routeName, "gpt4", done))
		live := h.live(routeName)

		// Finished in Git: the canary at 100, the old stable kept at 0 in
		// its place (the next canary). Nothing to sync.
		keep := deepCopy(t, git)
		refs := backendRefs(t, keep, "gpt4")
		refs[0].(map[string]any)["weight"] = float64(0)
		refs[1].(map[string]any)["weight"] = float64(100)
		expectSynced(t, "finished, old stable kept at 0", recipe(routeName).compare(t, keep, live))
		// The same with the two swapped is a real change: order counts in
		// an atomic list.
		swapped := deepCopy(t, keep)
		r := rule(t, swapped, "gpt4")
		r["backendRefs"] = []any{refs[1], refs[0]}
		expectOutOfSync(t, "finished, backendRefs reordered", recipe(routeName).compare(t, swapped, live))

		// The Git change of the finish, computed from the Git route by the
		// same code as `kubectl modelrollout finish --print`: the old
		// stable's backendRef removed from the managed rule, the canary at
		// 100. Before the operator finishes, it is a real difference.
		removed, _ := finish.Route(git, []rolloutsv1.RuleName{"gpt4"},
			rolloutsv1.BackendRef{Name: stable, Port: ptr.To[int32](8000)}, rolloutsv1.BackendRef{Name: canary, Port: ptr.To[int32](8000)})
		if n := len(backendRefs(t, removed, "gpt4")); n != 1 {
			t.Fatalf("the Git change keeps %d backendRefs in the managed rule, want 1", n)
		}
		expectOutOfSync(t, "finished in Git, old stable removed, before the operator's finish", recipe(routeName).compare(t, removed, live))

		// The ModelRollout from Git (stable v2, no canary): the operator
		// removes the old stable's backendRef from the managed rules of
		// every route, and goes Idle.
		ro = h.rollout()
		ro.Spec.Stable = *ro.Spec.Canary
		ro.Spec.Canary = nil
		h.must(h.c.Update(h.ctx, ro))
		h.waitFor("Idle", h.phase(rolloutsv1.PhaseIdle))
		for _, r := range []string{routeName, unlistedRoute, movedRoute} {
			h.waitFor(r+" without the old stable", h.weightsAre(r, "gpt4", map[string]int64{canary: 100}))
		}
		after := h.live(routeName)
		if annotation(after, rolloutsv1.AnnotationRuleOwners) != "" || annotation(after, rolloutsv1.AnnotationAppliedWeights) != "" {
			t.Errorf("the operator's annotations stay after the finish: %v", after["metadata"])
		}

		// The route as the operator leaves it is what Git holds: in sync
		// with the recipe, and without any ignore.
		expectSynced(t, "finished by the operator, Git change committed", recipe(routeName).compare(t, removed, after))
		expectSynced(t, "finished by the operator, Git change committed, no ignore", normalizer(nil).compare(t, removed, after))
		// Also for the route whose canary was not listed in Git (the
		// operator had appended it) and the one with a rule before the
		// managed one.
		for name, m := range map[string]map[string]any{unlistedRoute: unlisted, movedRoute: moved} {
			gitAfter, _ := finish.Route(m, []rolloutsv1.RuleName{"gpt4"},
				rolloutsv1.BackendRef{Name: stable, Port: ptr.To[int32](8000)}, rolloutsv1.BackendRef{Name: canary, Port: ptr.To[int32](8000)})
			if name == unlistedRoute {
				// Git listed only the stable: the finish names the canary.
				backendRefs(t, gitAfter, "gpt4")[0].(map[string]any)["name"] = canary
				backendRefs(t, gitAfter, "gpt4")[0].(map[string]any)["weight"] = float64(100)
			}
			expectSynced(t, name+" finished by the operator", recipe(name).compare(t, gitAfter, h.live(name)))
		}
		// Keeping the old stable in Git (the pre-finish habit) is now the
		// difference: the finish's Git change removes it.
		expectOutOfSync(t, "finished, Git still lists the old stable at 0", recipe(routeName).compare(t, keep, after))

		// No fight: a RespectIgnoreDifferences sync (selfHeal) applies
		// exactly the live rules, the operator writes nothing back, and
		// the route stays in sync.
		target := recipe(routeName).syncTarget(t, removed, after)
		if got, want := string(toJSON(t, target["spec"].(map[string]any)["rules"])), string(toJSON(t, after["spec"].(map[string]any)["rules"])); got != want {
			t.Errorf("the sync target's rules are not the live rules:\n got %s\nwant %s", got, want)
		}
		h.apply(target)
		synced := h.live(routeName)
		if got := weights(synced, "gpt4"); !maps.Equal(got, map[string]int64{canary: 100}) {
			t.Errorf("after the sync: %v", got)
		}
		expectSynced(t, "finished and synced", recipe(routeName).compare(t, removed, synced))
		// A sync without the option (or kubectl apply) writes Git as is:
		// the same route.
		h.apply(removed)
		if got := weights(h.live(routeName), "gpt4"); !maps.Equal(got, map[string]int64{canary: 100}) {
			t.Errorf("after the plain sync: %v", got)
		}
		expectSynced(t, "finished and synced, no ignore", normalizer(nil).compare(t, removed, h.live(routeName)))
		if p := h.rollout().Status.Phase; p != rolloutsv1.PhaseIdle {
			t.Errorf("the rollout is %s after the syncs, want Idle", p)
		}
	})
}

// withDefaults returns the route with the values the API server fills in
// written out: group and kind of backendRefs and parentRefs, the type of
// header matches, the path of a match without one.
func withDefaults(t testing.TB, route map[string]any) map[string]any {
	out := deepCopy(t, route)
	spec := out["spec"].(map[string]any)
	for _, p := range spec["parentRefs"].([]any) {
		pm := p.(map[string]any)
		setDefault(pm, "group", "gateway.networking.k8s.io")
		setDefault(pm, "kind", "Gateway")
	}
	for _, r := range spec["rules"].([]any) {
		rm := r.(map[string]any)
		for _, b := range rm["backendRefs"].([]any) {
			bm := b.(map[string]any)
			setDefault(bm, "group", "")
			setDefault(bm, "kind", "Service")
		}
		matches, _ := rm["matches"].([]any)
		for _, m := range matches {
			mm := m.(map[string]any)
			setDefault(mm, "path", map[string]any{"type": "PathPrefix", "value": "/"})
			headers, _ := mm["headers"].([]any)
			for _, hd := range headers {
				setDefault(hd.(map[string]any), "type", "Exact")
			}
		}
	}
	return out
}

func setDefault(m map[string]any, key string, v any) {
	if _, ok := m[key]; !ok {
		m[key] = v
	}
}

// TestReadmeStatesTheTestedPaths keeps the README's recipe and this test on
// the same paths and options.
func TestReadmeStatesTheTestedPaths(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "argocd", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for _, s := range []string{"- " + recipeJQPath, readmePointer, "RespectIgnoreDifferences=true",
		"group: gateway.networking.k8s.io", "kind: HTTPRoute", "name: " + routeName, narrowJQPath,
		"- /spec/replicas", "kind: Deployment", "group: apps"} {
		if !strings.Contains(readme, s) {
			t.Errorf("config/argocd/README.md does not state %q", s)
		}
	}
}
