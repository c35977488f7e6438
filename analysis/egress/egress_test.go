package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestCheckAddr(t *testing.T) {
	p := MustNew(nil, []string{"203.0.113.0/24", "169.254.10.10"})
	cases := []struct {
		addr  string
		allow bool
		why   string
	}{
		{"10.96.0.10", true, ""},
		{"172.20.1.1", true, ""},
		{"192.168.1.5", true, ""},
		{"fd00::1", true, ""},
		{"::ffff:10.1.2.3", true, ""},
		{"8.8.8.8", false, "outside the cluster"},
		{"2001:4860::8888", false, "outside the cluster"},
		{"127.0.0.1", false, "loopback"},
		{"::1", false, "loopback"},
		{"169.254.169.254", false, "cloud instance metadata"},
		{"169.254.1.1", false, "link-local"},
		{"fe80::1", false, "link-local"},
		{"0.0.0.0", false, "unspecified"},
		{"224.0.0.1", false, "link-local"},
		{"239.1.1.1", false, "multicast"},
		{"203.0.113.7", true, ""},
		{"169.254.10.10", true, ""},
	}
	for _, c := range cases {
		err := p.CheckAddr(netip.MustParseAddr(c.addr))
		if c.allow && err != nil {
			t.Errorf("%s: refused: %v", c.addr, err)
		}
		if !c.allow {
			if err == nil {
				t.Errorf("%s: allowed, want refused", c.addr)
				continue
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.why) {
				t.Errorf("%s: error %q, want ErrRefused mentioning %q", c.addr, err, c.why)
			}
		}
	}
}

func TestClusterCIDRsReplaceDefaults(t *testing.T) {
	p := MustNew([]string{"100.64.0.0/10"}, nil)
	if err := p.CheckAddr(netip.MustParseAddr("100.64.3.4")); err != nil {
		t.Errorf("cluster address refused: %v", err)
	}
	if err := p.CheckAddr(netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Error("10.0.0.1 allowed although the cluster CIDRs no longer include it")
	}
}

func TestNewRejectsBadEntries(t *testing.T) {
	for _, e := range []string{"10.0.0.0/33", "*", "*.", "a*b.example.com", "http://x", "host name"} {
		if _, err := New(nil, []string{e}); err == nil {
			t.Errorf("entry %q accepted", e)
		}
	}
	if _, err := New([]string{"nope"}, nil); err == nil {
		t.Error("bad cluster CIDR accepted")
	}
}

func TestHostAllowed(t *testing.T) {
	p := MustNew(nil, []string{"Eval.Example.com", "*.corp.example"})
	for host, want := range map[string]bool{
		"eval.example.com":      true,
		"eval.example.com.":     true,
		"other.example.com":     false,
		"a.corp.example":        true,
		"a.b.corp.example":      true,
		"corp.example":          false,
		"evilcorp.example":      false,
		"eval.example.com.evil": false,
	} {
		if got := p.HostAllowed(host); got != want {
			t.Errorf("HostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

// serve starts a test server on loopback and returns its URL.
func serve(t *testing.T, h http.HandlerFunc) *url.URL {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	u, _ := url.Parse(s.URL)
	return u
}

func get(t *testing.T, p *Policy, u string) (*http.Response, error) {
	t.Helper()
	c, err := p.Client(Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	resp, err := c.Do(req)
	if err == nil {
		t.Cleanup(func() { resp.Body.Close() })
	}
	return resp, err
}

func TestClientRefusesLoopbackUnlessListed(t *testing.T) {
	u := serve(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })

	if _, err := get(t, MustNew(nil, nil), u.String()); !errors.Is(err, ErrRefused) {
		t.Fatalf("loopback server reached without an allowlist entry: err=%v", err)
	}
	resp, err := get(t, MustNew(nil, []string{"127.0.0.0/8"}), u.String())
	if err != nil {
		t.Fatalf("listed loopback refused: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestClientChecksResolvedAddressNotName(t *testing.T) {
	u := serve(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	// "localhost" resolves to loopback: a name does not launder an address.
	byName := "http://localhost:" + u.Port()
	if _, err := get(t, MustNew(nil, nil), byName); !errors.Is(err, ErrRefused) {
		t.Fatalf("localhost reached: err=%v", err)
	}
	// Naming the host on the allowlist is the admin's consent to any address.
	if _, err := get(t, MustNew(nil, []string{"localhost"}), byName); err != nil {
		t.Fatalf("allowlisted host refused: %v", err)
	}
}

func TestClientRefusesMetadataAndPublicWithoutConnecting(t *testing.T) {
	// Nothing listens on these; the refusal must come before any connect.
	p := MustNew(nil, nil)
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://[fe80::1%25lo]/", "http://8.8.8.8/"} {
		_, err := get(t, p, u)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: err=%v, want ErrRefused", u, err)
		}
	}
}

func TestRedirects(t *testing.T) {
	other := serve(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "other") })
	var hops int
	same := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.String()+"/x", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/done", http.StatusFound)
		case "/loop":
			hops++
			http.Redirect(w, r, "/loop", http.StatusFound)
		default:
			fmt.Fprint(w, "done")
		}
	})
	// Both servers are on 127.0.0.1, on different ports: different hosts.
	p := MustNew(nil, []string{"127.0.0.1/32"})
	if _, err := get(t, p, same.String()+"/away"); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "another port") {
		t.Errorf("redirect to another port followed: err=%v", err)
	}
	resp, err := get(t, p, same.String()+"/here")
	if err != nil {
		t.Fatalf("same-host redirect: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "done" {
		t.Errorf("body %q", body)
	}
	if _, err := get(t, p, same.String()+"/loop"); !errors.Is(err, ErrRefused) {
		t.Errorf("redirect loop: err=%v", err)
	}
	if hops != MaxRedirects {
		t.Errorf("followed %d redirects, want %d", hops, MaxRedirects)
	}
}

func TestClientIgnoresEnvironmentProxy(t *testing.T) {
	proxied := false
	proxy := serve(t, func(w http.ResponseWriter, _ *http.Request) { proxied = true; fmt.Fprint(w, "proxy") })
	target := serve(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "target") })
	t.Setenv("HTTP_PROXY", proxy.String())
	t.Setenv("http_proxy", proxy.String())
	t.Setenv("NO_PROXY", "")
	resp, err := get(t, MustNew(nil, []string{"127.0.0.1/32"}), target.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if proxied || string(body) != "target" {
		t.Errorf("request went through the environment's proxy: body %q", body)
	}
}

func TestReadCapped(t *testing.T) {
	b, err := ReadCapped(strings.NewReader("12345"), 5)
	if err != nil || string(b) != "12345" {
		t.Errorf("exact size: %q %v", b, err)
	}
	b, err = ReadCapped(strings.NewReader("123456"), 5)
	if !errors.Is(err, ErrTooLarge) || string(b) != "12345" {
		t.Errorf("over size: %q %v", b, err)
	}
	// A body that never ends is cut, not read to exhaustion.
	b, err = ReadCapped(endless{}, 1<<10)
	if !errors.Is(err, ErrTooLarge) || len(b) != 1<<10 {
		t.Errorf("endless body: %d bytes, %v", len(b), err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestExcerpt(t *testing.T) {
	cases := map[string]struct {
		in   string
		n    int
		want string
	}{
		"short":    {"ok", 10, "ok"},
		"cut":      {"abcdefgh", 3, "abc…"},
		"control":  {"a\x00b\x1bc", 10, "a?b?c"},
		"space":    {"a \n\t  b\r\n", 10, "a b"},
		"invalid":  {"a\xff\xfeb", 10, "a??b"},
		"unicode":  {"héllo wörld", 5, "héllo…"},
		"ansi":     {"\x1b[31mred", 20, "?[31mred"},
		"newlines": {"line1\nline2", 20, "line1 line2"},
	}
	for name, c := range cases {
		if got := Excerpt([]byte(c.in), c.n); got != c.want {
			t.Errorf("%s: Excerpt(%q, %d) = %q, want %q", name, c.in, c.n, got, c.want)
		}
	}
}

func TestDialContextRejectsMalformedAddress(t *testing.T) {
	_, err := MustNew(nil, nil).DialContext(context.Background(), "tcp", "no-port")
	if !errors.Is(err, ErrRefused) {
		t.Errorf("err=%v", err)
	}
}
