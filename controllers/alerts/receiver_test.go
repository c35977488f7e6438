package alerts

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

var gpt4Labels = map[string]string{"alertname": "HighErrorRate", "model": "gpt-4", "severity": "critical"}

func TestMethodNotAllowed(t *testing.T) {
	r := newTestReceiver(t, fakeClient(nil), nil)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead} {
		req := httptest.NewRequest(m, Path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405", m, rec.Code)
		}
		if got := rec.Header().Get("Allow"); got != http.MethodPost {
			t.Errorf("%s: Allow %q, want POST", m, got)
		}
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Run("configured limit", func(t *testing.T) {
		r := newTestReceiver(t, fakeClient(nil), func(o *Options) { o.MaxBodyBytes = 1024 })
		p := payload(firing("a", map[string]string{"alertname": strings.Repeat("x", 2048)}))
		if rec := post(r, "Bearer "+testToken, mustJSON(t, p)); rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413; body %s", rec.Code, rec.Body)
		}
	})
	t.Run("default limit is 1 MiB", func(t *testing.T) {
		r := newTestReceiver(t, fakeClient(nil), nil)
		// A valid payload padded with white space to just under and just
		// over the limit.
		base := mustJSON(t, payload(resolved("a", gpt4Labels)))
		under := append(bytes.Clone(base), bytes.Repeat([]byte(" "), int(DefaultMaxBodyBytes)-len(base))...)
		if rec := post(r, "Bearer "+testToken, under); rec.Code != http.StatusOK {
			t.Fatalf("exactly 1 MiB: status %d, want 200; body %s", rec.Code, rec.Body)
		}
		over := append(under, ' ')
		if rec := post(r, "Bearer "+testToken, over); rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("1 MiB + 1: status %d, want 413", rec.Code)
		}
	})
}

func TestBadRequest(t *testing.T) {
	r := newTestReceiver(t, fakeClient(nil), nil)
	for name, body := range map[string]string{
		"empty":            ``,
		"not JSON":         `hello`,
		"truncated":        `{"version":"4","alerts":[`,
		"null":             `null`,
		"array":            `[]`,
		"version 3":        `{"version":"3","alerts":[]}`,
		"no version":       `{"alerts":[]}`,
		"numeric version":  `{"version":4,"alerts":[]}`,
		"bad startsAt":     `{"version":"4","alerts":[{"status":"firing","startsAt":"yesterday"}]}`,
		"labels not a map": `{"version":"4","alerts":[{"status":"firing","labels":["a"]}]}`,
		"trailing data":    `{"version":"4","alerts":[]} {}`,
		"negative count":   `{"version":"4","truncatedAlerts":-1}`,
	} {
		rec := post(r, "Bearer "+testToken, []byte(body))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, rec.Code)
		}
		if len(rec.Body.String()) > 200 {
			t.Errorf("%s: error body too long: %q", name, rec.Body)
		}
	}
}

func TestParsePayload(t *testing.T) {
	body := `{
	  "version": "4",
	  "groupKey": "{}/{severity=\"critical\"}:{alertname=\"HighErrorRate\"}",
	  "truncatedAlerts": 2,
	  "status": "firing",
	  "receiver": "modelrollout",
	  "groupLabels": {"alertname": "HighErrorRate"},
	  "commonLabels": {"alertname": "HighErrorRate", "severity": "critical"},
	  "commonAnnotations": {"summary": "errors"},
	  "externalURL": "http://alertmanager:9093",
	  "someFutureField": {"x": 1},
	  "alerts": [{
	    "status": "firing",
	    "labels": {"alertname": "HighErrorRate", "model": "gpt-4", "severity": "critical"},
	    "annotations": {"summary": "errors"},
	    "startsAt": "2026-03-14T09:26:53.589Z",
	    "endsAt": "0001-01-01T00:00:00Z",
	    "generatorURL": "http://prometheus:9090/graph",
	    "fingerprint": "c4a7e0b1f2d3a4b5"
	  }, {
	    "status": "resolved",
	    "labels": {"alertname": "HighErrorRate", "model": "gpt-3"},
	    "startsAt": "2026-03-14T09:00:00+01:00",
	    "endsAt": "2026-03-14T09:30:00+01:00",
	    "fingerprint": "0000000000000001"
	  }]
	}`
	p, err := ParsePayload([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if p.TruncatedAlerts != 2 || p.Receiver != "modelrollout" || p.CommonLabels["severity"] != "critical" ||
		p.ExternalURL != "http://alertmanager:9093" || p.GroupLabels["alertname"] != "HighErrorRate" {
		t.Errorf("group fields: %+v", p)
	}
	if len(p.Alerts) != 2 {
		t.Fatalf("%d alerts", len(p.Alerts))
	}
	a := p.Alerts[0]
	if !a.Firing() || a.Labels["model"] != "gpt-4" || a.Fingerprint != "c4a7e0b1f2d3a4b5" ||
		!a.StartsAt.Equal(t0) || !a.EndsAt.IsZero() || a.GeneratorURL == "" || a.Annotations["summary"] != "errors" {
		t.Errorf("alert 0: %+v", a)
	}
	if p.Alerts[1].Firing() {
		t.Error("alert 1 is resolved")
	}
}

func TestResolvedAlertsIgnored(t *testing.T) {
	listed := 0
	counted := fakeClient(&interceptor.Funcs{List: func(ctx context.Context, cl client.WithWatch, l client.ObjectList, o ...client.ListOption) error {
		listed++
		return cl.List(ctx, l, o...)
	}}, rollout("prod", "chat", rolloutsv1.PhaseProgressing, map[string]string{"model": "gpt-4"}))
	received := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "received"}, []string{"status"})
	r := newTestReceiver(t, counted, func(o *Options) { o.AlertsReceived = received })
	labels := map[string]string{"alertname": "HighErrorRate", "model": "gpt-4", "modelrollout": "chat", "namespace": "prod"}
	s := postPayload(t, r, payload(resolved("a", labels), resolved("b", labels)))
	if s.Firing != 0 || s.Patched != 0 || s.Alerts != 2 {
		t.Errorf("summary %+v", s)
	}
	if listed != 0 {
		t.Errorf("rollouts listed %d times for resolved alerts only", listed)
	}
	if got := getRollout(t, counted, "prod", "chat").Annotations; len(got) != 0 {
		t.Errorf("annotations %v", got)
	}
	if got := counterValue(t, received.WithLabelValues("resolved")); got != 2 {
		t.Errorf("received{resolved} = %v", got)
	}
}

func TestMatchByName(t *testing.T) {
	c := fakeClient(nil,
		rollout("prod", "chat", rolloutsv1.PhaseProgressing, nil),
		rollout("prod", "other", rolloutsv1.PhaseProgressing, nil),
		rollout("staging", "chat", rolloutsv1.PhaseProgressing, nil),
	)
	matched := prometheus.NewCounter(prometheus.CounterOpts{Name: "matched"})
	received := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "received"}, []string{"status"})
	r := newTestReceiver(t, c, func(o *Options) { o.AlertsMatched, o.AlertsReceived = matched, received })

	a := firing("fp1", map[string]string{"alertname": "HighErrorRate", "modelrollout": "chat", "namespace": "prod", "severity": "critical"})
	s := postPayload(t, r, payload(a))
	if s.Firing != 1 || s.Matched != 1 || s.Rollouts != 1 || s.Patched != 1 {
		t.Errorf("summary %+v", s)
	}
	got := getRollout(t, c, "prod", "chat").Annotations
	if got[rolloutsv1.AnnotationAbort] != AbortToken(&a) || !strings.HasPrefix(got[rolloutsv1.AnnotationAbort], "alert-") {
		t.Errorf("abort annotation %q", got[rolloutsv1.AnnotationAbort])
	}
	want := `alert HighErrorRate{modelrollout="chat",namespace="prod",severity="critical"} firing`
	if got[rolloutsv1.AnnotationAbortReason] != want {
		t.Errorf("reason %q, want %q", got[rolloutsv1.AnnotationAbortReason], want)
	}
	// The abort names the revision it was raised for.
	if rev := got[rolloutsv1.AnnotationAbortRevision]; rev != "Service/llm-v1:8000 -> Service/llm-v2:8000" {
		t.Errorf("abort revision %q", rev)
	}
	for _, key := range [][2]string{{"prod", "other"}, {"staging", "chat"}} {
		if a := getRollout(t, c, key[0], key[1]).Annotations; len(a) != 0 {
			t.Errorf("%v patched: %v", key, a)
		}
	}
	if counterValue(t, matched) != 1 || counterValue(t, received.WithLabelValues("firing")) != 1 {
		t.Error("counters not incremented")
	}

	// The modelrollout label alone names nothing.
	c2 := fakeClient(nil, rollout("prod", "chat", rolloutsv1.PhaseProgressing, nil))
	r2 := newTestReceiver(t, c2, nil)
	s = postPayload(t, r2, payload(firing("fp2", map[string]string{"alertname": "X", "modelrollout": "chat"})))
	if s.Matched != 0 || len(getRollout(t, c2, "prod", "chat").Annotations) != 0 {
		t.Errorf("matched without the namespace label: %+v", s)
	}
}

func TestMatchBySelector(t *testing.T) {
	sel := map[string]string{"alertname": "HighErrorRate", "model": "gpt-4"}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		match  bool
	}{
		{"exact", map[string]string{"alertname": "HighErrorRate", "model": "gpt-4"}, true},
		{"extra labels", map[string]string{"alertname": "HighErrorRate", "model": "gpt-4", "severity": "page", "pod": "x"}, true},
		{"missing one", map[string]string{"alertname": "HighErrorRate"}, false},
		{"other value", map[string]string{"alertname": "HighErrorRate", "model": "gpt-3"}, false},
		{"empty value", map[string]string{"alertname": "HighErrorRate", "model": ""}, false},
		{"no labels", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeClient(nil, rollout("prod", "chat", rolloutsv1.PhaseProgressing, sel))
			r := newTestReceiver(t, c, nil)
			s := postPayload(t, r, payload(firing("fp", tc.labels)))
			patched := getRollout(t, c, "prod", "chat").Annotations[rolloutsv1.AnnotationAbort] != ""
			if patched != tc.match || (s.Patched == 1) != tc.match {
				t.Errorf("patched=%v summary %+v, want match=%v", patched, s, tc.match)
			}
		})
	}

	t.Run("one alert, several rollouts, in several namespaces", func(t *testing.T) {
		c := fakeClient(nil,
			rollout("a", "r1", rolloutsv1.PhaseProgressing, map[string]string{"team": "ml"}),
			rollout("b", "r2", rolloutsv1.PhasePaused, map[string]string{"team": "ml", "model": "gpt-4"}),
			rollout("b", "r3", rolloutsv1.PhaseProgressing, map[string]string{"team": "ml", "model": "gpt-3"}),
			rollout("c", "r4", rolloutsv1.PhaseWaiting, map[string]string{"zone": "eu"}),
		)
		r := newTestReceiver(t, c, nil)
		s := postPayload(t, r, payload(firing("fp", map[string]string{"alertname": "Latency", "team": "ml", "model": "gpt-4"})))
		if s.Matched != 1 || s.Rollouts != 2 || s.Patched != 2 {
			t.Errorf("summary %+v", s)
		}
		for name, want := range map[[2]string]bool{{"a", "r1"}: true, {"b", "r2"}: true, {"b", "r3"}: false, {"c", "r4"}: false} {
			if got := getRollout(t, c, name[0], name[1]).Annotations[rolloutsv1.AnnotationAbort] != ""; got != want {
				t.Errorf("%v patched=%v, want %v", name, got, want)
			}
		}
	})

	t.Run("empty selector matches nothing", func(t *testing.T) {
		c := fakeClient(nil, rollout("prod", "chat", rolloutsv1.PhaseProgressing, map[string]string{}))
		r := newTestReceiver(t, c, nil)
		if s := postPayload(t, r, payload(firing("fp", gpt4Labels))); s.Matched != 0 {
			t.Errorf("summary %+v", s)
		}
	})

	t.Run("direct and selector match the same rollout once", func(t *testing.T) {
		c := fakeClient(nil, rollout("prod", "chat", rolloutsv1.PhaseProgressing, map[string]string{"model": "gpt-4"}))
		r := newTestReceiver(t, c, nil)
		s := postPayload(t, r, payload(firing("fp", map[string]string{"model": "gpt-4", "modelrollout": "chat", "namespace": "prod"})))
		if s.Rollouts != 1 || s.Patched != 1 {
			t.Errorf("summary %+v", s)
		}
	})
}

func TestPhasePolicy(t *testing.T) {
	for phase, abort := range map[rolloutsv1.Phase]bool{
		rolloutsv1.PhaseWaiting:     true,
		rolloutsv1.PhaseProgressing: true,
		rolloutsv1.PhasePaused:      true,
		rolloutsv1.PhaseSucceeded:   false,
		rolloutsv1.PhaseRolledBack:  false,
		rolloutsv1.PhaseIdle:        false,
		"":                          false,
	} {
		t.Run(string(phase), func(t *testing.T) {
			c := fakeClient(nil, rollout("prod", "chat", phase, map[string]string{"model": "gpt-4"}))
			r := newTestReceiver(t, c, nil)
			s := postPayload(t, r, payload(firing("fp", gpt4Labels)))
			ann := getRollout(t, c, "prod", "chat").Annotations
			if got := ann[rolloutsv1.AnnotationAbort] != ""; got != abort {
				t.Errorf("phase %q: patched=%v, want %v (annotations %v)", phase, got, abort, ann)
			}
			if !abort && (s.Skipped != 1 || s.Matched != 1) {
				t.Errorf("phase %q: summary %+v", phase, s)
			}
		})
	}
}

// TestAlertOlderThanTheRevision: an alert that began firing before the
// rollout of the current revision started is about an earlier canary (the
// one just rolled back, still firing in Alertmanager's next notification) or
// the stable: it never aborts the new canary. One that began after does.
func TestAlertOlderThanTheRevision(t *testing.T) {
	for name, tc := range map[string]struct {
		startsAt time.Time
		abort    bool
	}{
		"began before the rollout started": {t0.Add(-time.Second), false},
		"began after the rollout started":  {t0.Add(time.Minute), true},
	} {
		t.Run(name, func(t *testing.T) {
			ro := rollout("prod", "chat", rolloutsv1.PhaseWaiting, map[string]string{"model": "gpt-4"})
			ro.Status.StartedAt = &metav1.Time{Time: t0}
			c := fakeClient(nil, ro)
			r := newTestReceiver(t, c, nil)
			a := firing("fp", gpt4Labels)
			a.StartsAt = tc.startsAt
			s := postPayload(t, r, payload(a))
			ann := getRollout(t, c, "prod", "chat").Annotations
			if got := ann[rolloutsv1.AnnotationAbort] != ""; got != tc.abort {
				t.Errorf("patched=%v, want %v (annotations %v)", got, tc.abort, ann)
			}
			if !tc.abort && (s.Skipped != 1 || s.Matched != 1) {
				t.Errorf("summary %+v, want one matched and skipped", s)
			}
		})
	}
}

func TestIdempotence(t *testing.T) {
	ro := rollout("prod", "chat", rolloutsv1.PhaseProgressing, map[string]string{"model": "gpt-4"})
	ro.Annotations = map[string]string{"argocd.argoproj.io/tracking-id": "app:x", rolloutsv1.AnnotationPromote: "p1"}
	patches := 0
	c := fakeClient(&interceptor.Funcs{Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, p client.Patch, o ...client.PatchOption) error {
		patches++
		return cl.Patch(ctx, obj, p, o...)
	}}, ro)
	r := newTestReceiver(t, c, nil)
	a := firing("fp", gpt4Labels)

	if s := postPayload(t, r, payload(a)); s.Patched != 1 {
		t.Fatalf("first post: %+v", s)
	}
	first := getRollout(t, c, "prod", "chat")
	if first.Annotations["argocd.argoproj.io/tracking-id"] != "app:x" || first.Annotations[rolloutsv1.AnnotationPromote] != "p1" {
		t.Errorf("other annotations clobbered: %v", first.Annotations)
	}

	// Alertmanager repeats the notification; another replica of it sends
	// the same alert with its start time in another zone.
	again := a
	again.StartsAt = a.StartsAt.In(timeZone(t, "Europe/Paris"))
	for _, p := range []*Payload{payload(a), payload(again)} {
		if s := postPayload(t, r, p); s.Patched != 0 || s.Unchanged != 1 {
			t.Errorf("repeat: %+v", s)
		}
	}
	if patches != 1 {
		t.Errorf("%d patches, want 1", patches)
	}
	if got := getRollout(t, c, "prod", "chat"); got.ResourceVersion != first.ResourceVersion {
		t.Errorf("resourceVersion moved %s -> %s", first.ResourceVersion, got.ResourceVersion)
	}

	// The controller handled the token and someone cleared the annotation:
	// a repeat does not write it back.
	cur := getRollout(t, c, "prod", "chat")
	cur.Status.LastHandledAbort = AbortToken(&a)
	if err := c.Status().Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	cur = getRollout(t, c, "prod", "chat")
	delete(cur.Annotations, rolloutsv1.AnnotationAbort)
	if err := c.Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	if s := postPayload(t, r, payload(a)); s.Unchanged != 1 || patches != 1 {
		t.Errorf("repeat after handling: %+v, %d patches", s, patches)
	}

	// A new firing of the same alert is a new abort.
	later := a
	later.StartsAt = a.StartsAt.Add(time2h)
	if s := postPayload(t, r, payload(later)); s.Patched != 1 {
		t.Errorf("new firing: %+v", s)
	}
	if got := getRollout(t, c, "prod", "chat").Annotations[rolloutsv1.AnnotationAbort]; got != AbortToken(&later) || got == AbortToken(&a) {
		t.Errorf("token %q", got)
	}
}

func TestSeveralAlertsOneRollout(t *testing.T) {
	patches := 0
	c := fakeClient(&interceptor.Funcs{Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, p client.Patch, o ...client.PatchOption) error {
		patches++
		return cl.Patch(ctx, obj, p, o...)
	}}, rollout("prod", "chat", rolloutsv1.PhaseProgressing, map[string]string{"model": "gpt-4"}))
	r := newTestReceiver(t, c, nil)
	a := firing("fp-a", map[string]string{"alertname": "HighErrorRate", "model": "gpt-4"})
	b := firing("fp-b", map[string]string{"alertname": "HighLatency", "model": "gpt-4"})
	s := postPayload(t, r, payload(resolved("fp-c", gpt4Labels), a, b))
	if s.Matched != 2 || s.Rollouts != 1 || s.Patched != 1 || patches != 1 {
		t.Errorf("summary %+v, %d patches", s, patches)
	}
	if got := getRollout(t, c, "prod", "chat").Annotations[rolloutsv1.AnnotationAbort]; got != AbortToken(&a) {
		t.Errorf("token %q, want the first alert's", got)
	}
}

func TestPatchErrors(t *testing.T) {
	gr := schema.GroupResource{Group: rolloutsv1.GroupVersion.Group, Resource: "modelrollouts"}
	for _, tc := range []struct {
		name string
		err  error
		code int
	}{
		{"not found", apierrors.NewNotFound(gr, "chat"), http.StatusOK},
		{"conflict", apierrors.NewConflict(gr, "chat", errors.New("uid precondition")), http.StatusInternalServerError},
		{"forbidden", apierrors.NewForbidden(gr, "chat", errors.New("rbac")), http.StatusInternalServerError},
		{"timeout", context.DeadlineExceeded, http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeClient(&interceptor.Funcs{Patch: func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
				return tc.err
			}}, rollout("prod", "chat", rolloutsv1.PhaseProgressing, map[string]string{"model": "gpt-4"}),
				rollout("prod", "chat2", rolloutsv1.PhaseProgressing, map[string]string{"model": "gpt-4"}))
			r := newTestReceiver(t, c, nil)
			rec := post(r, "Bearer "+testToken, mustJSON(t, payload(firing("fp", gpt4Labels))))
			if rec.Code != tc.code {
				t.Errorf("status %d, want %d; body %s", rec.Code, tc.code, rec.Body)
			}
		})
	}
	t.Run("list fails", func(t *testing.T) {
		c := fakeClient(&interceptor.Funcs{List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return errors.New("cache not synced")
		}})
		r := newTestReceiver(t, c, nil)
		if rec := post(r, "Bearer "+testToken, mustJSON(t, payload(firing("fp", gpt4Labels)))); rec.Code != http.StatusInternalServerError {
			t.Errorf("status %d, want 500", rec.Code)
		}
		// Nothing to list for resolved alerts: still 200.
		if rec := post(r, "Bearer "+testToken, mustJSON(t, payload(resolved("fp", gpt4Labels)))); rec.Code != http.StatusOK {
			t.Errorf("status %d, want 200", rec.Code)
		}
	})
}

func TestMisconfiguredCounters(t *testing.T) {
	// A CounterVec with the wrong labels must not panic the handler.
	bad := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bad"}, []string{"a", "b"})
	r := newTestReceiver(t, fakeClient(nil), func(o *Options) { o.AlertsReceived = bad })
	postPayload(t, r, payload(firing("fp", gpt4Labels), Alert{Status: "weird"}))
}

func TestNeedLeaderElection(t *testing.T) {
	if newTestReceiver(t, fakeClient(nil), nil).NeedLeaderElection() {
		t.Error("every replica must receive alerts")
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// The annotation patch waits for Direct's channel: the route patches of the
// leader's controller go to the API server first, alone.
func TestAnnotationPatchWaitsForDirectRoutes(t *testing.T) {
	var patchedAt atomic.Int64
	newClient := func() client.Client {
		return fakeClient(&interceptor.Funcs{Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			patchedAt.Store(time.Now().UnixNano())
			return c.Patch(ctx, obj, p, opts...)
		}}, rollout("prod", "chat", rolloutsv1.PhaseProgressing, nil))
	}
	a := firing("fp1", map[string]string{"alertname": "HighErrorRate", "modelrollout": "chat", "namespace": "prod"})

	t.Run("after the routes", func(t *testing.T) {
		patchedAt.Store(0)
		sent := make(chan struct{})
		var handed atomic.Int32
		var closedAt atomic.Int64
		r := newTestReceiver(t, newClient(), func(o *Options) {
			o.Direct = func(key types.NamespacedName, _ types.UID, token, _, _ string) <-chan struct{} {
				if key != (types.NamespacedName{Namespace: "prod", Name: "chat"}) || token != AbortToken(&a) {
					t.Errorf("handed over %v %q", key, token)
				}
				handed.Add(1)
				go func() {
					time.Sleep(200 * time.Millisecond) // the controller's route patch, in flight
					closedAt.Store(time.Now().UnixNano())
					close(sent)
				}()
				return sent
			}
		})
		if s := postPayload(t, r, payload(a)); s.Patched != 1 || handed.Load() != 1 {
			t.Fatalf("summary %+v, handed over %d times", s, handed.Load())
		}
		if at, closed := patchedAt.Load(), closedAt.Load(); closed == 0 || at < closed {
			t.Errorf("the annotation was patched before the controller had sent the routes")
		}
	})

	t.Run("bounded", func(t *testing.T) {
		patchedAt.Store(0)
		r := newTestReceiver(t, newClient(), func(o *Options) {
			o.DirectWait = 100 * time.Millisecond
			o.Direct = func(types.NamespacedName, types.UID, string, string, string) <-chan struct{} {
				return make(chan struct{})
			}
		})
		start := time.Now()
		if s := postPayload(t, r, payload(a)); s.Patched != 1 {
			t.Fatalf("summary %+v: a controller that never sends the routes must not keep the annotation back", s)
		}
		if waited := time.Unix(0, patchedAt.Load()).Sub(start); waited < 100*time.Millisecond {
			t.Errorf("patched after %s, before DirectWait", waited)
		}
	})

	t.Run("not the leader", func(t *testing.T) {
		patchedAt.Store(0)
		r := newTestReceiver(t, newClient(), func(o *Options) {
			o.DirectWait = time.Hour
			o.Direct = func(types.NamespacedName, types.UID, string, string, string) <-chan struct{} { return nil }
		})
		if s := postPayload(t, r, payload(a)); s.Patched != 1 {
			t.Fatalf("summary %+v", s)
		}
	})
}
