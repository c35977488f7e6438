package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
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
