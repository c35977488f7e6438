package controllers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crevent "sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/redact"
)

// Webhook calls run off the reconcile workers, like gate rounds. A blocking
// call (PreRollout, ConfirmPromotion) is asked for by a decision; its answer
// is kept until a decision takes it (results, then ack once the status that
// folds it is written) and announced through the work queue. OnTransition
// notifications are sent after the status write that changes the phase,
// with a few retries, and forgotten.

const (
	// webhookConcurrency bounds the webhook calls in flight.
	webhookConcurrency = 32
	// webhookExcerpt is how much of an answer reaches status and Events.
	webhookExcerpt = 120
	// webhookMaxBody is how much of an answer is read.
	webhookMaxBody = 64 << 10
	// notifyAttempts is how often an OnTransition notification is tried.
	notifyAttempts = 3
)

// WebhookPayload is the JSON document POSTed to every webhook. Its fields are
// those of the Event that goes with the call.
type WebhookPayload struct {
	// Type is PreRollout, ConfirmPromotion or OnTransition.
	Type rolloutsv1.WebhookType `json:"type"`
	// Webhook is the webhook's name in the rollout.
	Webhook   string `json:"webhook"`
	Namespace string `json:"namespace"`
	Rollout   string `json:"rollout"`
	// Phase is the rollout's phase; PreviousPhase the one before an
	// OnTransition.
	Phase         rolloutsv1.Phase `json:"phase"`
	PreviousPhase rolloutsv1.Phase `json:"previousPhase,omitempty"`
	Revision      string           `json:"revision,omitempty"`
	Stable        string           `json:"stable,omitempty"`
	Canary        string           `json:"canary,omitempty"`
	// Step is "i/n" once a step started; CanaryWeight its weight.
	Step         string `json:"step,omitempty"`
	CanaryWeight int32  `json:"canaryWeight"`
	// Reason and Message are those of the transition's Event (OnTransition)
	// or of the rollout's status.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Call numbers the calls of a blocking webhook in this attempt.
	Call     int32             `json:"call,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Time     time.Time         `json:"time"`
}

type hookKey struct {
	rollout  types.NamespacedName
	name     string
	revision string
	call     int32
}

// webhookRunner makes webhook calls in the background.
type webhookRunner struct {
	policy  *egress.Policy
	secrets client.Reader
	base    context.Context
	notify  chan crevent.TypedGenericEvent[client.Object]
	slots   *fairShare
	log     logr.Logger

	mu       sync.Mutex
	inflight map[hookKey]bool
	done     map[types.NamespacedName][]hookResult
}

func newWebhookRunner(ctx context.Context, policy *egress.Policy, secrets client.Reader, log logr.Logger) *webhookRunner {
	if policy == nil {
		policy = defaultEgress
	}
	return &webhookRunner{
		policy:   policy,
		secrets:  secrets,
		base:     ctx,
		notify:   make(chan crevent.TypedGenericEvent[client.Object], 256),
		slots:    newFairShare(poolWebhooks, webhookConcurrency, DefaultWebhookConcurrencyPerNamespace, nil),
		log:      log,
		inflight: map[hookKey]bool{},
		done:     map[types.NamespacedName][]hookResult{},
	}
}

// results returns the answers waiting for the rollout, without taking them.
func (w *webhookRunner) results(key types.NamespacedName) []hookResult {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]hookResult(nil), w.done[key]...)
}

// ack drops answers that a written status has folded in.
func (w *webhookRunner) ack(key types.NamespacedName, taken []hookResult) {
	if w == nil || len(taken) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	rest := w.done[key][:0]
	for _, r := range w.done[key] {
		acked := false
		for _, t := range taken {
			if t.Name == r.Name && t.Revision == r.Revision && t.Call == r.Call {
				acked = true
			}
		}
		if !acked {
			rest = append(rest, r)
		}
	}
	if len(rest) == 0 {
		delete(w.done, key)
		return
	}
	w.done[key] = rest
}

// forget drops what is known of a deleted rollout.
func (w *webhookRunner) forget(key types.NamespacedName) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.done, key)
}

// start makes the calls a written decision asked for.
func (w *webhookRunner) start(ro *rolloutsv1.ModelRollout, calls []hookCall) {
	if w == nil {
		return
	}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	snapshot := ro.DeepCopy()
	for _, c := range calls {
		k := hookKey{rollout: key, name: c.Webhook.Name, revision: c.Revision, call: c.Call}
		w.mu.Lock()
		if w.inflight[k] {
			w.mu.Unlock()
			continue
		}
		w.inflight[k] = true
		w.mu.Unlock()
		go func() {
			res := w.callBlocking(snapshot, c)
			w.mu.Lock()
			delete(w.inflight, k)
			w.done[key] = append(w.done[key], res)
			w.mu.Unlock()
			select {
			case w.notify <- crevent.TypedGenericEvent[client.Object]{Object: snapshot}:
			case <-w.base.Done():
			}
		}()
	}
}

func (w *webhookRunner) callBlocking(ro *rolloutsv1.ModelRollout, c hookCall) hookResult {
	res := hookResult{Name: c.Webhook.Name, Revision: c.Revision, Call: c.Call}
	release, ok := w.slots.acquire(w.base, ro.Namespace)
	if !ok {
		res.Message, res.At = "operator stopping", time.Now()
		return res
	}
	defer release()
	payload := payloadOf(ro, c.Webhook)
	payload.Reason = rolloutsv1.ReasonWebhookPending
	payload.Call = c.Call
	code, msg, err := w.post(ro.Namespace, c.Webhook, payload)
	res.At = time.Now()
	switch {
	case err != nil:
		res.Message = err.Error()
	case code == http.StatusAccepted:
		res.NotYet, res.Message = true, msg
	case code >= 200 && code < 300:
		res.Passed, res.Message = true, msg
	default:
		res.Message = msg
	}
	w.log.V(1).Info("Webhook called", "rollout", ro.Namespace+"/"+ro.Name, "webhook", c.Webhook.Name, "type", c.Webhook.Type, "call", c.Call, "passed", res.Passed, "answer", res.Message)
	return res
}

// notifyTransition sends the OnTransition notifications of a phase change.
func (w *webhookRunner) notifyTransition(ro *rolloutsv1.ModelRollout, previous rolloutsv1.Phase, evs []event) {
	hooks := webhooksOf(ro, rolloutsv1.WebhookOnTransition)
	if w == nil || len(hooks) == 0 {
		return
	}
	snapshot := ro.DeepCopy()
	for _, h := range hooks {
		payload := payloadOf(snapshot, h)
		payload.PreviousPhase = previous
		payload.Reason, payload.Message = string(snapshot.Status.Phase), snapshot.Status.Message
		if n := len(evs); n > 0 {
			payload.Reason, payload.Message = evs[n-1].Reason, evs[n-1].Message
		}
		go func() {
			release, ok := w.slots.acquire(w.base, snapshot.Namespace)
			if !ok {
				return
			}
			defer release()
			var err error
			var code int
			var msg string
			for attempt := 1; attempt <= notifyAttempts; attempt++ {
				code, msg, err = w.post(snapshot.Namespace, h, payload)
				if err == nil && code >= 200 && code < 300 {
					return
				}
				select {
				case <-time.After(time.Duration(attempt) * time.Second):
				case <-w.base.Done():
					return
				}
			}
			if err == nil {
				err = errors.New(msg)
			}
			w.log.Info("OnTransition webhook failed", "rollout", snapshot.Namespace+"/"+snapshot.Name, "webhook", h.Name, "attempts", notifyAttempts, "error", err.Error())
		}()
	}
}

func payloadOf(ro *rolloutsv1.ModelRollout, h rolloutsv1.Webhook) WebhookPayload {
	st := &ro.Status
	p := WebhookPayload{
		Type: h.Type, Webhook: h.Name, Namespace: ro.Namespace, Rollout: ro.Name,
		Phase: st.Phase, Revision: st.Revision, Step: st.Step, CanaryWeight: st.CanaryWeight,
		Message: st.Message, Metadata: h.Metadata, Time: time.Now().UTC(),
	}
	if st.Stable != nil {
		p.Stable = st.Stable.String()
	}
	if st.Canary != nil {
		p.Canary = st.Canary.String()
	}
	return p
}

// post sends one call and returns the status code and a short, sanitised
// account of the answer, or an error when there was none.
func (w *webhookRunner) post(namespace string, h rolloutsv1.Webhook, payload WebhookPayload) (int, string, error) {
	ctx, cancel := context.WithTimeout(w.base, webhookTimeout(h))
	defer cancel()
	body, err := json.Marshal(payload)
	if err != nil {
		return 0, "", fmt.Errorf("encode the request: %w", err)
	}
	opts := egress.Options{Timeout: webhookTimeout(h)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "", fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "modelrollout-webhook")
	// Whatever comes back is scrubbed of what was sent.
	sc := redact.New()
	sc.AddURL(h.URL)
	if h.AuthSecretRef != nil {
		if err := w.authorize(ctx, namespace, h.AuthSecretRef.Name, req, &opts, sc); err != nil {
			return 0, "", err
		}
	}
	hc, err := w.policy.Client(opts)
	if err != nil {
		return 0, "", err
	}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("POST %s: %s", redactURL(h.URL), errorText(sc.Error(err)))
	}
	defer resp.Body.Close()
	b, _ := egress.ReadCapped(resp.Body, webhookMaxBody)
	msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if ex := egress.Excerpt(sc.Bytes(b), webhookExcerpt); ex != "" {
		msg += ": " + ex
	}
	return resp.StatusCode, msg, nil
}

// authorize adds the credentials of the rollout's Secret.
func (w *webhookRunner) authorize(ctx context.Context, namespace, name string, req *http.Request, opts *egress.Options, sc *redact.Scrubber) error {
	if w.secrets == nil {
		return errors.New("no Secret reader configured")
	}
	secret, refused, err := readAuthSecret(ctx, w.secrets, namespace, name, "webhook auth Secret")
	switch {
	case err != nil:
		return err
	case refused != "":
		return fmt.Errorf("%s: %s", rolloutsv1.ReasonInvalidConfig, refused)
	}
	token := strings.TrimSpace(string(secret.Data["token"]))
	user, pass := string(secret.Data["username"]), string(secret.Data["password"])
	switch {
	case token != "" && user != "":
		return fmt.Errorf(`webhook auth Secret %s has both "token" and "username": keep one`, name)
	case token != "":
		req.Header.Set("Authorization", "Bearer "+token)
		sc.Add(token)
	case user != "":
		req.SetBasicAuth(user, pass)
		sc.AddBasic(user, pass)
	}
	if ca := secret.Data["ca.crt"]; len(ca) > 0 {
		opts.TLS = &egress.TLSOptions{CAPEM: ca}
	}
	return nil
}

// redactURL drops the query and user info of a URL for messages.
func redactURL(raw string) string { return redact.URL(raw) }

// errorText is a short account of a transport error.
func errorText(err error) string {
	// Not the *url.Error's text: it repeats the URL, query included.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer within the timeout"
	}
	return egress.Excerpt([]byte(err.Error()), 200)
}
