// Package scale is the scale benchmark of issue 10 ("Scale and speed"): it
// starts a real kube-apiserver and etcd (envtest), builds cmd/manager and
// runs it as a separate process against that API server, applies N rollouts
// at once, each with its own HTTPRoute, canary Service and EndpointSlice,
// and measures step lag, all-Succeeded time, the manager's RSS, writes per
// step transition, idle writes, resident memory and leader failover. Run it
// with `make bench-scale`; TestSmoke runs it small in `go test ./...`.
package scale

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// leaseName is the manager's leader election Lease (cmd/manager).
const leaseName = "modelrollout-controller.rollouts.modelrollout.io"

// leaseNamespace is where the bench's managers elect their leader.
const leaseNamespace = "default"

// Prefixes of the namespaces each phase creates; the watches count objects
// in them separately.
const (
	mainPrefix     = "scale-"
	residentPrefix = "resident-"
	failoverNS     = "failover"
	ceilingNS      = "ceiling"
)

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(gatewayv1.Install(s))
	utilruntime.Must(rolloutsv1.AddToScheme(s))
	return s
}

// apiServer is the envtest control plane with an unthrottled admin client.
type apiServer struct {
	env        *envtest.Environment
	cfg        *rest.Config
	c          client.WithWatch
	kubeconfig string
}

func startAPIServer(root, dir string) (*apiServer, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run `make bench-scale` (it points at bin/control-plane)")
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("locate the gateway-api module: %w", err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths: []string{filepath.Join(root, "config", "crd", "bases"),
			filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")},
		ErrorIfCRDPathMissing: true,
	}
	// envtest's default Service range is a /24: too small for thousands of
	// canary Services.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16")
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	s := &apiServer{env: env}
	// The operator gets an admin identity of its own, so its requests are
	// the only ones in its client-go metrics.
	u, err := env.AddUser(envtest.User{Name: "bench-operator", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	raw, err := u.KubeConfig()
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	s.kubeconfig = filepath.Join(dir, "operator.kubeconfig")
	if err := os.WriteFile(s.kubeconfig, raw, 0o600); err != nil {
		_ = env.Stop()
		return nil, err
	}
	s.cfg = rest.CopyConfig(cfg)
	s.cfg.QPS, s.cfg.Burst = -1, 0 // the harness is never client-throttled
	s.c, err = client.NewWithWatch(s.cfg, client.Options{Scheme: newScheme()})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return s, nil
}

func (a *apiServer) stop() error { return a.env.Stop() }

// managerProc is one cmd/manager process.
type managerProc struct {
	name        string
	cmd         *exec.Cmd
	metricsAddr string
	pprofAddr   string
	logPath     string
	done        chan struct{}
	waitErr     error
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// buildManager builds cmd/manager into dir.
func buildManager(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/manager")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/manager: %w\n%s", err, out)
	}
	return bin, nil
}

// managerFlags lists the flags the manager binary knows.
func managerFlags(bin string) map[string]bool {
	out, _ := exec.Command(bin, "-h").CombinedOutput() // -h exits 2 after printing the usage
	flags := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "-") {
			f := strings.TrimLeft(strings.Fields(line)[0], "-")
			flags[f] = true
		}
	}
	return flags
}

func startManager(name, bin, kubeconfig, dir string, extra []string) (*managerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &managerProc{name: name, metricsAddr: fmt.Sprintf("127.0.0.1:%d", port), pprofAddr: fmt.Sprintf("127.0.0.1:%d", pport),
		logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(m.logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--kubeconfig=" + kubeconfig,
		"--metrics-bind-address=" + m.metricsAddr,
		"--pprof-bind-address=" + m.pprofAddr,
		"--health-probe-bind-address=0",
		"--leader-elect=true",
		"--leader-election-namespace=" + leaseNamespace,
	}, extra...)
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = f, f
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		f.Close()
		close(m.done)
	}()
	return m, nil
}

func (m *managerProc) pid() int { return m.cmd.Process.Pid }

func (m *managerProc) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

func (m *managerProc) exitError() error {
	tail, _ := os.ReadFile(m.logPath)
	if len(tail) > 4000 {
		tail = tail[len(tail)-4000:]
	}
	return fmt.Errorf("%s exited (%v); the end of %s:\n%s", m.name, m.waitErr, m.logPath, tail)
}

// kill sends SIGKILL and waits for the exit.
func (m *managerProc) kill() {
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
}

// stop sends SIGTERM, then SIGKILL after 10 s.
func (m *managerProc) stop() {
	if m.exited() {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		m.kill()
	}
}

// procStatus reads VmRSS and VmHWM (peak RSS) from /proc/<pid>/status, in bytes.
func procStatus(pid int) (rss, hwm int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb * 1024
		case "VmHWM:":
			hwm = kb * 1024
		}
	}
	return rss, hwm, nil
}

// metrics is one scrape of the manager's /metrics: sample name with its
// labels (as printed) to value.
type metrics map[string]float64

func scrape(ctx context.Context, addr string) (metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (metrics, error) {
	out := metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// sum adds every sample of the metric name whose labels include all of
// the given label="value" pairs.
func (m metrics) sum(name string, labels ...string) float64 {
	var t float64
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(k, l) {
				ok = false
				break
			}
		}
		if ok {
			t += v
		}
	}
	return t
}

// has reports whether any sample of the metric is present.
func (m metrics) has(name string) bool {
	for k := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			return true
		}
	}
	return false
}

// writes are the manager's API writes by method, from client-go's
// rest_client_requests_total.
type writes struct{ patch, post, put, del float64 }

func writesOf(m metrics) writes {
	return writes{
		patch: m.sum("rest_client_requests_total", `method="PATCH"`),
		post:  m.sum("rest_client_requests_total", `method="POST"`),
		put:   m.sum("rest_client_requests_total", `method="PUT"`),
		del:   m.sum("rest_client_requests_total", `method="DELETE"`),
	}
}

func (w writes) minus(o writes) writes {
	return writes{w.patch - o.patch, w.post - o.post, w.put - o.put, w.del - o.del}
}

func (w writes) total() float64 { return w.patch + w.post + w.put + w.del }

// objects builds the bench's objects.

func canaryName(i int) string { return fmt.Sprintf("canary-%d", i) }
func stableName(i int) string { return fmt.Sprintf("stable-%d", i) }
func routeName(i int) string  { return fmt.Sprintf("r-%d", i) }
func rolloutName(i int) string {
	return fmt.Sprintf("m-%d", i)
}

func service(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8000}}},
	}
}

// endpointSlice has one ready endpoint in a documentation range nothing dials.
func endpointSlice(ns, svc string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc + "-eps", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8000)}},
	}
}

func httpRoute(ns, name, stable string) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "gw"}}},
			Rules: []gatewayv1.HTTPRouteRule{{
				Name: ptr.To[gatewayv1.SectionName]("model"),
				BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
					BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(stable), Port: ptr.To[gatewayv1.PortNumber](8000)}}}},
			}},
		},
	}
}

func rollout(ns string, i int, canary bool, steps []rolloutsv1.Step) *rolloutsv1.ModelRollout {
	ro := &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Name: rolloutName(i), Namespace: ns},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{{Name: routeName(i)}},
			Stable: rolloutsv1.BackendRef{Name: stableName(i), Port: ptr.To[int32](8000)},
			Steps:  steps,
		},
	}
	if canary {
		ro.Spec.Canary = &rolloutsv1.BackendRef{Name: canaryName(i), Port: ptr.To[int32](8000)}
	}
	return ro
}

// weights is the schedule's ladder: 10/25/50/75/100 for five steps, else
// even shares.
func weights(steps int) []int32 {
	if steps == 5 {
		return []int32{10, 25, 50, 75, 100}
	}
	out := make([]int32, steps)
	for i := range steps {
		out[i] = int32(100 * (i + 1) / steps)
	}
	return out
}

func durationString(d time.Duration) rolloutsv1.Duration {
	if d%time.Second == 0 {
		return rolloutsv1.Duration(fmt.Sprintf("%ds", d/time.Second))
	}
	return rolloutsv1.Duration(fmt.Sprintf("%dms", d/time.Millisecond))
}

// parallel runs f(i) for i in [0, n) on workers goroutines and returns the
// first error.
func parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// poll calls cond every interval until it returns true, an error, or the
// timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval): // polling interval, not a wait for state
		}
	}
}

// isLeader reports whether the manager's metrics say it holds the lease.
func isLeader(ctx context.Context, m *managerProc) (bool, error) {
	if m.exited() {
		return false, m.exitError()
	}
	mm, err := scrape(ctx, m.metricsAddr)
	if err != nil {
		return false, nil // not serving yet
	}
	return mm.sum("leader_election_master_status") >= 1, nil
}

// leaseUpdates counts writes to the manager's Lease, so lease renewals
// (PUTs) can be told apart from the operator's own writes.
func leaseWatchEvent(ev watch.Event) bool {
	l, ok := ev.Object.(*coordinationv1.Lease)
	return ok && ev.Type == watch.Modified && l.Namespace == leaseNamespace && l.Name == leaseName
}

// heapProfile runs a garbage collection in the manager and saves its heap
// profile to path, if path is set.
func (m *managerProc) heapProfile(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.pprofAddr+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("heap profile of %s: %w", m.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile of %s: %s", m.name, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("heap profile of %s: %w", m.name, err)
	}
	if path == "" {
		return nil
	}
	return os.WriteFile(path, body, 0o644)
}

// Messages of client-go's leader election and controller-runtime in the
// manager's log.
const (
	logElectorStarted = "Attempting to acquire leader lease"
	logLeaseAcquired  = "Successfully acquired lease"
	logWorkersStarted = "Starting workers"
)

// standbyReady waits until a standby manager is ready to take over: its
// leader elector runs (it logged its first attempt) and the process is idle
// (under idleTicks of CPU over a second). The elector starts only once the
// caches are synced, and it counts the lease duration from its own first
// look at the Lease, not from the leader's last renewal: a leader killed
// before that adds the standby's start-up (about 4 s with 11,000 resident
// rollouts) to the failover. Idle means that the start-up work after it,
// such as the controller's warm-up, is done too.
func standbyReady(ctx context.Context, m *managerProc, timeout time.Duration) error {
	const idleTicks = 5 // 50 ms of CPU at USER_HZ=100: 5 % of a core
	var (
		elector   bool
		base      time.Time
		baseTicks int64
	)
	return poll(ctx, timeout, 250*time.Millisecond, "the standby manager to start its leader election and go idle", func() (bool, error) {
		if m.exited() {
			return false, m.exitError()
		}
		if !elector {
			b, err := os.ReadFile(m.logPath)
			if err != nil {
				return false, err
			}
			if elector = bytes.Contains(b, []byte(logElectorStarted)); !elector {
				return false, nil
			}
		}
		t, err := cpuTicks(m.pid())
		if err != nil {
			return false, err
		}
		now := time.Now()
		if base.IsZero() || t-baseTicks > idleTicks {
			base, baseTicks = now, t
			return false, nil
		}
		return now.Sub(base) >= time.Second, nil
	})
}

// cpuTicks is the user and system CPU time of process pid, in clock ticks
// (/proc/PID/stat).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(string(b))
}

// parseStatTicks reads utime + stime (fields 14 and 15) from a
// /proc/PID/stat line; the command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseStatTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc stat line %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat line %q", stat)
	}
	var sum int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected /proc stat line %q: %w", stat, err)
		}
		sum += v
	}
	return sum, nil
}

// logTimes returns, for each message, the time of its first line in the
// manager's JSON log (zero when absent).
func logTimes(path string, msgs ...string) (map[string]time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]time.Time{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		for _, msg := range msgs {
			if _, seen := out[msg]; seen || !bytes.Contains(line, []byte(msg)) {
				continue
			}
			var e struct {
				TS  string `json:"ts"`
				Msg string `json:"msg"`
			}
			if json.Unmarshal(line, &e) != nil || !strings.HasPrefix(e.Msg, msg) {
				continue
			}
			if t, err := time.Parse(time.RFC3339Nano, e.TS); err == nil {
				out[msg] = t
			}
		}
	}
	return out, sc.Err()
}
