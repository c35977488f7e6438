package alerts

import (
	"context"
	"fmt"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// BenchmarkReceiverMatch measures one notification of 10 firing alerts (5
// matching by selector, 5 by name) against N rollouts:
//
//   - handler: the whole request through ServeHTTP with the fake client. The
//     rollouts already carry the tokens, so nothing is written; the fake
//     client's List, which deep-copies every object, dominates.
//   - index: listing excluded, as with the manager's cache and
//     UnsafeDisableDeepCopy: building the index and matching the alerts.
func BenchmarkReceiverMatch(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		objs := make([]client.Object, n)
		items := make([]rolloutsv1.ModelRollout, n)
		for i := range n {
			ro := rollout(fmt.Sprintf("ns-%d", i%50), fmt.Sprintf("ro-%d", i), rolloutsv1.PhaseProgressing,
				map[string]string{"team": fmt.Sprintf("team-%d", i%100), "model": fmt.Sprintf("model-%d", i)})
			objs[i], items[i] = ro, *ro
		}
		var alerts []Alert
		for i := range 5 {
			k := (i * 7919) % n
			alerts = append(alerts,
				firing(fmt.Sprintf("sel-%d", i), map[string]string{"alertname": "HighErrorRate", "severity": "critical",
					"team": fmt.Sprintf("team-%d", k%100), "model": fmt.Sprintf("model-%d", k), "pod": "p"}),
				firing(fmt.Sprintf("name-%d", i), map[string]string{"alertname": "HighLatency",
					"modelrollout": fmt.Sprintf("ro-%d", k+1), "namespace": fmt.Sprintf("ns-%d", (k+1)%50)}))
		}
		p := payload(alerts...)

		b.Run(fmt.Sprintf("handler/rollouts=%d", n), func(b *testing.B) {
			c := fakeClient(nil, objs...)
			r := newTestReceiver(b, c, func(o *Options) { o.MaxBodyBytes = 1 << 20 })
			if s := postPayload(b, r, p); s.Patched != 10 {
				b.Fatalf("warm-up: %+v", s)
			}
			body := mustJSON(b, p)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if rec := post(r, "Bearer "+testToken, body); rec.Code != 200 {
					b.Fatal(rec.Code)
				}
			}
		})

		b.Run(fmt.Sprintf("index/rollouts=%d", n), func(b *testing.B) {
			var list rolloutsv1.ModelRolloutList
			if err := fakeClient(nil, objs...).List(context.Background(), &list); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				ix := newIndex(list.Items)
				m := 0
				for i := range p.Alerts {
					m += len(ix.match(p.Alerts[i].Labels))
				}
				if m != 10 {
					b.Fatalf("%d matches", m)
				}
			}
		})
	}
}
