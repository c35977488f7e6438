package demo

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/vllmsim"
)

func startSim(t *testing.T, name string, errorRate float64) *vllmsim.Server {
	t.Helper()
	cfg := vllmsim.DefaultConfig()
	cfg.Name = name
	cfg.TTFT, cfg.InterTokenLatency = time.Millisecond, time.Millisecond
	cfg.ErrorRate = errorRate
	s := vllmsim.New(cfg)
	if _, err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestRunBatchCountsByBackend(t *testing.T) {
	ok := startSim(t, "good", 0)
	tally, err := RunBatch(t.Context(), ok.URL(), 40, 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := tally["good"]; got.OK != 40 || got.Failed != 0 || len(tally) != 1 {
		t.Fatalf("tally = %v, want 40 OK responses from good", tally)
	}

	bad := startSim(t, "bad", 1)
	tally, err = RunBatch(t.Context(), bad.URL(), 10, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := tally["bad"]; got.Failed != 10 {
		t.Fatalf("tally = %v, want 10 failed responses from bad", tally)
	}
}

func TestLoadIsBoundedAndStopsByItself(t *testing.T) {
	s := startSim(t, "good", 0)
	l, err := StartLoad(t.Context(), LoadOptions{URL: s.URL(), Concurrency: 4, MaxRequests: 25, MaxDuration: time.Minute, StreamEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(30 * time.Second):
		l.Stop()
		t.Fatal("the load did not stop after MaxRequests")
	}
	if n := l.Total().Total(); n != 25 {
		t.Fatalf("sent %d requests, want exactly MaxRequests = 25", n)
	}
	if n := l.Window(time.Minute).Total(); n != 25 {
		t.Fatalf("the last minute holds %d responses, want 25", n)
	}

	l, err = StartLoad(t.Context(), LoadOptions{URL: s.URL(), Rate: 20, MaxDuration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(30 * time.Second):
		l.Stop()
		t.Fatal("the load did not stop after MaxDuration")
	}
}

func TestTrafficGoesOnlyToLoopback(t *testing.T) {
	for _, u := range []string{"http://192.0.2.10:8000", "http://example.com", "http://localhost:80"} {
		if _, err := StartLoad(context.Background(), LoadOptions{URL: u}); err == nil {
			t.Errorf("StartLoad(%s) accepted a non-loopback address", u)
		}
		if _, err := RunBatch(context.Background(), u, 1, 1, 0); err == nil {
			t.Errorf("RunBatch(%s) accepted a non-loopback address", u)
		}
	}
}

func TestOpenStreamReadsToDone(t *testing.T) {
	s := startSim(t, "good", 0)
	st, err := OpenStream(t.Context(), s.URL(), 5)
	if err != nil {
		t.Fatal(err)
	}
	done, err := st.Result()
	if err != nil || !done || st.Chunks() != 6 || st.Backend != "good" {
		t.Fatalf("stream: done=%v err=%v chunks=%d backend=%q; want [DONE], 5 tokens + final chunk, from good", done, err, st.Chunks(), st.Backend)
	}
}

func TestRenderRolloutLikeKubectl(t *testing.T) {
	now := time.Now()
	ro := &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Name: RolloutName, CreationTimestamp: metav1.NewTime(now.Add(-41 * time.Second))},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{{Name: RouteName}},
			Stable: rolloutsv1.BackendRef{Name: Stable},
			Canary: &rolloutsv1.BackendRef{Name: GoodCanary},
			Steps:  []rolloutsv1.Step{{Weight: 10, Pause: ptr.To(rolloutsv1.Duration("10s"))}, {Weight: 100}},
		},
		Status: rolloutsv1.ModelRolloutStatus{Phase: rolloutsv1.PhaseProgressing, Step: "1/2", CanaryWeight: 10, CurrentStepIndex: ptr.To[int32](0)},
	}
	header := formatRow(tableHeader)
	row := formatRow(tableRow(ro, now))
	if want := "NAME   ROUTE                  CANARY         WEIGHT   STEP   PHASE         AGE"; header != want {
		t.Errorf("header:\n%q\nwant\n%q", header, want)
	}
	if want := "gpt4   model-header-routing   vllm-gpt4-v2   10       1/2    Progressing   41s"; row != want {
		t.Errorf("row:\n%q\nwant\n%q", row, want)
	}
	if got := stepsLine(ro); !strings.HasPrefix(got, "▶ 10% 10s") || !strings.Contains(got, "· 100% promote") {
		t.Errorf("steps line %q", got)
	}
}

func TestLoadTagsEveryNthRequestWithTheHeader(t *testing.T) {
	s := startSim(t, "good", 0)
	l, err := StartLoad(t.Context(), LoadOptions{URL: s.URL(), Concurrency: 4, MaxRequests: 30, MaxDuration: time.Minute,
		Header: http.Header{ABTestHeader: []string{ABTestCanary}}, HeaderEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(30 * time.Second):
		l.Stop()
		t.Fatal("the load did not stop after MaxRequests")
	}
	if n := l.Total().Total(); n != 30 {
		t.Fatalf("sent %d requests, want 30", n)
	}
	if got := l.Tagged()["good"].OK; got != 10 {
		t.Fatalf("tagged: %v, want 10 of 30 (every third request)", l.Tagged())
	}
	if got := l.TaggedWindow(time.Minute).Total(); got != 10 {
		t.Fatalf("tagged in the last minute: %d, want 10", got)
	}
	all, tagged := l.Between(time.Now().Add(-time.Minute), time.Now().Add(time.Second))
	if all.Total() != 30 || tagged.Total() != 10 {
		t.Fatalf("between a minute ago and now: %d responses, %d tagged; want 30 and 10", all.Total(), tagged.Total())
	}
	if all, _ := l.Between(time.Now().Add(time.Second), time.Now().Add(time.Minute)); all.Total() != 0 {
		t.Fatalf("%d responses counted in the future", all.Total())
	}
}
