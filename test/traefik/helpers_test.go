package traefik

import (
	"context"
	"fmt"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/modelrollout/modelrollout/test/demo"
	"github.com/modelrollout/modelrollout/test/e2eutil"
)

// step is a schedule step; an empty pause waits for a promote.
var step = e2eutil.Step

func annotate(ctx context.Context, name, key string) {
	GinkgoHelper()
	Expect(stack.Annotate(ctx, name, map[string]string{key: time.Now().UTC().Format(time.RFC3339Nano)})).To(Succeed())
}

// batch sends n gpt-4 requests through Traefik's listener, eight at a
// time, and returns who answered (the simulators' x-backend header) and
// what Traefik counted per Service in traefik_service_requests_total. It
// fails when Traefik reloaded its configuration during the batch: a reload
// restarts the round robin, and the counts would no longer be exact.
func batch(ctx context.Context, n int, header http.Header) (demo.Tally, map[string]float64) {
	GinkgoHelper()
	before, reloads0, err := stack.TraefikCounters(ctx)
	Expect(err).NotTo(HaveOccurred())
	tally, err := demo.RunBatchWithHeader(ctx, stack.GatewayURL, n, 8, 0, header)
	Expect(err).NotTo(HaveOccurred())
	var after map[string]float64
	var reloads1 float64
	// Traefik counts a request when its response ends; the last ones may
	// land just after the client saw them. Responses no backend answered
	// are not waited for: Traefik may count them under no backendRef.
	served := n - tally[demo.FromGateway].Total() - tally[demo.NoResponse].Total()
	Eventually(ctx, func(g Gomega) {
		after, reloads1, err = stack.TraefikCounters(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		var sum float64
		for svc, v := range after {
			sum += v - before[svc]
		}
		g.Expect(sum).To(BeNumerically(">=", served))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	Expect(reloads1).To(Equal(reloads0), "Traefik reloaded its configuration during the batch")
	counted := map[string]float64{}
	for svc, v := range after {
		if d := v - before[svc]; d > 0 {
			counted[svc] = d
		}
	}
	return tally, counted
}

// expectSplit sends n requests without a header and expects exactly
// n*weight/100 of them at each backend, as the load generator and as
// Traefik counted them.
func expectSplit(ctx context.Context, n int, weights map[string]int32) {
	GinkgoHelper()
	tally, counted := batch(ctx, n, nil)
	want := demo.Tally{}
	wantCounted := map[string]float64{}
	var total int32
	for _, w := range weights {
		total += w
	}
	for svc, w := range weights {
		if w == 0 {
			continue
		}
		k := n * int(w) / int(total)
		want[svc] = demo.BackendCount{OK: k}
		wantCounted[svc] = float64(k)
	}
	AddReportEntry(fmt.Sprintf("split at %v", weights), fmt.Sprintf("answered: %s; Traefik counted: %v", tally, counted))
	Expect(tally).To(Equal(want), "who answered the %d requests", n)
	Expect(counted).To(Equal(wantCounted), "traefik_service_requests_total by backend Service")
}

// quiesce waits until Traefik's request counters stop moving: the requests
// of a load that was just stopped are all counted.
func quiesce(ctx context.Context) {
	GinkgoHelper()
	var last map[string]float64
	Eventually(ctx, func(g Gomega) {
		now, _, err := stack.TraefikCounters(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		prev := last
		last = now
		g.Expect(now).To(Equal(prev))
	}).WithPolling(time.Second).Should(Succeed())
}
