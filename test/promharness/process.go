package promharness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// defaultReadyTimeout bounds readiness waits when the caller's context
	// has no deadline.
	defaultReadyTimeout = 2 * time.Minute
	// stopGrace is how long a child gets to exit after SIGTERM before it is
	// killed.
	stopGrace = 15 * time.Second
	// pollInterval is the readiness and target polling period.
	pollInterval = 50 * time.Millisecond
	// tailBytes is how much of a child's output is kept for error messages.
	tailBytes = 8 << 10
)

// tailBuffer keeps the last tailBytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	total int64 // bytes ever written
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(p))
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - tailBytes; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// mark returns a position to read from with since.
func (t *tailBuffer) mark() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// since returns what was written after mark, as far as it is still kept.
func (t *tailBuffer) since(mark int64) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := min(t.total-mark, int64(len(t.buf)))
	return string(t.buf[int64(len(t.buf))-n:])
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}

// process is one run of a child process. It is not restarted: a new run is
// a new process.
type process struct {
	name    string
	cmd     *exec.Cmd
	cancel  context.CancelFunc
	done    chan struct{} // closed when the child has exited and its output is drained
	waitErr error         // valid after done
	tail    *tailBuffer
	mu      sync.Mutex
	stopped bool // Stop was asked for: exit is expected
}

// startProcess starts binary with args. The child lives until stop, or until
// the test process dies (it gets SIGKILL through PR_SET_PDEATHSIG on Linux).
// The caller's contexts do not bound its life: a Ginkgo node context that
// ends with the node must not take a suite-wide Prometheus with it.
func startProcess(name, binary string, args []string, logw io.Writer) (*process, error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{name: name, cancel: cancel, done: make(chan struct{}), tail: &tailBuffer{}}
	var out io.Writer = p.tail
	if logw != nil {
		out = io.MultiWriter(logw, p.tail)
	}
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdout = out
	cmd.Stderr = out // the same writer: exec serialises the writes
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace // then SIGKILL
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("promharness: starting %s: %w", name, err)
	}
	p.cmd = cmd
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the child has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes an exit nobody asked for, with the output tail.
func (p *process) exitError() error {
	return fmt.Errorf("promharness: %s exited unexpectedly (%v); its last output:\n%s", p.name, p.waitErr, p.tail)
}

// stop ends the child (SIGTERM, SIGKILL after stopGrace) and waits for it.
// It returns an error only if the child had already died on its own.
func (p *process) stop() error {
	p.mu.Lock()
	already := p.exited() && !p.stopped
	p.stopped = true
	p.mu.Unlock()
	p.cancel()
	<-p.done
	if already {
		return p.exitError()
	}
	return nil
}

// waitReady polls url until it answers 200, the child exits, or the deadline
// (ctx's, or defaultReadyTimeout) passes.
func (p *process) waitReady(ctx context.Context, url string) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var last error
	for {
		if ok, err := get200(ctx, client, url); ok {
			return nil
		} else {
			last = err
		}
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("promharness: %s not ready at %s (%v, last answer: %v); its last output:\n%s",
				p.name, url, ctx.Err(), last, p.tail)
		case <-ticker.C:
		}
	}
}

func get200(ctx context.Context, client *http.Client, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return true, nil
}

// withDefaultTimeout gives ctx a deadline if it has none.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultReadyTimeout)
}

// bindFailed reports whether a child that exited failed to bind its port, so
// starting it on another port may work.
func (p *process) bindFailed() bool {
	return p.exited() && strings.Contains(p.tail.String(), "address already in use")
}

var errNotRunning = errors.New("not running")
