package egress

// The attack suite: a hostile rollout author picks the URL, the DNS answers
// and the redirects. Every case asserts a refusal. Nothing here sends a
// packet off loopback: addresses are checked through CheckAddr, names are
// resolved by a DNS server on loopback, and a dial guard fails any
// connection to an address other than loopback, so that a missing check
// shows as a test failure, not as traffic.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// wide is an allowlist that opens everything a CIDR can open: the
// never-addresses must stay shut anyway.
var wide = []string{"0.0.0.0/0", "::/0"}

func TestAttackCheckAddrNeverAddresses(t *testing.T) {
	cases := []struct {
		name    string
		cluster []string
		allow   []string
		addr    string
		want    string
	}{
		// Every entry of the list, with everything else open.
		{"AWS IMDS", nil, wide, "169.254.169.254", "cloud instance metadata"},
		{"AWS IMDS IPv6 inside fc00::/7", nil, nil, "fd00:ec2::254", "AWS EC2 instance metadata over IPv6"},
		{"AWS IMDS IPv6, all allowed", nil, wide, "fd00:ec2::254", "AWS EC2 instance metadata over IPv6"},
		{"EKS Pod Identity", nil, wide, "169.254.170.23", "EKS Pod Identity"},
		{"EKS Pod Identity IPv6 inside fc00::/7", nil, nil, "fd00:ec2::23", "EKS Pod Identity agent over IPv6"},
		{"ECS task metadata", nil, wide, "169.254.170.2", "ECS task metadata"},
		{"GCP IPv6 metadata inside fc00::/7", nil, nil, "fd20:ce::254", "Google Cloud metadata server over IPv6"},
		{"Azure WireServer", nil, []string{"168.63.0.0/16"}, "168.63.129.16", "Azure WireServer"},
		{"Alibaba inside the cluster CIDRs", []string{"100.64.0.0/10"}, nil, "100.100.100.200", "Alibaba Cloud"},
		{"Oracle Classic", nil, wide, "192.0.0.192", "Oracle Cloud"},
		// Every spelling.
		{"IPv4-mapped IPv6", nil, wide, "::ffff:169.254.169.254", "cloud instance metadata"},
		{"IPv4-mapped IPv6, hex", nil, wide, "::ffff:a9fe:a9fe", "cloud instance metadata"},
		{"NAT64 well-known prefix", nil, []string{"64:ff9b::/96"}, "64:ff9b::a9fe:a9fe", "cloud instance metadata"},
		{"NAT64 local-use prefix", nil, []string{"64:ff9b:1::/48"}, "64:ff9b:1::a9fe:a9fe", "cloud instance metadata"},
		{"6to4", nil, []string{"2002::/16"}, "2002:a9fe:a9fe::1", "cloud instance metadata"},
		{"IPv4-compatible IPv6", nil, []string{"::/96"}, "::a9fe:a9fe", "cloud instance metadata"},
		{"NAT64 of Alibaba", nil, []string{"64:ff9b::/96"}, "64:ff9b::6464:64c8", "Alibaba Cloud"},
		{"zone on IPv6 metadata", nil, nil, "fd00:ec2::254%eth0", "AWS EC2 instance metadata over IPv6"},
		{"a CIDR covering it is not the exact address", nil, []string{"169.254.169.0/24"}, "169.254.169.254", "naming exactly this address"},
		{"a NAT64 loopback in an allowed NAT64 range", nil, []string{"64:ff9b::/96"}, "64:ff9b::7f00:1", "a loopback address (127.0.0.1 in an IPv6 spelling)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := MustNew(c.cluster, c.allow).CheckAddr(netip.MustParseAddr(c.addr))
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckAddr(%s) = %v, want a refusal mentioning %q", c.addr, err, c.want)
			}
		})
	}
}

func TestAttackEveryNeverAddressIsRefusedAndOnlyItsExactEntryOpensIt(t *testing.T) {
	for _, n := range neverAddrs {
		if err := MustNew(nil, wide).CheckAddr(n.addr); !errors.Is(err, ErrRefused) {
			t.Errorf("%s (%s) allowed by CIDR entries: %v", n.addr, n.what, err)
		}
		bits := n.addr.BitLen()
		for _, entry := range []string{n.addr.String(), fmt.Sprintf("%s/%d", n.addr, bits)} {
			if err := MustNew(nil, []string{entry}).CheckAddr(n.addr); err != nil {
				t.Errorf("%s refused although --egress-allow names it (%s): %v", n.addr, entry, err)
			}
		}
	}
}

func TestAttackAPIServer(t *testing.T) {
	p := MustNew(nil, []string{"172.18.0.0/16"})
	p.SetAPIServer([]netip.Addr{netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("fd00:10:96::1")},
		[]netip.AddrPort{netip.MustParseAddrPort("172.18.0.2:6443")})
	refused := []struct {
		addr string
		port uint16
	}{
		{"10.96.0.1", 443},
		{"10.96.0.1", 80}, // the ClusterIP on any port
		{"::ffff:10.96.0.1", 443},
		{"fd00:10:96::1", 443},
		{"172.18.0.2", 6443},
	}
	for _, c := range refused {
		err := p.CheckAddrPort(netip.AddrPortFrom(netip.MustParseAddr(c.addr), c.port))
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "Kubernetes API server") {
			t.Errorf("%s:%d: %v, want a refusal naming the API server", c.addr, c.port, err)
		}
	}
	// An endpoint's node address on another port is another service.
	if err := p.CheckAddrPort(netip.MustParseAddrPort("172.18.0.2:8080")); err != nil {
		t.Errorf("another port of the API server's node refused: %v", err)
	}
	// Without a port, CheckAddr refuses an endpoint's address outright.
	if err := p.CheckAddr(netip.MustParseAddr("172.18.0.2")); !errors.Is(err, ErrRefused) {
		t.Errorf("CheckAddr of an endpoint address: %v", err)
	}
	// Only the exact address opens it.
	open := MustNew(nil, []string{"10.96.0.1"})
	open.SetAPIServer([]netip.Addr{netip.MustParseAddr("10.96.0.1")}, nil)
	if err := open.CheckAddr(netip.MustParseAddr("10.96.0.1")); err != nil {
		t.Errorf("API server named by --egress-allow refused: %v", err)
	}
	// A later SetAPIServer replaces the earlier one.
	p.SetAPIServer(nil, nil)
	if err := p.CheckAddr(netip.MustParseAddr("10.96.0.1")); err != nil {
		t.Errorf("forgotten API server address still refused: %v", err)
	}
}

// fakeDNS is a DNS server on loopback. Each name has a sequence of A and of
// AAAA answers; the nth query of a type gets the nth answer (the last one
// once they run out). An invalid address means an empty answer.
type fakeDNS struct {
	addr    string
	mu      sync.Mutex
	a, aaaa map[string][]netip.Addr
	asked   map[string]int // by "name/type"
	queries []string
}

func startDNS(t *testing.T) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	d := &fakeDNS{addr: pc.LocalAddr().String(), a: map[string][]netip.Addr{}, aaaa: map[string][]netip.Addr{}, asked: map[string]int{}}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := d.answer(buf[:n]); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	return d
}

func (d *fakeDNS) answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	question, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.TrimSuffix(strings.ToLower(question.Name.String()), ".")
	d.mu.Lock()
	d.queries = append(d.queries, name)
	key := fmt.Sprintf("%s/%d", name, question.Type)
	i := d.asked[key]
	d.asked[key]++
	var seq []netip.Addr
	known := false
	switch question.Type {
	case dnsmessage.TypeA:
		seq, known = d.a[name]
	case dnsmessage.TypeAAAA:
		seq, known = d.aaaa[name]
	}
	if _, ok := d.a[name]; ok {
		known = true
	}
	if _, ok := d.aaaa[name]; ok {
		known = true
	}
	d.mu.Unlock()

	rcode := dnsmessage.RCodeSuccess
	if !known {
		rcode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: rcode})
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(question)
	_ = b.StartAnswers()
	if len(seq) > 0 {
		if i >= len(seq) {
			i = len(seq) - 1
		}
		if a := seq[i]; a.IsValid() {
			rh := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 0}
			if a.Is4() {
				_ = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
			} else {
				_ = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
		}
	}
	out, _ := b.Finish()
	return out
}

func (d *fakeDNS) queried() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.queries...)
}

// guarded makes p resolve through d and refuse to connect anywhere but
// loopback.
func guarded(p *Policy, d *fakeDNS) *Policy {
	p.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dd net.Dialer
		return dd.DialContext(ctx, "udp", d.addr)
	}}
	p.SetDialGuard(func(ap netip.AddrPort) error {
		if !ap.Addr().Unmap().IsLoopback() {
			return fmt.Errorf("test guard: the policy let %s through", ap)
		}
		return nil
	})
	return p
}

// fetch GETs u on a fresh connection.
func fetch(p *Policy, u string) error {
	c, err := p.Client(Options{Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	c.Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func TestAttackNumericHostsNeverReachDNS(t *testing.T) {
	d := startDNS(t)
	for _, host := range []string{
		"2852039166",          // 169.254.169.254 in decimal
		"0xa9fea9fe",          // in hexadecimal
		"0251.0376.0251.0376", // dotted octal
		"0xa9.0xfe.0xa9.0xfe", // dotted hexadecimal
		"169.254.43518",       // three parts
		"0251.254.169.254",    // one octal part
		"017700000001",        // 127.0.0.1 in octal
	} {
		t.Run(host, func(t *testing.T) {
			err := fetch(guarded(MustNew(nil, wide), d), "http://"+host+"/latest/meta-data/")
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "legacy spelling") {
				t.Fatalf("err=%v, want a refusal of the legacy numeric host", err)
			}
		})
	}
	if q := d.queried(); len(q) != 0 {
		t.Errorf("numeric hosts were looked up in DNS: %v", q)
	}
}

func TestAttackNamesResolvingToNeverAddresses(t *testing.T) {
	d := startDNS(t)
	d.a["metadata.google.internal"] = []netip.Addr{netip.MustParseAddr("169.254.169.254")}
	d.aaaa["imds6.attacker.test"] = []netip.Addr{netip.MustParseAddr("fd00:ec2::254")}
	d.aaaa["podid6.attacker.test"] = []netip.Addr{netip.MustParseAddr("fd00:ec2::23")}
	d.aaaa["gcp6.attacker.test"] = []netip.Addr{netip.MustParseAddr("fd20:ce::254")}
	d.aaaa["mapped.attacker.test"] = []netip.Addr{netip.MustParseAddr("::ffff:169.254.169.254")}
	d.aaaa["nat64.attacker.test"] = []netip.Addr{netip.MustParseAddr("64:ff9b::a9fe:a9fe")}
	d.a["wire.attacker.test"] = []netip.Addr{netip.MustParseAddr("168.63.129.16")}
	cases := []struct {
		name, host string
		allow      []string
	}{
		{"GCP metadata name, its domain allowlisted", "metadata.google.internal", []string{"*.google.internal"}},
		{"GCP metadata name, the host allowlisted", "metadata.google.internal", []string{"metadata.google.internal"}},
		{"AAAA to AWS IPv6 metadata, default policy", "imds6.attacker.test", nil},
		{"AAAA to EKS Pod Identity IPv6, default policy", "podid6.attacker.test", nil},
		{"AAAA to GCP IPv6 metadata, default policy", "gcp6.attacker.test", nil},
		{"AAAA with a mapped metadata address, all CIDRs allowed", "mapped.attacker.test", wide},
		{"AAAA with a NAT64 metadata address, NAT64 allowed", "nat64.attacker.test", []string{"64:ff9b::/96"}},
		{"A to the Azure WireServer, its domain allowlisted", "wire.attacker.test", []string{"*.attacker.test"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := fetch(guarded(MustNew(nil, c.allow), d), "http://"+c.host+"/")
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "only an --egress-allow entry naming exactly this address opens it") {
				t.Fatalf("err=%v, want the never-address refusal", err)
			}
		})
	}
}

func TestAttackDNSRebinding(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	d := startDNS(t)
	loop := netip.MustParseAddr("127.0.0.1")
	// First lookup: loopback, allowed. Second: the metadata address.
	d.a["rebind.attacker.test"] = []netip.Addr{loop, netip.MustParseAddr("169.254.169.254")}
	// First lookup: loopback over A; second: AWS IPv6 metadata over AAAA.
	d.a["rebind6.attacker.test"] = []netip.Addr{loop, {}}
	d.aaaa["rebind6.attacker.test"] = []netip.Addr{{}, netip.MustParseAddr("fd00:ec2::254")}
	cases := []struct {
		host  string
		allow []string
	}{
		{"rebind.attacker.test", []string{"*.attacker.test"}},
		{"rebind6.attacker.test", []string{"127.0.0.0/8"}},
	}
	for _, c := range cases {
		t.Run(c.host, func(t *testing.T) {
			p := guarded(MustNew(nil, c.allow), d)
			u := "http://" + c.host + ":" + srv.Port() + "/"
			if err := fetch(p, u); err != nil {
				t.Fatalf("first lookup (loopback, allowed): %v", err)
			}
			err := fetch(p, u)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "instance metadata") {
				t.Fatalf("after rebinding: err=%v, want the metadata refusal", err)
			}
		})
	}
}

func TestAttackRedirectsChangingTheOrigin(t *testing.T) {
	cases := []struct {
		from, to, want string
	}{
		{"https://prom.example:8443/a", "http://prom.example:8443/b", "another scheme"},
		{"https://prom.example/a", "http://prom.example:443/b", "another scheme"},
		{"http://prom.example:8080/a", "http://user:pw@prom.example:8080/b", "credentials in the URL"},
		{"http://prom.example:8080/a", "http://user@prom.example:8080/b", "credentials in the URL"},
		{"http://prom.example/a", "http://prom.example:8080/b", "another port"},
		{"http://prom.example/a", "http://evil.example/b", "another host"},
	}
	for _, c := range cases {
		first, _ := http.NewRequest(http.MethodGet, c.from, nil)
		next, _ := http.NewRequest(http.MethodGet, c.to, nil)
		err := SameHostRedirects(next, []*http.Request{first})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s: %v, want a refusal saying %q", c.from, c.to, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("the refusal quotes the URL's password: %v", err)
		}
	}
	// The same origin, with the default port spelt out or not, is followed.
	for _, c := range [][2]string{{"http://h/a", "http://H:80/b"}, {"https://h:443/a", "https://h/b"}} {
		first, _ := http.NewRequest(http.MethodGet, c[0], nil)
		next, _ := http.NewRequest(http.MethodGet, c[1], nil)
		if err := SameHostRedirects(next, []*http.Request{first}); err != nil {
			t.Errorf("%s -> %s refused: %v", c[0], c[1], err)
		}
	}
}

// TestAttackSchemeDowngradeKeepsTheToken serves https and plain http on one
// loopback port; the https answer redirects to http on the same host and
// port. The credentials must not go out in clear text.
func TestAttackSchemeDowngradeKeepsTheToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsL := &chanListener{ch: make(chan net.Conn), addr: ln.Addr(), done: make(chan struct{})}
	plainL := &chanListener{ch: make(chan net.Conn), addr: ln.Addr(), done: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				br := bufio.NewReader(c)
				b, err := br.Peek(1)
				if err != nil {
					c.Close()
					return
				}
				pc := &peekedConn{Conn: c, r: br}
				if b[0] == 0x16 { // a TLS handshake record
					tlsL.push(pc)
				} else {
					plainL.push(pc)
				}
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	seen := make(chan string, 4)
	plain := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Authorization") + "|" + r.Header.Get("X-Api-Key")
		fmt.Fprint(w, "plain")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = plain.Serve(plainL) }()
	secure := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fmt.Sprintf("http://127.0.0.1:%d/clear", port), http.StatusFound)
	}))
	secure.Listener.Close()
	secure.Listener = tlsL
	secure.StartTLS()
	t.Cleanup(func() {
		secure.Close()
		plain.Close()
		ln.Close()
	})

	c, err := MustNew(nil, []string{"127.0.0.1"}).Client(Options{Timeout: 10 * time.Second, TLS: &TLSOptions{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range []func(*http.Request){
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") },
		func(r *http.Request) { r.SetBasicAuth("user", "pa55") },
		func(r *http.Request) { r.Header.Set("X-Api-Key", "from-a-secret") },
	} {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/start", port), nil)
		auth(req)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "another scheme") {
			t.Errorf("https -> http on the same host and port: err=%v, want a refusal", err)
		}
	}
	select {
	case s := <-seen:
		t.Fatalf("the plain-http side was called, with credentials %q", s)
	default:
	}
}

type chanListener struct {
	ch   chan net.Conn
	addr net.Addr
	once sync.Once
	done chan struct{}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
