package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Bodies of the responses the gateway generates itself. The 503/504 ones are
// Envoy's.
const (
	BodyNoRoute           = "route not found"
	BodyNoHealthyUpstream = "no healthy upstream"
	BodyUpstreamTimeout   = "upstream request timeout"
	BodyUpstreamReset     = "upstream connect error or disconnect/reset before headers"
)

// Proxy is the data plane: it routes each request with the current [Table],
// forwards it to 127.0.0.1 and records the metrics. Use [NewProxy] and
// [Proxy.SetTable] to run it from a hand-built table (tests), or let a
// [Gateway] feed it from the API server. It is an http.Handler.
type Proxy struct {
	log       logr.Logger
	table     atomic.Pointer[Table]
	ready     atomic.Bool
	m         *metrics
	rp        *httputil.ReverseProxy
	transport *http.Transport
}

// NewProxy returns a proxy with an empty table (every request gets 404) and
// its own Prometheus registry.
func NewProxy(log logr.Logger) *Proxy {
	p := &Proxy{log: log, m: newMetrics()}
	p.table.Store(&Table{})
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	p.transport = &http.Transport{
		Proxy: nil, // never use HTTP(S)_PROXY from the environment
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil || host != LoopbackHost {
				return nil, fmt.Errorf("test gateway only dials %s, refusing %q", LoopbackHost, addr)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      p.transport,
		FlushInterval:  -1, // flush after every write: SSE and chunked streams pass through
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       nil,
	}
	return p
}

// SetTable atomically replaces the routing table. Requests in flight keep
// the rule, backend and endpoint they already picked.
func (p *Proxy) SetTable(t *Table) {
	if t == nil {
		t = &Table{}
	}
	for _, r := range t.rules {
		for _, b := range r.Backends {
			if b.Cluster != "" {
				p.m.touch(b.Cluster)
			}
		}
	}
	p.table.Store(t)
	p.ready.Store(true)
}

// Table returns the current routing table (never nil).
func (p *Proxy) Table() *Table { return p.table.Load() }

// Registry returns the proxy's private Prometheus registry.
func (p *Proxy) Registry() *prometheus.Registry { return p.m.reg }

// CloseIdleConnections closes idle upstream connections.
func (p *Proxy) CloseIdleConnections() { p.transport.CloseIdleConnections() }

// MetricsHandler serves, like Envoy's admin listener:
//
//	/metrics and /stats/prometheus  the Envoy-style metrics
//	/ready                          200 "LIVE" once a table was set, else 503
//	/routes                         a text dump of the current table
func (p *Proxy) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	h := promhttp.HandlerFor(p.m.reg, promhttp.HandlerOpts{})
	mux.Handle("/metrics", h)
	mux.Handle("/stats/prometheus", h)
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if p.ready.Load() {
			writeText(w, http.StatusOK, "LIVE")
			return
		}
		writeText(w, http.StatusServiceUnavailable, "PRE_INITIALIZING")
	})
	mux.HandleFunc("/routes", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, strings.TrimSuffix(p.Table().String(), "\n"))
	})
	return mux
}

type attemptKey struct{}

// attempt is the state of one proxied request.
type attempt struct {
	rule     *Rule
	backend  *Backend
	target   *url.URL
	start    time.Time
	routeCtx context.Context // ends at timeouts.request
	tryCtx   context.Context // ends at timeouts.backendRequest
	gotConn  atomic.Bool
	timedOut atomic.Bool
}

func attemptFrom(ctx context.Context) *attempt {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	return a
}

// ServeHTTP routes and proxies one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rule, ok := p.table.Load().Route(r)
	if !ok {
		writeText(w, http.StatusNotFound, BodyNoRoute)
		return
	}
	b := rule.Pick(nil)
	switch {
	case b == nil:
		writeText(w, http.StatusInternalServerError, fmt.Sprintf("%s: no backendRef with a non-zero weight", rule))
		return
	case b.Invalid != "":
		writeText(w, http.StatusInternalServerError, b.Invalid)
		return
	}
	ep, ok := b.nextEndpoint()
	if !ok {
		p.m.cxNoneHealthy.WithLabelValues(b.Cluster).Inc()
		p.m.chargeCode(b.Cluster, http.StatusServiceUnavailable)
		writeText(w, http.StatusServiceUnavailable, BodyNoHealthyUpstream)
		return
	}

	a := &attempt{rule: rule, backend: b, target: &url.URL{Scheme: "http", Host: ep}, start: time.Now()}
	a.routeCtx = r.Context()
	if rule.RequestTimeout > 0 {
		var cancel context.CancelFunc
		a.routeCtx, cancel = context.WithTimeout(a.routeCtx, rule.RequestTimeout)
		defer cancel()
	}
	a.tryCtx = a.routeCtx
	if rule.BackendRequestTimeout > 0 {
		var cancel context.CancelFunc
		a.tryCtx, cancel = context.WithTimeout(a.tryCtx, rule.BackendRequestTimeout)
		defer cancel()
	}
	ctx := context.WithValue(a.tryCtx, attemptKey{}, a)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) {
			if a.gotConn.CompareAndSwap(false, true) {
				p.m.rqTotal.WithLabelValues(b.Cluster).Inc()
			}
		},
	})
	active := p.m.rqActive.WithLabelValues(b.Cluster)
	active.Inc()
	defer active.Dec()
	p.log.V(2).Info("proxy", "method", r.Method, "path", r.URL.Path, "rule", rule.String(), "cluster", b.Cluster, "endpoint", ep)
	// A backend may answer before the request body has been read to its
	// end; without full duplex the server then closes the body and the
	// upstream connection, cutting about 1% of streamed responses.
	_ = http.NewResponseController(w).EnableFullDuplex()
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	a := attemptFrom(pr.In.Context())
	pr.SetURL(a.target)
	pr.Out.Host = pr.In.Host // like Envoy, keep the client's Host
	pr.SetXForwarded()
	a.rule.headers.apply(pr.Out.Header)
	a.backend.headers.apply(pr.Out.Header)
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	a := attemptFrom(resp.Request.Context())
	if a == nil {
		return nil
	}
	p.m.chargeCode(a.backend.Cluster, resp.StatusCode)
	resp.Body = &timedBody{ReadCloser: resp.Body, p: p, a: a}
	return nil
}

// timeoutKind reports which route timeout, if any, has expired.
func (a *attempt) timeoutKind() (route, perTry bool) {
	if errors.Is(a.routeCtx.Err(), context.DeadlineExceeded) && a.rule.RequestTimeout > 0 {
		return true, false
	}
	if errors.Is(a.tryCtx.Err(), context.DeadlineExceeded) && a.rule.BackendRequestTimeout > 0 {
		return false, true
	}
	return false, false
}

// countTimeout records a timeout once per attempt; it reports whether one
// happened.
func (p *Proxy) countTimeout(a *attempt) bool {
	route, perTry := a.timeoutKind()
	if !route && !perTry {
		return false
	}
	if a.timedOut.CompareAndSwap(false, true) {
		if route {
			p.m.rqTimeout.WithLabelValues(a.backend.Cluster).Inc()
		} else {
			p.m.rqPerTry.WithLabelValues(a.backend.Cluster).Inc()
		}
	}
	return true
}

// errorHandler answers when no upstream response headers were received.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	a := attemptFrom(r.Context())
	if a == nil {
		writeText(w, http.StatusBadGateway, err.Error())
		return
	}
	cluster := a.backend.Cluster
	switch {
	case p.countTimeout(a):
		p.m.chargeCode(cluster, http.StatusGatewayTimeout)
		writeText(w, http.StatusGatewayTimeout, BodyUpstreamTimeout)
	case a.routeCtx.Err() != nil:
		// The client went away: there is nobody to answer and Envoy
		// charges no upstream code for a downstream reset.
		p.log.V(1).Info("downstream canceled", "cluster", cluster, "error", err.Error())
		w.WriteHeader(499)
	default:
		if !a.gotConn.Load() {
			p.m.cxConnectFail.WithLabelValues(cluster).Inc()
		}
		p.m.chargeCode(cluster, http.StatusServiceUnavailable)
		p.log.V(1).Info("upstream error", "cluster", cluster, "endpoint", a.target.Host, "error", err.Error())
		writeText(w, http.StatusServiceUnavailable, BodyUpstreamReset+". reset reason: "+err.Error())
	}
}

// timedBody observes upstream_rq_time when the upstream body ends.
type timedBody struct {
	io.ReadCloser
	p    *Proxy
	a    *attempt
	done atomic.Bool
}

func (b *timedBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	switch {
	case err == io.EOF:
		if b.done.CompareAndSwap(false, true) {
			b.p.m.observeTime(b.a.backend.Cluster, time.Since(b.a.start))
		}
	case err != nil:
		b.p.countTimeout(b.a) // a timeout while streaming resets the stream
	}
	return n, err
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body+"\n")
}

// String dumps the table: rules in precedence-independent order with their
// backends, then warnings.
func (t *Table) String() string {
	var sb strings.Builder
	for _, r := range t.rules {
		fmt.Fprintf(&sb, "%s", r)
		if r.Name != "" {
			fmt.Fprintf(&sb, " (%s)", r.Name)
		}
		if r.RequestTimeout > 0 || r.BackendRequestTimeout > 0 {
			fmt.Fprintf(&sb, " timeouts request=%s backendRequest=%s", r.RequestTimeout, r.BackendRequestTimeout)
		}
		sb.WriteString("\n")
		for _, b := range r.Backends {
			fmt.Fprintf(&sb, "  %s %s/%s:%d weight=%d", groupKind(b.Group, b.Kind), b.Namespace, b.Name, b.Port, b.Weight)
			if b.Invalid != "" {
				fmt.Fprintf(&sb, " INVALID: %s\n", b.Invalid)
				continue
			}
			fmt.Fprintf(&sb, " cluster=%s endpoints=%v\n", b.Cluster, b.Endpoints)
		}
	}
	for _, w := range t.warnings {
		fmt.Fprintf(&sb, "warning: %s\n", w)
	}
	return sb.String()
}
