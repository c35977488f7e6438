package argocdupstream

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/argo"
	argodiff "github.com/argoproj/argo-cd/v3/util/argo/diff"
	"github.com/argoproj/argo-cd/v3/util/argo/normalizers"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
)

// recipe is the application of the recipe: its ignoreDifferences entry, one
// per managed route.
func recipe(routes ...string) application {
	var a application
	for _, r := range routes {
		a.IgnoreDifferences = append(a.IgnoreDifferences, v1alpha1.ResourceIgnoreDifferences{
			Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: r, JQPathExpressions: []string{recipeJQPath}})
	}
	return a
}

// narrowed is the recipe with the jq path narrowed to the managed rule.
func narrowed(route string) application {
	return application{IgnoreDifferences: []v1alpha1.ResourceIgnoreDifferences{{
		Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: route, JQPathExpressions: []string{narrowJQPath}}}}
}

// pointers is the positional ignore the README warns about, written for
// rule 0 when the managed rule was first.
func pointers(route string) application {
	return application{IgnoreDifferences: []v1alpha1.ResourceIgnoreDifferences{{
		Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: route,
		JSONPointers: []string{"/spec/rules/0/backendRefs/0/weight", readmePointer}}}}
}

// noIgnore is an application without ignoreDifferences.
var noIgnore = application{}

func expectSynced(t *testing.T, what string, c comparison) {
	t.Helper()
	if c.Modified {
		t.Errorf("%s: want Synced, got %s", what, c)
	}
}

func expectOutOfSync(t *testing.T, what string, c comparison) {
	t.Helper()
	if !c.Modified {
		t.Errorf("%s: want OutOfSync, got Synced (live %s)", what, c.NormalizedLive)
	}
}

// edit returns a copy of a Git object changed by f.
func edit(obj *unstructured.Unstructured, f func(m map[string]any)) *unstructured.Unstructured {
	c := obj.DeepCopy()
	f(c.Object)
	return c
}

// renamed returns a Git object under another name, with its tracking
// annotation.
func renamed(t *testing.T, obj *unstructured.Unstructured, name string) *unstructured.Unstructured {
	t.Helper()
	c := obj.DeepCopy()
	c.SetName(name)
	raw, err := json.Marshal(c.Object)
	must(t, err)
	return gitObject(t, c.GetNamespace(), string(raw))
}

// ruleOf returns the named rule of obj (a map inside obj: edits change obj).
func ruleOf(t *testing.T, obj map[string]any, name string) map[string]any {
	t.Helper()
	for _, r := range obj["spec"].(map[string]any)["rules"].([]any) {
		if rm := r.(map[string]any); rm["name"] == name {
			return rm
		}
	}
	t.Fatalf("no rule %q", name)
	return nil
}

func refsOf(t *testing.T, obj map[string]any, rule string) []any {
	t.Helper()
	return ruleOf(t, obj, rule)["backendRefs"].([]any)
}

func rulesJSON(t *testing.T, obj *unstructured.Unstructured) string {
	t.Helper()
	rules, _, _ := unstructured.NestedSlice(obj.Object, "spec", "rules")
	raw, err := json.Marshal(rules)
	must(t, err)
	return string(raw)
}

func timeoutOf(t *testing.T, obj *unstructured.Unstructured, rule string) any {
	t.Helper()
	return ruleOf(t, obj.Object, rule)["timeouts"].(map[string]any)["request"]
}

// withDefaults returns the route with the values the API server fills in
// written out, as the README asks: group and kind of backendRefs and
// parentRefs, the type of header matches, the path of a match without one.
func withDefaults(obj *unstructured.Unstructured) *unstructured.Unstructured {
	return edit(obj, func(m map[string]any) {
		spec := m["spec"].(map[string]any)
		for _, p := range spec["parentRefs"].([]any) {
			setDefault(p.(map[string]any), "group", "gateway.networking.k8s.io")
			setDefault(p.(map[string]any), "kind", "Gateway")
		}
		for _, r := range spec["rules"].([]any) {
			rm := r.(map[string]any)
			for _, b := range rm["backendRefs"].([]any) {
				setDefault(b.(map[string]any), "group", "")
				setDefault(b.(map[string]any), "kind", "Service")
			}
			matches, _ := rm["matches"].([]any)
			for _, mt := range matches {
				mm := mt.(map[string]any)
				setDefault(mm, "path", map[string]any{"type": "PathPrefix", "value": "/"})
				headers, _ := mm["headers"].([]any)
				for _, h := range headers {
					setDefault(h.(map[string]any), "type", "Exact")
				}
			}
		}
	})
}

func setDefault(m map[string]any, key string, v any) {
	if _, ok := m[key]; !ok {
		m[key] = v
	}
}

// finishPrint runs `kubectl modelrollout finish <name> --print` and returns
// the Git change it prints, by kind and name, as Git objects of the
// application.
func finishPrint(t *testing.T, ns, name string) map[string]*unstructured.Unstructured {
	t.Helper()
	cmd := exec.Command(pluginBin, "--kubeconfig", kubeconfig, "-n", ns, "finish", name, "--print")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	docs := map[string]*unstructured.Unstructured{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		u := gitObject(t, ns, doc)
		docs[u.GetKind()+"/"+u.GetName()] = u
	}
	return docs
}

// TestRecipe runs the recipe through a rollout with Argo CD's diff and
// sync: the routes synced from Git, the operator's weights mid-rollout,
// syncs with and without RespectIgnoreDifferences, an owned header route
// next to them, and the finish.
func TestRecipe(t *testing.T) {
	cluster(t)
	t.Parallel()
	ns := namespace(t, "recipe")
	backend(t, ns, stableName, 8000, true)
	backend(t, ns, canaryName, 8000, true)
	backend(t, ns, "tgi-claude", 8080, true)

	git := gitObject(t, ns, gitRoute)
	unlisted := renamed(t, edit(git, func(m map[string]any) {
		r := ruleOf(t, m, "gpt4")
		r["backendRefs"] = r["backendRefs"].([]any)[:1]
	}), unlistedRoute)
	moved := renamed(t, edit(git, func(m map[string]any) {
		spec := m["spec"].(map[string]any)
		first := map[string]any{"name": "health",
			"matches":     []any{map[string]any{"path": map[string]any{"type": "Exact", "value": "/health"}}},
			"backendRefs": []any{map[string]any{"name": "tgi-claude", "port": int64(8080), "weight": int64(1)}}}
		spec["rules"] = append([]any{first}, spec["rules"].([]any)...)
	}), movedRoute)
	for _, g := range []*unstructured.Unstructured{git, unlisted, moved} {
		noIgnore.sync(t, g, false)
	}

	// Before any rollout the Git routes are in sync with or without the
	// recipe: the comparison does not report the server's defaults.
	for _, g := range []*unstructured.Unstructured{git, unlisted, moved} {
		expectSynced(t, g.GetName()+" as synced, no ignore", noIgnore.compare(t, g, live(t, routeGVR, ns, g.GetName())))
		expectSynced(t, g.GetName()+" as synced, recipe", recipe(g.GetName()).compare(t, g, live(t, routeGVR, ns, g.GetName())))
	}

	// The ModelRollout is in Git too.
	noIgnore.sync(t, gitObject(t, ns, `
apiVersion: rollouts.modelrollout.io/v1alpha1
kind: ModelRollout
metadata: {name: gpt4}
spec:
  routes:
  - {name: model-header-routing, rules: [gpt4]}
  - {name: unlisted-canary, rules: [gpt4]}
  - {name: moved-rule, rules: [gpt4]}
  stable: {name: vllm-gpt4-v1, port: 8000}
  canary: {name: vllm-gpt4-v2, port: 8000}
  # No pause: the first step holds at 25 % until promoted; the last one
  # ends the rollout as soon as it holds.
  steps:
  - {weight: 25}
  - {weight: 100, pause: 0s}
`), false)
	midRollout := split(25)
	for _, r := range []string{routeName, unlistedRoute, movedRoute} {
		waitWeights(t, ns, r, "gpt4", midRollout)
	}
	route := func(name string) *unstructured.Unstructured { return live(t, routeGVR, ns, name) }

	t.Run("mid-rollout", func(t *testing.T) {
		l := route(routeName)
		if annotationOf(l, "rollouts.modelrollout.io/rule-owners") == "" {
			t.Fatalf("the operator did not record its rule: %v", l.GetAnnotations())
		}
		// The operator's weights are a difference without the recipe...
		expectOutOfSync(t, "no ignore", noIgnore.compare(t, git, l))
		// ...and none with it, nor with the jq path narrowed to the rule.
		expectSynced(t, "recipe jq path", recipe(routeName).compare(t, git, l))
		expectSynced(t, "narrowed jq path", narrowed(routeName).compare(t, git, l))

		// Git edits other than the managed weights still show.
		edits := map[string]func(m map[string]any){
			"a timeout": func(m map[string]any) { ruleOf(t, m, "gpt4")["timeouts"].(map[string]any)["request"] = "180s" },
			"a match": func(m map[string]any) {
				match := ruleOf(t, m, "gpt4")["matches"].([]any)[0].(map[string]any)
				match["headers"].([]any)[0].(map[string]any)["value"] = "gpt-4o"
			},
			"a filter": func(m map[string]any) {
				f := ruleOf(t, m, "gpt4")["filters"].([]any)[0].(map[string]any)
				f["requestHeaderModifier"].(map[string]any)["set"].([]any)[0].(map[string]any)["value"] = "other"
			},
			"the unmanaged rule removed": func(m map[string]any) {
				spec := m["spec"].(map[string]any)
				spec["rules"] = spec["rules"].([]any)[:1]
			},
			"the stable backendRef removed": func(m map[string]any) {
				r := ruleOf(t, m, "gpt4")
				r["backendRefs"] = r["backendRefs"].([]any)[1:]
			},
			"a backendRef port": func(m map[string]any) { refsOf(t, m, "claude")[0].(map[string]any)["port"] = int64(8081) },
		}
		for what, f := range edits {
			edited := edit(git, f)
			expectOutOfSync(t, "Git edit of "+what+", recipe", recipe(routeName).compare(t, edited, l))
			expectOutOfSync(t, "Git edit of "+what+", narrowed", narrowed(routeName).compare(t, edited, l))
		}

		// The recipe's path ignores every weight of the route, including
		// the rule no rollout manages; the narrowed path still shows it.
		unmanagedWeight := edit(git, func(m map[string]any) { refsOf(t, m, "claude")[0].(map[string]any)["weight"] = int64(5) })
		expectSynced(t, "Git edit of an unmanaged weight, recipe (hidden)", recipe(routeName).compare(t, unmanagedWeight, l))
		expectOutOfSync(t, "Git edit of an unmanaged weight, narrowed", narrowed(routeName).compare(t, unmanagedWeight, l))

		// An ignoreDifferences entry for another route does not apply.
		expectOutOfSync(t, "entry naming another route", recipe("other-route").compare(t, git, l))
	})

	t.Run("json pointers", func(t *testing.T) {
		// Canary not listed in Git: the operator appended it. Neither the
		// README's pointer nor the jq path covers a whole backendRef.
		l := route(unlistedRoute)
		if got := len(refsOf(t, l.Object, "gpt4")); got != 2 {
			t.Fatalf("the operator should have appended the canary: %d backendRefs", got)
		}
		expectOutOfSync(t, "appended canary, pointers", pointers(unlistedRoute).compare(t, unlisted, l))
		expectOutOfSync(t, "appended canary, jq", recipe(unlistedRoute).compare(t, unlisted, l))

		// A rule inserted before the managed one: the pointers name rule 0,
		// which is now another rule; the jq path still matches.
		l = route(movedRoute)
		expectOutOfSync(t, "moved rule, pointers", pointers(movedRoute).compare(t, moved, l))
		expectSynced(t, "moved rule, jq", recipe(movedRoute).compare(t, moved, l))

		// The pointers do work where the positions hold (canary listed,
		// rule first): the failure above is positional.
		expectSynced(t, "rule in place, pointers", pointers(routeName).compare(t, git, route(routeName)))

		// A sync of the route whose canary Git does not list (without
		// RespectIgnoreDifferences) removes the canary from the rule; the
		// operator puts it back.
		generation := route(unlistedRoute).GetGeneration()
		recipe(unlistedRoute).sync(t, unlisted, false)
		waitWeights(t, ns, unlistedRoute, "gpt4", midRollout)
		if g := route(unlistedRoute).GetGeneration(); g < generation+2 {
			t.Errorf("route generation %d after the sync, was %d: the sync did not change the rule, or the operator did not change it back", g, generation)
		}
		expectOutOfSync(t, "appended canary, after a sync and the correction", recipe(unlistedRoute).compare(t, unlisted, route(unlistedRoute)))
	})

	t.Run("RespectIgnoreDifferences", func(t *testing.T) {
		l := route(routeName)
		// Without an ignore that applies, a sync writes Git's weights.
		if got := weightsOf(recipe("other-route").syncTarget(t, git, l, true), "gpt4"); !maps.Equal(got, split(0)) {
			t.Fatalf("a sync without the recipe would write %v, want Git's %v", got, split(0))
		}
		// With it, the live weights are carried over; the rules are an
		// atomic list, so the target carries the live rules whole.
		target := recipe(routeName).syncTarget(t, git, l, true)
		if got := weightsOf(target, "gpt4"); !maps.Equal(got, midRollout) {
			t.Fatalf("the sync would write %v, want the live %v", got, midRollout)
		}
		if got, want := rulesJSON(t, target), rulesJSON(t, l); got != want {
			t.Errorf("the sync target's rules are not the live rules:\n got %s\nwant %s", got, want)
		}
		recipe(routeName).sync(t, git, true)
		if got := weightsOf(route(routeName), "gpt4"); !maps.Equal(got, midRollout) {
			t.Fatalf("after the sync: %v, want %v", got, midRollout)
		}
		// The sync applied the live rules, with the values the API server
		// filled in, and kubectl apply recorded them as the last-applied
		// configuration: from now on the diff keeps them, and a Git route
		// that leaves them out differs from live.
		expectOutOfSync(t, "Git without the server's defaults, after the sync", recipe(routeName).compare(t, git, route(routeName)))
		// Git with the defaults written out is in sync again, and stays so
		// across further syncs.
		git = withDefaults(git)
		expectSynced(t, "Git with the defaults, after the sync", recipe(routeName).compare(t, git, route(routeName)))
		recipe(routeName).sync(t, git, true)
		if got := weightsOf(route(routeName), "gpt4"); !maps.Equal(got, midRollout) {
			t.Fatalf("after the second sync: %v, want %v", got, midRollout)
		}
		expectSynced(t, "Git with the defaults, after a second sync", recipe(routeName).compare(t, git, route(routeName)))

		// The cost (README point 3): a Git edit of the managed rule is not
		// applied; the route stays OutOfSync.
		edited := edit(git, func(m map[string]any) { ruleOf(t, m, "gpt4")["timeouts"].(map[string]any)["request"] = "180s" })
		if got := timeoutOf(t, recipe(routeName).syncTarget(t, edited, route(routeName), true), "gpt4"); got != "120s" {
			t.Errorf("timeout in the sync target: %v, want the live 120s", got)
		}
		recipe(routeName).sync(t, edited, true)
		if got := timeoutOf(t, route(routeName), "gpt4"); got != "120s" {
			t.Errorf("timeout after the sync: %v, want the live 120s", got)
		}
		expectOutOfSync(t, "timeout edit after a RespectIgnoreDifferences sync", recipe(routeName).compare(t, edited, route(routeName)))
		expectSynced(t, "Git unedited", recipe(routeName).compare(t, git, route(routeName)))
	})

	t.Run("variant without RespectIgnoreDifferences", func(t *testing.T) {
		// ApplyOutOfSyncOnly applies the route only when it differs beyond
		// weights, i.e. on a Git edit, and then writes Git's weights.
		edited := edit(git, func(m map[string]any) { ruleOf(t, m, "gpt4")["timeouts"].(map[string]any)["request"] = "180s" })
		expectOutOfSync(t, "timeout edit", recipe(routeName).compare(t, edited, route(routeName)))
		recipe(routeName).sync(t, edited, false)
		// The operator puts its weights back; the edit stays.
		waitWeights(t, ns, routeName, "gpt4", midRollout)
		l := route(routeName)
		if got := timeoutOf(t, l, "gpt4"); got != "180s" {
			t.Errorf("timeout after the sync: %v, want Git's 180s", got)
		}
		expectSynced(t, "after the sync and the correction", recipe(routeName).compare(t, edited, l))
		git = edited
	})

	t.Run("owned header route", func(t *testing.T) {
		ro := live(t, rolloutGVR, ns, "gpt4")
		user := route(routeName)
		// The shape of the header route the operator creates for a step
		// with a match (controllers/headerroute.go): the rollout's child,
		// same parentRefs, the managed rule's matches plus a header, the
		// canary as the only backend, and no Argo CD tracking annotation or
		// label.
		r := ruleOf(t, user.DeepCopy().Object, "gpt4")
		for _, m := range r["matches"].([]any) {
			mm := m.(map[string]any)
			headers, _ := mm["headers"].([]any)
			mm["headers"] = append(headers, map[string]any{"type": "Exact", "name": "x-ab-test-group", "value": "canary"})
		}
		r["backendRefs"] = []any{map[string]any{"name": canaryName, "port": int64(8000), "weight": int64(1)}}
		owned := create(t, ns, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
			"metadata": map[string]any{"name": "gpt4-header",
				"ownerReferences": []any{map[string]any{"apiVersion": "rollouts.modelrollout.io/v1alpha1", "kind": "ModelRollout",
					"name": ro.GetName(), "uid": string(ro.GetUID()), "controller": true, "blockOwnerDeletion": true}}},
			"spec": map[string]any{"parentRefs": user.Object["spec"].(map[string]any)["parentRefs"], "rules": []any{r}},
		}})

		// Argo CD counts a live resource as the application's only by its
		// tracking annotation or label: the user's route is, the owned one
		// is not.
		labelKey, err := settingsMgr.GetAppInstanceLabelKey()
		must(t, err)
		tracking, err := settingsMgr.GetTrackingMethod()
		must(t, err)
		rt := argo.NewResourceTracking()
		if got := rt.GetAppName(user, labelKey, v1alpha1.TrackingMethod(tracking), ""); got != appName {
			t.Errorf("Argo CD tracks the user's route as %q, want %q", got, appName)
		}
		if got := rt.GetAppName(owned, labelKey, v1alpha1.TrackingMethod(tracking), ""); got != "" {
			t.Errorf("Argo CD tracks the owned route as part of %q", got)
		}
		// The recipe's entry names the user's route: it does not apply to
		// the owned one.
		idc := argodiff.NewIgnoreDiffConfig(recipe(routeName).IgnoreDifferences, nil)
		if ok, _ := idc.HasIgnoreDifference("gateway.networking.k8s.io", "HTTPRoute", owned.GetName(), ns); ok {
			t.Errorf("the recipe's entry applies to the owned route")
		}
		// Were an entry to apply to it (one without a name, for every
		// HTTPRoute), the jq path removes its weight and nothing else...
		kindWide := application{IgnoreDifferences: []v1alpha1.ResourceIgnoreDifferences{{
			Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", JQPathExpressions: []string{recipeJQPath}}}}
		n, err := normalizers.NewIgnoreNormalizer(kindWide.IgnoreDifferences, nil, normalizers.IgnoreNormalizerOpts{})
		must(t, err)
		normalized := owned.DeepCopy()
		must(t, n.Normalize(normalized))
		want := owned.DeepCopy()
		for _, ref := range refsOf(t, want.Object, "gpt4") {
			delete(ref.(map[string]any), "weight")
		}
		if got, w := mustJSON(t, normalized), mustJSON(t, want); got != w {
			t.Errorf("the jq path changed more than the weight of the owned route:\n got %s\nwant %s", got, w)
		}
		// ...and changes to it other than its weight still show.
		changed := edit(owned, func(m map[string]any) { refsOf(t, m, "gpt4")[0].(map[string]any)["name"] = stableName })
		expectOutOfSync(t, "owned route, backend changed, kind-wide entry", kindWide.compare(t, changed, owned))

		// The user's route is still in sync next to it.
		expectSynced(t, "user route next to the owned route", recipe(routeName).compare(t, git, route(routeName)))
	})

	t.Run("finish", func(t *testing.T) {
		mergePatch(t, rolloutGVR, ns, "gpt4", fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, annPromote, time.Now().UTC().Format(time.RFC3339)))
		waitRollout(t, ns, "gpt4", "Succeeded", -2)
		waitWeights(t, ns, routeName, "gpt4", split(100))
		l := route(routeName)

		// Finished in Git: the canary at 100, the old stable kept at 0 in
		// its place (the next canary). Nothing to sync.
		keep := edit(git, func(m map[string]any) {
			refs := refsOf(t, m, "gpt4")
			refs[0].(map[string]any)["weight"] = int64(0)
			refs[1].(map[string]any)["weight"] = int64(100)
		})
		expectSynced(t, "finished, old stable kept at 0", recipe(routeName).compare(t, keep, l))
		// The same with the two swapped is a real change: order counts in
		// an atomic list.
		swapped := edit(keep, func(m map[string]any) {
			r := ruleOf(t, m, "gpt4")
			refs := r["backendRefs"].([]any)
			r["backendRefs"] = []any{refs[1], refs[0]}
		})
		expectOutOfSync(t, "finished, backendRefs reordered", recipe(routeName).compare(t, swapped, l))

		// The Git change of the finish, as `kubectl modelrollout finish
		// --print` prints it: the old stable's backendRef removed from the
		// managed rule, the canary at 100. Before the operator finishes, it
		// is a real difference.
		change := finishPrint(t, ns, "gpt4")
		removed := change["HTTPRoute/"+routeName]
		if removed == nil || len(change) != 4 {
			t.Fatalf("finish --print printed %v, want the rollout and its three routes", slices.Sorted(maps.Keys(change)))
		}
		if got := weightsOf(removed, "gpt4"); !maps.Equal(got, map[string]int64{canaryName: 100}) {
			t.Fatalf("the Git change of the managed rule: %v, want the canary alone at 100", got)
		}
		expectOutOfSync(t, "finished in Git, old stable removed, before the operator's finish", recipe(routeName).compare(t, removed, l))

		// Argo CD syncs the ModelRollout of the Git change (stable v2, no
		// canary): the operator removes the old stable's backendRef from
		// the managed rules of every route, and goes Idle.
		noIgnore.sync(t, change["ModelRollout/gpt4"], false)
		waitRollout(t, ns, "gpt4", "Idle", -2)
		for _, r := range []string{routeName, unlistedRoute, movedRoute} {
			waitWeights(t, ns, r, "gpt4", map[string]int64{canaryName: 100})
		}
		after := route(routeName)
		for _, k := range []string{"rollouts.modelrollout.io/rule-owners", "rollouts.modelrollout.io/applied-weights"} {
			if annotationOf(after, k) != "" {
				t.Errorf("the operator's annotation %s stays after the finish", k)
			}
		}

		// The route as the operator leaves it is what Git holds: in sync
		// with the recipe, and without any ignore; also for the route
		// whose canary Git did not list and the one with a rule before the
		// managed one.
		expectSynced(t, "finished by the operator, Git change committed", recipe(routeName).compare(t, removed, after))
		expectSynced(t, "finished by the operator, Git change committed, no ignore", noIgnore.compare(t, removed, after))
		for _, g := range []*unstructured.Unstructured{unlisted, moved} {
			expectSynced(t, g.GetName()+" finished by the operator", recipe(g.GetName()).compare(t, change["HTTPRoute/"+g.GetName()], route(g.GetName())))
		}
		// Keeping the old stable in Git (the pre-finish habit) is now the
		// difference.
		expectOutOfSync(t, "finished, Git still lists the old stable at 0", recipe(routeName).compare(t, keep, after))

		// No fight: a RespectIgnoreDifferences sync (selfHeal) applies
		// exactly the live rules, and the route stays in sync.
		if got, want := rulesJSON(t, recipe(routeName).syncTarget(t, removed, after, true)), rulesJSON(t, after); got != want {
			t.Errorf("the sync target's rules are not the live rules:\n got %s\nwant %s", got, want)
		}
		recipe(routeName).sync(t, removed, true)
		if got := weightsOf(route(routeName), "gpt4"); !maps.Equal(got, map[string]int64{canaryName: 100}) {
			t.Errorf("after the sync: %v", got)
		}
		expectSynced(t, "finished and synced", recipe(routeName).compare(t, removed, route(routeName)))
		// A sync without the option writes Git as is: the same route.
		noIgnore.sync(t, removed, false)
		if got := weightsOf(route(routeName), "gpt4"); !maps.Equal(got, map[string]int64{canaryName: 100}) {
			t.Errorf("after the plain sync: %v", got)
		}
		expectSynced(t, "finished and synced, no ignore", noIgnore.compare(t, removed, route(routeName)))
		if s := stateOf(live(t, rolloutGVR, ns, "gpt4")); s.Phase != "Idle" {
			t.Errorf("the rollout is %s after the syncs, want Idle", s)
		}
	})
}

func mustJSON(t *testing.T, obj *unstructured.Unstructured) string {
	t.Helper()
	raw, err := json.Marshal(obj.Object)
	must(t, err)
	return string(raw)
}

// TestReadmeStatesTheTestedPaths keeps the README's recipe and these tests
// on the same paths and options.
func TestReadmeStatesTheTestedPaths(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "config", "argocd", "README.md"))
	must(t, err)
	readme := string(raw)
	for _, s := range []string{"- " + recipeJQPath, readmePointer, "RespectIgnoreDifferences=true",
		"group: gateway.networking.k8s.io", "kind: HTTPRoute", "name: " + routeName, narrowJQPath,
		"- /spec/replicas", "kind: Deployment", "group: apps"} {
		if !strings.Contains(readme, s) {
			t.Errorf("config/argocd/README.md does not state %q", s)
		}
	}
}
