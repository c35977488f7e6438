package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Options configure a [Gateway].
type Options struct {
	// Config is used to build the gateway's own cache when Cache is nil.
	Config *rest.Config
	// Cache, when set, is used instead of building one. Its scheme must know
	// core/v1, discovery.k8s.io/v1 and gateway.networking.k8s.io/v1 (see
	// [AddToScheme]) and the caller must start it; Start then only waits
	// for it to sync.
	Cache cache.Cache
	// Gateway is the namespace/name of the Gateway whose HTTPRoutes are
	// served.
	Gateway types.NamespacedName
	// Logger; the zero value discards.
	Logger logr.Logger
}

// Gateway serves the HTTPRoutes attached to one Gateway, reading them and
// their Services and EndpointSlices through a controller-runtime cache.
type Gateway struct {
	key      types.NamespacedName
	log      logr.Logger
	cache    cache.Cache
	ownCache bool
	proxy    *Proxy
	trigger  chan struct{}
	warnings []string
	missing  bool // the Gateway object was missing at the last rebuild
}

// AddToScheme registers the types the gateway reads.
func AddToScheme(s *runtime.Scheme) error {
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, discoveryv1.AddToScheme, gatewayv1.Install} {
		if err := add(s); err != nil {
			return err
		}
	}
	return nil
}

// New returns a gateway; call [Gateway.Start] to run it.
func New(opts Options) (*Gateway, error) {
	if opts.Gateway.Name == "" || opts.Gateway.Namespace == "" {
		return nil, errors.New("gateway: Options.Gateway namespace and name are required")
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	g := &Gateway{
		key:     opts.Gateway,
		log:     log,
		cache:   opts.Cache,
		proxy:   NewProxy(log.WithName("proxy")),
		trigger: make(chan struct{}, 1),
	}
	if g.cache == nil {
		if opts.Config == nil {
			return nil, errors.New("gateway: one of Options.Config or Options.Cache is required")
		}
		scheme := runtime.NewScheme()
		if err := AddToScheme(scheme); err != nil {
			return nil, err
		}
		c, err := cache.New(opts.Config, cache.Options{
			Scheme:           scheme,
			DefaultTransform: cache.TransformStripManagedFields(),
		})
		if err != nil {
			return nil, fmt.Errorf("gateway: creating cache: %w", err)
		}
		g.cache, g.ownCache = c, true
	}
	return g, nil
}

// Handler is the data-plane handler (serve it on the --listen address).
func (g *Gateway) Handler() http.Handler { return g.proxy }

// MetricsHandler serves /metrics, /stats/prometheus, /ready and /routes; see
// [Proxy.MetricsHandler].
func (g *Gateway) MetricsHandler() http.Handler { return g.proxy.MetricsHandler() }

// Proxy returns the underlying proxy (metrics registry, current table).
func (g *Gateway) Proxy() *Proxy { return g.proxy }

// Table returns the current routing table.
func (g *Gateway) Table() *Table { return g.proxy.Table() }

// Start watches the API server and keeps the routing table current until ctx
// ends. It returns once ctx is done (nil) or on a fatal error. Handler can
// serve before the first sync: it answers 404 until then, and /ready says
// when the first table is in place.
func (g *Gateway) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { g.poke() },
		UpdateFunc: func(any, any) { g.poke() },
		DeleteFunc: func(any) { g.poke() },
	}
	for _, obj := range []client.Object{&gatewayv1.Gateway{}, &gatewayv1.HTTPRoute{}, &corev1.Service{}, &discoveryv1.EndpointSlice{}} {
		inf, err := g.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("gateway: informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("gateway: event handler for %T: %w", obj, err)
		}
	}

	cacheDone := make(chan error, 1)
	if g.ownCache {
		go func() { cacheDone <- g.cache.Start(ctx) }()
	}
	synced := make(chan bool, 1)
	go func() { synced <- g.cache.WaitForCacheSync(ctx) }()
	select {
	case ok := <-synced:
		if !ok { // ctx ended before the caches synced
			cancel()
			if g.ownCache {
				if err := <-cacheDone; err != nil {
					return fmt.Errorf("gateway: cache: %w", err)
				}
			}
			return nil
		}
	case err := <-cacheDone:
		if err == nil {
			err = errors.New("cache stopped before syncing")
		}
		return fmt.Errorf("gateway: cache: %w", err)
	}
	g.log.Info("cache synced", "gateway", g.key.String())

	for {
		if err := g.rebuild(ctx); err != nil {
			g.log.Error(err, "rebuilding routing table")
		}
		select {
		case <-ctx.Done():
			if g.ownCache {
				return <-cacheDone
			}
			return nil
		case err := <-cacheDone:
			if err == nil {
				err = errors.New("cache stopped")
			}
			return fmt.Errorf("gateway: cache: %w", err)
		case <-g.trigger:
		}
	}
}

// poke asks for a rebuild; bursts of events coalesce into one.
func (g *Gateway) poke() {
	select {
	case g.trigger <- struct{}{}:
	default:
	}
}

// rebuild lists everything from the cache and swaps in a new table.
func (g *Gateway) rebuild(ctx context.Context) error {
	var gw *gatewayv1.Gateway
	var obj gatewayv1.Gateway
	switch err := g.cache.Get(ctx, g.key, &obj); {
	case err == nil:
		gw = &obj
	case apierrors.IsNotFound(err):
	default:
		return err
	}
	var routes gatewayv1.HTTPRouteList
	if err := g.cache.List(ctx, &routes); err != nil {
		return err
	}
	var svcs corev1.ServiceList
	if err := g.cache.List(ctx, &svcs); err != nil {
		return err
	}
	var eps discoveryv1.EndpointSliceList
	if err := g.cache.List(ctx, &eps); err != nil {
		return err
	}
	attachedRoutes := AttachedRoutes(gw, routes.Items)
	t := BuildTable(attachedRoutes, NewResolver(svcs.Items, eps.Items))
	g.proxy.SetTable(t)

	if (gw == nil) != g.missing {
		g.missing = gw == nil
		if g.missing {
			g.log.Info("Gateway not found; serving no routes", "gateway", g.key.String())
		} else {
			g.log.Info("Gateway found", "gateway", g.key.String())
		}
	}
	if !slices.Equal(g.warnings, t.Warnings()) {
		for _, w := range t.Warnings() {
			g.log.Info("routing table warning", "warning", w)
		}
		g.warnings = t.Warnings()
	}
	g.log.V(1).Info("routing table updated", "routes", len(attachedRoutes), "rules", len(t.Rules()), "table", t.String())
	return nil
}
