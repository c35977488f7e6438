package main

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	lua "github.com/yuin/gopher-lua"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

var phases = []rolloutsv1.Phase{rolloutsv1.PhaseIdle, rolloutsv1.PhaseWaiting, rolloutsv1.PhaseProgressing,
	rolloutsv1.PhasePaused, rolloutsv1.PhaseSucceeded, rolloutsv1.PhaseRolledBack}

// object is a rollout in the phase, at step 1 of 3 (or before any step
// while Waiting or Idle), as Argo CD hands it to Lua.
func object(L *lua.LState, phase rolloutsv1.Phase) *lua.LTable {
	t := func(kv ...any) *lua.LTable {
		tb := L.NewTable()
		for i := 0; i < len(kv); i += 2 {
			switch v := kv[i+1].(type) {
			case string:
				tb.RawSetString(kv[i].(string), lua.LString(v))
			case int:
				tb.RawSetString(kv[i].(string), lua.LNumber(v))
			case lua.LValue:
				tb.RawSetString(kv[i].(string), v)
			}
		}
		return tb
	}
	steps := L.NewTable()
	for range 3 {
		steps.Append(t("weight", 10))
	}
	spec := t("stable", t("name", "v1"), "steps", steps)
	status := t("phase", string(phase))
	if phase != rolloutsv1.PhaseIdle {
		spec.RawSetString("canary", t("name", "v2"))
		status.RawSetString("revision", lua.LString("Service/v1 -> Service/v2"))
	}
	if phase != rolloutsv1.PhaseIdle && phase != rolloutsv1.PhaseWaiting {
		status.RawSetString("currentStepIndex", lua.LNumber(0))
	}
	return t("metadata", t("name", "gpt4", "annotations", t()), "spec", spec, "status", status)
}

func run(t *testing.T, script []byte, phase rolloutsv1.Phase) (lua.LValue, error) {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", object(L, phase))
	if err := L.DoString(string(script)); err != nil {
		return nil, err
	}
	return L.Get(-1), nil
}

// TestScriptsFollowTheTable runs every generated script in every phase: an
// action script refuses exactly where ActionRules says the controller does
// not act, and discovery offers it exactly where it acts.
func TestScriptsFollowTheTable(t *testing.T) {
	scripts, err := render()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for p := range scripts {
		names = append(names, p)
	}
	sort.Strings(names)
	want := []string{"abort/action.lua", "discovery.lua", "pause/action.lua", "promote-full/action.lua", "promote/action.lua", "resume/action.lua", "retry/action.lua", "skip-gates/action.lua"}
	if len(names) != len(want) {
		t.Fatalf("scripts %v, want %v", names, want)
	}
	for _, phase := range phases {
		ret, err := run(t, scripts["discovery.lua"], phase)
		if err != nil {
			t.Fatalf("discovery.lua in %s: %v", phase, err)
		}
		offered := ret.(*lua.LTable)
		for _, r := range argoActions() {
			if r.Action == rolloutsv1.ActionResume {
				continue // offered by the annotation, not the phase
			}
			acts := r.Action.Allowed(phase, phase != rolloutsv1.PhaseIdle && phase != rolloutsv1.PhaseWaiting)
			entry, ok := offered.RawGetString(string(r.Action)).(*lua.LTable)
			if !ok {
				t.Fatalf("discovery.lua does not list %s", r.Action)
			}
			if disabled := lua.LVAsBool(entry.RawGetString("disabled")); disabled == acts {
				t.Errorf("discovery in %s: %s disabled=%v, but the controller acts on it: %v", phase, r.Action, disabled, acts)
			}
			_, err := run(t, scripts[filepath.Join(string(r.Action), "action.lua")], phase)
			if (err == nil) != acts {
				t.Errorf("%s in %s: error %v, but the controller acts on it: %v", r.Action, phase, err, acts)
			}
		}
	}
}

// TestCommittedScriptsAreGenerated fails when config/argocd/actions was
// edited by hand or not regenerated (make verify checks the same).
func TestCommittedScriptsAreGenerated(t *testing.T) {
	scripts, err := render()
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range scripts {
		got, err := os.ReadFile(filepath.Join("..", "..", "config", "argocd", "actions", path))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("config/argocd/actions/%s differs from what hack/argocd-lua writes: run make generate", path)
		}
	}
}

func TestDocTableIsGenerated(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "reference", "actions.md"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := withDocTable(doc)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(doc) {
		t.Error("docs/reference/actions.md's table differs from api/v1alpha1.ActionRules: run make generate")
	}
}
