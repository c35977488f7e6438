// Package authproxy is TEST-ONLY scaffolding: an authenticating reverse proxy
// in front of a real Prometheus, the way Mimir, Cortex, Thanos or a cloud
// gateway would stand in front of one, plus an OAuth 2.0 token endpoint and a
// certificate authority. Tests use it to show that the operator's Prometheus
// client authenticates, and that a query without the right credentials fails.
//
// A [Proxy] requires one thing: a header with a given value
// ([RequireHeader]), a bearer token issued by a [TokenServer]
// ([RequireToken]), or a TLS client certificate signed by a [CA]
// ([RequireClientCert]). A refused request gets 401 (or a failed TLS
// handshake for mTLS) with a body saying what was missing; the Prometheus
// behind it never sees it.
package authproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CA is a certificate authority that issues server and client certificates
// for tests.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA certificate, for a ca.crt key.
	PEM    []byte
	serial atomic.Int64
}

// NewCA creates a CA valid for a day.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "authproxy test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.serial.Store(1)
	return ca, nil
}

// Issue returns a PEM certificate and PEM private key signed by the CA. A
// server certificate is valid for the DNS names and IP addresses in hosts; a
// client certificate has hosts as its common name and DNS names.
func (ca *CA) Issue(client bool, hosts ...string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if len(hosts) > 0 {
		tmpl.Subject.CommonName = hosts[0]
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// Pool returns a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Requirement is what a Proxy asks of every request.
type Requirement struct {
	header, value string
	tokens        *TokenServer
	clientCA      *CA
	serverName    string
}

// RequireHeader admits requests carrying the header with exactly this
// value, e.g. X-Scope-OrgID: team-a.
func RequireHeader(name, value string) Requirement { return Requirement{header: name, value: value} }

// RequireToken admits requests with "Authorization: Bearer <token>" where
// the token was issued by ts and has not expired.
func RequireToken(ts *TokenServer) Requirement { return Requirement{tokens: ts} }

// RequireClientCert serves TLS with a certificate for serverName (and
// 127.0.0.1) signed by ca, and admits only connections presenting a client
// certificate signed by ca.
func RequireClientCert(ca *CA, serverName string) Requirement {
	return Requirement{clientCA: ca, serverName: serverName}
}

// Proxy forwards admitted requests to a Prometheus.
type Proxy struct {
	srv     *http.Server
	ln      net.Listener
	scheme  string
	refused atomic.Int64
	passed  atomic.Int64
}

// Start listens on a free loopback port and forwards admitted requests to
// upstream (a Prometheus base URL).
func Start(upstream string, req Requirement) (*Proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", upstream, err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &Proxy{scheme: "http"}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why := req.refuse(r); why != "" {
			p.refused.Add(1)
			http.Error(w, "authproxy: "+why, http.StatusUnauthorized)
			return
		}
		p.passed.Add(1)
		// Credentials stop here, as at a real gateway.
		r.Header.Del("Authorization")
		rp.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // refused handshakes are the point
	if req.clientCA != nil {
		cert, key, err := req.clientCA.Issue(false, req.serverName, "127.0.0.1")
		if err != nil {
			ln.Close()
			return nil, err
		}
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			ln.Close()
			return nil, err
		}
		p.srv.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{pair},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    req.clientCA.Pool(),
			MinVersion:   tls.VersionTLS12,
		}
		ln = tls.NewListener(ln, p.srv.TLSConfig)
		p.scheme = "https"
	}
	p.ln = ln
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (req Requirement) refuse(r *http.Request) string {
	switch {
	case req.header != "":
		if got := r.Header.Values(req.header); len(got) != 1 || got[0] != req.value {
			return fmt.Sprintf("header %s must be %q", req.header, req.value)
		}
	case req.tokens != nil:
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !req.tokens.Valid(tok) {
			return "a bearer token from the token endpoint is required"
		}
	case req.clientCA != nil:
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return "a TLS client certificate is required"
		}
	}
	return ""
}

// URL is the proxy's base URL: http://127.0.0.1:port, or https:// for mTLS.
func (p *Proxy) URL() string { return p.scheme + "://" + p.ln.Addr().String() }

// Refused counts the requests turned away (mTLS handshakes that failed are
// not requests and are not counted).
func (p *Proxy) Refused() int64 { return p.refused.Load() }

// Passed counts the requests forwarded.
func (p *Proxy) Passed() int64 { return p.passed.Load() }

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

// TokenServer is an OAuth 2.0 token endpoint for the client credentials
// grant (RFC 6749 section 4.4) with one client. Tokens last an hour.
type TokenServer struct {
	ClientID, ClientSecret string

	srv *httptestServer
	mu  sync.Mutex
	// tokens maps an issued token to its expiry.
	tokens map[string]time.Time
	// Requests records the form of every accepted token request.
	requests []url.Values
}

type httptestServer struct {
	srv *http.Server
	ln  net.Listener
}

// StartTokenServer serves a token endpoint at /token on a free loopback port.
func StartTokenServer(clientID, clientSecret string) (*TokenServer, error) {
	ts := &TokenServer{ClientID: clientID, ClientSecret: clientSecret, tokens: map[string]time.Time{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", ts.serveToken)
	ts.srv = &httptestServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln}
	go func() { _ = ts.srv.srv.Serve(ln) }()
	return ts, nil
}

func (ts *TokenServer) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Clients authenticate with HTTP basic auth or in the form.
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	w.Header().Set("Content-Type", "application/json")
	if r.PostForm.Get("grant_type") != "client_credentials" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"unsupported_grant_type"}`)
		return
	}
	if id != ts.ClientID || secret != ts.ClientSecret {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
		return
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	tok := hex.EncodeToString(b[:])
	ts.mu.Lock()
	ts.tokens[tok] = time.Now().Add(time.Hour)
	ts.requests = append(ts.requests, r.PostForm)
	ts.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
}

// Valid reports whether tok was issued here and has not expired.
func (ts *TokenServer) Valid(tok string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	exp, ok := ts.tokens[tok]
	return ok && time.Now().Before(exp)
}

// Requests returns the forms of the accepted token requests so far.
func (ts *TokenServer) Requests() []url.Values {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]url.Values(nil), ts.requests...)
}

// URL is the token endpoint's URL.
func (ts *TokenServer) URL() string { return "http://" + ts.srv.ln.Addr().String() + "/token" }

// Close stops the token endpoint.
func (ts *TokenServer) Close() error {
	if ts.srv == nil {
		return errors.New("not started")
	}
	return ts.srv.srv.Close()
}
