package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/promharness"
)

// slowPrometheus is the real Prometheus behind a proxy that holds every
// query for a settable delay, as a Prometheus under load does.
type slowPrometheus struct {
	prom     *promharness.Prometheus
	proxy    *httptest.Server
	delay    atomic.Int64 // nanoseconds
	held     atomic.Int64 // queries held so far
	inflight atomic.Int64 // queries being held now
}

func startSlowPrometheus(ctx context.Context) (*slowPrometheus, error) {
	prom, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{})
	if err != nil {
		return nil, err
	}
	target, err := url.Parse(prom.URL())
	if err != nil {
		_ = prom.Close()
		return nil, err
	}
	s := &slowPrometheus{prom: prom}
	rp := httputil.NewSingleHostReverseProxy(target)
	// Queries still held when the benchmark ends are cancelled: not news.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	s.proxy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := time.Duration(s.delay.Load()); d > 0 {
			s.held.Add(1)
			s.inflight.Add(1)
			defer s.inflight.Add(-1)
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	return s, nil
}

func (s *slowPrometheus) Close() {
	s.proxy.Close()
	_ = s.prom.Close()
}

// BenchmarkAbortUnderSlowPrometheus times the alert → route-at-stable path
// of rollouts whose gates query a Prometheus, first while it answers at
// once, then while it takes 10 s per query for them and for 100 other
// rollouts that evaluate their gates every second. The abort must not wait
// on any of those queries: the two p99s should match. Run it with a fixed
// count: go test -bench AbortUnderSlow -benchtime=100x ./test/bench/
func BenchmarkAbortUnderSlowPrometheus(b *testing.B) {
	s := start(b)
	if s.prom == nil {
		b.Skip("no Prometheus: " + s.promErr)
	}
	gated := func(name string) *rolloutsv1.Analysis {
		return &rolloutsv1.Analysis{
			Interval:   "1s",
			Prometheus: &rolloutsv1.PrometheusSource{Address: s.prom.proxy.URL, Timeout: "30s"},
			Gates:      []rolloutsv1.Gate{{Name: name, GateSpec: rolloutsv1.GateSpec{Query: "vector(0)", Max: ptr.To(1.0)}}},
		}
	}
	run := func(label string, delay time.Duration) []time.Duration {
		s.prom.delay.Store(0)
		ns := fmt.Sprintf("slowprom-%s-%d", label, time.Now().UnixNano())
		s.prepareWith(b, ns, b.N+100, gated("errors"))
		s.prom.delay.Store(int64(delay))
		if delay > 0 {
			held := s.prom.held.Load()
			// The 100 busy rollouts (m<b.N>..) and the targets now wait on
			// Prometheus in every gate round; abort only once some do.
			deadline := time.Now().Add(time.Minute)
			for s.prom.held.Load() == held && s.prom.inflight.Load() == 0 {
				if time.Now().After(deadline) {
					b.Fatal("no gate round reached the slow Prometheus")
				}
				time.Sleep(50 * time.Millisecond) // polling for the rounds to start
			}
		}
		return s.abortEach(b, ns, b.N)
	}

	heldBefore := s.prom.held.Load()
	b.ResetTimer()
	fast := run("fast", 0)
	slow := run("slow", 10*time.Second)
	b.StopTimer()
	s.prom.delay.Store(0)

	b.ReportMetric(ms(percentile(fast, 0.5)), "fast-p50-ms")
	b.ReportMetric(ms(percentile(fast, 0.99)), "fast-p99-ms")
	b.ReportMetric(ms(percentile(slow, 0.5)), "slow-p50-ms")
	b.ReportMetric(ms(percentile(slow, 0.99)), "slow-p99-ms")
	b.ReportMetric(float64(percentile(slow, 0.99))/float64(percentile(fast, 0.99)), "slow/fast-p99")
	b.ReportMetric(float64(s.prom.held.Load()-heldBefore), "slow-queries-held")
}

// abortEach posts one firing alert for each of the first n rollouts of ns
// in turn and times each until the API server shows its route at weight 0.
func (s *stack) abortEach(b *testing.B, ns string, n int) []time.Duration {
	ctx := context.Background()
	w, err := s.client.Watch(ctx, &gatewayv1.HTTPRouteList{}, client.InNamespace(ns))
	must(b, err)
	defer w.Stop()
	patched := make(chan string, n+100)
	go func() {
		defer close(patched)
		for ev := range w.ResultChan() {
			if r, ok := ev.Object.(*gatewayv1.HTTPRoute); ok && ev.Type == watch.Modified && canaryWeight(r) == 0 {
				patched <- r.Name
			}
		}
	}()
	lat := make([]time.Duration, 0, n)
	for i := range n {
		body, err := json.Marshal(map[string]any{
			"version": "4", "status": "firing", "receiver": "modelrollout", "groupKey": fmt.Sprint(i),
			"alerts": []map[string]any{{
				"status":      "firing",
				"labels":      map[string]string{"alertname": "HighErrorRate", "modelrollout": fmt.Sprintf("m%d", i), "namespace": ns, "severity": "critical"},
				"startsAt":    time.Now().UTC().Format(time.RFC3339Nano),
				"fingerprint": fmt.Sprintf("%016x", i),
			}},
		})
		must(b, err)
		req, err := http.NewRequest(http.MethodPost, s.receiver, bytes.NewReader(body))
		must(b, err)
		req.Header.Set("Authorization", "Bearer "+token)
		// The route is timed from the POST, whether or not the receiver
		// has answered yet: its answer waits for the annotation patch,
		// which is not on the route's path.
		start := time.Now()
		answered := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("receiver answered %s", resp.Status)
				}
			}
			answered <- err
		}()
		want := fmt.Sprintf("r%d", i)
		for name := range patched {
			if name == want {
				break
			}
		}
		lat = append(lat, time.Since(start))
		// One alert at a time: the next waits for this one's answer.
		must(b, <-answered)
	}
	return lat
}
