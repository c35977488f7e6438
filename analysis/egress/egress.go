// Package egress decides which URLs the operator may call on a user's
// behalf, and builds the HTTP clients that enforce it.
//
// Web gates, prompt gates and lifecycle webhooks make the operator send
// requests to URLs that anyone who can create a ModelRollout chooses. Without
// a policy that is a way in: a rollout could make the operator fetch a cloud
// metadata endpoint (169.254.169.254), a sidecar's admin port on loopback, or
// any host on the internet, and read the answer back from status. The Policy
// closes that door:
//
//   - Addresses inside the cluster's networks (ClusterCIDRs, by default the
//     private ranges 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 and fc00::/7)
//     are allowed.
//   - Every other address is refused unless an allowlist entry covers it:
//     public (off-cluster) addresses, loopback, link-local (cloud metadata),
//     unspecified and multicast addresses.
//   - An allowlist entry is a CIDR (10.1.0.0/16, 169.254.169.254/32), an
//     exact host name (eval.example.com) or a domain suffix (*.example.com).
//     A host named by the allowlist may resolve to any address.
//   - Cloud metadata addresses (neverAddrs, in every IPv6 spelling: mapped,
//     NAT64, 6to4) and the Kubernetes API server (SetAPIServer) are refused
//     whatever the cluster's networks, CIDR entries and host entries say:
//     only an allowlist entry naming exactly the address opens one.
//   - Hosts written as legacy numbers (2852039166, 0xa9fea9fe, 0251.0376.0251.0376)
//     are refused before any lookup.
//   - The check runs on the address actually dialled, after DNS resolution,
//     so a name that resolves (or re-resolves) to a refused address is
//     refused too.
//   - Redirects are followed only to the same origin (scheme, host and
//     port, no credentials in the URL), at most MaxRedirects times, and
//     each hop is dialled through the same check.
//   - Proxies from the environment are ignored: the request goes where the
//     policy says, or nowhere.
package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrRefused wraps every refusal of the policy. Test it with errors.Is.
var ErrRefused = errors.New("refused by the operator's egress policy")

// ErrTooLarge: a body exceeded its size limit.
var ErrTooLarge = errors.New("response body exceeds the size limit")

// MaxRedirects bounds the redirects a client follows (same origin only).
const MaxRedirects = 3

// DefaultClusterCIDRs are the networks treated as in-cluster when the
// operator is not told its own: the RFC 1918 and RFC 4193 private ranges.
var DefaultClusterCIDRs = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}

// Policy says which destinations are allowed. The zero Policy allows
// nothing; use New.
type Policy struct {
	cluster  []netip.Prefix
	cidrs    []netip.Prefix
	hosts    map[string]bool
	suffixes []string
	// exact holds the allowlist entries that name one address (a bare
	// address, a /32 or a /128): only these open a never-address or the
	// API server.
	exact map[netip.Addr]bool
	// apiServer is the Kubernetes API server as last learnt (SetAPIServer).
	apiServer atomic.Pointer[apiServerSet]

	// resolver, when set, resolves host names instead of the system's
	// (tests point it at a DNS server on loopback).
	resolver *net.Resolver
	// dialGuard, when set, runs after the policy allowed an address and
	// before the connection is made (tests use it to make sure that no
	// connection leaves loopback even when a check is missing).
	dialGuard func(netip.AddrPort) error
}

// apiServerSet is the Kubernetes API server's addresses: the kubernetes
// Service's ClusterIPs (refused on every port) and its endpoints (refused
// on their port, since an API server on the host network shares its node's
// address with other services).
type apiServerSet struct {
	addrs     map[netip.Addr]bool
	endpoints map[netip.AddrPort]bool
}

// New builds a policy from the cluster's networks (DefaultClusterCIDRs when
// empty) and the allowlist entries (CIDRs, host names, *.domain suffixes).
func New(clusterCIDRs, allow []string) (*Policy, error) {
	if len(clusterCIDRs) == 0 {
		clusterCIDRs = DefaultClusterCIDRs
	}
	p := &Policy{hosts: map[string]bool{}, exact: map[netip.Addr]bool{}}
	for _, c := range clusterCIDRs {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("cluster CIDR %q: %w", c, err)
		}
		p.cluster = append(p.cluster, pfx.Masked())
	}
	for _, raw := range allow {
		e := strings.ToLower(strings.TrimSpace(raw))
		switch {
		case e == "":
			continue
		case strings.Contains(e, "/"):
			pfx, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("egress allowlist entry %q: not a CIDR: %w", raw, err)
			}
			p.cidrs = append(p.cidrs, pfx.Masked())
			if pfx.IsSingleIP() {
				p.exact[pfx.Addr().Unmap()] = true
			}
		case strings.HasPrefix(e, "*."):
			suffix := e[1:]
			if len(suffix) < 2 || strings.ContainsAny(suffix[1:], "*:") {
				return nil, fmt.Errorf("egress allowlist entry %q: a domain suffix is *.example.com", raw)
			}
			p.suffixes = append(p.suffixes, suffix)
		default:
			if addr, err := netip.ParseAddr(e); err == nil {
				p.cidrs = append(p.cidrs, netip.PrefixFrom(addr, addr.BitLen()))
				p.exact[addr.Unmap()] = true
				continue
			}
			if strings.ContainsAny(e, "*:/ ") {
				return nil, fmt.Errorf("egress allowlist entry %q: use a CIDR, a host name or *.domain", raw)
			}
			p.hosts[strings.TrimSuffix(e, ".")] = true
		}
	}
	return p, nil
}

// MustNew is New for fixed arguments; it panics on an error. For tests.
func MustNew(clusterCIDRs, allow []string) *Policy {
	p, err := New(clusterCIDRs, allow)
	if err != nil {
		panic(err)
	}
	return p
}

// SetAPIServer records the Kubernetes API server's addresses: the
// kubernetes Service's ClusterIPs in default, refused on every port, and
// its endpoints, refused on their port. It replaces what was recorded
// before and is safe to call while the policy is in use.
func (p *Policy) SetAPIServer(addrs []netip.Addr, endpoints []netip.AddrPort) {
	s := &apiServerSet{addrs: map[netip.Addr]bool{}, endpoints: map[netip.AddrPort]bool{}}
	for _, a := range addrs {
		s.addrs[a.Unmap().WithZone("")] = true
	}
	for _, e := range endpoints {
		s.endpoints[netip.AddrPortFrom(e.Addr().Unmap().WithZone(""), e.Port())] = true
	}
	p.apiServer.Store(s)
}

// SetDialGuard installs a last check on every address the policy allowed,
// run before connecting; nil removes it. For tests, which use it to keep
// every connection on loopback even where a check they test is missing.
func (p *Policy) SetDialGuard(guard func(netip.AddrPort) error) {
	p.dialGuard = guard
}

// HostAllowed says whether the allowlist names the host, so that any
// address it resolves to may be dialled, but for the cloud metadata
// addresses and the API server.
func (p *Policy) HostAllowed(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if p.hosts[h] {
		return true
	}
	for _, s := range p.suffixes {
		if strings.HasSuffix(h, s) {
			return true
		}
	}
	return false
}

// CheckAddr says whether an address may be dialled when the host that led to
// it is not on the allowlist. The error says why not. Without a port, an
// endpoint address of the API server is refused whatever the port.
func (p *Policy) CheckAddr(addr netip.Addr) error {
	return p.check(addr, 0, false, false)
}

// CheckAddrPort is CheckAddr for an address and port, as dialled.
func (p *Policy) CheckAddrPort(ap netip.AddrPort) error {
	return p.check(ap.Addr(), ap.Port(), true, false)
}

// check is CheckAddr; hostAllowed says that the allowlist named the host
// dialled, which lets any address through but the never-addresses.
func (p *Policy) check(addr netip.Addr, port uint16, hasPort, hostAllowed bool) error {
	addr = addr.Unmap()
	bare := addr.WithZone("")
	v4, wrapped := embeddedIPv4(bare)
	if what := p.never(bare, v4, wrapped, port, hasPort); what != "" {
		if p.exact[bare] || (wrapped && p.exact[v4]) {
			return nil
		}
		return fmt.Errorf("%w: %s is %s; only an --egress-allow entry naming exactly this address opens it", ErrRefused, addr, what)
	}
	if hostAllowed {
		return nil
	}
	// An IPv6 spelling of a loopback or link-local IPv4 address is that
	// address, whatever range of IPv6 the allowlist opens.
	if wrapped && !p.listed(v4) {
		if k := specialKind(v4); k != "" {
			return fmt.Errorf("%w: %s is %s (%s in an IPv6 spelling); an operator admin can allow it with --egress-allow", ErrRefused, addr, k, v4)
		}
	}
	if p.listed(bare) {
		return nil
	}
	kind := specialKind(bare)
	if kind == "" {
		for _, pfx := range p.cluster {
			if pfx.Contains(bare) {
				return nil
			}
		}
		kind = "outside the cluster's networks"
	}
	return fmt.Errorf("%w: %s is %s; an operator admin can allow it with --egress-allow", ErrRefused, addr, kind)
}

// listed says whether an allowlist CIDR covers addr.
func (p *Policy) listed(addr netip.Addr) bool {
	for _, pfx := range p.cidrs {
		if pfx.Contains(addr) {
			return true
		}
	}
	return false
}

// never says what a never-address is ("" for any other address): cloud
// metadata, or the API server. An IPv6 spelling of an IPv4 address counts
// as that address.
func (p *Policy) never(bare, v4 netip.Addr, wrapped bool, port uint16, hasPort bool) string {
	cands := []netip.Addr{bare}
	if wrapped {
		cands = append(cands, v4)
	}
	api := p.apiServer.Load()
	for _, a := range cands {
		if what := neverWhat(a); what != "" {
			return what
		}
		if api == nil {
			continue
		}
		if api.addrs[a] {
			return "the Kubernetes API server (the kubernetes Service in default)"
		}
		if hasPort && api.endpoints[netip.AddrPortFrom(a, port)] {
			return "the Kubernetes API server (an endpoint of the kubernetes Service)"
		}
		if !hasPort {
			for e := range api.endpoints {
				if e.Addr() == a {
					return "the Kubernetes API server (an endpoint of the kubernetes Service)"
				}
			}
		}
	}
	return ""
}

// specialKind names the address ranges refused unless allowlisted, or "".
func specialKind(addr netip.Addr) string {
	switch {
	case addr.IsLoopback():
		return "a loopback address"
	case addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast():
		return "a link-local address (cloud metadata lives here)"
	case addr.IsUnspecified():
		return "the unspecified address"
	case addr.IsMulticast() || addr.IsInterfaceLocalMulticast():
		return "a multicast address"
	}
	return ""
}

// Options shape one client.
type Options struct {
	// Timeout bounds a whole request, redirects and body included.
	Timeout time.Duration
	// TLS settings; nil means the system roots.
	TLS *TLSOptions
}

// TLSOptions are the TLS settings a caller may set.
type TLSOptions struct {
	// CAPEM replaces the system roots when set.
	CAPEM []byte
	// InsecureSkipVerify disables verification (tests only).
	InsecureSkipVerify bool
}

// Client returns an HTTP client whose every connection goes through the
// policy. Each call builds its own transport; reuse the client.
func (p *Policy) Client(opts Options) (*http.Client, error) {
	tlsConfig, err := opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           p.DialContext,
		TLSClientConfig:       tlsConfig,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: opts.Timeout,
	}
	return &http.Client{
		Transport:     transport,
		Timeout:       opts.Timeout,
		CheckRedirect: SameHostRedirects,
	}, nil
}

// DialContext dials addr ("host:port") if the policy allows it: every
// address the host resolves to and is dialled passes CheckAddrPort, or the
// host is on the allowlist and the address is neither cloud metadata nor
// the API server. The check runs on the address actually dialled, so a
// name that resolves to a refused address, now or on a later lookup (DNS
// rebinding), is refused.
func (p *Policy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: address %q: %v", ErrRefused, addr, err)
	}
	if legacyNumericHost(host) {
		return nil, fmt.Errorf("%w: host %q is a numeric address in a legacy spelling (decimal, octal or hexadecimal); write the address in dotted decimal or IPv6 form", ErrRefused, host)
	}
	allowed := p.HostAllowed(host)
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Resolver: p.resolver}
	d.Control = func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: address %q", ErrRefused, address)
		}
		if err := p.check(ap.Addr(), ap.Port(), true, allowed); err != nil {
			return err
		}
		if p.dialGuard != nil {
			return p.dialGuard(ap)
		}
		return nil
	}
	// A refusal in Control comes back wrapped in a *net.OpError, which
	// errors.Is sees through.
	return d.DialContext(ctx, network, addr)
}

func (o Options) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLS == nil {
		return cfg, nil
	}
	cfg.InsecureSkipVerify = o.TLS.InsecureSkipVerify //nolint:gosec // documented as tests only
	if len(o.TLS.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(o.TLS.CAPEM) {
			return nil, errors.New("CA bundle: no PEM certificate found")
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// SameHostRedirects is an http.Client CheckRedirect that follows at most
// MaxRedirects redirects, and only to the origin of the original request:
// the same scheme, host and port, and no credentials in the URL. A redirect
// that changes any of them is refused, so that credentials (an
// Authorization header, basic auth, headers from Secrets) are never sent
// anywhere else, nor in clear text after an https request.
func SameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= MaxRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrRefused, MaxRedirects)
	}
	first, next := via[0].URL, req.URL
	var what string
	switch {
	case next.User != nil:
		what = "credentials in the URL"
	case !strings.EqualFold(next.Scheme, first.Scheme):
		what = "another scheme"
	case !strings.EqualFold(next.Hostname(), first.Hostname()):
		what = "another host"
	case originPort(next) != originPort(first):
		what = "another port"
	default:
		return nil
	}
	return fmt.Errorf("%w: redirect from %s to %s: %s; redirects are followed only to the same scheme, host and port",
		ErrRefused, origin(first), origin(next), what)
}

// origin is scheme://host:port of u, without credentials, path or query.
func origin(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), originPort(u))
}

// originPort is u's port, or its scheme's default.
func originPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// ReadCapped reads at most limit bytes of r. It returns ErrTooLarge, with
// the bytes read so far, when r holds more.
func ReadCapped(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return b, err
	}
	if int64(len(b)) > limit {
		return b[:limit], fmt.Errorf("%w of %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

// Excerpt is a short, printable excerpt of a body, fit for status and
// Events: at most n runes, invalid UTF-8 and control characters replaced,
// whitespace runs collapsed, "…" marking a cut.
func Excerpt(b []byte, n int) string {
	var sb strings.Builder
	runes, space := 0, false
	for len(b) > 0 && runes < n {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		switch {
		case r == utf8.RuneError && size <= 1:
			r = '?'
		case unicode.IsSpace(r):
			if space {
				continue
			}
			r, space = ' ', true
			sb.WriteRune(r)
			runes++
			continue
		case !unicode.IsPrint(r):
			r = '?'
		}
		space = false
		sb.WriteRune(r)
		runes++
	}
	out := strings.TrimSpace(sb.String())
	if len(b) > 0 {
		out += "…"
	}
	return out
}
