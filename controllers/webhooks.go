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
	"github.com/modelrollout/modelrollout/internal/plan"
	"github.com/modelrollout/modelrollout/internal/redact"
)

// Webhook calls run off the reconcile workers, like gate rounds. A blocking
// call (PreRollout, ConfirmPromotion) is asked for by a decision; its answer
// is kept until a decision takes it (results, then ack once the status that
// folds it is written) and announced through the work queue; a call
// superseded (a new revision, the rollout's deletion) is cancelled.
// OnTransition notifications are sent after the status write that changes
// the phase, with a few retries, and forgotten. Those of one rollout to one
// webhook leave one after another, in the order of the transitions, from a
// queue of at most notifyQueueMax; when it is full the oldest waiting one is
// dropped, counted and announced by a Warning Event.

const (
	// webhookConcurrency bounds the webhook calls in flight.
	webhookConcurrency = 32
	// webhookExcerpt is how much of an answer reaches status and Events.
	webhookExcerpt = 120
	// webhookMaxBody is how much of an answer is read.
	webhookMaxBody = 64 << 10
	// notifyAttempts is how often an OnTransition notification is tried.
	notifyAttempts = 3
	// notifyQueueMax bounds the OnTransition notifications of one rollout
	// to one webhook that wait behind the one being sent.
	notifyQueueMax = 16
	// hookResultsMax bounds the answers kept for one rollout until a
	// decision takes them; beyond it the oldest go (and their webhooks are
	// called again once overdue).
	hookResultsMax = 32
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

// hookRun is one blocking call in flight.
type hookRun struct {
	cancel context.CancelFunc
}

// noteKey names the queue of a rollout's notifications to one webhook.
type noteKey struct {
	rollout types.NamespacedName
	hook    string
}

// notification is one OnTransition call waiting to leave.
type notification struct {
	ro      *rolloutsv1.ModelRollout
	hook    rolloutsv1.Webhook
	payload WebhookPayload
}

// webhookRunner makes webhook calls in the background.
type webhookRunner struct {
	policy  *egress.Policy
	secrets client.Reader
	base    context.Context
	notify  chan crevent.TypedGenericEvent[client.Object]
	slots   *fairShare
	log     logr.Logger
	// dropped, if set, is told of a notification dropped from a full queue.
	dropped func(n notification, waiting int)

	mu       sync.Mutex
	inflight map[hookKey]*hookRun
	done     map[types.NamespacedName][]plan.HookResult
	// notes holds the notifications waiting behind the one being sent, per
	// rollout and webhook; a queue is present while its sender runs.
	notes map[noteKey][]notification
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
		inflight: map[hookKey]*hookRun{},
		done:     map[types.NamespacedName][]plan.HookResult{},
		notes:    map[noteKey][]notification{},
	}
}

// results returns the answers waiting for the rollout, without taking them.
func (w *webhookRunner) results(key types.NamespacedName) []plan.HookResult {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]plan.HookResult(nil), w.done[key]...)
}

// ack drops answers that a written status has folded in.
func (w *webhookRunner) ack(key types.NamespacedName, taken []plan.HookResult) {
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

// forget drops what is known of a deleted rollout and cancels its blocking
// calls. Its notifications still leave, in order (at most notifyQueueMax
// more per webhook): the last transitions are those a receiver most wants.
func (w *webhookRunner) forget(key types.NamespacedName) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.done, key)
	w.cancelCalls(key, func(hookKey) bool { return true })
}

// cancelCalls cancels the rollout's calls in flight that match. Call it
// with w.mu held.
func (w *webhookRunner) cancelCalls(key types.NamespacedName, match func(hookKey) bool) {
	for k, run := range w.inflight {
		if k.rollout == key && match(k) {
			run.cancel()
			delete(w.inflight, k)
		}
	}
}

// start makes the calls a written decision asked for, and cancels the
// rollout's calls for another revision: their answers would be dropped.
func (w *webhookRunner) start(ro *rolloutsv1.ModelRollout, calls []plan.HookCall) {
	if w == nil {
		return
	}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	snapshot := ro.DeepCopy()
	w.mu.Lock()
	w.cancelCalls(key, func(k hookKey) bool { return k.revision != ro.Status.Revision })
	w.mu.Unlock()
	for _, c := range calls {
		k := hookKey{rollout: key, name: c.Webhook.Name, revision: c.Revision, call: c.Call}
		w.mu.Lock()
		if w.inflight[k] != nil {
			w.mu.Unlock()
			continue
		}
		ctx, cancel := context.WithCancel(w.base)
		run := &hookRun{cancel: cancel}
		w.inflight[k] = run
		w.mu.Unlock()
		go func() {
			defer cancel()
			res := w.callBlocking(ctx, snapshot, c)
			w.mu.Lock()
			current := w.inflight[k] == run
			if current {
				delete(w.inflight, k)
				w.done[key] = append(w.done[key], res)
				if n := len(w.done[key]); n > hookResultsMax {
					w.done[key] = append([]plan.HookResult(nil), w.done[key][n-hookResultsMax:]...)
				}
			}
			w.mu.Unlock()
			if !current {
				// Cancelled: superseded, or the rollout is gone.
				return
			}
			select {
			case w.notify <- crevent.TypedGenericEvent[client.Object]{Object: snapshot}:
			case <-w.base.Done():
			}
		}()
	}
}

func (w *webhookRunner) callBlocking(ctx context.Context, ro *rolloutsv1.ModelRollout, c plan.HookCall) plan.HookResult {
	res := plan.HookResult{Name: c.Webhook.Name, Revision: c.Revision, Call: c.Call}
	release, ok := w.slots.acquire(ctx, ro.Namespace)
	if !ok {
		res.Message, res.At = "operator stopping", time.Now()
		return res
	}
	defer release()
	payload := payloadOf(ro, c.Webhook)
	payload.Reason = rolloutsv1.ReasonWebhookPending
	payload.Call = c.Call
	code, msg, err := w.post(ctx, ro.Namespace, c.Webhook, payload)
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

// notifyTransition queues the OnTransition notifications of a phase change,
// one per OnTransition webhook, behind the rollout's earlier ones.
func (w *webhookRunner) notifyTransition(ro *rolloutsv1.ModelRollout, previous rolloutsv1.Phase, evs []plan.Event) {
	hooks := plan.WebhooksOf(ro, rolloutsv1.WebhookOnTransition)
	if w == nil || len(hooks) == 0 {
		return
	}
	key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
	snapshot := ro.DeepCopy()
	for _, h := range hooks {
		payload := payloadOf(snapshot, h)
		payload.PreviousPhase = previous
		payload.Reason, payload.Message = string(snapshot.Status.Phase), snapshot.Status.Message
		if n := len(evs); n > 0 {
			payload.Reason, payload.Message = evs[n-1].Reason, evs[n-1].Message
		}
		w.enqueue(noteKey{rollout: key, hook: h.Name}, notification{ro: snapshot, hook: h, payload: payload})
	}
}

// enqueue adds a notification to its queue, and starts the queue's sender
// unless it runs. A full queue drops its oldest waiting notification.
func (w *webhookRunner) enqueue(k noteKey, n notification) {
	w.mu.Lock()
	q, running := w.notes[k]
	var dropped []notification
	for len(q) >= notifyQueueMax {
		dropped = append(dropped, q[0])
		q = q[1:]
	}
	w.notes[k] = append(q, n)
	waiting := len(w.notes[k])
	w.mu.Unlock()
	for _, d := range dropped {
		w.log.Info("OnTransition notification dropped: too many waiting", "rollout", k.rollout.String(), "webhook", k.hook,
			"phase", d.payload.Phase, "previousPhase", d.payload.PreviousPhase, "waiting", waiting)
		if w.dropped != nil {
			w.dropped(d, waiting)
		}
	}
	if !running {
		go w.send(k)
	}
}

// send delivers a queue's notifications one after another, and ends (its
// queue gone) once it is empty.
func (w *webhookRunner) send(k noteKey) {
	for {
		w.mu.Lock()
		q := w.notes[k]
		if len(q) == 0 {
			delete(w.notes, k)
			w.mu.Unlock()
			return
		}
		n := q[0]
		q[0] = notification{}
		w.notes[k] = q[1:]
		w.mu.Unlock()
		w.deliver(n)
	}
}

// deliver sends one notification, with a few retries.
func (w *webhookRunner) deliver(n notification) {
	release, ok := w.slots.acquire(w.base, n.ro.Namespace)
	if !ok {
		return
	}
	defer release()
	var err error
	var code int
	var msg string
	for attempt := 1; attempt <= notifyAttempts; attempt++ {
		code, msg, err = w.post(w.base, n.ro.Namespace, n.hook, n.payload)
		if err == nil && code >= 200 && code < 300 {
			return
		}
		if attempt == notifyAttempts {
			break
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
	w.log.Info("OnTransition webhook failed", "rollout", n.ro.Namespace+"/"+n.ro.Name, "webhook", n.hook.Name, "attempts", notifyAttempts, "error", err.Error())
}

// sizes counts the entries of each map, for tests and docs/performance/memory.md.
func (w *webhookRunner) sizes(into map[string]int) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	into["hooks.inflight"] = len(w.inflight)
	into["hooks.done"] = len(w.done)
	into["hooks.notifications"] = len(w.notes)
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
func (w *webhookRunner) post(ctx context.Context, namespace string, h rolloutsv1.Webhook, payload WebhookPayload) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, plan.WebhookTimeout(h))
	defer cancel()
	body, err := json.Marshal(payload)
	if err != nil {
		return 0, "", fmt.Errorf("encode the request: %w", err)
	}
	opts := egress.Options{Timeout: plan.WebhookTimeout(h)}
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
