package scale

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeManagerEnv makes the test binary act as a manager for startManager:
// "busy" logs the elector's first attempt at once, then works on a core
// for fakeBusy; "silent" never logs it.
const fakeManagerEnv = "SCALE_FAKE_MANAGER"

const fakeBusy = 1500 * time.Millisecond

func TestMain(m *testing.M) {
	switch os.Getenv(fakeManagerEnv) {
	case "":
		os.Exit(m.Run())
	case "busy":
		fmt.Println(`{"level":"info","msg":"Serving metrics server"}`)
		fmt.Println(`{"level":"info","logger":"leaderelection","msg":"Attempting to acquire leader lease...","lock":"default/x"}`)
		for end := time.Now().Add(fakeBusy); time.Now().Before(end); {
		}
	}
	select {} // until killed
}

func startFake(t *testing.T, mode string) *managerProc {
	t.Helper()
	t.Setenv(fakeManagerEnv, mode)
	m, err := startManager("fake", os.Args[0], "unused", t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.kill)
	return m
}

// TestStandbyReadyWaitsForIdle: a standby that has started its elector but
// is still busy (syncing, warming up) is not ready to take over.
func TestStandbyReadyWaitsForIdle(t *testing.T) {
	m := startFake(t, "busy")
	start := time.Now()
	if err := standbyReady(context.Background(), m, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < fakeBusy {
		t.Errorf("ready after %s, while the standby worked for %s", d, fakeBusy)
	}
}

// TestStandbyReadyWaitsForElector: an idle standby that serves metrics but
// has not started its leader election (caches still syncing) is not ready.
func TestStandbyReadyWaitsForElector(t *testing.T) {
	m := startFake(t, "silent")
	if err := standbyReady(context.Background(), m, 2*time.Second); err == nil {
		t.Fatal("ready without a leader elector")
	}
}

func TestParseStatTicks(t *testing.T) {
	// utime 1200, stime 34; the command name holds a space and a ')'.
	got, err := parseStatTicks("4242 (mana ger)) S 1 4242 4242 0 -1 4194560 900 0 0 0 1200 34 0 0 20 0 12 0 100 0 0")
	if err != nil || got != 1234 {
		t.Fatalf("parseStatTicks = %d, %v; want 1234", got, err)
	}
	if _, err := parseStatTicks("4242 (x) S 1"); err == nil {
		t.Error("a short line parsed")
	}
	if _, err := cpuTicks(os.Getpid()); err != nil {
		t.Errorf("cpuTicks of this process: %v", err)
	}
}

func TestLogTimes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.log")
	log := `{"level":"info","ts":"2026-11-28T06:00:38.120Z","logger":"leaderelection","msg":"Successfully acquired lease","lock":"default/x"}
not json: Starting workers
{"level":"info","ts":"2026-11-28T06:00:40.5Z","msg":"Starting workers","controller":"modelrollout","worker count":16}
{"level":"info","ts":"2026-11-28T06:00:41Z","msg":"Starting workers","controller":"modelrollout","worker count":16}
`
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	ts, err := logTimes(path, logLeaseAcquired, logWorkersStarted, logElectorStarted)
	if err != nil {
		t.Fatal(err)
	}
	if d := ts[logWorkersStarted].Sub(ts[logLeaseAcquired]); d != 2380*time.Millisecond {
		t.Errorf("workers started %s after the lease, want 2.38s (%v)", d, ts)
	}
	if !ts[logElectorStarted].IsZero() {
		t.Errorf("found a line the log does not have: %v", ts)
	}
}
