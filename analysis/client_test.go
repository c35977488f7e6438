package analysis

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/modelrollout/modelrollout/test/authproxy"
)

// promAPI is a fake Prometheus HTTP API. answer maps a query to the JSON
// body of a successful response's data; an entry starting with "HTTP " is
// sent as-is as an error: "HTTP 400 {json}".
type promAPI struct {
	t       *testing.T
	answers map[string]string
	check   func(r *http.Request) bool // false: answer 401

	mu      sync.Mutex
	queries []string
}

func (p *promAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query" {
		http.NotFound(w, r)
		return
	}
	if p.check != nil && !p.check(r) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q := r.Form.Get("query")
	p.mu.Lock()
	p.queries = append(p.queries, q)
	p.mu.Unlock()
	a, ok := p.answers[q]
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":"fake: unexpected query %q"}`, q)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if rest, ok := strings.CutPrefix(a, "HTTP "); ok {
		var code int
		var body string
		if _, err := fmt.Sscanf(rest, "%d", &code); err != nil {
			p.t.Errorf("bad fake answer %q", a)
		}
		_, body, _ = strings.Cut(rest, " ")
		w.WriteHeader(code)
		fmt.Fprint(w, body)
		return
	}
	fmt.Fprint(w, a)
}

func success(data string) string { return `{"status":"success","data":` + data + `}` }

func vector(values ...string) string {
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = fmt.Sprintf(`{"metric":{"pod":"p%d"},"value":[1700000000,%q]}`, i, v)
	}
	return success(`{"resultType":"vector","result":[` + strings.Join(parts, ",") + `]}`)
}

func newFakeProm(t *testing.T, answers map[string]string) (*promAPI, *httptest.Server) {
	t.Helper()
	p := &promAPI{t: t, answers: answers}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv
}

func TestClientClassification(t *testing.T) {
	answers := map[string]string{
		"scalar":   success(`{"resultType":"scalar","result":[1700000000,"1.5"]}`),
		"one":      vector("0.25"),
		"zero":     vector("0"),
		"negative": vector("-3"),
		"empty":    success(`{"resultType":"vector","result":[]}`),
		"nan":      vector("NaN"),
		"posinf":   vector("+Inf"),
		"neginf":   vector("-Inf"),
		"nanscal":  success(`{"resultType":"scalar","result":[1700000000,"NaN"]}`),
		"multi":    vector("1", "2", "3"),
		"matrix":   success(`{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"],[1700000060,"2"]]}]}`),
		"string":   success(`{"resultType":"string","result":[1700000000,"hello"]}`),
		"histo":    success(`{"resultType":"vector","result":[{"metric":{},"histogram":[1700000000,{"count":"1","sum":"1","buckets":[[0,"0","1","1"]]}]}]}`),
		"warned":   `{"status":"success","warnings":["PromQL warning: encountered a mix of histograms and floats"],"data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"0.5"]}]}}`,
		"badquery": `HTTP 400 {"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}`,
		"execerr":  `HTTP 422 {"status":"error","errorType":"execution","error":"query processing would load too many samples"}`,
		"server":   `HTTP 503 Service Unavailable`,
		"garbage":  `not json`,
	}
	_, srv := newFakeProm(t, answers)
	c, err := NewClient(ClientConfig{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}

	numbers := map[string]float64{"scalar": 1.5, "one": 0.25, "zero": 0, "negative": -3, "warned": 0.5}
	for q, want := range numbers {
		s, err := c.Query(context.Background(), q, time.Time{})
		if err != nil || s.NoData || s.Value != want {
			t.Errorf("%s: got %+v, %v; want value %v", q, s, err, want)
		}
	}
	noData := map[string]string{"empty": "empty vector", "nan": "NaN", "nanscal": "NaN", "posinf": "+Inf", "neginf": "-Inf"}
	for q, reason := range noData {
		s, err := c.Query(context.Background(), q, time.Time{})
		if err != nil || !s.NoData || !strings.Contains(s.Reason, reason) {
			t.Errorf("%s: got %+v, %v; want no data because %s", q, s, err, reason)
		}
	}
	s, _ := c.Query(context.Background(), "warned", time.Time{})
	if !strings.Contains(s.Reason, "mix of histograms and floats") {
		t.Errorf("warnings not surfaced: %+v", s)
	}

	errs := []struct {
		q       string
		is      error
		notIs   []error
		message string
	}{
		{"multi", ErrMultipleSeries, []error{ErrUnexpectedType, ErrQueryFailed}, "3 series"},
		{"matrix", ErrUnexpectedType, []error{ErrMultipleSeries, ErrQueryFailed}, "range vector"},
		{"string", ErrUnexpectedType, []error{ErrMultipleSeries, ErrQueryFailed}, "string"},
		{"histo", ErrUnexpectedType, []error{ErrMultipleSeries, ErrQueryFailed}, "native histogram"},
		{"badquery", ErrQueryFailed, []error{ErrMultipleSeries, ErrUnexpectedType}, "parse error: unexpected end of input"},
		{"execerr", ErrQueryFailed, []error{ErrMultipleSeries, ErrUnexpectedType}, "too many samples"},
		{"server", ErrQueryFailed, []error{ErrMultipleSeries, ErrUnexpectedType}, "server_error"},
		{"garbage", ErrQueryFailed, []error{ErrMultipleSeries, ErrUnexpectedType}, ""},
	}
	for _, tt := range errs {
		_, err := c.Query(context.Background(), tt.q, time.Time{})
		if !errors.Is(err, tt.is) {
			t.Errorf("%s: error %v is not %v", tt.q, err, tt.is)
			continue
		}
		for _, e := range tt.notIs {
			if errors.Is(err, e) {
				t.Errorf("%s: error %v is also %v", tt.q, err, e)
			}
		}
		if !strings.Contains(err.Error(), tt.message) {
			t.Errorf("%s: error %q does not contain %q", tt.q, err, tt.message)
		}
	}
	_, err = c.Query(context.Background(), "badquery", time.Time{})
	var apiErr *promv1.Error
	if !errors.As(err, &apiErr) || apiErr.Type != promv1.ErrBadData {
		t.Errorf("API error not reachable with errors.As: %v", err)
	}
}

func TestClassifyNil(t *testing.T) {
	if _, err := Classify(nil); !errors.Is(err, ErrUnexpectedType) {
		t.Errorf("Classify(nil) = %v", err)
	}
	if s := number(math.NaN()); !s.NoData {
		t.Errorf("NaN is data")
	}
}

func TestClientSendsTimeAndQuery(t *testing.T) {
	var gotTime string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		gotTime = r.Form.Get("time")
		fmt.Fprint(w, vector("1"))
	}))
	defer srv.Close()
	c, err := NewClient(ClientConfig{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 500_000_000)
	if _, err := c.Query(context.Background(), "up", at); err != nil {
		t.Fatal(err)
	}
	if gotTime != "1700000000.5" {
		t.Errorf("time parameter %q", gotTime)
	}
}

func TestClientTransportError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close() // nothing listens any more
	c, err := NewClient(ClientConfig{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Query(context.Background(), "up", time.Time{})
	if !errors.Is(err, ErrQueryFailed) || errors.Is(err, ErrMultipleSeries) || errors.Is(err, ErrUnexpectedType) {
		t.Errorf("transport error %v should be ErrQueryFailed only", err)
	}
}

func TestClientBearerToken(t *testing.T) {
	p, srv := newFakeProm(t, map[string]string{"up": vector("1")})
	p.check = func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer s3cret" }
	c, err := NewClient(ClientConfig{Address: srv.URL, BearerToken: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 1 {
		t.Errorf("with the token: %+v, %v", s, err)
	}
	c, _ = NewClient(ClientConfig{Address: srv.URL, BearerToken: "wrong"})
	if _, err := c.Query(context.Background(), "up", time.Time{}); !errors.Is(err, ErrQueryFailed) || !strings.Contains(err.Error(), "401") {
		t.Errorf("with a wrong token: %v, want a 401 error", err)
	}
}

func TestClientBasicAuth(t *testing.T) {
	p, srv := newFakeProm(t, map[string]string{"up": vector("1")})
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pa:ss"))
	p.check = func(r *http.Request) bool {
		u, pw, ok := r.BasicAuth()
		return ok && u == "alice" && pw == "pa:ss" && r.Header.Get("Authorization") == want
	}
	c, err := NewClient(ClientConfig{Address: srv.URL, Username: "alice", Password: "pa:ss"})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 1 {
		t.Errorf("with basic auth: %+v, %v", s, err)
	}
	c, _ = NewClient(ClientConfig{Address: srv.URL})
	if _, err := c.Query(context.Background(), "up", time.Time{}); err == nil {
		t.Errorf("without credentials the fake should refuse")
	}
}

func TestClientTLS(t *testing.T) {
	p := &promAPI{t: t, answers: map[string]string{"up": vector("1")}}
	srv := httptest.NewUnstartedServer(p)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake without the CA fails on purpose
	srv.StartTLS()
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	c, err := NewClient(ClientConfig{Address: srv.URL, CA: caPEM})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 1 {
		t.Errorf("with the CA bundle: %+v, %v", s, err)
	}

	c, _ = NewClient(ClientConfig{Address: srv.URL})
	if _, err := c.Query(context.Background(), "up", time.Time{}); !errors.Is(err, ErrQueryFailed) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA bundle: %v, want a certificate error", err)
	}

	c, _ = NewClient(ClientConfig{Address: srv.URL, InsecureSkipVerify: true})
	if s, err := c.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 1 {
		t.Errorf("with insecureSkipVerify: %+v, %v", s, err)
	}
}

func TestClientTimeout(t *testing.T) {
	testDone := make(chan struct{})
	sawCancel := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm() // consume the body so the server notices the client leaving
		select {
		case <-r.Context().Done():
			sawCancel <- struct{}{}
		case <-testDone:
		}
	}))
	defer srv.Close()
	defer close(testDone)

	c, err := NewClient(ClientConfig{Address: srv.URL, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Query(context.Background(), "up", time.Time{})
	if !errors.Is(err, ErrQueryFailed) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "50ms query timeout") {
		t.Fatalf("got %v, want a timeout error", err)
	}
	// The request was really abandoned: the handler sees its context end.
	// (The bound only keeps a broken test from hanging.)
	select {
	case <-sawCancel:
	case <-time.After(time.Minute):
		t.Fatal("the server never saw the request cancelled")
	}

	// A caller's cancellation is reported as such, not as a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Query(ctx, "up", time.Time{})
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "query timeout") {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestNewClientValidation(t *testing.T) {
	tests := []struct {
		cfg     ClientConfig
		wantErr string
	}{
		{ClientConfig{}, "address is empty"},
		{ClientConfig{Address: "prometheus:9090"}, "http:// or https://"},
		{ClientConfig{Address: "ftp://prometheus"}, "http:// or https://"},
		{ClientConfig{Address: "http://"}, "http:// or https://"},
		{ClientConfig{Address: "http://p:9090", BearerToken: "t", Username: "u"}, "not both"},
		{ClientConfig{Address: "http://p:9090", Password: "p"}, "password without a username"},
		{ClientConfig{Address: "http://p:9090", CA: []byte("not pem")}, "no PEM certificate"},
		{ClientConfig{Address: "http://p:9090", Timeout: -time.Second}, "negative"},
		{ClientConfig{Address: "https://p:9090/prefix", Username: "u", Timeout: time.Second}, ""},
		{ClientConfig{Address: "http://p:9090", BearerToken: "t", OAuth2: &OAuth2{ClientID: "c", ClientSecret: "s", TokenURL: "http://t/token"}}, "a bearer token and oauth2 are set"},
		{ClientConfig{Address: "http://p:9090", Username: "u", SigV4: &SigV4{Region: "us-east-1"}}, "a username and password and sigv4 are set"},
		{ClientConfig{Address: "http://p:9090", OAuth2: &OAuth2{ClientID: "c", ClientSecret: "s", TokenURL: "http://t/token"}, SigV4: &SigV4{Region: "us-east-1"}}, "oauth2 and sigv4"},
		{ClientConfig{Address: "http://p:9090", OAuth2: &OAuth2{ClientID: "c", TokenURL: "http://t/token"}}, "client secret are required"},
		{ClientConfig{Address: "http://p:9090", OAuth2: &OAuth2{ClientID: "c", ClientSecret: "s", TokenURL: "token"}}, "token URL"},
		{ClientConfig{Address: "http://p:9090", SigV4: &SigV4{}}, "region is required"},
		{ClientConfig{Address: "http://p:9090", SigV4: &SigV4{Region: "us-east-1", AccessKey: "a"}}, "both an access key and a secret key"},
		{ClientConfig{Address: "http://p:9090", ClientCert: []byte("x")}, "without its private key"},
		{ClientConfig{Address: "http://p:9090", ClientKey: []byte("x")}, "without its certificate"},
		{ClientConfig{Address: "http://p:9090", ClientCert: []byte("not pem"), ClientKey: []byte("not pem")}, "client certificate and key"},
		{ClientConfig{Address: "http://p:9090", Headers: []Header{{Name: "authorization", Value: "x"}}}, "Authorization cannot be set"},
		{ClientConfig{Address: "http://p:9090", Headers: []Header{{Name: "X-A", Value: "a\nb"}}}, "line break"},
		{ClientConfig{Address: "http://p:9090", Headers: []Header{{Name: "X-Scope-OrgID", Value: "a"}}}, ""},
	}
	for _, tt := range tests {
		_, err := NewClient(tt.cfg)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("NewClient(%+v) = %v", tt.cfg, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("NewClient(%+v) = %v, want an error containing %q", tt.cfg, err, tt.wantErr)
		}
	}
}

func TestClientCache(t *testing.T) {
	cache := NewClientCache(2)
	a := ClientConfig{Address: "http://a:9090"}
	b := ClientConfig{Address: "http://b:9090"}
	a2 := ClientConfig{Address: "http://a:9090", BearerToken: "t"}

	ca1, err := cache.Get(a)
	if err != nil {
		t.Fatal(err)
	}
	ca2, _ := cache.Get(a)
	if ca1 != ca2 {
		t.Error("the same config should reuse its client")
	}
	if other, _ := cache.Get(a2); other == ca1 {
		t.Error("a different token should get its own client")
	}
	if cache.Len() != 2 {
		t.Errorf("Len = %d, want 2", cache.Len())
	}
	// a2 is now the most recent; touching a makes b's insertion evict a2.
	if again, _ := cache.Get(a); again != ca1 {
		t.Error("a was evicted too early")
	}
	if _, err := cache.Get(b); err != nil {
		t.Fatal(err)
	}
	if cache.Len() != 2 {
		t.Errorf("Len = %d, want the bound 2", cache.Len())
	}
	if again, _ := cache.Get(a); again != ca1 {
		t.Error("the recently used client was evicted")
	}

	if _, err := cache.Get(ClientConfig{}); err == nil {
		t.Error("an invalid config should be an error")
	}
	if cache.Len() != 2 {
		t.Errorf("an invalid config was cached: Len = %d", cache.Len())
	}

	// Concurrent use (run with -race).
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := ClientConfig{Address: fmt.Sprintf("http://p%d:9090", i%4)}
			for range 20 {
				if _, err := cache.Get(cfg); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if cache.Len() > 2 {
		t.Errorf("Len = %d exceeds the bound", cache.Len())
	}
}

func TestConfigKeyDistinguishesFields(t *testing.T) {
	base := ClientConfig{Address: "http://p:9090"}
	variants := []ClientConfig{
		base,
		{Address: "http://p:9091"},
		{Address: "http://p:9090", BearerToken: "x"},
		{Address: "http://p:9090", Username: "x"},
		{Address: "http://p:9090", Username: "x", Password: "y"},
		{Address: "http://p:9090", Username: "xy"},
		{Address: "http://p:9090", CA: []byte("x")},
		{Address: "http://p:9090", InsecureSkipVerify: true},
		{Address: "http://p:9090", Timeout: time.Second},
		{Address: "http://p:9090", MaxResponseBytes: 1 << 20},
		{Address: "http://p:9090", ClientCert: []byte("x")},
		{Address: "http://p:9090", ClientKey: []byte("x")},
		{Address: "http://p:9090", ServerName: "x"},
		{Address: "http://p:9090", Headers: []Header{{Name: "X", Value: "a"}}},
		{Address: "http://p:9090", Headers: []Header{{Name: "X", Value: "b"}}},
		{Address: "http://p:9090", Headers: []Header{{Name: "X", Value: "a", Secret: true}}},
		{Address: "http://p:9090", OAuth2: &OAuth2{ClientID: "c"}},
		{Address: "http://p:9090", OAuth2: &OAuth2{ClientID: "c", ClientSecret: "s"}},
		{Address: "http://p:9090", OAuth2: &OAuth2{ClientID: "c", Scopes: []string{"a"}}},
		{Address: "http://p:9090", OAuth2: &OAuth2{ClientID: "c", EndpointParams: map[string]string{"a": "b"}}},
		{Address: "http://p:9090", OAuth2: &OAuth2{ClientID: "c", TokenURL: "u"}},
		{Address: "http://p:9090", SigV4: &SigV4{Region: "r"}},
		{Address: "http://p:9090", SigV4: &SigV4{Region: "r", AccessKey: "a"}},
		{Address: "http://p:9090", SigV4: &SigV4{Region: "r", SecretKey: "a"}},
		{Address: "http://p:9090", SigV4: &SigV4{Region: "r", RoleARN: "a"}},
		{Address: "http://p:9090", SigV4: &SigV4{Region: "r", Service: "a"}},
	}
	seen := map[[32]byte]int{}
	for i, v := range variants {
		k := configKey(v)
		if j, dup := seen[k]; dup {
			t.Errorf("configs %d and %d share a key", j, i)
		}
		seen[k] = i
	}
}

func TestClientHeaders(t *testing.T) {
	p, srv := newFakeProm(t, map[string]string{"up": vector("1")})
	p.check = func(r *http.Request) bool {
		return r.Header.Get("X-Scope-OrgID") == "team-a" && r.Header.Get("X-Api-Key") == "k3y" &&
			len(r.Header.Values("X-Extra")) == 2
	}
	headers := []Header{
		{Name: "X-Scope-OrgID", Value: "team-a"},
		{Name: "x-api-key", Value: "k3y", Secret: true},
		{Name: "X-Extra", Value: "1"},
		{Name: "X-Extra", Value: "2"},
	}
	c, err := NewClient(ClientConfig{Address: srv.URL, Headers: headers})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 1 {
		t.Errorf("with the headers: %+v, %v", s, err)
	}
	c, _ = NewClient(ClientConfig{Address: srv.URL, Headers: headers[:1]})
	if _, err := c.Query(context.Background(), "up", time.Time{}); !errors.Is(err, ErrQueryFailed) || !strings.Contains(err.Error(), "401") {
		t.Errorf("without the secret header: %v, want a 401 error", err)
	}
}

func TestClientOAuth2(t *testing.T) {
	ts, err := authproxy.StartTokenServer("modelrollout", "cl1ent-s3cret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ts.Close() })
	p, srv := newFakeProm(t, map[string]string{"up": vector("1")})
	p.check = func(r *http.Request) bool {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		return ok && ts.Valid(tok)
	}
	o := &OAuth2{ClientID: "modelrollout", ClientSecret: "cl1ent-s3cret", TokenURL: ts.URL(),
		Scopes: []string{"metrics:read", "tenant"}, EndpointParams: map[string]string{"audience": "mimir"}}
	c, err := NewClient(ClientConfig{Address: srv.URL, OAuth2: o})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if s, err := c.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 1 {
			t.Fatalf("with oauth2: %+v, %v", s, err)
		}
	}
	reqs := ts.Requests()
	if len(reqs) != 1 {
		t.Errorf("%d token requests for 3 queries; the token should be reused until it expires", len(reqs))
	} else if reqs[0].Get("scope") != "metrics:read tenant" || reqs[0].Get("audience") != "mimir" {
		t.Errorf("token request %v lacks the scopes or endpoint params", reqs[0])
	}

	bad := *o
	bad.ClientSecret = "wrong"
	c, _ = NewClient(ClientConfig{Address: srv.URL, OAuth2: &bad})
	_, err = c.Query(context.Background(), "up", time.Time{})
	if !errors.Is(err, ErrQueryFailed) || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("with a wrong client secret: %v, want the token endpoint's invalid_client", err)
	}
}

func TestClientMTLSAndServerName(t *testing.T) {
	ca, err := authproxy.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey, err := ca.Issue(false, "prometheus.monitoring.svc")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &promAPI{t: t, answers: map[string]string{"up": vector("1")}}
	srv := httptest.NewUnstartedServer(p)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are on purpose
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	srv.StartTLS()
	defer srv.Close()
	clientCert, clientKey, err := ca.Issue(true, "modelrollout")
	if err != nil {
		t.Fatal(err)
	}
	good := ClientConfig{Address: srv.URL, CA: ca.PEM, ClientCert: clientCert, ClientKey: clientKey, ServerName: "prometheus.monitoring.svc"}
	c, err := NewClient(good)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 1 {
		t.Errorf("with the client certificate: %+v, %v", s, err)
	}

	noCert := good
	noCert.ClientCert, noCert.ClientKey = nil, nil
	c, _ = NewClient(noCert)
	if _, err := c.Query(context.Background(), "up", time.Time{}); !errors.Is(err, ErrQueryFailed) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without a client certificate: %v, want a TLS certificate error", err)
	}

	noName := good
	noName.ServerName = ""
	c, _ = NewClient(noName)
	if _, err := c.Query(context.Background(), "up", time.Time{}); !errors.Is(err, ErrQueryFailed) || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("without serverName the certificate does not match 127.0.0.1: %v", err)
	}
}

// TestClientSigV4 checks that a query reaching the server is signed by the
// Prometheus project's sigv4 library with the static keys, region and
// service configured, after the configured headers are added.
func TestClientSigV4(t *testing.T) {
	// Keep the machine's AWS configuration out of the test.
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_PROFILE", "")
	var got http.Header
	var mu sync.Mutex
	p, srv := newFakeProm(t, map[string]string{"up": vector("1")})
	p.check = func(r *http.Request) bool {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		return true
	}
	for _, tt := range []struct{ service, want string }{{"", "aps"}, {"execute-api", "execute-api"}} {
		c, err := NewClient(ClientConfig{Address: srv.URL, Headers: []Header{{Name: "X-Scope-OrgID", Value: "team-a"}},
			SigV4: &SigV4{Region: "eu-west-1", AccessKey: "AKIDEXAMPLE", SecretKey: "wJalrXUtnFEMI/K7MDENG", Service: tt.service}})
		if err != nil {
			t.Fatal(err)
		}
		if s, err := c.Query(context.Background(), "up", time.Time{}); err != nil || s.Value != 1 {
			t.Fatalf("signed query: %+v, %v", s, err)
		}
		mu.Lock()
		auth := got.Get("Authorization")
		mu.Unlock()
		re := regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/(\d{8})/eu-west-1/` + tt.want + `/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$`)
		m := re.FindStringSubmatch(auth)
		if m == nil {
			t.Fatalf("Authorization %q is not a SigV4 signature for eu-west-1/%s", auth, tt.want)
		}
		if date := got.Get("X-Amz-Date"); !strings.HasPrefix(date, m[1]) {
			t.Errorf("X-Amz-Date %q does not match the credential date %s", date, m[1])
		}
		if !strings.Contains(m[2], "host") || !strings.Contains(m[2], "x-amz-date") {
			t.Errorf("SignedHeaders %q should cover host and x-amz-date", m[2])
		}
		if got.Get("X-Scope-OrgID") != "team-a" {
			t.Errorf("the configured header is missing next to the signature: %v", got)
		}
	}
}

func TestClientHTTPErrorExcerpt(t *testing.T) {
	body := "<html>\n<body>\x00Bad   gateway" + strings.Repeat(" padding", 100) + "</body></html>"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	c, err := NewClient(ClientConfig{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Query(context.Background(), "up", time.Time{})
	if !errors.Is(err, ErrQueryFailed) || !strings.Contains(err.Error(), "server error: 502: <html> <body>?Bad gateway padding") {
		t.Fatalf("got %v, want the start of the body, one line, printable", err)
	}
	if len(err.Error()) > 300 || strings.Contains(err.Error(), "credentials") {
		t.Errorf("the excerpt is not short, or a 502 was blamed on credentials: %q", err)
	}
}
