package controllers

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"os"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelrollout/modelrollout/analysis/egress"
)

// DefaultAPIServerRefresh is how often APIServerAddresses re-reads the
// kubernetes Service and its endpoints.
const DefaultAPIServerRefresh = time.Minute

// APIServerAddresses tells the egress policy where the Kubernetes API
// server is, so that no gate, webhook or Prometheus address reaches it: the
// ClusterIPs of the kubernetes Service in default and its endpoints. It
// reads them once at start-up (Refresh) and again every Interval, as a
// manager Runnable on every replica. What it cannot read (an operator whose
// RBAC covers a few namespaces only) it logs; the addresses the operator
// itself connects to (Seed) stay refused.
type APIServerAddresses struct {
	// Reader reads the Service and EndpointSlices; the manager's API reader,
	// so that the cache's namespaces do not matter.
	Reader client.Reader
	Policy *egress.Policy
	// Seed and SeedEndpoints are always refused: see SeedFromEnvironment.
	Seed          []netip.Addr
	SeedEndpoints []netip.AddrPort
	// Interval between reads; DefaultAPIServerRefresh when zero.
	Interval time.Duration
	Log      logr.Logger

	warned bool // the failure to read was logged
	read   bool // something was read at least once
}

// SeedFromEnvironment fills Seed and SeedEndpoints from what the process
// knows without asking: KUBERNETES_SERVICE_HOST (the kubernetes Service's
// ClusterIP in a pod) and the host of the API server URL the operator uses.
func (a *APIServerAddresses) SeedFromEnvironment(apiServerURL string) {
	if ip, err := netip.ParseAddr(os.Getenv("KUBERNETES_SERVICE_HOST")); err == nil {
		a.Seed = append(a.Seed, ip)
	}
	u, err := url.Parse(apiServerURL)
	if err != nil || u.Host == "" {
		return
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	if ap, err := netip.ParseAddrPort(net.JoinHostPort(ip.String(), port)); err == nil {
		a.SeedEndpoints = append(a.SeedEndpoints, ap)
	}
}

// NeedLeaderElection is false: every replica checks its own calls.
func (a *APIServerAddresses) NeedLeaderElection() bool { return false }

// Start re-reads the addresses every Interval until ctx ends.
func (a *APIServerAddresses) Start(ctx context.Context) error {
	every := a.Interval
	if every <= 0 {
		every = DefaultAPIServerRefresh
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.Refresh(ctx)
		}
	}
}

// +kubebuilder:rbac:groups="",resources=services,verbs=get
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get

// Refresh reads the kubernetes Service and its EndpointSlice and records
// them, with the seeds, in the policy. Addresses it cannot read now keep
// their last value.
func (a *APIServerAddresses) Refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs := append([]netip.Addr(nil), a.Seed...)
	endpoints := append([]netip.AddrPort(nil), a.SeedEndpoints...)

	svc := &corev1.Service{}
	svcErr := a.Reader.Get(ctx, types.NamespacedName{Namespace: metav1NamespaceDefault, Name: "kubernetes"}, svc)
	if svcErr == nil {
		ips := svc.Spec.ClusterIPs
		if len(ips) == 0 && svc.Spec.ClusterIP != "" {
			ips = []string{svc.Spec.ClusterIP}
		}
		for _, s := range ips {
			if ip, err := netip.ParseAddr(s); err == nil {
				addrs = append(addrs, ip)
			}
		}
	}
	// The API server keeps one EndpointSlice, named kubernetes too: a Get
	// by name, which RBAC can grant for that object alone.
	es := &discoveryv1.EndpointSlice{}
	sliceErr := a.Reader.Get(ctx, types.NamespacedName{Namespace: metav1NamespaceDefault, Name: "kubernetes"}, es)
	if sliceErr == nil {
		{
			for _, ep := range es.Endpoints {
				for _, s := range ep.Addresses {
					ip, err := netip.ParseAddr(s)
					if err != nil {
						continue
					}
					for _, p := range es.Ports {
						if p.Port != nil && *p.Port > 0 && *p.Port < 1<<16 {
							endpoints = append(endpoints, netip.AddrPortFrom(ip, uint16(*p.Port)))
						}
					}
				}
			}
		}
	}
	if svcErr != nil || sliceErr != nil {
		if !a.warned {
			a.Log.Info("Cannot read the kubernetes Service or its EndpointSlices in namespace default; "+
				"the egress policy refuses the API server at the addresses the operator itself uses",
				"serviceError", errString(svcErr), "endpointSliceError", errString(sliceErr),
				"addresses", addrs, "endpoints", endpoints)
			a.warned = true
		}
		if svcErr != nil && sliceErr != nil && a.read {
			// Keep what was read before.
			return
		}
	}
	if svcErr == nil || sliceErr == nil {
		a.read = true
	}
	a.Policy.SetAPIServer(addrs, endpoints)
}

const metav1NamespaceDefault = "default"

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
