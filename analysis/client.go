package analysis

import (
	"compress/gzip"
	"container/list"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/sigv4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/modelrollout/modelrollout/analysis/egress"
	"github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/redact"
)

// DefaultQueryTimeout bounds a query when ClientConfig.Timeout is zero. It
// matches the CRD default of analysis.prometheus.timeout.
const DefaultQueryTimeout = v1alpha1.DefaultPrometheusTimeout

// DefaultMaxResponseBytes bounds a Prometheus answer when
// ClientConfig.MaxResponseBytes is zero: 8 MiB, decompressed.
const DefaultMaxResponseBytes = 8 << 20

// sigV4SetupTimeout bounds loading the AWS configuration and the first
// retrieval of credentials when a SigV4 client is built.
const sigV4SetupTimeout = 10 * time.Second

// Errors a query can fail with. Test them with errors.Is: a failed query
// wraps exactly one of them.
var (
	// ErrMultipleSeries: the query returned a vector of several series; a gate
	// needs one number. Aggregate (sum, max, ...) in the query.
	ErrMultipleSeries = errors.New("query returned several series")
	// ErrUnexpectedType: the query returned a range vector (matrix), a
	// string, a native histogram or nothing at all instead of a scalar or
	// an instant vector.
	ErrUnexpectedType = errors.New("query returned an unexpected type")
	// ErrQueryFailed: Prometheus could not be reached, did not answer in
	// time, or answered with an error (bad query, execution error, HTTP
	// error). The underlying error is wrapped too, so errors.As can reach a
	// *v1.Error and errors.Is can match context.DeadlineExceeded.
	ErrQueryFailed = errors.New("prometheus query failed")
)

// Sample is the classified result of an instant query.
//
// When NoData is true, Value is meaningless and Reason says why there is
// nothing to judge: an empty vector, NaN, +Inf or -Inf. Reason also carries
// the warnings Prometheus attached to the answer, if any, for a sample with
// data as well.
type Sample struct {
	Value  float64
	NoData bool
	Reason string
}

// Querier runs one instant query and classifies its result. *Client
// implements it; tests use fakes.
type Querier interface {
	Query(ctx context.Context, query string, at time.Time) (Sample, error)
}

// ClientConfig is how to reach a Prometheus-compatible query API. The
// zero values of the optional fields mean: no authentication, the system
// roots for TLS, DefaultQueryTimeout.
type ClientConfig struct {
	// Address is the base URL of the HTTP API, e.g. http://prometheus:9090.
	Address string
	// BearerToken, when set, is sent as "Authorization: Bearer <token>".
	// Mutually exclusive with Username/Password.
	BearerToken string
	// Username and Password, when Username is set, are sent as HTTP basic
	// auth.
	Username, Password string
	// CA is a PEM bundle of the certificate authorities to trust instead of
	// the system roots.
	CA []byte
	// ClientCert and ClientKey, when set, are a PEM TLS client certificate
	// and its private key, presented to servers that ask for one (mTLS).
	ClientCert, ClientKey []byte
	// ServerName is the name the server's certificate is checked against
	// instead of the address's host.
	ServerName string
	// InsecureSkipVerify disables TLS certificate verification.
	InsecureSkipVerify bool
	// Headers are sent with every query, in order.
	Headers []Header
	// OAuth2, when set, gets the bearer token from a token endpoint with the
	// client credentials grant. Mutually exclusive with BearerToken,
	// Username and SigV4.
	OAuth2 *OAuth2
	// SigV4, when set, signs every query with AWS Signature Version 4.
	// Mutually exclusive with BearerToken, Username and OAuth2.
	SigV4 *SigV4
	// Timeout bounds every query (a context deadline); 0 means
	// DefaultQueryTimeout. A shorter deadline on the caller's context wins.
	Timeout time.Duration
	// MaxResponseBytes bounds every answer, after decompression;
	// 0 means DefaultMaxResponseBytes. A larger answer fails the query with
	// an error wrapping ErrQueryFailed and egress.ErrTooLarge.
	MaxResponseBytes int64
	// DialContext, when set, opens every connection (queries and OAuth2
	// token requests), e.g. egress.Policy.DialContext. It is not part of the
	// ClientCache key: one process uses one.
	DialContext config.DialContextFunc `json:"-"`
}

// Header is an HTTP header sent with every query.
type Header struct {
	Name, Value string
	// Secret marks a value that is a credential: it is never printed.
	Secret bool
}

// OAuth2 is an OAuth 2.0 client credentials grant.
type OAuth2 struct {
	ClientID, ClientSecret string
	// TokenURL is trusted with the same CA and client certificate as the
	// Prometheus address.
	TokenURL       string
	Scopes         []string
	EndpointParams map[string]string
}

// SigV4 signs requests with AWS Signature Version 4 through the Prometheus
// project's sigv4 library.
type SigV4 struct {
	// Region of the signature; required.
	Region string
	// AccessKey and SecretKey are static credentials. When both are empty
	// the AWS SDK's default credential chain (environment, web identity,
	// instance role) of the operator's process is used.
	AccessKey, SecretKey string
	// RoleARN, when set, is assumed through AWS STS with the credentials.
	RoleARN string
	// Service signed for; "aps" when empty.
	Service string
}

// Client queries one Prometheus. It is safe for concurrent use.
type Client struct {
	api     promv1.API
	raw     api.Client
	timeout time.Duration
	// scrub removes the client's credentials from the errors it returns.
	scrub *redact.Scrubber
	limit int64
}

var _ Querier = (*Client)(nil)

// Validate checks cfg without building anything or reaching any server: the
// address, that at most one authorization mode is set, and that every
// certificate and key parses.
func (cfg ClientConfig) Validate() error {
	if cfg.Address == "" {
		return errors.New("prometheus address is empty")
	}
	u, err := url.Parse(cfg.Address)
	if err != nil {
		return fmt.Errorf("prometheus address %q: %w", cfg.Address, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("prometheus address %q must be an http:// or https:// URL with a host", cfg.Address)
	}
	var modes []string
	if cfg.BearerToken != "" {
		modes = append(modes, "a bearer token")
	}
	if cfg.Username != "" {
		modes = append(modes, "a username and password")
	}
	if cfg.OAuth2 != nil {
		modes = append(modes, "oauth2")
	}
	if cfg.SigV4 != nil {
		modes = append(modes, "sigv4")
	}
	if len(modes) > 1 {
		return fmt.Errorf("prometheus credentials: %s are set; keep one, not both", strings.Join(modes, " and "))
	}
	if cfg.Username == "" && cfg.Password != "" {
		return errors.New("prometheus credentials: a password without a username")
	}
	if cfg.Timeout < 0 {
		return fmt.Errorf("prometheus timeout %s is negative", cfg.Timeout)
	}
	if len(cfg.CA) > 0 && !x509.NewCertPool().AppendCertsFromPEM(cfg.CA) {
		return errors.New("prometheus CA bundle: no PEM certificate found")
	}
	switch {
	case len(cfg.ClientCert) > 0 && len(cfg.ClientKey) == 0:
		return errors.New("prometheus TLS client certificate without its private key")
	case len(cfg.ClientCert) == 0 && len(cfg.ClientKey) > 0:
		return errors.New("prometheus TLS client key without its certificate")
	case len(cfg.ClientCert) > 0:
		if _, err := tls.X509KeyPair(cfg.ClientCert, cfg.ClientKey); err != nil {
			return fmt.Errorf("prometheus TLS client certificate and key: %w", err)
		}
	}
	for _, h := range cfg.Headers {
		name := http.CanonicalHeaderKey(h.Name)
		if h.Name == "" {
			return errors.New("prometheus header without a name")
		}
		if _, reserved := config.ReservedHeaders[name]; reserved {
			return fmt.Errorf("prometheus header %s cannot be set: the HTTP client or an auth mode sets it", name)
		}
		if strings.ContainsAny(h.Value, "\r\n") {
			return fmt.Errorf("prometheus header %s: the value contains a line break", name)
		}
	}
	if o := cfg.OAuth2; o != nil {
		if o.ClientID == "" || o.ClientSecret == "" {
			return errors.New("prometheus oauth2: a client ID and a client secret are required")
		}
		tu, err := url.Parse(o.TokenURL)
		if err != nil || (tu.Scheme != "http" && tu.Scheme != "https") || tu.Host == "" {
			return fmt.Errorf("prometheus oauth2 token URL %q must be an http:// or https:// URL with a host", o.TokenURL)
		}
	}
	if v := cfg.SigV4; v != nil {
		if v.Region == "" {
			return errors.New("prometheus sigv4: the region is required")
		}
		if (v.AccessKey == "") != (v.SecretKey == "") {
			return errors.New("prometheus sigv4: set both an access key and a secret key, or neither for the default AWS credential chain")
		}
	}
	return nil
}

// httpClientConfig is cfg in prometheus/common's terms. It does the
// authorization (bearer, basic), TLS (CA, client certificate, server name)
// and headers; OAuth 2.0 (see oauth2Transport) and SigV4 wrap its round
// tripper.
func (cfg ClientConfig) httpClientConfig() config.HTTPClientConfig {
	hc := config.DefaultHTTPClientConfig
	hc.TLSConfig = config.TLSConfig{
		CA:                 string(cfg.CA),
		Cert:               string(cfg.ClientCert),
		Key:                config.Secret(cfg.ClientKey),
		ServerName:         cfg.ServerName,
		InsecureSkipVerify: cfg.InsecureSkipVerify,
	}
	switch {
	case cfg.BearerToken != "":
		hc.Authorization = &config.Authorization{Type: "Bearer", Credentials: config.Secret(cfg.BearerToken)}
	case cfg.Username != "":
		hc.BasicAuth = &config.BasicAuth{Username: cfg.Username, Password: config.Secret(cfg.Password)}
	}
	if len(cfg.Headers) > 0 {
		hs := &config.Headers{Headers: map[string]config.Header{}}
		for _, h := range cfg.Headers {
			name := http.CanonicalHeaderKey(h.Name)
			e := hs.Headers[name]
			if h.Secret {
				e.Secrets = append(e.Secrets, config.Secret(h.Value))
			} else {
				e.Values = append(e.Values, h.Value)
			}
			hs.Headers[name] = e
		}
		hc.HTTPHeaders = hs
	}
	return hc
}

// NewClient validates cfg and builds a client with its own HTTP transport.
// Prefer ClientCache.Get in a controller, which reuses clients.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hc := cfg.httpClientConfig()
	if err := hc.Validate(); err != nil {
		return nil, fmt.Errorf("prometheus HTTP configuration: %w", err)
	}
	var opts []config.HTTPClientOption
	if cfg.DialContext != nil {
		opts = append(opts, config.WithDialContextFunc(cfg.DialContext))
	}
	rt, err := config.NewRoundTripperFromConfig(hc, "modelrollout-analysis", opts...)
	if err != nil {
		return nil, fmt.Errorf("prometheus HTTP configuration: %w", err)
	}
	if cfg.OAuth2 != nil {
		rt, err = cfg.oauth2Transport(hc.TLSConfig, rt)
		if err != nil {
			return nil, fmt.Errorf("prometheus oauth2: %w", err)
		}
	}
	if v := cfg.SigV4; v != nil {
		// The signer wraps the headers and TLS of prometheus/common, as in
		// Prometheus's own remote read and write. Building it loads the
		// AWS configuration and retrieves the credentials once; with the
		// default chain that may ask an instance metadata endpoint, so it
		// is bounded.
		ctx, cancel := context.WithTimeout(context.Background(), sigV4SetupTimeout)
		defer cancel()
		rt, err = sigv4.NewSigV4RoundTripper(&sigv4.SigV4Config{
			Region:      v.Region,
			AccessKey:   v.AccessKey,
			SecretKey:   config.Secret(v.SecretKey),
			RoleARN:     v.RoleARN,
			ServiceName: v.Service,
		}, rt, sigv4.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("prometheus sigv4: %w", err)
		}
	}
	limit := cfg.MaxResponseBytes
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	rt = &cappedRoundTripper{next: rt, limit: limit}
	// Redirects are followed only to the address's own origin: the round
	// trippers add the credentials to every request, so a redirect to
	// another scheme, host or port would carry them there.
	raw, err := api.NewClient(api.Config{Address: cfg.Address, Client: &http.Client{Transport: rt, CheckRedirect: egress.SameHostRedirects}})
	if err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	return &Client{api: promv1.NewAPI(raw), raw: raw, timeout: cfg.queryTimeout(), scrub: cfg.scrubber(), limit: limit}, nil
}

// queryTimeout is cfg.Timeout, or DefaultQueryTimeout when zero.
func (cfg ClientConfig) queryTimeout() time.Duration {
	if cfg.Timeout == 0 {
		return DefaultQueryTimeout
	}
	return cfg.Timeout
}

// oauth2Transport wraps next with the client credentials grant of
// cfg.OAuth2: every request carries the token from the token URL, fetched
// once and again when it expires. prometheus/common's OAuth2 round tripper
// is not used because its token requests follow any redirect, re-sending
// the client secret wherever the token endpoint points. The token requests
// here are made with the TLS configuration of the Prometheus address, on
// the same dialer (the egress policy), and follow redirects only to the
// token URL's own origin.
func (cfg ClientConfig) oauth2Transport(tc config.TLSConfig, next http.RoundTripper) (http.RoundTripper, error) {
	tlsConfig, err := config.NewTLSConfig(&tc)
	if err != nil {
		return nil, fmt.Errorf("token endpoint TLS: %w", err)
	}
	tokens := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:       tlsConfig,
			DialContext:           cfg.DialContext,
			MaxIdleConns:          20,
			MaxIdleConnsPerHost:   1,
			IdleConnTimeout:       10 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		CheckRedirect: egress.SameHostRedirects,
		// The token request does not carry the query's context: a token
		// endpoint that never answers would hold the gate round forever.
		Timeout: cfg.queryTimeout(),
	}
	o := cfg.OAuth2
	params := url.Values{}
	for k, v := range o.EndpointParams {
		params.Set(k, v)
	}
	cc := &clientcredentials.Config{
		ClientID:       o.ClientID,
		ClientSecret:   o.ClientSecret,
		TokenURL:       o.TokenURL,
		Scopes:         o.Scopes,
		EndpointParams: params,
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, tokens)
	return &oauth2.Transport{Source: cc.TokenSource(ctx), Base: next}, nil
}

// scrubber knows every credential cfg sends: errors and answers quoted in
// messages are scrubbed of them.
func (cfg ClientConfig) scrubber() *redact.Scrubber {
	sc := redact.New(cfg.BearerToken)
	sc.AddBasic(cfg.Username, cfg.Password)
	sc.AddURL(cfg.Address)
	for _, h := range cfg.Headers {
		if h.Secret {
			sc.Add(h.Value)
		}
	}
	if o := cfg.OAuth2; o != nil {
		sc.Add(o.ClientSecret)
		sc.AddBasic(o.ClientID, o.ClientSecret)
		sc.AddURL(o.TokenURL)
	}
	if v := cfg.SigV4; v != nil {
		sc.Add(v.SecretKey)
	}
	return sc
}

// cappedRoundTripper asks for a gzip answer and reads every answer through
// a size limit that applies to the decompressed bytes, so that neither a
// huge answer nor a small compressed one that inflates (a gzip bomb) is
// read whole.
type cappedRoundTripper struct {
	next  http.RoundTripper
	limit int64
}

func (c *cappedRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body := io.ReadCloser(resp.Body)
	switch enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("prometheus answer: bad gzip encoding: %w", err)
		}
		body = &gzipBody{Reader: zr, raw: resp.Body}
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		resp.Uncompressed = true
	default:
		resp.Body.Close()
		return nil, fmt.Errorf("prometheus answer: unsupported Content-Encoding %q", enc)
	}
	resp.Body = &cappedBody{r: body, left: c.limit, limit: c.limit}
	return resp, nil
}

type gzipBody struct {
	*gzip.Reader
	raw io.Closer
}

func (g *gzipBody) Close() error {
	_ = g.Reader.Close()
	return g.raw.Close()
}

// cappedBody fails a read that goes past limit bytes.
type cappedBody struct {
	r     io.ReadCloser
	left  int64
	limit int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.tooLarge()
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, b.tooLarge()
	}
	return n, err
}

func (b *cappedBody) tooLarge() error {
	return fmt.Errorf("%w of %d bytes", egress.ErrTooLarge, b.limit)
}

func (b *cappedBody) Close() error { return b.r.Close() }

// Query runs an instant query at the given time (now when at is zero),
// bounded by the client's timeout, and classifies the result:
//
//   - a scalar or a one-element vector is a number;
//   - an empty vector, NaN, +Inf or -Inf is no data, with Reason saying which;
//   - several series, a matrix, a string or a native histogram is an error
//     wrapping ErrMultipleSeries or ErrUnexpectedType;
//   - a transport or API failure is an error wrapping ErrQueryFailed.
//
// Warnings returned by Prometheus are appended to Reason and logged through
// the logr.Logger of ctx, if any.
func (c *Client) Query(ctx context.Context, query string, at time.Time) (Sample, error) {
	s, err := c.query(ctx, query, at)
	if err != nil {
		// Transport errors quote the address; HTTP errors the answer.
		return s, c.scrub.Error(err)
	}
	s.Reason = c.scrub.String(s.Reason)
	return s, nil
}

func (c *Client) query(ctx context.Context, query string, at time.Time) (Sample, error) {
	qctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, warnings, infos, err := c.api.Query(qctx, query, at)
	if err != nil {
		// client_golang decodes only scalars, vectors and matrices; other
		// result types (string) fail decoding as a "bad response".
		var apiErr *promv1.Error
		if errors.As(err, &apiErr) && apiErr.Type == promv1.ErrBadResponse {
			if _, typ, found := strings.Cut(apiErr.Msg, "unexpected value type "); found {
				return Sample{}, fmt.Errorf("%w: a %s result; gates need a scalar or an instant vector", ErrUnexpectedType, strings.Trim(typ, `"`))
			}
		}
		if errors.Is(err, egress.ErrTooLarge) {
			return Sample{}, fmt.Errorf("%w: the answer is larger than the operator's limit of %d bytes (--prometheus-max-response-bytes): %w; "+
				"aggregate the query into one series (sum, max, ...)", ErrQueryFailed, c.limit, err)
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return Sample{}, fmt.Errorf("%w: no answer within the %s query timeout: %w", ErrQueryFailed, c.timeout, err)
		}
		if errors.As(err, &apiErr) && (apiErr.Type == promv1.ErrClient || apiErr.Type == promv1.ErrServer) {
			// A plain HTTP error (not the API's JSON): say what the server
			// or the gateway in front of it answered, briefly.
			var extra string
			if d := excerpt(c.scrub.String(apiErr.Detail), 200); d != "" {
				extra = ": " + d
			}
			if strings.HasSuffix(apiErr.Msg, " 401") || strings.HasSuffix(apiErr.Msg, " 403") {
				extra += "; the server refused the query's credentials: check spec.analysis.prometheus " +
					"(authSecretRef, headers, oauth2, sigv4, TLS client certificate)"
			}
			return Sample{}, fmt.Errorf("%w: %w%s", ErrQueryFailed, err, extra)
		}
		return Sample{}, fmt.Errorf("%w: %w", ErrQueryFailed, err)
	}
	log := logr.FromContextOrDiscard(ctx)
	if len(warnings) > 0 {
		log.Info("Prometheus returned warnings", "query", query, "warnings", c.scrub.String(strings.Join(warnings, "; ")))
	}
	if len(infos) > 0 {
		log.V(1).Info("Prometheus returned infos", "query", query, "infos", c.scrub.String(strings.Join(infos, "; ")))
	}
	s, err := Classify(v)
	if err != nil {
		return Sample{}, err
	}
	if len(warnings) > 0 {
		w := "prometheus warnings: " + strings.Join(warnings, "; ")
		if s.Reason != "" {
			s.Reason += "; " + w
		} else {
			s.Reason = w
		}
	}
	return s, nil
}

// Close releases the client's idle connections.
func (c *Client) Close() {
	if ci, ok := c.raw.(api.CloseIdler); ok {
		ci.CloseIdleConnections()
	}
}

// Classify turns the value of an instant query into a Sample, or an error
// wrapping ErrMultipleSeries or ErrUnexpectedType. See Client.Query.
func Classify(v model.Value) (Sample, error) {
	switch r := v.(type) {
	case *model.Scalar:
		if r == nil {
			return Sample{}, fmt.Errorf("%w: no result", ErrUnexpectedType)
		}
		return number(float64(r.Value)), nil
	case model.Vector:
		switch len(r) {
		case 0:
			return Sample{NoData: true, Reason: "empty vector: no series matched"}, nil
		case 1:
			if r[0].Histogram != nil {
				return Sample{}, fmt.Errorf("%w: a native histogram, not a number", ErrUnexpectedType)
			}
			return number(float64(r[0].Value)), nil
		default:
			return Sample{}, fmt.Errorf("%w: %d series, e.g. %s; aggregate them (sum, max, ...) into one", ErrMultipleSeries, len(r), seriesExamples(r))
		}
	case model.Matrix:
		return Sample{}, fmt.Errorf("%w: a range vector (matrix) of %d series; gates need a scalar or an instant vector", ErrUnexpectedType, len(r))
	case *model.String:
		return Sample{}, fmt.Errorf("%w: a string; gates need a scalar or an instant vector", ErrUnexpectedType)
	case nil:
		return Sample{}, fmt.Errorf("%w: no result", ErrUnexpectedType)
	default:
		return Sample{}, fmt.Errorf("%w: %s", ErrUnexpectedType, v.Type())
	}
}

func number(f float64) Sample {
	switch {
	case math.IsNaN(f):
		return Sample{NoData: true, Reason: "NaN: nothing to measure in the window (e.g. 0/0 without traffic)"}
	case math.IsInf(f, 1):
		return Sample{NoData: true, Reason: "+Inf: division by zero or a histogram quantile in the +Inf bucket"}
	case math.IsInf(f, -1):
		return Sample{NoData: true, Reason: "-Inf: division by zero"}
	}
	return Sample{Value: f}
}

func seriesExamples(v model.Vector) string {
	const n = 2
	parts := make([]string, 0, n+1)
	for i, s := range v {
		if i == n {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, s.Metric.String())
	}
	return strings.Join(parts, ", ")
}

// ClientCache keeps one Client per distinct ClientConfig, so reconciles
// reuse HTTP transports and connections. It holds at most max clients and
// evicts the least recently used one beyond that. Configurations are keyed
// by a SHA-256 of all their fields; credentials are not kept as map keys.
// It is safe for concurrent use.
type ClientCache struct {
	mu      sync.Mutex
	max     int
	entries map[[sha256.Size]byte]*list.Element
	lru     *list.List // front = most recently used; values are *cacheEntry
}

type cacheEntry struct {
	key    [sha256.Size]byte
	client *Client
}

// NewClientCache returns a cache of at most max clients (at least 1).
func NewClientCache(max int) *ClientCache {
	if max < 1 {
		max = 1
	}
	return &ClientCache{max: max, entries: map[[sha256.Size]byte]*list.Element{}, lru: list.New()}
}

// Get returns the client for cfg, building it on first use. An invalid
// configuration is an error and is not cached.
func (c *ClientCache) Get(cfg ClientConfig) (Querier, error) {
	key := configKey(cfg)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*cacheEntry).client, nil
	}
	cl, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, client: cl})
	for c.lru.Len() > c.max {
		oldest := c.lru.Back()
		e := oldest.Value.(*cacheEntry)
		c.lru.Remove(oldest)
		delete(c.entries, e.key)
		e.client.Close()
	}
	return cl, nil
}

// Len returns the number of cached clients.
func (c *ClientCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// configKey hashes every field of cfg: its JSON encoding covers them all,
// new ones included, with map keys sorted.
func configKey(cfg ClientConfig) [sha256.Size]byte {
	b, err := json.Marshal(cfg)
	if err != nil {
		// Only unsupported types fail, and ClientConfig has none; a
		// distinct key per call then keeps distinct configs apart.
		b = fmt.Appendf(nil, "%p", &cfg)
	}
	return sha256.Sum256(b)
}
