package argocdupstream

// The parts of Argo CD the tests run, called the way Argo CD v3.3.9 calls
// them: the settings manager reading argocd-cm, the health of a live
// resource (controller/health.go), action discovery and a resource action
// (server/application/application.go), the comparison (controller/state.go),
// the RespectIgnoreDifferences sync target (controller/sync.go, see
// synctarget_test.go) and the client-side apply of a sync (gitops-engine's
// kubectl apply).

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"

	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/argo"
	argodiff "github.com/argoproj/argo-cd/v3/util/argo/diff"
	"github.com/argoproj/argo-cd/v3/util/argo/normalizers"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/argo-cd/v3/util/settings"
	gitopsdiff "github.com/argoproj/gitops-engine/pkg/diff"
	"github.com/argoproj/gitops-engine/pkg/health"
	"github.com/argoproj/gitops-engine/pkg/sync"
	"github.com/argoproj/gitops-engine/pkg/utils/kube"
	"github.com/argoproj/gitops-engine/pkg/utils/tracing"
	jsonpatch "github.com/evanphx/json-patch"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/managedfields"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/util/openapi"
)

const (
	// appName is the Argo CD Application the Git objects belong to.
	appName = "ai-gateway"
	// argocdNamespace holds argocd-cm, as in an Argo CD installation.
	argocdNamespace = "argocd"
)

var kubectl = &kube.KubectlCmd{Log: logr.Discard(), Tracer: tracing.NopTracer{}}

// The resource overrides Argo CD reads from argocd-cm, installed once.
var (
	overridesOnce gosync.Once
	overrides     map[string]v1alpha1.ResourceOverride
	settingsMgr   *settings.SettingsManager
	overridesErr  error
)

// resourceOverrides installs config/argocd/argocd-cm.yaml the way
// config/argocd/README.md says (kubectl patch of the argocd-cm of an Argo CD
// installation) and returns what Argo CD's settings manager reads from it.
func resourceOverrides(t *testing.T) map[string]v1alpha1.ResourceOverride {
	t.Helper()
	overridesOnce.Do(func() {
		ctx := context.Background()
		if _, overridesErr = clientset.CoreV1().Namespaces().Create(ctx,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: argocdNamespace}}, metav1.CreateOptions{}); overridesErr != nil {
			return
		}
		// The argocd-cm of a fresh Argo CD installation.
		if _, overridesErr = clientset.CoreV1().ConfigMaps(argocdNamespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: "argocd-cm", Labels: map[string]string{"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"}}},
			metav1.CreateOptions{}); overridesErr != nil {
			return
		}
		cmd := exec.Command("kubectl", "--kubeconfig", kubeconfig, "-n", argocdNamespace, "patch", "configmap", "argocd-cm",
			"--patch-file", filepath.Join(root, "config", "argocd", "argocd-cm.yaml"))
		if out, err := cmd.CombinedOutput(); err != nil {
			overridesErr = fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
			return
		}
		settingsMgr = settings.NewSettingsManager(ctx, clientset, argocdNamespace)
		overrides, overridesErr = settingsMgr.GetResourceOverrides()
	})
	if overridesErr != nil {
		t.Fatalf("argocd-cm: %v", overridesErr)
	}
	return overrides
}

// argoHealth is the health Argo CD's application controller gives a live
// resource.
func argoHealth(t *testing.T, obj *unstructured.Unstructured) health.HealthStatus {
	t.Helper()
	hs, err := health.GetResourceHealth(obj, lua.ResourceHealthOverrides(resourceOverrides(t)))
	if err != nil {
		t.Fatalf("health of %s: %v", obj.GetName(), err)
	}
	if hs == nil {
		t.Fatalf("Argo CD has no health check for %s", obj.GroupVersionKind())
	}
	return *hs
}

// argoActions is what Argo CD's API server lists as the actions of a live
// resource: name to enabled.
func argoActions(t *testing.T, obj *unstructured.Unstructured) map[string]bool {
	t.Helper()
	vm := lua.VM{ResourceOverrides: resourceOverrides(t)}
	scripts, err := vm.GetResourceActionDiscovery(obj)
	if err != nil {
		t.Fatal(err)
	}
	actions, err := vm.ExecuteResourceActionDiscovery(obj, scripts)
	if err != nil {
		t.Fatalf("action discovery: %v", err)
	}
	out := map[string]bool{}
	for _, a := range actions {
		out[a.Name] = !a.Disabled
	}
	return out
}

// runAction runs an action on a live resource as Argo CD's API server does
// (RunResourceActionV2): the action's Lua on the live object, then a JSON
// merge patch from the live object to the returned one, sent to the API
// server. It returns the patch, or the action's error (nothing is written
// then).
func runAction(t *testing.T, gvr schema.GroupVersionResource, ns, name, action string) (map[string]any, error) {
	t.Helper()
	liveObj := live(t, gvr, ns, name)
	liveObjBytes, err := json.Marshal(liveObj)
	must(t, err)
	vm := lua.VM{ResourceOverrides: resourceOverrides(t)}
	def, err := vm.GetResourceAction(liveObj, action)
	if err != nil {
		t.Fatalf("action %s: %v", action, err)
	}
	newObjects, err := vm.ExecuteResourceAction(liveObj, def.ActionLua, nil)
	if err != nil {
		return nil, err
	}
	if len(newObjects) != 1 || newObjects[0].K8SOperation != lua.PatchOperation {
		t.Fatalf("action %s returned %d objects; want the patched rollout", action, len(newObjects))
	}
	newObj := newObjects[0].UnstructuredObj
	newObjBytes, err := json.Marshal(newObj)
	must(t, err)
	diffBytes, err := jsonpatch.CreateMergePatch(liveObjBytes, newObjBytes)
	must(t, err)
	patch := map[string]any{}
	must(t, json.Unmarshal(diffBytes, &patch))
	if _, ok := patch["status"]; ok {
		t.Fatalf("action %s changes status: %s", action, diffBytes)
	}
	if string(diffBytes) != "{}" {
		_, err = kubectl.PatchResource(context.Background(), restCfg, newObj.GroupVersionKind(), newObj.GetName(), newObj.GetNamespace(),
			types.MergePatchType, diffBytes)
		must(t, err)
	}
	return patch, nil
}

// The OpenAPI schema Argo CD loads from the destination cluster.
var (
	schemaOnce    gosync.Once
	openAPISchema openapi.Resources
	gvkParser     *managedfields.GvkParser
	schemaErr     error
)

func clusterSchema(t *testing.T) (openapi.Resources, *managedfields.GvkParser) {
	t.Helper()
	schemaOnce.Do(func() { openAPISchema, gvkParser, schemaErr = kubectl.LoadOpenAPISchema(restCfg) })
	if schemaErr != nil {
		t.Fatalf("load the OpenAPI schema: %v", schemaErr)
	}
	return openAPISchema, gvkParser
}

// application is what the tests take of an Argo CD Application: its
// ignoreDifferences.
type application struct {
	IgnoreDifferences []v1alpha1.ResourceIgnoreDifferences
}

// diffConfig is the comparison settings Argo CD's application controller
// builds for the application (CompareAppState): client-side diff, no cache.
func (a application) diffConfig(t *testing.T) argodiff.DiffConfig {
	t.Helper()
	o := resourceOverrides(t)
	labelKey, err := settingsMgr.GetAppInstanceLabelKey()
	must(t, err)
	tracking, err := settingsMgr.GetTrackingMethod()
	must(t, err)
	compare, err := settingsMgr.GetResourceCompareOptions()
	must(t, err)
	_, parser := clusterSchema(t)
	b := argodiff.NewDiffConfigBuilder().
		WithDiffSettings(a.IgnoreDifferences, o, compare.IgnoreAggregatedRoles, normalizers.IgnoreNormalizerOpts{}).
		WithTracking(labelKey, tracking).
		WithNoCache()
	b.WithGVKParser(parser)
	b.WithManager(argocdManager)
	b.WithServerSideDiff(false)
	cfg, err := b.Build()
	must(t, err)
	return cfg
}

// argocdManager is the field manager of Argo CD's syncs.
const argocdManager = "argocd-controller"

// comparison is Argo CD's verdict on one resource.
type comparison gitopsdiff.DiffResult

func (c comparison) String() string {
	if !c.Modified {
		return "Synced"
	}
	return fmt.Sprintf("OutOfSync:\n  live:      %s\n  predicted: %s", c.NormalizedLive, c.PredictedLive)
}

// compare is Argo CD's comparison of a Git object with the live one.
func (a application) compare(t *testing.T, git, liveObj *unstructured.Unstructured) comparison {
	t.Helper()
	res, err := argodiff.StateDiff(liveObj, git, a.diffConfig(t))
	if err != nil {
		t.Fatalf("diff: %v", err)
	}
	return comparison(res)
}

// gitObject is a Git manifest as Argo CD's application controller holds it
// for the application: in the destination namespace, with the tracking
// annotation Argo CD sets on what it applies.
func gitObject(t *testing.T, ns, text string) *unstructured.Unstructured {
	t.Helper()
	resourceOverrides(t) // the settings manager
	u := fromYAML(t, text)
	u.SetNamespace(ns)
	labelKey, err := settingsMgr.GetAppInstanceLabelKey()
	must(t, err)
	tracking, err := settingsMgr.GetTrackingMethod()
	must(t, err)
	id, err := settingsMgr.GetInstallationID()
	must(t, err)
	must(t, argo.NewResourceTracking().SetAppInstance(u, labelKey, appName, ns, v1alpha1.TrackingMethod(tracking), id))
	return u
}

// syncTarget is what a sync of the application applies for git: git
// itself, or with RespectIgnoreDifferences=true the target Argo CD's
// normalizeTargetResources makes of git and the live object.
func (a application) syncTarget(t *testing.T, git, liveObj *unstructured.Unstructured, respectIgnoreDifferences bool) *unstructured.Unstructured {
	t.Helper()
	if !respectIgnoreDifferences {
		return git
	}
	patched, err := normalizeTargetResources(&comparisonResult{
		reconciliationResult: sync.ReconciliationResult{Live: []*unstructured.Unstructured{liveObj}, Target: []*unstructured.Unstructured{git}},
		diffConfig:           a.diffConfig(t),
	})
	if err != nil {
		t.Fatalf("RespectIgnoreDifferences: %v", err)
	}
	return patched[0]
}

// sync applies git as a sync of the application does, with the default
// client-side apply: gitops-engine's kubectl apply of the sync target.
func (a application) sync(t *testing.T, git *unstructured.Unstructured, respectIgnoreDifferences bool) {
	t.Helper()
	var liveObj *unstructured.Unstructured
	if exists(t, gvrOf(git.GetKind()), git.GetNamespace(), git.GetName()) {
		liveObj = live(t, gvrOf(git.GetKind()), git.GetNamespace(), git.GetName())
	}
	target := git
	if liveObj != nil {
		target = a.syncTarget(t, git, liveObj, respectIgnoreDifferences)
	}
	apply(t, target)
}

// apply is gitops-engine's client-side kubectl apply of one object.
func apply(t *testing.T, obj *unstructured.Unstructured) {
	t.Helper()
	oapi, _ := clusterSchema(t)
	ops, cleanup, err := kubectl.ManageResources(restCfg, oapi)
	must(t, err)
	defer cleanup()
	if _, err := ops.ApplyResource(context.Background(), obj, cmdutil.DryRunNone, false, true, false, argocdManager); err != nil {
		t.Fatalf("apply %s/%s: %v", obj.GetKind(), obj.GetName(), err)
	}
}
