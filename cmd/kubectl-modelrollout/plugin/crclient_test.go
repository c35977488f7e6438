package plugin

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// crClient is the plugin's Client over a controller-runtime client, so that
// the tests keep their fake client, its fixtures and interceptors.
type crClient struct {
	c client.WithWatch
}

func (a crClient) Get(ctx context.Context, key types.NamespacedName, obj Object) error {
	return a.c.Get(ctx, key, obj)
}

func (a crClient) List(ctx context.Context, list ObjectList, opts ListOptions) error {
	lo := &client.ListOptions{Namespace: opts.Namespace, FieldSelector: opts.FieldSelector, Limit: opts.Limit}
	if opts.ResourceVersion != "" || opts.AllowWatchBookmarks {
		lo.Raw = &metav1.ListOptions{ResourceVersion: opts.ResourceVersion, AllowWatchBookmarks: opts.AllowWatchBookmarks}
	}
	return a.c.List(ctx, list, lo)
}

func (a crClient) Watch(ctx context.Context, list ObjectList, opts ListOptions) (watch.Interface, error) {
	return a.c.Watch(ctx, list, &client.ListOptions{Namespace: opts.Namespace, FieldSelector: opts.FieldSelector,
		Raw: &metav1.ListOptions{ResourceVersion: opts.ResourceVersion, AllowWatchBookmarks: opts.AllowWatchBookmarks}})
}

func (a crClient) MergePatch(ctx context.Context, obj Object, patch []byte) error {
	return a.c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
}

func (a crClient) Create(ctx context.Context, obj Object) error {
	return a.c.Create(ctx, obj)
}
