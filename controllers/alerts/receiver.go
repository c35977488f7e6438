package alerts

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/redact"
)

// Path is the only path the receiver serves.
const Path = "/alerts"

// DefaultMaxBodyBytes is the default limit on a request body: 1 MiB.
const DefaultMaxBodyBytes int64 = 1 << 20

// DefaultShutdownTimeout bounds how long Start waits for requests in flight
// when its context ends.
const DefaultShutdownTimeout = 10 * time.Second

// patchTimeout bounds the annotation patches of one request. They run on a
// context detached from the request's, so that an alert already matched is
// still recorded if Alertmanager gives up waiting.
const patchTimeout = 30 * time.Second

// patchConcurrency bounds the patches in flight for one request.
const patchConcurrency = 8

// Options configure a Receiver. Client is required, and exactly one of
// Token and TokenFile.
type Options struct {
	// Client reads ModelRollouts (from the manager's cache) and patches their
	// annotations (through the API server). Required.
	Client client.Client

	// Token is the bearer token Alertmanager must send.
	Token string
	// TokenFile holds the bearer token (surrounding white space is trimmed).
	// It is re-read when it changes, e.g. when a mounted Secret rotates.
	TokenFile string

	// BindAddress is the address Start listens on, e.g. ":9443" or
	// "127.0.0.1:0". Required by Start only.
	BindAddress string
	// TLSCertFile and TLSKeyFile, both or neither, make Start serve HTTPS.
	// The pair is reloaded when the files change.
	TLSCertFile string
	TLSKeyFile  string

	// MaxBodyBytes limits a request body; DefaultMaxBodyBytes when 0.
	MaxBodyBytes int64
	// ShutdownTimeout bounds the graceful shutdown; DefaultShutdownTimeout
	// when 0.
	ShutdownTimeout time.Duration

	// Logger defaults to the controller-runtime logger named "alert-receiver".
	Logger logr.Logger

	// AlertsReceived, when set, counts alerts by status ("firing",
	// "resolved" or "unknown"); it must have exactly one label.
	AlertsReceived *prometheus.CounterVec
	// AlertsMatched, when set, counts firing alerts that matched at least
	// one rollout.
	AlertsMatched prometheus.Counter

	// Clock times requests for the log; the real clock when nil.
	Clock clock.PassiveClock

	// Direct, when set, hands each abort to the controller of this process
	// before the annotation patch: on the leader the abort then starts
	// before the patch's watch event comes back. It returns a channel that
	// is closed once the controller has sent the rollout's route patches,
	// or nil when it will not act (a replica that does not lead): the
	// annotation patch waits for it, at most DirectWait, so that it does
	// not compete with the route patches at the API server. The annotation
	// still carries the abort to every other replica and across a restart,
	// and the receiver answers only once it landed. Direct must not block.
	Direct func(rollout types.NamespacedName, uid types.UID, token, reason, revision string) <-chan struct{}
	// DirectWait bounds how long an annotation patch waits for Direct's
	// channel; DefaultDirectWait when zero.
	DirectWait time.Duration
}

// DefaultDirectWait bounds how long an abort's annotation patch waits for
// the leader's controller to send the route patches first.
const DefaultDirectWait = 2 * time.Second

// Receiver is the Alertmanager webhook receiver. It is an http.Handler and a
// manager.Runnable; see the package documentation.
type Receiver struct {
	client          client.Client
	tokens          *tokenSource
	bindAddress     string
	certFile        string
	keyFile         string
	maxBody         int64
	shutdownTimeout time.Duration
	log             logr.Logger
	received        *prometheus.CounterVec
	matched         prometheus.Counter
	clock           clock.PassiveClock
	direct          func(types.NamespacedName, types.UID, string, string, string) <-chan struct{}
	directWait      time.Duration

	mu   sync.Mutex
	addr net.Addr
}

var (
	_ http.Handler                   = (*Receiver)(nil)
	_ manager.Runnable               = (*Receiver)(nil)
	_ manager.LeaderElectionRunnable = (*Receiver)(nil)
)

// New checks the options and returns a Receiver. It fails when no client is
// set, when the token is empty (or the token file is unreadable or empty),
// and when only one of the TLS files is set.
func New(opts Options) (*Receiver, error) {
	if opts.Client == nil {
		return nil, errors.New("alert receiver: Client is required")
	}
	tokens, err := newTokenSource(opts.Token, opts.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("alert receiver: %w", err)
	}
	if (opts.TLSCertFile == "") != (opts.TLSKeyFile == "") {
		return nil, errors.New("alert receiver: set both TLSCertFile and TLSKeyFile, or neither")
	}
	if opts.MaxBodyBytes < 0 {
		return nil, errors.New("alert receiver: MaxBodyBytes must not be negative")
	}
	r := &Receiver{
		client:          opts.Client,
		tokens:          tokens,
		bindAddress:     opts.BindAddress,
		certFile:        opts.TLSCertFile,
		keyFile:         opts.TLSKeyFile,
		maxBody:         opts.MaxBodyBytes,
		shutdownTimeout: opts.ShutdownTimeout,
		log:             opts.Logger,
		received:        opts.AlertsReceived,
		matched:         opts.AlertsMatched,
		clock:           opts.Clock,
		direct:          opts.Direct,
		directWait:      opts.DirectWait,
	}
	if r.directWait <= 0 {
		r.directWait = DefaultDirectWait
	}
	if r.maxBody == 0 {
		r.maxBody = DefaultMaxBodyBytes
	}
	if r.shutdownTimeout <= 0 {
		r.shutdownTimeout = DefaultShutdownTimeout
	}
	if r.log.GetSink() == nil {
		r.log = ctrllog.Log.WithName("alert-receiver")
	}
	if r.clock == nil {
		r.clock = clock.RealClock{}
	}
	if _, err := tokens.get(); err != nil {
		// A token file that is not there yet (a Secret created after the
		// operator) must not take the controller down with the receiver:
		// every request is refused with 503 until the file can be read.
		r.log.Error(err, "The alert receiver refuses every request until its token file can be read", "tokenFile", opts.TokenFile)
	}
	return r, nil
}

// NeedLeaderElection is false: every replica receives alerts.
func (r *Receiver) NeedLeaderElection() bool { return false }

// Addr is the address Start listens on, or nil before it listens.
func (r *Receiver) Addr() net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// Start serves Path on BindAddress, over TLS when the certificate files are
// set, until ctx ends; then it shuts down gracefully and returns nil. It
// returns an error when it cannot listen or serve, or when the token is
// unusable.
func (r *Receiver) Start(ctx context.Context) error {
	if r.bindAddress == "" {
		return errors.New("alert receiver: BindAddress is required")
	}
	mux := http.NewServeMux()
	mux.Handle(Path, r)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      patchTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(logWriter{r.log}, "", 0),
	}
	var cw *certwatcher.CertWatcher
	if r.certFile != "" {
		var err error
		if cw, err = certwatcher.New(r.certFile, r.keyFile); err != nil {
			return fmt.Errorf("alert receiver: load TLS certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: cw.GetCertificate,
			// HTTP/1.1 only, as controller-runtime's own servers by default;
			// Alertmanager speaks HTTP/1.1.
			NextProtos: []string{"http/1.1"},
		}
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", r.bindAddress)
	if err != nil {
		return fmt.Errorf("alert receiver: listen on %s: %w", r.bindAddress, err)
	}
	r.mu.Lock()
	r.addr = ln.Addr()
	r.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cw != nil {
		go func() {
			if err := cw.Start(ctx); err != nil {
				r.log.Error(err, "TLS certificate watcher stopped")
			}
		}()
	}
	go r.warmUp(ctx)

	serveErr := make(chan error, 1)
	go func() {
		if cw != nil {
			serveErr <- srv.ServeTLS(ln, "", "")
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()
	r.log.Info("Serving Alertmanager webhooks", "address", ln.Addr().String(), "path", Path, "tls", cw != nil)

	select {
	case err := <-serveErr:
		return fmt.Errorf("alert receiver: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), r.shutdownTimeout)
	defer scancel()
	err = srv.Shutdown(sctx)
	<-serveErr // http.ErrServerClosed
	if err != nil {
		return fmt.Errorf("alert receiver: shutdown: %w", err)
	}
	r.log.Info("Stopped serving Alertmanager webhooks")
	return nil
}

// warmUp lists the rollouts once, so that on a replica whose controller
// does not run (not the leader) the cache's informer for ModelRollouts
// starts now rather than on the first alert.
func (r *Receiver) warmUp(ctx context.Context) {
	var list rolloutsv1.ModelRolloutList
	if err := r.client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		if ctx.Err() == nil {
			r.log.Error(err, "Cannot list ModelRollouts; alerts will be answered with 500 until this works")
		}
		return
	}
	r.log.V(1).Info("ModelRollouts readable", "count", len(list.Items))
}

// Summary is the body of a 200 response.
type Summary struct {
	// Alerts is the number of alerts in the payload; Firing of them firing.
	Alerts int `json:"alerts"`
	Firing int `json:"firing"`
	// Matched is the number of firing alerts that matched at least one
	// rollout.
	Matched int `json:"matched"`
	// Rollouts is the number of distinct rollouts matched, split into the
	// ones Patched now, the ones already carrying the alert's token
	// (Unchanged), the ones in a phase that is not aborted (Skipped) and the
	// ones deleted meanwhile (Gone).
	Rollouts  int `json:"rollouts"`
	Patched   int `json:"patched"`
	Unchanged int `json:"unchanged"`
	Skipped   int `json:"skipped"`
	Gone      int `json:"gone"`
}

type errorBody struct {
	Error string `json:"error"`
}

// ServeHTTP handles one Alertmanager notification; see the package
// documentation for the responses.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := r.clock.Now()
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{"method not allowed: POST an Alertmanager webhook payload"})
		return
	}
	want, err := r.tokens.get()
	if err != nil {
		r.log.Error(err, "Refusing alerts: no usable bearer token")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{"receiver has no usable bearer token"})
		return
	}
	if got, ok := bearer(req); !ok || !tokensEqual(got, want) {
		r.log.Info("Rejected an unauthenticated request", "remote", req.RemoteAddr, "hasAuthorization", req.Header.Get("Authorization") != "")
		w.Header().Set("WWW-Authenticate", `Bearer realm="modelrollout-alerts"`)
		writeJSON(w, http.StatusUnauthorized, errorBody{"missing or invalid bearer token"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.maxBody))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{fmt.Sprintf("body exceeds %d bytes", mbe.Limit)})
			return
		}
		writeJSON(w, http.StatusBadRequest, errorBody{"cannot read the body"})
		return
	}
	p, err := ParsePayload(body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	// The receiver's own token never leaves it: not in a rollout's abort
	// reason, not in the log, even when an alert's labels carry it or a
	// URL's credentials.
	sc := redact.New(want)
	nlog := r.log.WithValues("groupKey", sc.String(truncateUTF8(p.GroupKey, 256)), "receiver", sc.String(truncateUTF8(p.Receiver, 128)))
	sum, err := r.handle(req.Context(), nlog, p, sc)
	took := r.clock.Since(start)
	if err != nil {
		nlog.Error(err, "Notification not fully handled; Alertmanager will retry", "took", took.String())
		writeJSON(w, http.StatusInternalServerError, errorBody{"could not record the alerts; see the operator log"})
		return
	}
	nlog.V(1).Info("Notification handled", "summary", sum, "took", took.String())
	writeJSON(w, http.StatusOK, sum)
}

// target is one rollout to abort and the alert that aborts it.
type target struct {
	ro     *rolloutsv1.ModelRollout
	alert  *Alert
	token  string
	reason string
}

// handle matches the firing alerts and patches the rollouts to abort.
func (r *Receiver) handle(ctx context.Context, log logr.Logger, p *Payload, sc *redact.Scrubber) (Summary, error) {
	sum := Summary{Alerts: len(p.Alerts)}
	var firing []*Alert
	for i := range p.Alerts {
		a := &p.Alerts[i]
		r.countReceived(a.Status)
		if a.Firing() {
			firing = append(firing, a)
		}
	}
	sum.Firing = len(firing)
	if len(firing) == 0 {
		return sum, nil
	}

	// The items may be the cache's own objects: read them, never write them.
	var list rolloutsv1.ModelRolloutList
	if err := r.client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return sum, fmt.Errorf("list ModelRollouts: %w", err)
	}
	ix := newIndex(list.Items)

	seen := make(map[*rolloutsv1.ModelRollout]bool)
	var targets []target
	for _, a := range firing {
		matched := ix.match(a.Labels)
		labels := scrubLabels(sc, a.Labels)
		if len(matched) == 0 {
			log.V(1).Info("Firing alert matches no rollout", "alert", labels["alertname"], "labels", labels)
			continue
		}
		sum.Matched++
		if r.matched != nil {
			r.matched.Inc()
		}
		token, reason := AbortToken(a), truncateUTF8(sc.String(AbortReason(a)), MaxReasonBytes)
		for _, ro := range matched {
			rlog := log.WithValues("rollout", types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}.String(),
				"phase", ro.Status.Phase, "alert", labels["alertname"], "labels", labels, "token", token)
			if seen[ro] {
				rlog.Info("Firing alert matches a rollout already handled for an earlier alert of this notification")
				continue
			}
			seen[ro] = true
			sum.Rollouts++
			if !rolloutsv1.ActionAbort.AllowedIn(ro.Status.Phase) {
				sum.Skipped++
				rlog.Info("Firing alert matches a rollout that is not in progress; nothing to abort")
				continue
			}
			if started := ro.Status.StartedAt; started != nil && !a.StartsAt.IsZero() && a.StartsAt.Before(started.Time) {
				// It began firing before this revision's rollout started:
				// about an earlier canary (still in Alertmanager's
				// notifications once the next rollout has begun) or the
				// stable, never this canary, which had no traffic then.
				sum.Skipped++
				rlog.Info("Firing alert began before the rollout of this revision started; it is not about this canary, nothing to abort",
					"startsAt", a.StartsAt, "rolloutStartedAt", started.Time)
				continue
			}
			if ro.Annotations[rolloutsv1.AnnotationAbort] == token || ro.Status.LastHandledAbort == token {
				sum.Unchanged++
				rlog.Info("Firing alert matches a rollout that already carries its abort token")
				continue
			}
			rlog.Info("Firing alert matches a rollout in progress; aborting it", "startsAt", a.StartsAt, "fingerprint", truncateUTF8(a.Fingerprint, 64))
			targets = append(targets, target{ro: ro, alert: a, token: token, reason: reason})
		}
	}
	if len(targets) == 0 {
		return sum, nil
	}

	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), patchTimeout)
	defer cancel()
	errs := make([]error, len(targets))
	// The leader's controller gets every abort first; each annotation
	// patch goes once that rollout's route patches are sent.
	routesSent := make([]<-chan struct{}, len(targets))
	if r.direct != nil {
		for i := range targets {
			t := &targets[i]
			routesSent[i] = r.direct(client.ObjectKeyFromObject(t.ro), t.ro.UID, t.token, t.reason, t.ro.Status.Revision)
		}
	}
	sem := make(chan struct{}, patchConcurrency)
	var wg sync.WaitGroup
	for i := range targets {
		wg.Go(func() {
			r.awaitRoutes(pctx, routesSent[i])
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = r.patch(pctx, log, &targets[i])
		})
	}
	wg.Wait()

	var failed []error
	for i, err := range errs {
		switch {
		case err == nil:
			sum.Patched++
		case apierrors.IsNotFound(err):
			sum.Gone++
			log.Info("Rollout deleted before it could be aborted", "rollout", client.ObjectKeyFromObject(targets[i].ro).String())
		default:
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return sum, fmt.Errorf("%d of %d abort patches failed: %w", len(failed), len(targets), errors.Join(failed...))
	}
	return sum, nil
}

// awaitRoutes waits until sent is closed, at most directWait; a nil sent
// does not wait.
func (r *Receiver) awaitRoutes(ctx context.Context, sent <-chan struct{}) {
	if sent == nil {
		return
	}
	t := time.NewTimer(r.directWait)
	defer t.Stop()
	select {
	case <-sent:
	case <-t.C:
	case <-ctx.Done():
	}
}

// patch writes the abort annotations of one target with a JSON merge patch,
// which leaves every other annotation alone. The UID makes it a
// precondition: a re-created rollout of the same name is not patched.
func (r *Receiver) patch(ctx context.Context, log logr.Logger, t *target) error {
	key := client.ObjectKeyFromObject(t.ro)
	// The revision the alert was matched at: should another revision run
	// by the time the annotation lands, the alert is not about it.
	meta := map[string]any{
		"annotations": map[string]any{
			rolloutsv1.AnnotationAbort:         t.token,
			rolloutsv1.AnnotationAbortReason:   t.reason,
			rolloutsv1.AnnotationAbortRevision: nullIfEmpty(t.ro.Status.Revision),
		},
	}
	if t.ro.UID != "" {
		meta["uid"] = string(t.ro.UID)
	}
	data, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return fmt.Errorf("encode the patch of %s: %w", key, err)
	}
	obj := &rolloutsv1.ModelRollout{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	start := r.clock.Now()
	if err := r.client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, data)); err != nil {
		return fmt.Errorf("patch the abort annotations of %s: %w", key, err)
	}
	log.Info("Abort annotations patched", "rollout", key.String(), "token", t.token, "reason", t.reason,
		"took", r.clock.Since(start).String())
	return nil
}

func (r *Receiver) countReceived(status string) {
	if r.received == nil {
		return
	}
	switch status {
	case StatusFiring, StatusResolved:
	default:
		status = "unknown"
	}
	// GetMetricWithLabelValues, unlike WithLabelValues, reports a
	// mismatched label count as an error instead of panicking.
	if c, err := r.received.GetMetricWithLabelValues(status); err == nil {
		c.Inc()
	}
}

// scrubLabels returns the labels with their values scrubbed by sc.
func scrubLabels(sc *redact.Scrubber, labels map[string]string) map[string]string {
	out := make(map[string]string, len(labels))
	for k, v := range labels {
		out[sc.String(k)] = sc.String(v)
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		code, data = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}

// logWriter sends the http.Server's own messages (TLS handshake errors and
// the like) to the logger.
type logWriter struct{ log logr.Logger }

func (l logWriter) Write(p []byte) (int, error) {
	l.log.V(1).Info(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// nullIfEmpty is nil (a merge patch's delete) for "", else s.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
