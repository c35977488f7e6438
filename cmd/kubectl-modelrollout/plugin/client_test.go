package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// apiCall is one request the fake API server saw.
type apiCall struct {
	method, path, query, accept, contentType string
	body                                     []byte
}

// fakeAPI is an HTTP server that answers each request with the handler's
// status and body and records it.
type fakeAPI struct {
	mu      sync.Mutex
	calls   []apiCall
	handler func(w http.ResponseWriter, r *http.Request)
}

func newFakeAPI(t *testing.T) (*fakeAPI, *restClient) {
	f := &fakeAPI{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.calls = append(f.calls, apiCall{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Accept"), r.Header.Get("Content-Type"), body})
		h := f.handler
		f.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := newRESTClient(&rest.Config{Host: srv.URL, UserAgent: "kubectl-modelrollout/test"})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func (f *fakeAPI) answer(code int, body any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	}
}

func (f *fakeAPI) last(t *testing.T) apiCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("no request")
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeAPI) expect(t *testing.T, method, path, query string) apiCall {
	t.Helper()
	c := f.last(t)
	if c.method != method || c.path != path || c.query != query {
		t.Errorf("request = %s %s?%s, want %s %s?%s", c.method, c.path, c.query, method, path, query)
	}
	return c
}

func statusBody(code int, reason metav1.StatusReason, msg string, details *metav1.StatusDetails) metav1.Status {
	return metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Code: int32(code), Reason: reason, Message: msg, Details: details}
}

func TestRESTClientGetAndErrors(t *testing.T) {
	f, c := newFakeAPI(t)
	ctx := context.Background()
	ro := fixture()
	ro.TypeMeta = metav1.TypeMeta{APIVersion: rolloutsv1.GroupVersion.String(), Kind: "ModelRollout"}
	ro.ResourceVersion = "42"
	f.answer(200, ro)
	got := &rolloutsv1.ModelRollout{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "ai-gateway", Name: "gpt4"}, got); err != nil {
		t.Fatal(err)
	}
	call := f.expect(t, "GET", "/apis/rollouts.modelrollout.io/v1alpha1/namespaces/ai-gateway/modelrollouts/gpt4", "")
	if call.accept != "application/json, */*" {
		t.Errorf("Accept = %q: a custom resource is read as JSON", call.accept)
	}
	if got.Name != "gpt4" || got.ResourceVersion != "42" || got.Spec.Canary == nil || got.Status.Phase != ro.Status.Phase {
		t.Errorf("decoded %+v", got)
	}

	p := &Plugin{Host: "https://api.example:6443"}
	for _, tt := range []struct {
		name   string
		code   int
		status metav1.Status
		is     func(error) bool
		msg    string
	}{
		{"object not found", 404, statusBody(404, metav1.StatusReasonNotFound, `modelrollouts.rollouts.modelrollout.io "gpt4" not found`,
			&metav1.StatusDetails{Name: "gpt4", Group: "rollouts.modelrollout.io", Kind: "modelrollouts"}),
			apierrors.IsNotFound, `modelrollout "gpt4" not found in namespace "ai-gateway"`},
		// kube-apiserver's answer for a path nobody serves (no CRD).
		{"API not served", 404, statusBody(404, metav1.StatusReasonNotFound, "the server could not find the requested resource", &metav1.StatusDetails{}),
			meta.IsNoMatchError, "the ModelRollout API (rollouts.modelrollout.io/v1alpha1) is not served by https://api.example:6443: install the CRDs from config/crd/bases first"},
		{"forbidden", 403, statusBody(403, metav1.StatusReasonForbidden, `modelrollouts.rollouts.modelrollout.io "gpt4" is forbidden: User "viewer" cannot get resource "modelrollouts"`,
			&metav1.StatusDetails{Name: "gpt4", Group: "rollouts.modelrollout.io", Kind: "modelrollouts"}),
			apierrors.IsForbidden, `modelrollouts.rollouts.modelrollout.io "gpt4" is forbidden: User "viewer" cannot get resource "modelrollouts"`},
		{"unauthorized", 401, statusBody(401, metav1.StatusReasonUnauthorized, "Unauthorized", nil),
			apierrors.IsUnauthorized, "the API server at https://api.example:6443 did not accept your credentials (Unauthorized); check --token, --user, --client-certificate or the kubeconfig"},
	} {
		f.answer(tt.code, tt.status)
		err := c.Get(ctx, types.NamespacedName{Namespace: "ai-gateway", Name: "gpt4"}, &rolloutsv1.ModelRollout{})
		if !tt.is(err) {
			t.Errorf("%s: error %T %v", tt.name, err, err)
			continue
		}
		if got := p.apiError(err, "ai-gateway", "gpt4").Error(); got != tt.msg {
			t.Errorf("%s: message %q, want %q", tt.name, got, tt.msg)
		}
	}
	// A list of a kind not served fails the same way.
	f.answer(404, statusBody(404, metav1.StatusReasonNotFound, "the server could not find the requested resource", &metav1.StatusDetails{}))
	if err := c.List(ctx, &rolloutsv1.ModelRolloutList{}, ListOptions{}); !meta.IsNoMatchError(err) {
		t.Errorf("list of a kind not served: %T %v", err, err)
	}
}

// TestRESTClientNotServed covers the API server's answers when the CRD is
// not installed: plain text for a group it does not know, and Forbidden
// before that to a user who may not make the request, when discovery is
// asked whether the kind is served.
func TestRESTClientNotServed(t *testing.T) {
	f, c := newFakeAPI(t)
	ctx := context.Background()
	p := &Plugin{Host: "https://api.example:6443"}
	notServedMsg := "the ModelRollout API (rollouts.modelrollout.io/v1alpha1) is not served by https://api.example:6443: install the CRDs from config/crd/bases first"
	pageNotFound := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(404)
		_, _ = io.WriteString(w, "404 page not found\n")
	}
	// The group is unknown: every path under it is a plain 404.
	f.mu.Lock()
	f.handler = func(w http.ResponseWriter, r *http.Request) { pageNotFound(w) }
	f.mu.Unlock()
	key := types.NamespacedName{Namespace: "ai-gateway", Name: "gpt4"}
	err := c.Get(ctx, key, &rolloutsv1.ModelRollout{})
	if !meta.IsNoMatchError(err) {
		t.Fatalf("get of a kind not served: %T %v", err, err)
	}
	if got := p.apiError(err, "ai-gateway", "gpt4").Error(); got != notServedMsg {
		t.Errorf("message %q", got)
	}
	if err := c.MergePatch(ctx, fixture(), []byte("{}")); !meta.IsNoMatchError(err) {
		t.Errorf("patch of a kind not served: %T %v", err, err)
	}

	forbidden := statusBody(403, metav1.StatusReasonForbidden,
		`modelrollouts.rollouts.modelrollout.io is forbidden: User "nobody" cannot list resource "modelrollouts" in API group "rollouts.modelrollout.io" in the namespace "default"`,
		&metav1.StatusDetails{Group: "rollouts.modelrollout.io", Kind: "modelrollouts"})
	for _, tt := range []struct {
		name      string
		discovery func(w http.ResponseWriter)
		noMatch   bool
	}{
		{"group not served", pageNotFound, true},
		{"resource not in the group", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(metav1.APIResourceList{GroupVersion: "rollouts.modelrollout.io/v1alpha1",
				APIResources: []metav1.APIResource{{Name: "otherthings", Namespaced: true, Kind: "OtherThing"}}})
		}, true},
		{"served", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(metav1.APIResourceList{GroupVersion: "rollouts.modelrollout.io/v1alpha1",
				APIResources: []metav1.APIResource{{Name: "modelrollouts", Namespaced: true, Kind: "ModelRollout"}}})
		}, false},
		{"discovery refused", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(403)
			_ = json.NewEncoder(w).Encode(statusBody(403, metav1.StatusReasonForbidden, "forbidden", nil))
		}, false},
	} {
		f.mu.Lock()
		f.calls = nil
		f.handler = func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/apis/rollouts.modelrollout.io/v1alpha1" {
				tt.discovery(w)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(403)
			_ = json.NewEncoder(w).Encode(forbidden)
		}
		f.mu.Unlock()
		err := c.List(ctx, &rolloutsv1.ModelRolloutList{}, ListOptions{Namespace: "default"})
		f.expect(t, "GET", "/apis/rollouts.modelrollout.io/v1alpha1", "")
		switch {
		case tt.noMatch && !meta.IsNoMatchError(err):
			t.Errorf("%s: %T %v, want a NoMatch error", tt.name, err, err)
		case !tt.noMatch && (!apierrors.IsForbidden(err) || err.Error() != forbidden.Message):
			t.Errorf("%s: %T %v, want the Forbidden as it was", tt.name, err, err)
		}
	}
}

func TestRESTClientList(t *testing.T) {
	f, c := newFakeAPI(t)
	ctx := context.Background()
	f.answer(200, eventsv1.EventList{TypeMeta: metav1.TypeMeta{APIVersion: "events.k8s.io/v1", Kind: "EventList"},
		ListMeta: metav1.ListMeta{ResourceVersion: "7"},
		Items:    []eventsv1.Event{{ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "ai-gateway"}, Reason: "StepAdvanced"}}})
	evs := &eventsv1.EventList{}
	if err := c.List(ctx, evs, ListOptions{Namespace: "ai-gateway", FieldSelector: fields.OneTermEqualSelector("regarding.name", "gpt4"), Limit: 1}); err != nil {
		t.Fatal(err)
	}
	call := f.expect(t, "GET", "/apis/events.k8s.io/v1/namespaces/ai-gateway/events", "fieldSelector=regarding.name%3Dgpt4&limit=1")
	if call.accept != "application/vnd.kubernetes.protobuf, */*" {
		t.Errorf("Accept = %q: built-in kinds are asked for as protobuf", call.accept)
	}
	if evs.ResourceVersion != "7" || len(evs.Items) != 1 || evs.Items[0].Reason != "StepAdvanced" {
		t.Errorf("decoded %+v", evs)
	}

	f.answer(200, corev1.EventList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "EventList"}})
	if err := c.List(ctx, &corev1.EventList{}, ListOptions{Namespace: "ai-gateway"}); err != nil {
		t.Fatal(err)
	}
	f.expect(t, "GET", "/api/v1/namespaces/ai-gateway/events", "")

	f.answer(200, corev1.NamespaceList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NamespaceList"},
		Items: []corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "team-b"}}}})
	nss := &corev1.NamespaceList{}
	if err := c.List(ctx, nss, ListOptions{}); err != nil {
		t.Fatal(err)
	}
	f.expect(t, "GET", "/api/v1/namespaces", "")
	if len(nss.Items) != 1 || nss.Items[0].Name != "team-b" {
		t.Errorf("decoded %+v", nss)
	}

	f.answer(200, rolloutsv1.ModelRolloutList{TypeMeta: metav1.TypeMeta{APIVersion: rolloutsv1.GroupVersion.String(), Kind: "ModelRolloutList"}})
	if err := c.List(ctx, &rolloutsv1.ModelRolloutList{}, ListOptions{}); err != nil {
		t.Fatal(err)
	}
	f.expect(t, "GET", "/apis/rollouts.modelrollout.io/v1alpha1/modelrollouts", "")
}

func TestRESTClientWatch(t *testing.T) {
	f, c := newFakeAPI(t)
	ro := fixture()
	ro.TypeMeta = metav1.TypeMeta{APIVersion: rolloutsv1.GroupVersion.String(), Kind: "ModelRollout"}
	ro.ResourceVersion = "8"
	bookmark := &rolloutsv1.ModelRollout{TypeMeta: ro.TypeMeta, ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9"}}
	gone := statusBody(410, metav1.StatusReasonExpired, "too old resource version: 5 (9)", nil)
	f.mu.Lock()
	f.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		for _, ev := range []struct {
			Type   string
			Object any
		}{{"ADDED", ro}, {"BOOKMARK", bookmark}, {"ERROR", gone}} {
			_ = enc.Encode(map[string]any{"type": ev.Type, "object": ev.Object})
		}
	}
	f.mu.Unlock()
	w, err := c.Watch(context.Background(), &rolloutsv1.ModelRolloutList{},
		ListOptions{Namespace: "ai-gateway", FieldSelector: fields.OneTermEqualSelector("metadata.name", "gpt4"), Limit: 3, ResourceVersion: "5", AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	f.expect(t, "GET", "/apis/rollouts.modelrollout.io/v1alpha1/namespaces/ai-gateway/modelrollouts",
		"allowWatchBookmarks=true&fieldSelector=metadata.name%3Dgpt4&resourceVersion=5&watch=true")
	var got []string
	for ev := range w.ResultChan() {
		switch o := ev.Object.(type) {
		case *rolloutsv1.ModelRollout:
			got = append(got, fmt.Sprintf("%s %s/%s@%s", ev.Type, o.Namespace, o.Name, o.ResourceVersion))
		case *metav1.Status:
			err := apierrors.FromObject(o)
			got = append(got, fmt.Sprintf("%s expired=%v", ev.Type, apierrors.IsResourceExpired(err)))
		default:
			got = append(got, fmt.Sprintf("%s %T", ev.Type, o))
		}
	}
	want := "ADDED ai-gateway/gpt4@8, BOOKMARK /@9, ERROR expired=true"
	if s := strings.Join(got, ", "); s != want {
		t.Errorf("events %s, want %s", s, want)
	}

	// The events watch: no bookmarks, no resource version.
	f.answer(200, map[string]any{})
	w, err = c.Watch(context.Background(), &eventsv1.EventList{}, ListOptions{Namespace: "ai-gateway", FieldSelector: fields.OneTermEqualSelector("regarding.name", "gpt4")})
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	f.expect(t, "GET", "/apis/events.k8s.io/v1/namespaces/ai-gateway/events", "fieldSelector=regarding.name%3Dgpt4&watch=true")

	f.answer(403, statusBody(403, metav1.StatusReasonForbidden, "forbidden", nil))
	if _, err := c.Watch(context.Background(), &rolloutsv1.ModelRolloutList{}, ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("watch refused: %T %v", err, err)
	}
	var _ watch.Interface = w
}

func TestRESTClientMergePatch(t *testing.T) {
	f, c := newFakeAPI(t)
	ro := fixture()
	ro.ResourceVersion = "11"
	ro.Annotations = map[string]string{rolloutsv1.AnnotationPaused: "true", "keep": "x"}
	// The server's answer no longer has the paused annotation: it must not
	// survive in the object read into.
	answer := ro.DeepCopy()
	answer.TypeMeta = metav1.TypeMeta{APIVersion: rolloutsv1.GroupVersion.String(), Kind: "ModelRollout"}
	answer.Annotations = map[string]string{"keep": "x"}
	answer.ResourceVersion = "12"
	f.answer(200, answer)
	patch := []byte(`{"metadata":{"annotations":{"rollouts.modelrollout.io/paused":null},"resourceVersion":"11"}}`)
	if err := c.MergePatch(context.Background(), ro, patch); err != nil {
		t.Fatal(err)
	}
	call := f.expect(t, "PATCH", "/apis/rollouts.modelrollout.io/v1alpha1/namespaces/ai-gateway/modelrollouts/gpt4", "")
	if call.contentType != "application/merge-patch+json" || string(call.body) != string(patch) {
		t.Errorf("patch sent as %q: %s", call.contentType, call.body)
	}
	if ro.ResourceVersion != "12" || len(ro.Annotations) != 1 || ro.Annotations["keep"] != "x" {
		t.Errorf("after the patch: rv %s, annotations %v", ro.ResourceVersion, ro.Annotations)
	}

	f.answer(409, statusBody(409, metav1.StatusReasonConflict, "the object has been modified", &metav1.StatusDetails{Name: "gpt4"}))
	if err := c.MergePatch(context.Background(), fixture(), patch); !apierrors.IsConflict(err) {
		t.Errorf("conflict: %T %v", err, err)
	}
}

func TestRESTClientCreateSelfSubjectReview(t *testing.T) {
	f, c := newFakeAPI(t)
	f.answer(201, authenticationv1.SelfSubjectReview{TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "SelfSubjectReview"},
		Status: authenticationv1.SelfSubjectReviewStatus{UserInfo: authenticationv1.UserInfo{Username: "alice@example.com"}}})
	p := &Plugin{Client: c}
	who, fallback := p.whoAmI(context.Background())
	if who != "alice@example.com" || fallback != "" {
		t.Errorf("whoAmI = %q, %q", who, fallback)
	}
	call := f.expect(t, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "")
	if call.contentType != "application/vnd.kubernetes.protobuf" {
		t.Errorf("Content-Type %q", call.contentType)
	}
	obj, _, err := serializer.NewCodecFactory(Scheme).UniversalDeserializer().Decode(call.body, nil, nil)
	if _, ok := obj.(*authenticationv1.SelfSubjectReview); err != nil || !ok {
		t.Errorf("body decodes to %T, %v", obj, err)
	}

	f.answer(403, statusBody(403, metav1.StatusReasonForbidden, `selfsubjectreviews.authentication.k8s.io is forbidden: User "dave" cannot create resource "selfsubjectreviews"`, nil))
	p.As = "dave"
	who, fallback = p.whoAmI(context.Background())
	want := `the API server did not say who you are (SelfSubjectReview: selfsubjectreviews.authentication.k8s.io is forbidden: User "dave" cannot create resource "selfsubjectreviews"); recording the --as user "dave" instead`
	if who != "dave" || fallback != want {
		t.Errorf("whoAmI = %q, %q", who, fallback)
	}
}

func TestRESTClientGetHTTPRoute(t *testing.T) {
	f, c := newFakeAPI(t)
	f.answer(200, map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "model-header-routing", "namespace": "ai-gateway"},
		"spec":     map[string]any{"rules": []any{map[string]any{"backendRefs": []any{map[string]any{"name": "vllm-gpt4-v1"}}}}},
	})
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(httpRouteGVK)
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "ai-gateway", Name: "model-header-routing"}, u); err != nil {
		t.Fatal(err)
	}
	call := f.expect(t, "GET", "/apis/gateway.networking.k8s.io/v1/namespaces/ai-gateway/httproutes/model-header-routing", "")
	if call.accept != "application/json" {
		t.Errorf("Accept = %q", call.accept)
	}
	rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	if u.GetName() != "model-header-routing" || u.GroupVersionKind() != httpRouteGVK || len(rules) != 1 {
		t.Errorf("decoded %v", u.Object)
	}
}

func TestRESTClientUnknownKind(t *testing.T) {
	_, c := newFakeAPI(t)
	if err := c.Get(context.Background(), types.NamespacedName{Name: "x"}, &corev1.Pod{}); err == nil || meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		t.Errorf("a kind without a resource: %v", err)
	}
}
