package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Object is an API object the plugin reads or writes: a typed object of
// the plugin's Scheme, or an unstructured one (HTTPRoutes).
type Object interface {
	metav1.Object
	runtime.Object
}

// ObjectList is a list of API objects of the plugin's Scheme.
type ObjectList interface {
	metav1.ListInterface
	runtime.Object
}

// ListOptions select what List and Watch return.
type ListOptions struct {
	// Namespace limits the objects to one namespace; empty means all.
	Namespace string
	// FieldSelector selects objects on the server; nil selects all.
	FieldSelector fields.Selector
	// Limit bounds the number of objects a List returns; 0 is no limit.
	// Watch ignores it.
	Limit int64
	// ResourceVersion is where a Watch starts (or how fresh a List must be).
	ResourceVersion string
	// AllowWatchBookmarks asks a Watch for bookmark events.
	AllowWatchBookmarks bool
}

// Client is what the plugin asks of the API server. Its errors are the API
// server's (apierrors.IsNotFound, IsForbidden, ...); a kind the server does
// not serve is a meta.NoKindMatchError.
type Client interface {
	// Get reads one object into obj.
	Get(ctx context.Context, key types.NamespacedName, obj Object) error
	// List reads the objects of list's kind into list.
	List(ctx context.Context, list ObjectList, opts ListOptions) error
	// Watch watches the objects of list's kind.
	Watch(ctx context.Context, list ObjectList, opts ListOptions) (watch.Interface, error)
	// MergePatch applies a JSON merge patch to obj (by its namespace and
	// name) and reads the result into obj.
	MergePatch(ctx context.Context, obj Object, patch []byte) error
	// Create creates obj and reads the result into obj.
	Create(ctx context.Context, obj Object) error
}

// httpRouteGVK is the kind of the routes finish --print reads.
var httpRouteGVK = schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "HTTPRoute"}

// apiResource is where the API server serves a kind.
type apiResource struct {
	resource   string
	namespaced bool
	// builtin kinds are also served as protocol buffers, which the
	// client asks for (as controller-runtime's client did).
	builtin bool
}

// apiResources maps every kind the plugin reads or writes to its resource,
// in place of discovery.
var apiResources = map[schema.GroupVersionKind]apiResource{
	rolloutsv1.GroupVersion.WithKind("ModelRollout"):                  {resource: "modelrollouts", namespaced: true},
	corev1.SchemeGroupVersion.WithKind("Event"):                       {resource: "events", namespaced: true, builtin: true},
	corev1.SchemeGroupVersion.WithKind("Namespace"):                   {resource: "namespaces", builtin: true},
	eventsv1.SchemeGroupVersion.WithKind("Event"):                     {resource: "events", namespaced: true, builtin: true},
	authenticationv1.SchemeGroupVersion.WithKind("SelfSubjectReview"): {resource: "selfsubjectreviews", builtin: true},
	httpRouteGVK: {resource: "httproutes", namespaced: true},
}

// restClient is the Client over client-go's REST client: one REST client
// per kind, sharing one HTTP client, built the way controller-runtime's
// client built them.
type restClient struct {
	cfg    *rest.Config
	http   *http.Client
	codecs serializer.CodecFactory
	params runtime.ParameterCodec

	mu      sync.Mutex
	clients map[clientKey]rest.Interface
}

type clientKey struct {
	gvk          schema.GroupVersionKind
	unstructured bool
}

// newRESTClient returns a Client for the API server of cfg.
func newRESTClient(cfg *rest.Config) (*restClient, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if cfg.WarningHandler == nil && cfg.WarningHandlerWithContext == nil {
		// The API server's warnings were never shown: controller-runtime's
		// client sent them to its logger, which the plugin does not set.
		cfg.WarningHandlerWithContext = rest.NoWarnings{}
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	// A server URL that cannot be used is refused now, not at the first
	// request.
	base := rest.CopyConfig(cfg)
	base.APIPath, base.GroupVersion = "", nil
	if _, _, err := rest.DefaultServerUrlFor(base); err != nil {
		return nil, err
	}
	return &restClient{
		cfg:     cfg,
		http:    hc,
		codecs:  serializer.NewCodecFactory(Scheme),
		params:  runtime.NewParameterCodec(Scheme),
		clients: map[clientKey]rest.Interface{},
	}, nil
}

// resourceFor returns the kind of obj (the item kind for a list), its
// resource and the REST client for it.
func (c *restClient) resourceFor(obj runtime.Object) (rest.Interface, schema.GroupVersionKind, apiResource, error) {
	var gvk schema.GroupVersionKind
	_, isUnstructured := obj.(runtime.Unstructured)
	if isUnstructured {
		gvk = obj.GetObjectKind().GroupVersionKind()
	} else {
		gvks, _, err := Scheme.ObjectKinds(obj)
		if err != nil {
			return nil, gvk, apiResource{}, err
		}
		gvk = gvks[0]
	}
	if meta.IsListType(obj) {
		gvk.Kind = strings.TrimSuffix(gvk.Kind, "List")
	}
	res, ok := apiResources[gvk]
	if !ok {
		return nil, gvk, res, fmt.Errorf("kubectl-modelrollout does not know the resource of %s", gvk)
	}
	key := clientKey{gvk: gvk, unstructured: isUnstructured}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc, ok := c.clients[key]; ok {
		return rc, gvk, res, nil
	}
	cfg := rest.CopyConfig(c.cfg)
	gv := gvk.GroupVersion()
	cfg.GroupVersion = &gv
	cfg.APIPath = "/apis"
	if gvk.Group == "" {
		cfg.APIPath = "/api"
	}
	if cfg.ContentType == "" && res.builtin && !isUnstructured {
		cfg.ContentType = runtime.ContentTypeProtobuf
	}
	if isUnstructured {
		cfg = dynamic.ConfigFor(cfg)
	} else {
		cfg.NegotiatedSerializer = zeroingSerializer{serializer.WithoutConversionCodecFactory{CodecFactory: c.codecs}}
	}
	rc, err := rest.RESTClientForConfigAndClient(cfg, c.http)
	if err != nil {
		return nil, gvk, res, err
	}
	c.clients[key] = rc
	return rc, gvk, res, nil
}

func (c *restClient) Get(ctx context.Context, key types.NamespacedName, obj Object) error {
	rc, gvk, res, err := c.resourceFor(obj)
	if err != nil {
		return err
	}
	req := rc.Get().NamespaceIfScoped(key.Namespace, res.namespaced).Resource(res.resource)
	if _, ok := obj.(runtime.Unstructured); !ok {
		req = req.VersionedParams(&metav1.GetOptions{}, c.params)
	}
	err = req.Name(key.Name).Do(ctx).Into(obj)
	if _, ok := obj.(runtime.Unstructured); ok {
		obj.GetObjectKind().SetGroupVersionKind(gvk)
	}
	return c.notServed(ctx, rc, err, gvk, res)
}

func (c *restClient) List(ctx context.Context, list ObjectList, opts ListOptions) error {
	rc, gvk, res, err := c.resourceFor(list)
	if err != nil {
		return err
	}
	lo := opts.listOptions()
	lo.Limit = opts.Limit
	err = rc.Get().NamespaceIfScoped(opts.Namespace, res.namespaced).Resource(res.resource).
		VersionedParams(lo, c.params).Do(ctx).Into(list)
	return c.notServed(ctx, rc, err, gvk, res)
}

func (c *restClient) Watch(ctx context.Context, list ObjectList, opts ListOptions) (watch.Interface, error) {
	rc, gvk, res, err := c.resourceFor(list)
	if err != nil {
		return nil, err
	}
	lo := opts.listOptions()
	lo.Watch = true
	w, err := rc.Get().NamespaceIfScoped(opts.Namespace, res.namespaced).Resource(res.resource).
		VersionedParams(lo, c.params).Watch(ctx)
	return w, c.notServed(ctx, rc, err, gvk, res)
}

func (c *restClient) MergePatch(ctx context.Context, obj Object, patch []byte) error {
	rc, gvk, res, err := c.resourceFor(obj)
	if err != nil {
		return err
	}
	err = rc.Patch(types.MergePatchType).NamespaceIfScoped(obj.GetNamespace(), res.namespaced).Resource(res.resource).
		Name(obj.GetName()).VersionedParams(&metav1.PatchOptions{}, c.params).Body(patch).Do(ctx).Into(obj)
	return c.notServed(ctx, rc, err, gvk, res)
}

func (c *restClient) Create(ctx context.Context, obj Object) error {
	rc, gvk, res, err := c.resourceFor(obj)
	if err != nil {
		return err
	}
	err = rc.Post().NamespaceIfScoped(obj.GetNamespace(), res.namespaced).Resource(res.resource).
		Body(obj).VersionedParams(&metav1.CreateOptions{}, c.params).Do(ctx).Into(obj)
	return c.notServed(ctx, rc, err, gvk, res)
}

// listOptions are the query parameters of a List or Watch, without Limit.
func (o ListOptions) listOptions() *metav1.ListOptions {
	lo := &metav1.ListOptions{ResourceVersion: o.ResourceVersion, AllowWatchBookmarks: o.AllowWatchBookmarks}
	if o.FieldSelector != nil {
		lo.FieldSelector = o.FieldSelector.String()
	}
	return lo
}

// notServed makes the errors of a kind the API server does not serve (no
// CRD) a meta.NoKindMatchError, which is what discovery reported for it
// before any request. Without discovery the server answers such a request
// with a 404 that names no object, or a plain-text "404 page not found"
// (for a group it does not know), or, to a user who may not make it, with
// Forbidden; only then is discovery asked whether it serves the kind.
func (c *restClient) notServed(ctx context.Context, rc rest.Interface, err error, gvk schema.GroupVersionKind, res apiResource) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err) && pathNotFound(err):
	case apierrors.IsForbidden(err) && !c.served(ctx, rc, gvk, res):
	default:
		return err
	}
	return &meta.NoKindMatchError{GroupKind: gvk.GroupKind(), SearchedVersions: []string{gvk.Version}}
}

// pathNotFound is true for a NotFound that is not about an object: a
// Status naming no object, or an answer that is not a Status at all (the
// API server's "404 page not found" for an unknown group); the API server
// answers a missing object with a Status that names it.
func pathNotFound(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	if d == nil || (d.Name == "" && d.Kind == "") {
		return true
	}
	for _, cause := range d.Causes {
		if cause.Type == metav1.CauseTypeUnexpectedServerResponse {
			return true
		}
	}
	return false
}

// served asks discovery whether the API server serves the kind's resource.
// It is true unless discovery answers that it does not: a request that
// fails, or is refused, leaves the error that made it ask as it was.
func (c *restClient) served(ctx context.Context, rc rest.Interface, gvk schema.GroupVersionKind, res apiResource) bool {
	path := "/apis/" + gvk.Group + "/" + gvk.Version
	if gvk.Group == "" {
		path = "/api/" + gvk.Version
	}
	body, err := rc.Get().AbsPath(path).SetHeader("Accept", "application/json").Do(ctx).Raw()
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		return true
	}
	var list metav1.APIResourceList
	if json.Unmarshal(body, &list) != nil {
		return true
	}
	for _, r := range list.APIResources {
		if r.Name == res.resource {
			return true
		}
	}
	return false
}

// zeroingSerializer decodes into a zeroed object, so that a response read
// into an object already filled (a patched rollout) keeps nothing of what
// it held.
type zeroingSerializer struct {
	runtime.NegotiatedSerializer
}

func (s zeroingSerializer) DecoderToVersion(d runtime.Decoder, gv runtime.GroupVersioner) runtime.Decoder {
	return zeroingDecoder{s.NegotiatedSerializer.DecoderToVersion(d, gv)}
}

type zeroingDecoder struct {
	runtime.Decoder
}

func (d zeroingDecoder) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if into != nil {
		if v := reflect.ValueOf(into); v.Kind() == reflect.Pointer && !v.IsNil() {
			v.Elem().Set(reflect.Zero(v.Elem().Type()))
		}
	}
	return d.Decoder.Decode(data, defaults, into)
}
