package analysis

// Attack suite, redirects: a Prometheus or a token endpoint answers with a
// redirect to somewhere else, hoping the operator follows it with its
// credentials. Redirects are followed only to the same scheme, host and
// port; every other one fails the query and nothing reaches the target.
// Every server is on loopback, so "another host" cannot be tested here;
// another scheme or port on the same host is the harder case (the
// cross-host checks of net/http and prometheus/common compare host names
// only).

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelrollout/modelrollout/analysis/egress"
)

// catcher is the target of a redirect. It records what every request
// carried and answers like a Prometheus (or, on /token, a token endpoint)
// that accepts anything, so that a followed redirect makes the query pass.
type catcher struct {
	mu   sync.Mutex
	seen []string // per request: method, path, credentials and body
}

func (c *catcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.seen = append(c.seen, fmt.Sprintf("%s %s authorization=%q x-api-key=%q body=%q",
		r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"), b))
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if strings.HasSuffix(r.URL.Path, "/token") {
		fmt.Fprint(w, `{"access_token":"caught-token-0123456789","token_type":"Bearer","expires_in":3600}`)
		return
	}
	fmt.Fprint(w, vector("1"))
}

func (c *catcher) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seen...)
}

func startCatcher(t *testing.T) (*catcher, *httptest.Server) {
	t.Helper()
	c := &catcher{}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, srv
}

// redirectTo answers every request with a 307 (the method and the body are
// kept) to location.
func redirectTo(location string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Location", location)
		w.WriteHeader(http.StatusTemporaryRedirect)
	}
}

// startTLSRedirector is an https server redirecting everything to
// location, and the CA bundle to trust it.
func startTLSRedirector(t *testing.T, location string) (*httptest.Server, []byte) {
	t.Helper()
	srv := httptest.NewUnstartedServer(redirectTo(location))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// refusedRedirect runs one query with cfg and checks that it failed on the
// redirect, saying why, without the secrets in its message.
func refusedRedirect(t *testing.T, cfg ClientConfig, why string, secrets ...string) {
	t.Helper()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Query(context.Background(), "up", time.Time{})
	if err == nil {
		t.Fatalf("the redirect was followed: the query passed with %+v", s)
	}
	msg := err.Error()
	if !errors.Is(err, ErrQueryFailed) || !errors.Is(err, egress.ErrRefused) ||
		!strings.Contains(msg, "redirect from") || !strings.Contains(msg, why) ||
		!strings.Contains(msg, "redirects are followed only to the same scheme, host and port") {
		t.Errorf("want a refused redirect (%s), got: %v", why, err)
	}
	if l := leaks(msg, secrets...); l != "" {
		t.Errorf("the message leaks %q: %s", l, msg)
	}
}

func noRequests(t *testing.T, c *catcher, what string) {
	t.Helper()
	if got := c.requests(); len(got) > 0 {
		t.Errorf("%s received %d request(s): %q", what, len(got), got)
	}
}

// TestAttackPrometheusRedirectDowngrade: an https Prometheus redirects to
// http on the same host, another port. The credentials, which the round
// trippers add to every request, must not be sent in clear text there.
func TestAttackPrometheusRedirectDowngrade(t *testing.T) {
	for _, c := range []struct {
		name    string
		cfg     func(addr string, ca []byte) ClientConfig
		secrets []string
	}{
		{"bearer token", func(a string, ca []byte) ClientConfig {
			return ClientConfig{Address: a, CA: ca, BearerToken: attackToken}
		}, []string{attackToken}},
		{"basic auth", func(a string, ca []byte) ClientConfig {
			return ClientConfig{Address: a, CA: ca, Username: attackUser, Password: attackPass}
		}, []string{attackBasic, attackPass}},
		{"header from a Secret", func(a string, ca []byte) ClientConfig {
			return ClientConfig{Address: a, CA: ca, Headers: []Header{{Name: "X-Api-Key", Value: "hdr-5ecret-value-42", Secret: true}}}
		}, []string{"hdr-5ecret-value-42"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sink, plain := startCatcher(t)
			tlsSrv, ca := startTLSRedirector(t, plain.URL+"/api/v1/query")
			refusedRedirect(t, c.cfg(tlsSrv.URL, ca), "another scheme", c.secrets...)
			noRequests(t, sink, "the http server")
		})
	}
}

// TestAttackPrometheusRedirectOtherPort: same scheme and host, another
// port, which may be another service.
func TestAttackPrometheusRedirectOtherPort(t *testing.T) {
	sink, other := startCatcher(t)
	prom := httptest.NewServer(redirectTo(other.URL + "/api/v1/query"))
	t.Cleanup(prom.Close)
	refusedRedirect(t, ClientConfig{Address: prom.URL, BearerToken: attackToken,
		Headers: []Header{{Name: "X-Api-Key", Value: "hdr-5ecret-value-42", Secret: true}}},
		"another port", attackToken, "hdr-5ecret-value-42")
	noRequests(t, sink, "the server on the other port")
}

// TestAttackPrometheusRedirectUserinfo: a redirect to the same origin with
// credentials in the URL is refused too: net/http would send them as basic
// auth, next to (or instead of) the configured credentials.
func TestAttackPrometheusRedirectUserinfo(t *testing.T) {
	sink := &catcher{}
	mux := http.NewServeMux()
	mux.Handle("/elsewhere/", sink)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.Handle("/api/v1/query", redirectTo("http://intruder:intruder-pa55@"+srv.Listener.Addr().String()+"/elsewhere/api/v1/query"))
	refusedRedirect(t, ClientConfig{Address: srv.URL, BearerToken: attackToken}, "credentials in the URL", attackToken)
	noRequests(t, sink, "the redirect target")
}

// TestAttackOAuth2TokenRedirect: the token endpoint redirects the token
// request (307: the form with the client secret would be posted again) to
// another server. The client secret must not arrive there, in the form or
// in a basic auth header.
func TestAttackOAuth2TokenRedirect(t *testing.T) {
	sink, other := startCatcher(t)
	tokens := httptest.NewServer(redirectTo(other.URL + "/token"))
	t.Cleanup(tokens.Close)
	prom := &catcher{}
	promSrv := httptest.NewServer(prom)
	t.Cleanup(promSrv.Close)
	refusedRedirect(t, ClientConfig{Address: promSrv.URL,
		OAuth2: &OAuth2{ClientID: "cid", ClientSecret: "oauth-client-s3cret", TokenURL: tokens.URL + "/token"}},
		"another port", "oauth-client-s3cret")
	noRequests(t, sink, "the server the token endpoint redirects to")
	noRequests(t, prom, "Prometheus, without a token,")
}

// TestAttackOAuth2TokenEndpointHangs: a token endpoint that accepts the
// request and never answers does not hold the query (and the gate round
// with it) past the query timeout. The token request does not carry the
// query's context, so only the token client's own timeout ends it.
func TestAttackOAuth2TokenEndpointHangs(t *testing.T) {
	release := make(chan struct{})
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(tokens.Close)
	t.Cleanup(func() { close(release) })
	prom := &catcher{}
	promSrv := httptest.NewServer(prom)
	t.Cleanup(promSrv.Close)
	c, err := NewClient(ClientConfig{Address: promSrv.URL, Timeout: 200 * time.Millisecond,
		OAuth2: &OAuth2{ClientID: "cid", ClientSecret: "oauth-client-s3cret", TokenURL: tokens.URL + "/token"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Query(context.Background(), "up", time.Time{})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a query without a token passed")
		}
		if strings.Contains(err.Error(), "oauth-client-s3cret") {
			t.Errorf("error quotes the client secret: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the query still waits on a token endpoint that never answers")
	}
	noRequests(t, prom, "Prometheus, without a token,")
}

// TestPrometheusSameOriginRedirect is the control: a redirect to another
// path of the same origin (a Prometheus behind a path prefix, a token
// endpoint that moved) is followed with the credentials, and the query
// passes.
func TestPrometheusSameOriginRedirect(t *testing.T) {
	t.Run("query", func(t *testing.T) {
		p := &promAPI{t: t, answers: map[string]string{"up": vector("1")}}
		p.check = func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+attackToken }
		mux := http.NewServeMux()
		mux.Handle("/api/v1/query", redirectTo("/prom/api/v1/query"))
		mux.Handle("/prom/", http.StripPrefix("/prom", p))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		c, err := NewClient(ClientConfig{Address: srv.URL, BearerToken: attackToken})
		if err != nil {
			t.Fatal(err)
		}
		if s, err := c.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 1 {
			t.Fatalf("through a same-origin redirect: %+v, %v", s, err)
		}
	})
	t.Run("oauth2 token", func(t *testing.T) {
		tok := &catcher{}
		mux := http.NewServeMux()
		mux.Handle("/token", redirectTo("/v2/token"))
		mux.Handle("/v2/token", tok)
		tokens := httptest.NewServer(mux)
		t.Cleanup(tokens.Close)
		p, srv := newFakeProm(t, map[string]string{"up": vector("1")})
		p.check = func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer caught-token-0123456789" }
		c, err := NewClient(ClientConfig{Address: srv.URL,
			OAuth2: &OAuth2{ClientID: "cid", ClientSecret: "oauth-client-s3cret", TokenURL: tokens.URL + "/token"}})
		if err != nil {
			t.Fatal(err)
		}
		if s, err := c.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 1 {
			t.Fatalf("through a same-origin token redirect: %+v, %v", s, err)
		}
		if got := tok.requests(); len(got) != 1 || !strings.Contains(got[0], "POST /v2/token") {
			t.Errorf("token requests at the new path: %q, want one POST", got)
		}
	})
}

// TestOAuth2TokenRequestTLSAndDialer: the token client built here (not
// prometheus/common's) trusts the configured CA and dials through
// ClientConfig.DialContext, the egress policy, like the queries.
func TestOAuth2TokenRequestTLSAndDialer(t *testing.T) {
	tok := &catcher{}
	p := &promAPI{t: t, answers: map[string]string{"up": vector("1")}}
	p.check = func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer caught-token-0123456789" }
	mux := http.NewServeMux()
	mux.Handle("/token", tok)
	mux.Handle("/api/v1/query", p)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	var mu sync.Mutex
	var dialled int
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialled++
		mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	cfg := ClientConfig{Address: srv.URL, CA: ca, DialContext: dial,
		OAuth2: &OAuth2{ClientID: "cid", ClientSecret: "oauth-client-s3cret", TokenURL: srv.URL + "/token"}}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 1 {
		t.Fatalf("oauth2 over TLS: %+v, %v", s, err)
	}
	mu.Lock()
	n := dialled
	mu.Unlock()
	// One connection for the token, one for the query: two transports.
	if n != 2 || len(tok.requests()) != 1 {
		t.Errorf("%d dials through DialContext and %d token requests, want 2 and 1", n, len(tok.requests()))
	}

	strict := cfg
	strict.DialContext = egress.MustNew(nil, nil).DialContext
	c, _ = NewClient(strict)
	_, err = c.Query(context.Background(), "up", time.Time{})
	if !errors.Is(err, egress.ErrRefused) || !strings.Contains(err.Error(), "/token") {
		t.Errorf("a loopback token URL under the default egress policy: %v, want the token request refused", err)
	}

	untrusted := cfg
	untrusted.CA = nil
	c, _ = NewClient(untrusted)
	if _, err = c.Query(context.Background(), "up", time.Time{}); err == nil || !strings.Contains(err.Error(), "/token") ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("a token endpoint whose certificate is not from the CA: %v, want a certificate error", err)
	}
}
