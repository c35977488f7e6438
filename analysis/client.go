package analysis

import (
	"container/list"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// DefaultQueryTimeout bounds a query when ClientConfig.Timeout is zero. It
// matches the CRD default of analysis.prometheus.timeout.
const DefaultQueryTimeout = 10 * time.Second

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
	// InsecureSkipVerify disables TLS certificate verification.
	InsecureSkipVerify bool
	// Timeout bounds every query (a context deadline); 0 means
	// DefaultQueryTimeout. A shorter deadline on the caller's context wins.
	Timeout time.Duration
}

// Client queries one Prometheus. It is safe for concurrent use.
type Client struct {
	api     promv1.API
	raw     api.Client
	timeout time.Duration
}

var _ Querier = (*Client)(nil)

// NewClient validates cfg and builds a client with its own HTTP transport.
// Prefer ClientCache.Get in a controller, which reuses clients.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("prometheus address is empty")
	}
	u, err := url.Parse(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("prometheus address %q: %w", cfg.Address, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus address %q must be an http:// or https:// URL with a host", cfg.Address)
	}
	if cfg.BearerToken != "" && (cfg.Username != "" || cfg.Password != "") {
		return nil, errors.New("prometheus credentials: set a bearer token or a username and password, not both")
	}
	if cfg.Username == "" && cfg.Password != "" {
		return nil, errors.New("prometheus credentials: a password without a username")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("prometheus timeout %s is negative", cfg.Timeout)
	}
	if len(cfg.CA) > 0 && !x509.NewCertPool().AppendCertsFromPEM(cfg.CA) {
		return nil, errors.New("prometheus CA bundle: no PEM certificate found")
	}

	hc := config.DefaultHTTPClientConfig
	switch {
	case cfg.BearerToken != "":
		hc.Authorization = &config.Authorization{Type: "Bearer", Credentials: config.Secret(cfg.BearerToken)}
	case cfg.Username != "":
		hc.BasicAuth = &config.BasicAuth{Username: cfg.Username, Password: config.Secret(cfg.Password)}
	}
	hc.TLSConfig = config.TLSConfig{
		CA:                 string(cfg.CA),
		InsecureSkipVerify: cfg.InsecureSkipVerify,
	}
	if err := hc.Validate(); err != nil {
		return nil, fmt.Errorf("prometheus HTTP configuration: %w", err)
	}
	rt, err := config.NewRoundTripperFromConfig(hc, "modelrollout-analysis")
	if err != nil {
		return nil, fmt.Errorf("prometheus HTTP configuration: %w", err)
	}
	raw, err := api.NewClient(api.Config{Address: cfg.Address, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultQueryTimeout
	}
	return &Client{api: promv1.NewAPI(raw), raw: raw, timeout: timeout}, nil
}

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
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return Sample{}, fmt.Errorf("%w: no answer within the %s query timeout: %w", ErrQueryFailed, c.timeout, err)
		}
		return Sample{}, fmt.Errorf("%w: %w", ErrQueryFailed, err)
	}
	log := logr.FromContextOrDiscard(ctx)
	if len(warnings) > 0 {
		log.Info("Prometheus returned warnings", "query", query, "warnings", []string(warnings))
	}
	if len(infos) > 0 {
		log.V(1).Info("Prometheus returned infos", "query", query, "infos", []string(infos))
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

func configKey(cfg ClientConfig) [sha256.Size]byte {
	h := sha256.New()
	field := func(h hash.Hash, b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field(h, []byte(cfg.Address))
	field(h, []byte(cfg.BearerToken))
	field(h, []byte(cfg.Username))
	field(h, []byte(cfg.Password))
	field(h, cfg.CA)
	if cfg.InsecureSkipVerify {
		field(h, []byte{1})
	} else {
		field(h, []byte{0})
	}
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(cfg.Timeout))
	field(h, t[:])
	var key [sha256.Size]byte
	copy(key[:], h.Sum(nil))
	return key
}
