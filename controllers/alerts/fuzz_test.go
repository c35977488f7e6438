package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// FuzzReceiver feeds arbitrary bodies, with a valid token, through the
// handler. Whatever the body, the handler answers 200, 400 or 413, never
// panics, and writes nothing but well-formed abort annotations, and those
// only on rollouts in progress.
func FuzzReceiver(f *testing.F) {
	direct := map[string]string{"alertname": "HighErrorRate", "modelrollout": "chat", "namespace": "prod", "severity": "critical"}
	for _, p := range []*Payload{
		payload(firing("fp1", direct)),
		payload(firing("fp2", gpt4Labels), resolved("fp3", gpt4Labels)),
		payload(firing("", map[string]string{"team": "ml", "model": "gpt-4"})),
		payload(firing("fp4", map[string]string{"modelrollout": "done", "namespace": "prod"})),
		payload(resolved("fp5", direct)),
		payload(),
	} {
		f.Add(mustJSON(f, p))
	}
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `"4"`, `{"version":"4"}`, `{"version":"4","alerts":null}`,
		`{"version":"4","alerts":[null]}`, `{"version":"4","alerts":[{}]}`,
		`{"version":"4","alerts":[{"status":"firing"}]}`,
		`{"version":"4","alerts":[{"status":"firing","labels":null,"startsAt":null}]}`,
		`{"version":"4","alerts":[{"status":"firing","labels":{"modelrollout":"chat","namespace":"prod","alertname":"\u0000\ud800"}}]}`,
		`{"version":"4","alerts":[{"status":"firing","labels":{"model":"gpt-4","alertname":"` + strings.Repeat("é", 600) + `"}}]}`,
		`{"version":"4","alerts":[{"status":"firing","startsAt":"9999-12-31T23:59:59.999999999+14:00","labels":{"team":"ml"}}]}`,
		`{"version":"4","alerts":[{"status":"firing","startsAt":"-0001-01-01T00:00:00Z"}]}`,
		`{"version":"4","truncatedAlerts":18446744073709551615,"alerts":[]}`,
		`{"version":"4","alerts":[` + strings.Repeat(`{"status":"firing","labels":{"team":"ml"}},`, 50) + `{}]}`,
		`{"version":"3","alerts":[{"status":"firing","labels":{"team":"ml"}}]}`,
		`{"version":"4","alerts":[{"status":"firing","labels":{"team":"ml"}}]} trailing`,
		strings.Repeat("[", 10000),
		strings.Repeat("x", 5000),
	} {
		f.Add([]byte(s))
	}

	// The fake client is built once: the handler only lists and patches,
	// and recordingClient keeps each iteration's patches apart.
	base := fakeClient(nil,
		rollout("prod", "chat", rolloutsv1.PhaseProgressing, nil),
		rollout("prod", "gpt4", rolloutsv1.PhasePaused, map[string]string{"model": "gpt-4"}),
		rollout("ml", "team", rolloutsv1.PhaseWaiting, map[string]string{"team": "ml"}),
		rollout("prod", "done", rolloutsv1.PhaseSucceeded, map[string]string{"team": "ml"}),
		rollout("prod", "back", rolloutsv1.PhaseRolledBack, map[string]string{"model": "gpt-4"}),
	)
	var list rolloutsv1.ModelRolloutList
	if err := base.List(context.Background(), &list); err != nil {
		f.Fatal(err)
	}
	phases := map[string]rolloutsv1.Phase{}
	for _, ro := range list.Items {
		phases[ro.Name] = ro.Status.Phase
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		c := &recordingClient{Client: base}
		r, err := New(Options{Client: c, Token: testToken, MaxBodyBytes: 4096, Logger: logr.Discard()})
		if err != nil {
			t.Fatal(err)
		}
		rec := post(r, "Bearer "+testToken, body)
		switch rec.Code {
		case http.StatusOK:
			var s Summary
			if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
				t.Fatalf("200 with body %q: %v", rec.Body, err)
			}
			if s.Patched+s.Unchanged+s.Skipped+s.Gone != s.Rollouts || s.Firing > s.Alerts || s.Matched > s.Firing ||
				s.Patched != len(c.patches) {
				t.Fatalf("inconsistent summary %+v with %d patches", s, len(c.patches))
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if len(body) > 4096 && rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("%d-byte body: status %d", len(body), rec.Code)
			}
			if len(c.patches) != 0 {
				t.Fatalf("patched on a %d", rec.Code)
			}
		default:
			t.Fatalf("status %d, body %s", rec.Code, rec.Body)
		}

		for _, p := range c.patches {
			switch phases[p.name] {
			case rolloutsv1.PhaseWaiting, rolloutsv1.PhaseProgressing, rolloutsv1.PhasePaused:
			default:
				t.Fatalf("%s in phase %q patched", p.name, phases[p.name])
			}
			var patch struct {
				Metadata map[string]json.RawMessage `json:"metadata"`
			}
			if err := json.Unmarshal(p.data, &patch); err != nil {
				t.Fatalf("patch %s: %v", p.data, err)
			}
			var ann map[string]string
			if err := json.Unmarshal(patch.Metadata["annotations"], &ann); err != nil || len(ann) != 3 || len(patch.Metadata) != 2 {
				t.Fatalf("patch %s touches more than the three abort annotations and the UID", p.data)
			}
			for k := range ann {
				if k != rolloutsv1.AnnotationAbort && k != rolloutsv1.AnnotationAbortReason && k != rolloutsv1.AnnotationAbortRevision {
					t.Fatalf("patch %s writes annotation %s", p.data, k)
				}
			}
			tok, reason := ann[rolloutsv1.AnnotationAbort], ann[rolloutsv1.AnnotationAbortReason]
			if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != len(TokenPrefix)+16 {
				t.Fatalf("token %q", tok)
			}
			if len(reason) > MaxReasonBytes || !utf8.ValidString(reason) ||
				!strings.HasPrefix(reason, "alert ") || !strings.HasSuffix(reason, " firing") {
				t.Fatalf("reason %q", reason)
			}
		}
	})
}

// recordingClient lists through the wrapped client and records patches
// instead of applying them.
type recordingClient struct {
	client.Client
	mu      sync.Mutex
	patches []recordedPatch
}

type recordedPatch struct {
	name string
	data []byte
}

func (c *recordingClient) Patch(_ context.Context, obj client.Object, p client.Patch, _ ...client.PatchOption) error {
	data, err := p.Data(obj)
	if err != nil {
		return err
	}
	if p.Type() != types.MergePatchType {
		return fmt.Errorf("patch type %s", p.Type())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.patches = append(c.patches, recordedPatch{obj.GetName(), data})
	return nil
}
