package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// FieldManager is the field manager of everything the stack applies.
const FieldManager = "modelrollout-demo"

// OperatorUser is the identity the operator runs as: bound only to the
// generated ClusterRole (config/rbac/role.yaml) and a leader election Role,
// as a real deployment would be.
const OperatorUser = "system:serviceaccount:modelrollout-system:modelrollout-controller"

// LeaderElectionNamespace holds the operator's leader election Lease.
const LeaderElectionNamespace = "default"

// LeaseName is the operator's leader election Lease (cmd/manager).
const LeaseName = "modelrollout-controller.rollouts.modelrollout.io"

// NewScheme returns a scheme with the core, Gateway API and ModelRollout
// types.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(gatewayv1.Install(s))
	utilruntime.Must(rolloutsv1.AddToScheme(s))
	return s
}

// ReadManifests decodes every object of a multi-document YAML file.
func ReadManifests(path string) ([]*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		out = append(out, u)
	}
}

// Apply server-side applies objects, taking over conflicting fields (like
// `kubectl apply --server-side --force-conflicts`, or Argo CD syncing Git).
func Apply(ctx context.Context, c client.Client, objs ...*unstructured.Unstructured) error {
	for _, o := range objs {
		o = o.DeepCopy()
		o.SetManagedFields(nil)
		o.SetResourceVersion("")
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}

// ApplyFile applies every object of a manifest file.
func ApplyFile(ctx context.Context, c client.Client, path string) error {
	objs, err := ReadManifests(path)
	if err != nil {
		return err
	}
	return Apply(ctx, c, objs...)
}

// ReadRollout decodes a ModelRollout manifest.
func ReadRollout(path string) (*rolloutsv1.ModelRollout, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ro := &rolloutsv1.ModelRollout{}
	if err := yaml.UnmarshalStrict(raw, ro); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ro, nil
}

// ApplyRollout server-side applies a typed ModelRollout's metadata and
// spec.
func ApplyRollout(ctx context.Context, c client.Client, ro *rolloutsv1.ModelRollout) error {
	ro = ro.DeepCopy()
	ro.APIVersion = rolloutsv1.GroupVersion.String()
	ro.Kind = "ModelRollout"
	ro.Status = rolloutsv1.ModelRolloutStatus{}
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ro)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: raw}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return Apply(ctx, c, u)
}

// writeKubeconfig writes a kubeconfig for cfg whose context defaults to
// namespace.
func writeKubeconfig(raw []byte, namespace, path string) error {
	kc, err := clientcmd.Load(raw)
	if err != nil {
		return err
	}
	for _, ctx := range kc.Contexts {
		ctx.Namespace = namespace
	}
	return clientcmd.WriteToFile(*kc, path)
}

// setupOperatorIdentity binds the operator's user to the generated
// ClusterRole and a leader election Role and returns its kubeconfig.
func setupOperatorIdentity(ctx context.Context, env *envtest.Environment, c client.Client, rolePath string) ([]byte, error) {
	raw, err := os.ReadFile(rolePath)
	if err != nil {
		return nil, err
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(raw, role); err != nil {
		return nil, fmt.Errorf("%s: %w", rolePath, err)
	}
	role.Name = "modelrollout-manager-role"
	objs := []client.Object{
		role,
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "modelrollout-manager"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: OperatorUser}},
		},
		&rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "modelrollout-leader-election", Namespace: LeaderElectionNamespace},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
				{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "modelrollout-leader-election", Namespace: LeaderElectionNamespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "modelrollout-leader-election"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: OperatorUser}},
		},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return nil, fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	u, err := env.AddUser(envtest.User{Name: OperatorUser, Groups: []string{"system:serviceaccounts", "system:authenticated"}}, nil)
	if err != nil {
		return nil, err
	}
	return u.KubeConfig()
}

// endpointSlice is the slice of a simulator's Service: a documentation
// address, which is never dialled, and the simulator's loopback port, which
// the test gateway dials on 127.0.0.1. For Traefik, which dials the
// addresses of the slice, the address is 127.0.0.1 itself, in a slice of
// addressType FQDN: the API server refuses loopback addresses in IPv4
// slices, and Traefik does not filter slices by addressType.
func endpointSlice(namespace, service string, port int32, traefik bool) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: service + "-loopback",
			Labels: map[string]string{
				discoveryv1.LabelServiceName: service,
				discoveryv1.LabelManagedBy:   FieldManager,
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"192.0.2.10"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if traefik {
		es.AddressType = discoveryv1.AddressTypeFQDN
		es.Endpoints[0].Addresses = []string{"127.0.0.1"}
	}
	return es
}

// leaderElected reports whether the operator's Lease has a holder whose
// renewal is recent.
func leaderElected(ctx context.Context, c client.Client) (string, bool) {
	lease := &coordinationv1.Lease{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: LeaderElectionNamespace, Name: LeaseName}, lease); err != nil {
		return "", false
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" || lease.Spec.RenewTime == nil {
		return "", false
	}
	fresh := time.Since(lease.Spec.RenewTime.Time) < 30*time.Second
	return *lease.Spec.HolderIdentity, fresh
}

// RuleWeights returns the weight of every backendRef (by Service name) of
// the named rule of an HTTPRoute; an unset weight is 1, as in the Gateway
// API.
func RuleWeights(route *gatewayv1.HTTPRoute, rule string) (map[string]int32, error) {
	for _, r := range route.Spec.Rules {
		if r.Name == nil || string(*r.Name) != rule {
			continue
		}
		out := map[string]int32{}
		for _, ref := range r.BackendRefs {
			w := int32(1)
			if ref.Weight != nil {
				w = *ref.Weight
			}
			out[string(ref.Name)] = w
		}
		return out, nil
	}
	return nil, fmt.Errorf("HTTPRoute %s has no rule %q", route.Name, rule)
}

// stripForDisplay removes the noise of an object before it is printed.
func stripForDisplay(o client.Object) {
	o.SetManagedFields(nil)
}

// filePath joins the testdata directory of the repository.
func (s *Stack) filePath(name string) string {
	return filepath.Join(s.Root, TestdataDir, name)
}

// deleteAll deletes every ModelRollout of the namespace.
func deleteAllRollouts(ctx context.Context, c client.Client, namespace string) error {
	list := &rolloutsv1.ModelRolloutList{}
	if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return err
	}
	for i := range list.Items {
		if err := c.Delete(ctx, &list.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// sortedKeys returns the keys of a map, sorted.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
