package alerts

import (
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Attack suite: an alert whose labels carry the receiver's own bearer token
// and a URL with credentials (a careless alert rule that templates them in)
// must not put either in the rollout's abort reason, which anyone who may
// read the rollout reads, nor in the receiver's log.
func TestAttackAbortReasonAndLogScrubbed(t *testing.T) {
	c := fakeClient(nil, rollout("prod", "chat", rolloutsv1.PhaseProgressing, nil))
	var mu sync.Mutex
	var logged strings.Builder
	logger := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logged.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 1})
	r := newTestReceiver(t, c, func(o *Options) { o.Logger = logger })

	labels := map[string]string{
		"alertname":    "HighErrorRate",
		"modelrollout": "chat",
		"namespace":    "prod",
		"debug":        "Authorization: Bearer " + testToken,
		"runbook":      "https://ops:wiki-pa55@wiki.example/run?token=wikitoken-123456",
	}
	// One alert matches; one matches nothing (logged at V(1) only).
	unmatched := map[string]string{"alertname": "Other", "leak": testToken}
	s := postPayload(t, r, payload(firing("fp1", labels), firing("fp2", unmatched)))
	if s.Patched != 1 {
		t.Fatalf("summary %+v", s)
	}
	reason := getRollout(t, c, "prod", "chat").Annotations[rolloutsv1.AnnotationAbortReason]
	mu.Lock()
	log := logged.String()
	mu.Unlock()
	for _, secret := range []string{testToken, "wiki-pa55", "wikitoken-123456"} {
		if strings.Contains(reason, secret) {
			t.Errorf("abort reason holds %q: %s", secret, reason)
		}
		if strings.Contains(log, secret) {
			t.Errorf("log holds %q:\n%s", secret, log)
		}
	}
	if !strings.Contains(reason, "[redacted]") || !strings.Contains(reason, "alert HighErrorRate{") {
		t.Errorf("reason %q", reason)
	}
	if !strings.Contains(log, "Firing alert matches no rollout") {
		t.Errorf("the V(1) line was not logged:\n%s", log)
	}
}
