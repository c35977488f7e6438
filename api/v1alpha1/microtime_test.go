package v1alpha1

import (
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMicroTimeReadsBothPrecisions(t *testing.T) {
	var st struct {
		At *MicroTime `json:"at,omitempty"`
	}
	if err := json.Unmarshal([]byte(`{"at":"2026-12-07T01:02:03Z"}`), &st); err != nil {
		t.Fatalf("whole seconds, as earlier versions wrote: %v", err)
	}
	if want := time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC); !st.At.Time.Equal(want) {
		t.Fatalf("got %v, want %v", st.At.Time, want)
	}
	at := time.Date(2026, 12, 7, 1, 2, 3, 456789000, time.UTC)
	st.At = &MicroTime{MicroTime: metav1.NewMicroTime(at)}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"at":"2026-12-07T01:02:03.456789Z"}` {
		t.Fatalf("written as %s", b)
	}
	st.At = nil
	if err := json.Unmarshal(b, &st); err != nil || !st.At.Time.Equal(at) {
		t.Fatalf("round trip: %v, %v", st.At, err)
	}
	if err := json.Unmarshal([]byte(`{"at":"yesterday"}`), &st); err == nil {
		t.Fatal("a time that does not parse is an error")
	}
}

func TestWalkedSteps(t *testing.T) {
	pause := Duration("30m")
	ro := &ModelRollout{Spec: ModelRolloutSpec{Steps: []Step{{Weight: 50, Pause: &pause}, {Weight: 100}}}}
	if got := ro.WalkedSteps(); len(got) != 2 || got[0].Weight != 50 {
		t.Fatalf("without stepWeights: %v", got)
	}
	held := Duration("5m")
	ro.Status.StepWeights = []int32{25, 50, 100}
	ro.Status.StepPause = &held
	got := ro.WalkedSteps()
	if len(got) != 3 || got[0].Weight != 25 || *got[0].Pause != held || *got[1].Pause != pause || got[2].Pause != nil {
		t.Fatalf("with a held weight: %+v", got)
	}
}
