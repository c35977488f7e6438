package controllers

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelrollout/modelrollout/analysis/egress"
)

var _ = Describe("The egress policy and the Kubernetes API server", func() {
	It("refuses the kubernetes Service's ClusterIP and its endpoints, read with the operator's RBAC, whatever the CIDR entries", func() {
		svc := &corev1.Service{}
		Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: "default", Name: "kubernetes"}, svc)).To(Succeed())
		es := &discoveryv1.EndpointSlice{}
		Eventually(func() error {
			return k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: "default", Name: "kubernetes"}, es)
		}).Should(Succeed())
		Expect(es.Endpoints).NotTo(BeEmpty())
		Expect(es.Ports).NotTo(BeEmpty())
		endpoint := netip.AddrPortFrom(netip.MustParseAddr(es.Endpoints[0].Addresses[0]), uint16(*es.Ports[0].Port))
		// A policy whose CIDR entries cover the API server's ClusterIP and
		// endpoint: only the API server's own address:port stays shut.
		wide := netip.PrefixFrom(endpoint.Addr(), endpoint.Addr().BitLen()-8).Masked()
		policy := egress.MustNew(nil, []string{wide.String(), "10.0.0.0/8"})

		// Read as the operator reads it: its own identity, uncached.
		reader, err := client.New(operatorCfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		a := &APIServerAddresses{Reader: reader, Policy: policy, Log: GinkgoLogr}
		Expect(policy.CheckAddrPort(endpoint)).To(Succeed(), "nothing learnt yet")
		a.Refresh(suiteCtx)

		clusterIP := netip.MustParseAddr(svc.Spec.ClusterIP)
		for _, ap := range []netip.AddrPort{netip.AddrPortFrom(clusterIP, 443), netip.AddrPortFrom(clusterIP, 80), endpoint} {
			err := policy.CheckAddrPort(ap)
			Expect(errors.Is(err, egress.ErrRefused)).To(BeTrue(), "%s: %v", ap, err)
			Expect(err.Error()).To(ContainSubstring("is the Kubernetes API server"))
		}
		// The same address on another port is another server.
		Expect(policy.CheckAddrPort(netip.AddrPortFrom(endpoint.Addr(), 9))).To(Succeed())

		// A real call to the API server through the policy's client is
		// refused before it connects.
		c, err := policy.Client(egress.Options{Timeout: 10 * time.Second, TLS: &egress.TLSOptions{InsecureSkipVerify: true}})
		Expect(err).NotTo(HaveOccurred())
		host, err := url.Parse(cfg.Host)
		Expect(err).NotTo(HaveOccurred())
		ctx, cancel := context.WithTimeout(suiteCtx, 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host.Host+"/version", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		Expect(errors.Is(err, egress.ErrRefused)).To(BeTrue(), "GET %s: %v", req.URL, err)

		// An --egress-allow entry naming the exact address opens it.
		open := egress.MustNew(nil, []string{endpoint.Addr().String()})
		(&APIServerAddresses{Reader: reader, Policy: open, Log: GinkgoLogr}).Refresh(suiteCtx)
		Expect(open.CheckAddrPort(endpoint)).To(Succeed())
	})
})
