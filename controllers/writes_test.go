package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// A cached rollout at the version the last status write replaced is stale;
// any other version ends the wait, and a write that changed nothing never
// starts one (its watch event would never come).
func TestStatusStale(t *testing.T) {
	var w writeState
	key := types.NamespacedName{Namespace: "ai", Name: "gpt4"}
	if w.statusStale(key, "10") {
		t.Fatal("stale before any write")
	}
	w.wroteStatus(key, "10", "10")
	if w.statusStale(key, "10") {
		t.Fatal("a no-op write must not make the cache stale")
	}
	w.wroteStatus(key, "10", "11")
	if !w.statusStale(key, "10") {
		t.Fatal("the replaced version must read as stale")
	}
	if !w.statusStale(key, "10") {
		t.Fatal("still stale until the cache moves")
	}
	if w.statusStale(key, "12") {
		t.Fatal("a newer version (someone else's write after ours) is not stale")
	}
	if w.statusStale(key, "10") {
		t.Fatal("once the cache moved past, the mark is gone")
	}
	w.wroteStatus(key, "20", "21")
	w.forget(key)
	if w.statusStale(key, "20") {
		t.Fatal("forget drops the mark")
	}
}

// A step's clock, started in status ahead of its route patch, moves to when
// the patch landed if that was later, together with the step's record.
func TestMoveClock(t *testing.T) {
	start := mt(t0)
	st := &rolloutsv1.ModelRolloutStatus{StepStartedAt: start, StepHistory: []rolloutsv1.StepRecord{{Weight: 10, StartedAt: *start}}}
	if moveClock(st, t0.Add(-100*time.Millisecond)) || !st.StepStartedAt.Time.Equal(t0) {
		t.Fatal("a patch that landed before the start must leave it")
	}
	if !moveClock(st, t0.Add(1200*time.Millisecond)) {
		t.Fatal("a patch that landed after the start must move it")
	}
	if want := t0.Add(2 * time.Second); !st.StepStartedAt.Time.Equal(want) || !st.StepHistory[0].StartedAt.Time.Equal(want) {
		t.Fatalf("start %v, record %v, want both %v", st.StepStartedAt, st.StepHistory[0].StartedAt, want)
	}
	if moveClock(&rolloutsv1.ModelRolloutStatus{}, t0) {
		t.Fatal("no clock, nothing to move")
	}
}
