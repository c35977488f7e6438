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
//   - The check runs on the address actually dialled, after DNS resolution,
//     so a name that resolves (or re-resolves) to a refused address is
//     refused too.
//   - Redirects are followed only to the same host, at most MaxRedirects
//     times, and each hop is dialled through the same check.
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
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrRefused wraps every refusal of the policy. Test it with errors.Is.
var ErrRefused = errors.New("refused by the operator's egress policy")

// ErrTooLarge: a body exceeded its size limit.
var ErrTooLarge = errors.New("response body exceeds the size limit")

// MaxRedirects bounds the redirects a client follows (same host only).
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
}

// New builds a policy from the cluster's networks (DefaultClusterCIDRs when
// empty) and the allowlist entries (CIDRs, host names, *.domain suffixes).
func New(clusterCIDRs, allow []string) (*Policy, error) {
	if len(clusterCIDRs) == 0 {
		clusterCIDRs = DefaultClusterCIDRs
	}
	p := &Policy{hosts: map[string]bool{}}
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
		case strings.HasPrefix(e, "*."):
			suffix := e[1:]
			if len(suffix) < 2 || strings.ContainsAny(suffix[1:], "*:") {
				return nil, fmt.Errorf("egress allowlist entry %q: a domain suffix is *.example.com", raw)
			}
			p.suffixes = append(p.suffixes, suffix)
		default:
			if addr, err := netip.ParseAddr(e); err == nil {
				p.cidrs = append(p.cidrs, netip.PrefixFrom(addr, addr.BitLen()))
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

// HostAllowed says whether the allowlist names the host, so that any
// address it resolves to may be dialled.
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
// it is not on the allowlist. The error says why not.
func (p *Policy) CheckAddr(addr netip.Addr) error {
	addr = addr.Unmap()
	for _, pfx := range p.cidrs {
		if pfx.Contains(addr) {
			return nil
		}
	}
	kind := ""
	switch {
	case addr.IsLoopback():
		kind = "a loopback address"
	case addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast():
		kind = "a link-local address (cloud metadata lives here)"
	case addr.IsUnspecified():
		kind = "the unspecified address"
	case addr.IsMulticast() || addr.IsInterfaceLocalMulticast():
		kind = "a multicast address"
	}
	if kind == "" {
		for _, pfx := range p.cluster {
			if pfx.Contains(addr) {
				return nil
			}
		}
		kind = "outside the cluster's networks"
	}
	return fmt.Errorf("%w: %s is %s; an operator admin can allow it with --egress-allow", ErrRefused, addr, kind)
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

// DialContext dials addr ("host:port") if the policy allows it: the host is
// on the allowlist, or every address it resolves to and is dialled passes
// CheckAddr.
func (p *Policy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: address %q: %v", ErrRefused, addr, err)
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !p.HostAllowed(host) {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			h, _, err := net.SplitHostPort(address)
			if err != nil {
				return fmt.Errorf("%w: address %q", ErrRefused, address)
			}
			ip, err := netip.ParseAddr(h)
			if err != nil {
				return fmt.Errorf("%w: address %q", ErrRefused, address)
			}
			return p.CheckAddr(ip)
		}
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
// MaxRedirects redirects, and only to the host of the original request.
func SameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= MaxRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrRefused, MaxRedirects)
	}
	if first := via[0].URL; !strings.EqualFold(req.URL.Host, first.Host) {
		return fmt.Errorf("%w: redirect from %s to another host %s", ErrRefused, first.Host, req.URL.Host)
	}
	return nil
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
