package argocd

import (
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// gitDeployment is a model Deployment as Git holds it, replicas included.
const gitDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: 3
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
      - name: vllm
        image: vllm/vllm-openai:v0.11.0
`

// replicasRecipe is the ignoreDifferences entry of config/argocd/README.md
// ("Workload handoff and replicas").
func replicasRecipe(name string) normalizer {
	return normalizer{{Group: "apps", Kind: "Deployment", Name: name, JSONPointers: []string{"/spec/replicas"}}}
}

// applyObject is h.apply for any kind: kubectl apply's create, or its
// three-way JSON merge patch (the same for a scalar as the strategic one).
func (h *harness) applyObject(manifest map[string]any) {
	h.t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": manifest["apiVersion"], "kind": manifest["kind"]}}
	meta := manifest["metadata"].(map[string]any)
	err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: meta["name"].(string)}, u)
	if apierrors.IsNotFound(err) {
		h.must(h.c.Create(h.ctx, &unstructured.Unstructured{Object: withLastApplied(h.t, manifest)}, client.FieldOwner("kubectl-client-side-apply")))
		return
	}
	h.must(err)
	h.must(h.c.Patch(h.ctx, u, client.RawPatch(types.MergePatchType, applyPatch(h.t, manifest, u.Object)), client.FieldOwner("kubectl-client-side-apply")))
}

func (h *harness) liveObject(apiVersion, kind, name string) map[string]any {
	h.t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind}}
	h.must(h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, u))
	return u.Object
}

func (h *harness) gitObject(text string) map[string]any {
	h.t.Helper()
	m := map[string]any{}
	h.must(yaml.Unmarshal([]byte(text), &m))
	m = fromJSON(h.t, toJSON(h.t, m))
	meta := m["metadata"].(map[string]any)
	meta["namespace"] = h.ns
	meta["annotations"] = map[string]any{"argocd.argoproj.io/tracking-id": fmt.Sprintf("%s:apps/Deployment:%s/%s", appName, h.ns, meta["name"])}
	return m
}

// TestReplicasRecipe runs the workload handoff of the real operator on a
// Deployment applied from Git, and checks the recipe's replicas ignore: the
// scale-down does not make it OutOfSync, a RespectIgnoreDifferences sync
// target carries the live 0, and other Git edits still show. (What a sync
// then writes for a built-in kind follows its strategic merge patch, which
// this model, written for custom resources, does not reproduce.)
func TestReplicasRecipe(t *testing.T) {
	h := start(t)
	h.backend(stable, 8000)
	h.backend(canary, 8000)
	h.apply(h.manifest(gitRoute))
	git := h.gitObject(fmt.Sprintf(gitDeployment, stable))
	h.applyObject(git)
	h.applyObject(h.gitObject(fmt.Sprintf(gitDeployment, canary)))
	expectSynced(t, "Deployment as applied", replicasRecipe(stable).compare(t, git, h.liveObject("apps/v1", "Deployment", stable)))

	h.must(h.c.Create(h.ctx, &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "gpt4", Namespace: h.ns},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes:         []rolloutsv1.RouteTarget{{Name: routeName, Rules: []rolloutsv1.RuleName{"gpt4"}}},
			Stable:         rolloutsv1.BackendRef{Name: stable, Port: ptr.To[int32](8000), WorkloadRef: &rolloutsv1.WorkloadRef{Name: stable}},
			Canary:         &rolloutsv1.BackendRef{Name: canary, Port: ptr.To[int32](8000), WorkloadRef: &rolloutsv1.WorkloadRef{Name: canary}},
			Steps:          []rolloutsv1.Step{{Weight: 100, Pause: ptr.To(rolloutsv1.Duration("0s"))}},
			ScaleDownDelay: ptr.To(rolloutsv1.Duration("1s")),
		},
	}))
	h.waitFor("the old stable scaled to 0 by the operator", func() bool {
		replicas, _, _ := unstructured.NestedInt64(h.liveObject("apps/v1", "Deployment", stable), "spec", "replicas")
		return replicas == 0
	})

	t.Run("replicas", func(t *testing.T) {
		live := h.liveObject("apps/v1", "Deployment", stable)
		if got := annotation(live, rolloutsv1.AnnotationReplicasBeforeScaleDown); got != "3" {
			t.Errorf("annotation %s = %q, want 3", rolloutsv1.AnnotationReplicasBeforeScaleDown, got)
		}
		// Without the ignore, the scale-down is drift, and a sync would
		// scale the old version back up.
		expectOutOfSync(t, "scaled down, no ignore", normalizer(nil).compare(t, git, live))
		if r, _, _ := unstructured.NestedFloat64(normalizer(nil).syncTarget(t, git, live), "spec", "replicas"); r != 3 {
			t.Errorf("a sync without the ignore writes replicas %v, want Git's 3", r)
		}
		// With it: Synced (the annotation is not compared either), and a
		// RespectIgnoreDifferences sync keeps 0.
		expectSynced(t, "scaled down, replicas ignored", replicasRecipe(stable).compare(t, git, live))
		target := replicasRecipe(stable).syncTarget(t, git, live)
		if r, found, _ := unstructured.NestedFieldNoCopy(target, "spec", "replicas"); !found || fmt.Sprint(r) != "0" {
			t.Errorf("a RespectIgnoreDifferences sync writes replicas %v, want the live 0", r)
		}
		// A Git edit of the image still shows: only replicas is ignored.
		edited := deepCopy(t, git)
		containers, _, _ := unstructured.NestedSlice(edited, "spec", "template", "spec", "containers")
		containers[0].(map[string]any)["image"] = "vllm/vllm-openai:v0.11.1"
		h.must(unstructured.SetNestedSlice(edited, containers, "spec", "template", "spec", "containers"))
		expectOutOfSync(t, "image edit, replicas ignored", replicasRecipe(stable).compare(t, edited, live))
		// The new stable keeps its replicas and stays in sync.
		expectSynced(t, "new stable", replicasRecipe(canary).compare(t, h.gitObject(fmt.Sprintf(gitDeployment, canary)), h.liveObject("apps/v1", "Deployment", canary)))
	})
}
