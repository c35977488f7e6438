package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/modelrollout/modelrollout/test/gateway"
	"github.com/modelrollout/modelrollout/test/promharness"
	"github.com/modelrollout/modelrollout/test/vllmsim"
)

// The header of the good rollout's dark-launch step (the seed's A/B
// routing): requests that carry ABTestHeader: ABTestCanary reach the
// canary while it has no weight.
const (
	ABTestHeader = "x-ab-test-group"
	ABTestCanary = "canary"
)

// Names of the demo's objects, as in the user story.
const (
	Namespace    = "ai-gateway"
	GatewayName  = "ai-inference-gateway"
	RouteName    = "model-header-routing"
	RuleName     = "gpt4"
	ModelID      = "gpt-4"
	Stable       = "vllm-gpt4-v1"
	GoodCanary   = "vllm-gpt4-v2"
	BadCanary    = "vllm-gpt4-v3"
	WrongCanary  = "vllm-gpt4-v4"
	BackendPort  = 8000
	RolloutName  = "gpt4"
	AlertName    = "HighErrorRate"
	defaultK8s   = "v1.37.2"
	gatewayJob   = "gateway"
	vllmJob      = "vllm"
	operatorJob  = "modelrollout"
	receiverPath = "/alerts"
)

// simulator describes one simulated model server of the stack.
type simulator struct {
	service string // Service name
	port    int32  // Service port
	model   string
}

// simulators are the backends of the seed's header routing: four versions
// of gpt-4 and the other rules' backends, which the rollouts never touch.
var simulators = []simulator{
	{Stable, BackendPort, ModelID},
	{GoodCanary, BackendPort, ModelID},
	{BadCanary, BackendPort, ModelID},
	{WrongCanary, BackendPort, ModelID},
	{"tgi-claude", 8080, "claude-3"},
	{"vllm-mixtral", BackendPort, "mixtral-8x7b"},
	{"health-check-service", 8080, "health"},
}

// Options configure Start.
type Options struct {
	// Root is the repository root; found from the working directory when
	// empty.
	Root string
	// Logf receives progress messages; nil discards them.
	Logf func(format string, args ...any)
	// ChildOutput receives the output of Prometheus and Alertmanager; their
	// tails are kept for error messages anyway.
	ChildOutput io.Writer
	// BadErrorRate is the share of requests vllm-gpt4-v3, the bad canary,
	// fails; 0.25 when 0. Negative means v3 starts healthy.
	BadErrorRate float64
	// BuildPlugin also builds the kubectl plugin (cmd/kubectl-modelrollout)
	// when its source exists.
	BuildPlugin bool
	// KubebuilderAssets holds kube-apiserver and etcd; $KUBEBUILDER_ASSETS,
	// else <root>/bin/control-plane/v1.37.2, when empty.
	KubebuilderAssets string
	// Gateway is the data plane: GatewayTest (the default, also when empty)
	// or GatewayTraefik.
	Gateway string
	// TraefikBinary is Traefik's binary for GatewayTraefik; the one
	// test/scripts/traefik.sh caches in bin/traefik when empty.
	TraefikBinary string
}

// Stack is everything `make demo` and the e2e suite run on this machine,
// all on 127.0.0.1. See the package documentation.
type Stack struct {
	// Root is the repository root.
	Root string
	// Dir is the stack's work directory: kubeconfigs, binaries, logs.
	Dir string
	// Kubeconfig is an admin kubeconfig whose context defaults to Namespace.
	Kubeconfig string
	// Config and Client are the admin's.
	Config *rest.Config
	Client client.Client

	// Sims are the simulators by Service name.
	Sims map[string]*vllmsim.Server
	// Gateway is the test gateway; GatewayURL its data plane and
	// GatewayMetricsURL its admin listener (/stats/prometheus, /routes).
	// On a Traefik stack Gateway is nil, Traefik is its process,
	// GatewayURL its web entry point and GatewayMetricsURL its traefik entry
	// point (/ping, /api, /metrics).
	Gateway           *gateway.Gateway
	Traefik           *Process
	GatewayURL        string
	GatewayMetricsURL string

	Prometheus   *promharness.Prometheus
	Alertmanager *promharness.Alertmanager

	// Operator is the operator process; its metrics, probes and alert
	// receiver listen on the addresses below.
	Operator        *Process
	OperatorMetrics string
	OperatorHealth  string
	// AlertReceiverURL is the operator's Alertmanager webhook, or "" when
	// the operator binary has no --alert-receiver-bind-address flag.
	AlertReceiverURL string

	// ManagerPath and PluginPath are the built binaries (PluginPath is ""
	// when the plugin was not built); BinDir holds both.
	BinDir      string
	ManagerPath string
	PluginPath  string
	// PluginMissing explains why there is no plugin.
	PluginMissing string

	// Timings of the start-up phases.
	Timings []Timing

	opts       Options
	logf       func(string, ...any)
	env        *envtest.Environment
	simConfigs map[string]vllmsim.Config
	gwCancel   context.CancelFunc
	gwDone     chan error
	gwServers  []*http.Server
	tokenPath  string
	gwLogFile  *os.File
	// initialRoute is the HTTPRoute as the API server stored it from Git,
	// defaults included.
	initialRoute *gatewayv1.HTTPRoute
	closeOnce    sync.Once
	closeErr     error
}

// Timing is how long one phase took.
type Timing struct {
	What string
	Took time.Duration
}

// Start starts the whole stack. On error, what was started is stopped again.
// ctx bounds the start-up only.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.BadErrorRate == 0 {
		opts.BadErrorRate = 0.25
	}
	if opts.Root == "" {
		if opts.Root, err = FindRepoRoot(); err != nil {
			return nil, err
		}
	}
	if opts.KubebuilderAssets == "" {
		if opts.KubebuilderAssets, err = ControlPlaneAssets(opts.Root); err != nil {
			return nil, err
		}
	}
	if err := promharness.Available(); err != nil {
		return nil, fmt.Errorf("%w (or run `make test-deps`)", err)
	}
	switch opts.Gateway {
	case "", GatewayTest:
		opts.Gateway = GatewayTest
	case GatewayTraefik:
		if opts.TraefikBinary == "" {
			if opts.TraefikBinary, err = TraefikBinary(opts.Root); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("unknown gateway %q: %q or %q", opts.Gateway, GatewayTest, GatewayTraefik)
	}

	sweepStaleDirs()
	dir, err := os.MkdirTemp("", workDirPrefix)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Stack{
		Root: opts.Root, Dir: dir, BinDir: filepath.Join(dir, "bin"),
		opts: opts, logf: opts.Logf,
		Sims: map[string]*vllmsim.Server{}, simConfigs: map[string]vllmsim.Config{},
	}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if err := os.MkdirAll(s.BinDir, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	s.time("whole stack", start)
	return s, nil
}

// ControlPlaneAssets returns the directory holding kube-apiserver and etcd:
// $KUBEBUILDER_ASSETS, else <root>/bin/control-plane/v1.37.2 (where `make
// control-plane` builds them).
func ControlPlaneAssets(root string) (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(root, "bin", "control-plane", defaultK8s)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make control-plane` (or set KUBEBUILDER_ASSETS)", b, dir)
		}
	}
	return dir, nil
}

func (s *Stack) time(what string, since time.Time) {
	s.Timings = append(s.Timings, Timing{What: what, Took: time.Since(since)})
}

func (s *Stack) start(ctx context.Context) error {
	// The simulators and the gateway's listeners come first: their ports go
	// into the EndpointSlices and Prometheus' targets.
	t0 := time.Now()
	if err := s.startSimulators(); err != nil {
		return err
	}
	dataLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	metricsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		dataLn.Close()
		return err
	}
	s.GatewayURL = "http://" + dataLn.Addr().String()
	s.GatewayMetricsURL = "http://" + metricsLn.Addr().String()
	ports, err := freePorts(3)
	if err != nil {
		dataLn.Close()
		metricsLn.Close()
		return err
	}
	s.OperatorMetrics = "127.0.0.1:" + strconv.Itoa(ports[0])
	s.OperatorHealth = "127.0.0.1:" + strconv.Itoa(ports[1])
	receiverAddr := "127.0.0.1:" + strconv.Itoa(ports[2])
	s.time("simulators", t0)

	// In parallel: the control plane, the binaries, Alertmanager then
	// Prometheus.
	s.logf("starting kube-apiserver and etcd, building the operator, starting Prometheus and Alertmanager")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		t := time.Now()
		if err := s.startControlPlane(gctx); err != nil {
			return err
		}
		s.time("kube-apiserver + etcd", t)
		return nil
	})
	g.Go(func() error {
		t := time.Now()
		if err := s.buildBinaries(gctx); err != nil {
			return err
		}
		s.time("go build", t)
		return nil
	})
	g.Go(func() error {
		t := time.Now()
		// The alert receiver flags are checked once the manager is built;
		// Alertmanager's webhook is configured either way and only used
		// when the operator serves it.
		token, err := randomToken()
		if err != nil {
			return err
		}
		s.tokenPath = filepath.Join(s.Dir, "alert-receiver-token")
		if err := os.WriteFile(s.tokenPath, []byte(token+"\n"), 0o600); err != nil {
			return err
		}
		s.Alertmanager, err = promharness.StartAlertmanager(gctx, promharness.AlertmanagerOptions{
			WebhookURL:     "http://" + receiverAddr + receiverPath,
			BearerToken:    token,
			GroupWait:      0,
			GroupInterval:  time.Second,
			RepeatInterval: 10 * time.Second,
			GroupBy:        []string{"..."},
			LogWriter:      s.opts.ChildOutput,
		})
		if err != nil {
			return err
		}
		rules, err := os.ReadFile(s.filePath(AlertRulesManifest))
		if err != nil {
			return err
		}
		s.Prometheus, err = promharness.StartPrometheus(gctx, promharness.PrometheusOptions{
			Targets:         s.targets(metricsLn.Addr().String()),
			RuleFiles:       map[string]string{AlertRulesManifest: string(rules)},
			AlertmanagerURL: s.Alertmanager.URL(),
			LogWriter:       s.opts.ChildOutput,
		})
		if err != nil {
			return err
		}
		s.time("Prometheus + Alertmanager", t)
		return nil
	})
	if err := g.Wait(); err != nil {
		dataLn.Close()
		metricsLn.Close()
		return err
	}
	supported, err := managerHasFlag(s.ManagerPath, "alert-receiver-bind-address")
	if err != nil {
		return err
	}

	t1 := time.Now()
	if err := s.applyManifests(ctx); err != nil {
		dataLn.Close()
		metricsLn.Close()
		return err
	}
	if s.IsTraefik() {
		dataLn.Close()
		metricsLn.Close()
		s.logf("starting Traefik")
		if err := s.startTraefik(ctx, dataLn.Addr().String(), metricsLn.Addr().String()); err != nil {
			return err
		}
	} else if err := s.startGateway(ctx, dataLn, metricsLn); err != nil {
		return err
	}
	s.time("manifests + gateway", t1)

	t2 := time.Now()
	s.logf("starting the operator")
	if supported {
		s.AlertReceiverURL = "http://" + receiverAddr + receiverPath
	}
	if err := s.startOperator(ctx, receiverAddr); err != nil {
		return err
	}
	s.time("operator", t2)

	t3 := time.Now()
	s.logf("waiting for Prometheus to scrape every target")
	if err := s.Prometheus.WaitForTargetsUp(ctx); err != nil {
		return err
	}
	s.time("Prometheus targets up", t3)
	return nil
}

const (
	workDirPrefix = "modelrollout-demo-"
	ownerFile     = "owner.pid"
)

// sweepStaleDirs removes the work directories of stacks whose process is
// gone (killed with SIGKILL, so that Close never ran). Directories younger
// than a minute are left alone: their stack may still be writing its pid.
func sweepStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), workDirPrefix+"*"))
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // not ours, or not a stack's
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // alive
		}
		_ = os.RemoveAll(d)
	}
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// managerHasFlag reports whether the manager binary knows a flag.
func managerHasFlag(binary, flag string) (bool, error) {
	out, _ := exec.Command(binary, "--help").CombinedOutput()
	if !strings.Contains(string(out), "-metrics-bind-address") {
		return false, fmt.Errorf("%s --help did not print its flags:\n%s", binary, out)
	}
	return strings.Contains(string(out), "-"+flag), nil
}

// SimConfig returns the configuration a simulator started with.
func (s *Stack) SimConfig(name string) vllmsim.Config { return s.simConfigs[name] }

func (s *Stack) startSimulators() error {
	for _, sim := range simulators {
		cfg := vllmsim.DefaultConfig()
		cfg.Name = sim.service
		cfg.Model = sim.model
		cfg.Jitter = 0.2
		if sim.service == BadCanary && s.opts.BadErrorRate > 0 {
			cfg.ErrorRate = s.opts.BadErrorRate
		}
		if sim.service == WrongCanary {
			// Fast and error-free, but every answer is wrong.
			cfg.Answer = vllmsim.WrongAnswer
		}
		srv := vllmsim.New(cfg)
		if _, err := srv.Start("127.0.0.1:0"); err != nil {
			return err
		}
		s.Sims[sim.service] = srv
		s.simConfigs[sim.service] = srv.Config()
	}
	return nil
}

// targets are Prometheus' scrape targets: every simulator with the target
// labels a ServiceMonitor would give it, the gateway and the operator.
func (s *Stack) targets(gatewayMetrics string) []promharness.Target {
	var ts []promharness.Target
	for _, sim := range simulators {
		ts = append(ts, promharness.Target{
			Job: vllmJob, Addr: s.Sims[sim.service].Addr(),
			Labels: map[string]string{"service": sim.service, "namespace": Namespace},
		})
	}
	gw := promharness.Target{Job: gatewayJob, Addr: gatewayMetrics, MetricsPath: "/stats/prometheus",
		Labels: map[string]string{"gateway": GatewayName, "namespace": Namespace}}
	if s.IsTraefik() {
		gw.MetricsPath = traefikMetricsPath
	}
	ts = append(ts, gw,
		promharness.Target{Job: operatorJob, Addr: s.OperatorMetrics},
	)
	return ts
}

func (s *Stack) startControlPlane(ctx context.Context) error {
	gwDir, err := goModuleDir(ctx, s.Root, "sigs.k8s.io/gateway-api")
	if err != nil {
		return err
	}
	wrappers := filepath.Join(s.Dir, "control-plane")
	if err := os.MkdirAll(wrappers, 0o755); err != nil {
		return err
	}
	apiserver, err := pdeathsigWrapper(wrappers, filepath.Join(s.opts.KubebuilderAssets, "kube-apiserver"))
	if err != nil {
		return err
	}
	etcd, err := pdeathsigWrapper(wrappers, filepath.Join(s.opts.KubebuilderAssets, "etcd"))
	if err != nil {
		return err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:        []string{filepath.Join(s.Root, "config", "crd", "bases"), filepath.Join(gwDir, "config", "crd", "standard")},
		ErrorIfCRDPathMissing:    true,
		BinaryAssetsDirectory:    s.opts.KubebuilderAssets,
		ControlPlaneStartTimeout: 3 * time.Minute, // a loaded 2-core machine
		ControlPlaneStopTimeout:  time.Minute,
	}
	// Their data and certificates go into the work directory too, so that
	// a stack killed with SIGKILL leaves one directory behind, which the
	// next start removes.
	etcdDir, certDir := filepath.Join(s.Dir, "etcd"), filepath.Join(s.Dir, "apiserver-certs")
	for _, d := range []string{etcdDir, certDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	env.ControlPlane.GetAPIServer().Path = apiserver
	env.ControlPlane.GetAPIServer().CertDir = certDir
	env.ControlPlane.Etcd = &envtest.Etcd{Path: etcd, DataDir: etcdDir}
	s.env = env
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	admin, err := env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	s.Config = admin.Config()
	raw, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	s.Kubeconfig = filepath.Join(s.Dir, "kubeconfig")
	if err := writeKubeconfig(raw, Namespace, s.Kubeconfig); err != nil {
		return err
	}
	s.Client, err = client.New(s.Config, client.Options{Scheme: NewScheme()})
	if err != nil {
		return err
	}
	opRaw, err := setupOperatorIdentity(ctx, env, s.Client, filepath.Join(s.Root, "config", "rbac", "role.yaml"))
	if err != nil {
		return err
	}
	return writeKubeconfig(opRaw, Namespace, filepath.Join(s.Dir, "operator.kubeconfig"))
}

func (s *Stack) buildBinaries(ctx context.Context) error {
	s.ManagerPath = filepath.Join(s.BinDir, "manager")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return goBuild(gctx, s.Root, "./cmd/manager", s.ManagerPath) })
	if s.opts.BuildPlugin {
		if _, err := os.Stat(filepath.Join(s.Root, "cmd", "kubectl-modelrollout")); err != nil {
			s.PluginMissing = "cmd/kubectl-modelrollout does not exist yet"
		} else {
			g.Go(func() error {
				p := filepath.Join(s.BinDir, "kubectl-modelrollout")
				if err := goBuild(gctx, s.Root, "./cmd/kubectl-modelrollout", p); err != nil {
					return err
				}
				s.PluginPath = p
				return nil
			})
		}
	} else {
		s.PluginMissing = "not built"
	}
	return g.Wait()
}

// applyManifests creates the namespace, the Gateway, the Services and their
// EndpointSlices and the HTTPRoute.
func (s *Stack) applyManifests(ctx context.Context) error {
	if err := s.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return err
	}
	files := []string{GatewayManifest, ServicesManifest, RouteManifest}
	if s.IsTraefik() {
		// Traefik's GatewayClass, and the listener on Traefik's web port.
		gc, gw := traefikGateway(portOf(strings.TrimPrefix(s.GatewayURL, "http://")))
		for _, o := range []client.Object{gc, gw} {
			if err := s.Client.Create(ctx, o); err != nil {
				return err
			}
		}
		files = files[1:]
	}
	for _, f := range files {
		if err := ApplyFile(ctx, s.Client, s.filePath(f)); err != nil {
			return err
		}
	}
	route, err := s.Route(ctx)
	if err != nil {
		return err
	}
	s.initialRoute = route
	for _, sim := range simulators {
		_, portStr, _ := net.SplitHostPort(s.Sims[sim.service].Addr())
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return err
		}
		if err := s.Client.Create(ctx, endpointSlice(Namespace, sim.service, int32(port), s.IsTraefik())); err != nil {
			return err
		}
	}
	return nil
}

func (s *Stack) startGateway(ctx context.Context, dataLn, metricsLn net.Listener) error {
	f, err := os.Create(filepath.Join(s.Dir, "gateway.log"))
	if err != nil {
		dataLn.Close()
		metricsLn.Close()
		return err
	}
	s.gwLogFile = f
	log := logr.FromSlogHandler(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.Level(-1)}))
	gw, err := gateway.New(gateway.Options{
		Config:  s.Config,
		Gateway: types.NamespacedName{Namespace: Namespace, Name: GatewayName},
		Logger:  log,
	})
	if err != nil {
		dataLn.Close()
		metricsLn.Close()
		return err
	}
	s.Gateway = gw
	runCtx, cancel := context.WithCancel(context.Background())
	s.gwCancel = cancel
	s.gwDone = make(chan error, 1)
	go func() { s.gwDone <- gw.Start(runCtx) }()
	s.gwServers = []*http.Server{
		{Handler: gw.Handler(), ReadHeaderTimeout: 30 * time.Second},
		{Handler: gw.MetricsHandler(), ReadHeaderTimeout: 30 * time.Second},
	}
	for i, ln := range []net.Listener{dataLn, metricsLn} {
		go func() { _ = s.gwServers[i].Serve(ln) }()
	}
	// Ready once the gpt-4 rule routes to the stable simulator.
	return poll(ctx, 2*time.Minute, "the gateway to route gpt-4 to "+Stable, func() (bool, error) {
		w, ok := s.GatewayWeights()
		return ok && w[Stable] > 0, nil
	})
}

// LogWriter is the gateway's log file, e.g. for the standard library's
// logger, which the reverse proxy writes to.
func (s *Stack) LogWriter() io.Writer {
	if s.gwLogFile == nil {
		return io.Discard
	}
	return s.gwLogFile
}

// GatewayWeights returns the weights of the gpt-4 rule in the gateway's
// current routing table, by Service name, counting only backends that have
// an endpoint; false when the rule is not in the table.
func (s *Stack) GatewayWeights() (map[string]int32, bool) {
	if s.IsTraefik() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.traefikWeights(ctx)
	}
	if s.Gateway == nil {
		return nil, false
	}
	for _, r := range s.Gateway.Table().Rules() {
		if r.RouteNamespace != Namespace || r.RouteName != RouteName || r.Name != RuleName {
			continue
		}
		out := map[string]int32{}
		for _, b := range r.Backends {
			if len(b.Endpoints) > 0 {
				out[b.Name] = b.Weight
			}
		}
		return out, true
	}
	return nil, false
}

func (s *Stack) startOperator(ctx context.Context, receiverAddr string) error {
	args := []string{
		"--kubeconfig=" + filepath.Join(s.Dir, "operator.kubeconfig"),
		"--leader-elect=true",
		"--leader-election-namespace=" + LeaderElectionNamespace,
		"--metrics-bind-address=" + s.OperatorMetrics,
		"--health-probe-bind-address=" + s.OperatorHealth,
		"--prometheus-address=" + s.Prometheus.URL(),
		// The simulators listen on loopback, which prompt gates may call
		// only when allowed (in a cluster, the canary Service's address is
		// in the cluster's networks).
		"--egress-allow=127.0.0.0/8",
	}
	if s.AlertReceiverURL != "" {
		args = append(args,
			"--alert-receiver-bind-address="+receiverAddr,
			"--alert-receiver-token-file="+s.tokenPath,
		)
	}
	p, err := StartProcess("operator", s.ManagerPath, args, filepath.Join(s.Dir, "operator.log"))
	if err != nil {
		return err
	}
	s.Operator = p
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	return poll(ctx, 3*time.Minute, "the operator to be ready and elected leader", func() (bool, error) {
		if p.Exited() {
			return false, p.ExitError()
		}
		resp, err := client.Get("http://" + s.OperatorHealth + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, nil
		}
		if _, ok := leaderElected(ctx, s.Client); !ok {
			return false, nil
		}
		if s.AlertReceiverURL != "" {
			c, err := net.DialTimeout("tcp", receiverAddr, time.Second)
			if err != nil {
				return false, nil
			}
			c.Close()
		}
		return true, nil
	})
}

// poll calls check every 100ms until it returns true or an error, or until
// timeout or ctx ends.
func poll(ctx context.Context, timeout time.Duration, what string, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := check()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// Close stops everything in order (operator, gateway, simulators,
// Prometheus, Alertmanager, kube-apiserver and etcd) and removes the work
// directory. It is safe to call more than once.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.Operator != nil {
			s.Operator.Stop(15 * time.Second)
		}
		if s.Traefik != nil {
			s.Traefik.Stop(15 * time.Second)
		}
		if s.gwCancel != nil {
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			for _, srv := range s.gwServers {
				if err := srv.Shutdown(shutdownCtx); err != nil {
					_ = srv.Close()
				}
			}
			cancel()
			s.gwCancel()
			<-s.gwDone
		}
		if s.gwLogFile != nil {
			s.gwLogFile.Close()
		}
		for _, sim := range s.Sims {
			_ = sim.Close()
		}
		if s.Prometheus != nil {
			errs = append(errs, s.Prometheus.Close())
		}
		if s.Alertmanager != nil {
			errs = append(errs, s.Alertmanager.Close())
		}
		if s.env != nil {
			errs = append(errs, s.env.Stop())
		}
		if s.Dir != "" {
			errs = append(errs, os.RemoveAll(s.Dir))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
