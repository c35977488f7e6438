// Package vllmsim is a fake vLLM server for tests: it speaks the
// OpenAI-compatible API (chat and text completions, streaming or not,
// embeddings, models), exposes vLLM's real Prometheus metric names on
// /metrics, and has knobs for latency, time to first token, inter-token
// latency, response length and an error rate, which a test can change at run
// time through /control to turn a canary bad mid-rollout.
//
// Each Server has its own Prometheus registry, so several simulators can run
// in one test process.
package vllmsim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// BackendHeader is the response header naming the backend (Config.Name)
// that served a request.
const BackendHeader = "x-backend"

// Server is a simulated vLLM server. Its methods are safe for concurrent use.
type Server struct {
	name, model string // fixed for the life of the server
	metrics     *metrics
	handler     http.Handler
	idPrefix    string
	seq         atomic.Uint64
	kvTokens    atomic.Int64 // tokens held by running requests

	mu        sync.Mutex
	cfg       Config
	errRNG    *rand.Rand // error decisions only, so jitter draws don't shift them
	jitterRNG *rand.Rand
	running   int
	waiting   int
	slotFreed chan struct{} // closed and replaced whenever a slot may have freed

	lifeMu  sync.Mutex
	httpSrv *http.Server
	cancel  context.CancelFunc
	addr    string
	started bool
}

// New returns a simulator with cfg. Empty Name, Model, Tokens and
// KVCacheTokens get their defaults; other zero values are used as they are
// (zero delays, no errors). It panics if cfg is invalid (see
// Config.Validate).
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		panic("vllmsim.New: invalid config: " + err.Error())
	}
	s := &Server{
		name:      cfg.Name,
		model:     cfg.Model,
		cfg:       cfg,
		idPrefix:  fmt.Sprintf("%08x", rand.Uint32()),
		slotFreed: make(chan struct{}),
	}
	s.reseedLocked(cfg.Seed)
	s.metrics = newMetrics(cfg.Model, stateFuncs{
		running: func() float64 { s.mu.Lock(); defer s.mu.Unlock(); return float64(s.running) },
		waiting: func() float64 { s.mu.Lock(); defer s.mu.Unlock(); return float64(s.waiting) },
		kvUsage: func() float64 {
			s.mu.Lock()
			capacity := s.cfg.KVCacheTokens
			s.mu.Unlock()
			return min(1, float64(s.kvTokens.Load())/float64(capacity))
		},
	})
	s.handler = s.routes()
	return s
}

func (s *Server) reseedLocked(seed int64) {
	if seed == 0 {
		seed = rand.Int64()
	}
	s.errRNG = rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	s.jitterRNG = rand.New(rand.NewPCG(uint64(seed), 0xbf58476d1ce4e5b9))
}

// Handler returns the HTTP handler of the simulator, to serve it yourself
// (for example with httptest.NewServer).
func (s *Server) Handler() http.Handler { return s.handler }

// Config returns the current configuration.
func (s *Server) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// SetConfig replaces the configuration. Empty Name and Model mean "keep";
// they cannot be changed at run time. Requests already generating keep the
// configuration they started with; new requests use cfg.
func (s *Server) SetConfig(cfg Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cfg.Name == "" {
		cfg.Name = s.cfg.Name
	}
	if cfg.Model == "" {
		cfg.Model = s.cfg.Model
	}
	return s.applyLocked(cfg.withDefaults())
}

// UpdateConfig changes the configuration with fn, atomically with respect to
// other updates, and validates the result. On error nothing changes.
func (s *Server) UpdateConfig(fn func(*Config)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.cfg
	fn(&next)
	return s.applyLocked(next)
}

func (s *Server) applyLocked(next Config) error {
	if err := next.Validate(); err != nil {
		return err
	}
	if next.Name != s.cfg.Name {
		return fmt.Errorf("name: cannot be changed at run time (is %q)", s.cfg.Name)
	}
	if next.Model != s.cfg.Model {
		return fmt.Errorf("model: cannot be changed at run time (is %q)", s.cfg.Model)
	}
	if next.Seed != s.cfg.Seed {
		s.reseedLocked(next.Seed)
	}
	s.cfg = next
	s.wakeLocked() // MaxRunning may have grown
	return nil
}

func (s *Server) wakeLocked() {
	close(s.slotFreed)
	s.slotFreed = make(chan struct{})
}

// Start serves the simulator on addr (such as "127.0.0.1:0") in the
// background and returns the address it listens on. A Server can be started
// once.
func (s *Server) Start(addr string) (string, error) {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.started {
		return "", errors.New("vllmsim: server already started")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("vllmsim: %w", err)
	}
	base, cancel := context.WithCancel(context.Background())
	s.httpSrv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	s.cancel = cancel
	s.addr = ln.Addr().String()
	s.started = true
	go s.httpSrv.Serve(ln) //nolint:errcheck // returns ErrServerClosed on Close
	return s.addr, nil
}

// Addr returns the address Start listens on, or "" before Start.
func (s *Server) Addr() string {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	return s.addr
}

// URL returns "http://" + Addr(), or "" before Start.
func (s *Server) URL() string {
	if a := s.Addr(); a != "" {
		return "http://" + a
	}
	return ""
}

// Close stops a server started with Start: it cancels in-flight requests
// (they count as finished_reason="abort") and waits for their handlers to
// return. It is a no-op for a server that was not started.
func (s *Server) Close() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.httpSrv == nil {
		return nil
	}
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.httpSrv.Shutdown(ctx)
	if err != nil {
		err = s.httpSrv.Close()
	}
	s.httpSrv = nil
	return err
}

// routes builds the HTTP handler.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) { s.serveGeneration(w, r, true) })
	mux.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, r *http.Request) { s.serveGeneration(w, r, false) })
	mux.HandleFunc("POST /v1/embeddings", s.serveEmbeddings)
	mux.HandleFunc("GET /v1/models", s.serveModels)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /control", s.serveGetControl)
	mux.HandleFunc("PUT /control", s.servePutControl)
	mux.HandleFunc("POST /control", s.servePutControl)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow, ok := knownPaths[r.URL.Path]; ok {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "Method Not Allowed")
			return
		}
		writeError(w, http.StatusNotFound, "NotFoundError", "Not Found: "+r.URL.Path)
	})
	return s.instrument(mux)
}

// knownPaths maps each route to its Allow header.
var knownPaths = map[string]string{
	"/v1/chat/completions": "POST",
	"/v1/completions":      "POST",
	"/v1/embeddings":       "POST",
	"/v1/models":           "GET, HEAD",
	"/health":              "GET, HEAD",
	"/metrics":             "GET, HEAD",
	"/control":             "GET, HEAD, PUT, POST",
}

// uninstrumented are the paths vLLM's instrumentator excludes (plus the
// simulator's own /control).
var uninstrumented = map[string]bool{"/metrics": true, "/health": true, "/control": true}

// instrument sets the x-backend header and counts requests like
// prometheus-fastapi-instrumentator: http_requests_total{handler,method,status}
// with status classes "2xx", "4xx", "5xx", and handler "none" for unknown
// paths.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(BackendHeader, s.name)
		handler := r.URL.Path
		if uninstrumented[handler] {
			next.ServeHTTP(w, r)
			return
		}
		if _, ok := knownPaths[handler]; !ok {
			handler = "none"
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		s.metrics.httpRequests.WithLabelValues(handler, r.Method, fmt.Sprintf("%dxx", status/100)).Inc()
		s.metrics.httpDuration.WithLabelValues(handler, r.Method).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the Flusher underneath.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
