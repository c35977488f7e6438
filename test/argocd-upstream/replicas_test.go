package argocdupstream

import (
	"fmt"
	"testing"

	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
func replicasRecipe(name string) application {
	return application{IgnoreDifferences: []v1alpha1.ResourceIgnoreDifferences{{
		Group: "apps", Kind: "Deployment", Name: name, JSONPointers: []string{"/spec/replicas"}}}}
}

func replicasOf(obj *unstructured.Unstructured) (int64, bool) {
	r, found, _ := unstructured.NestedFieldNoCopy(obj.Object, "spec", "replicas")
	switch x := r.(type) {
	case int64:
		return x, found
	case float64:
		return int64(x), found
	}
	return -1, found
}

func imageOf(t *testing.T, obj *unstructured.Unstructured) string {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	return containers[0].(map[string]any)["image"].(string)
}

// TestReplicasRecipe runs the operator's workload handoff on Deployments
// synced from Git, and the recipe's replicas ignore through Argo CD's diff
// and sync: the scale-down does not make the Deployment OutOfSync, a
// RespectIgnoreDifferences sync keeps the live 0 replicas and still applies
// a Git edit of the image (a Deployment's lists merge by key), and without
// the entry a sync scales the old version back up.
func TestReplicasRecipe(t *testing.T) {
	cluster(t)
	t.Parallel()
	ns := namespace(t, "replicas")
	backend(t, ns, stableName, 8000, true)
	backend(t, ns, canaryName, 8000, true)
	noIgnore.sync(t, gitObject(t, ns, gitRoute), false)
	git := gitObject(t, ns, fmt.Sprintf(gitDeployment, stableName))
	gitCanary := gitObject(t, ns, fmt.Sprintf(gitDeployment, canaryName))
	noIgnore.sync(t, git, false)
	noIgnore.sync(t, gitCanary, false)
	deployment := func(name string) *unstructured.Unstructured { return live(t, deploymentGVR, ns, name) }
	expectSynced(t, "Deployment as synced", replicasRecipe(stableName).compare(t, git, deployment(stableName)))

	create(t, ns, fromYAML(t, `
apiVersion: rollouts.modelrollout.io/v1alpha1
kind: ModelRollout
metadata: {name: gpt4}
spec:
  routes:
  - {name: model-header-routing, rules: [gpt4]}
  stable: {name: vllm-gpt4-v1, port: 8000, workloadRef: {name: vllm-gpt4-v1}}
  canary: {name: vllm-gpt4-v2, port: 8000, workloadRef: {name: vllm-gpt4-v2}}
  steps:
  - {weight: 100, pause: 0s}
  scaleDownDelay: 1s
`))
	waitFor(t, "the old stable scaled to 0 by the operator", func() (bool, string) {
		r, _ := replicasOf(deployment(stableName))
		return r == 0, fmt.Sprintf("replicas %d", r)
	})

	l := deployment(stableName)
	if got := annotationOf(l, "rollouts.modelrollout.io/replicas-before-scale-down"); got != "3" {
		t.Errorf("annotation replicas-before-scale-down = %q, want 3", got)
	}
	// Without the ignore, the scale-down is drift, and a sync would scale
	// the old version back up.
	expectOutOfSync(t, "scaled down, no ignore", noIgnore.compare(t, git, l))
	if r, _ := replicasOf(noIgnore.syncTarget(t, git, l, true)); r != 3 {
		t.Errorf("a RespectIgnoreDifferences sync without the entry writes replicas %d, want Git's 3", r)
	}
	// With it: Synced (the annotation is not compared either), and a
	// RespectIgnoreDifferences sync target keeps 0.
	expectSynced(t, "scaled down, replicas ignored", replicasRecipe(stableName).compare(t, git, l))
	if r, found := replicasOf(replicasRecipe(stableName).syncTarget(t, git, l, true)); !found || r != 0 {
		t.Errorf("a RespectIgnoreDifferences sync writes replicas %d (found %v), want the live 0", r, found)
	}
	// A Git edit of the image still shows: only replicas is ignored; and a
	// RespectIgnoreDifferences sync applies it, keeping the live 0.
	edited := edit(git, func(m map[string]any) {
		containers := m["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)
		containers[0].(map[string]any)["image"] = "vllm/vllm-openai:v0.11.1"
	})
	expectOutOfSync(t, "image edit, replicas ignored", replicasRecipe(stableName).compare(t, edited, l))
	replicasRecipe(stableName).sync(t, edited, true)
	l = deployment(stableName)
	if r, _ := replicasOf(l); r != 0 {
		t.Errorf("replicas after the RespectIgnoreDifferences sync: %d, want 0", r)
	}
	if got := imageOf(t, l); got != "vllm/vllm-openai:v0.11.1" {
		t.Errorf("image after the RespectIgnoreDifferences sync: %s, want Git's v0.11.1", got)
	}
	expectSynced(t, "image edit synced, replicas ignored", replicasRecipe(stableName).compare(t, edited, l))
	// The new stable keeps its replicas and stays in sync.
	expectSynced(t, "new stable", replicasRecipe(canaryName).compare(t, gitCanary, deployment(canaryName)))

	// Without the entry, a sync writes Git's 3 replicas back.
	noIgnore.sync(t, edited, true)
	if r, _ := replicasOf(deployment(stableName)); r != 3 {
		t.Errorf("replicas after a sync without the entry: %d, want Git's 3", r)
	}
}
