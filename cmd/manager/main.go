// Command manager runs the ModelRollout operator.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/modelrollout/modelrollout/analysis"
	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/controllers"
	"github.com/modelrollout/modelrollout/controllers/alerts"
)

// version is the build's version, stamped at link time by `make image`:
// -ldflags "-X main.version=$(git describe --tags --always --dirty)".
var version = "devel"

// sigV4AmbientCredentials lets rollouts' sigv4 sign with the operator's own
// AWS identity (--prometheus-sigv4-ambient-credentials).
var sigV4AmbientCredentials bool

// egressPrometheus sends Prometheus queries through the egress policy
// (--egress-prometheus, on by default).
var egressPrometheus bool

// tenancy holds the multi-tenancy flags: the fair shares of the pools and
// the query tenancy.
var tenancy tenancyOptions

type tenancyOptions struct {
	shares                                controllers.FairShares
	promptConcurrency, promptPerNamespace int
	queryTenancy                          string
}

// promMaxResponseBytes bounds every Prometheus answer
// (--prometheus-max-response-bytes).
var promMaxResponseBytes int64

func main() {
	var (
		metricsAddr      string
		probeAddr        string
		pprofAddr        string
		leaderElect      bool
		leaderElectionNS string
		watchNamespaces  string
		leaseDuration    time.Duration
		renewDeadline    time.Duration
		retryPeriod      time.Duration
		warmStandby      bool
		workers          int
		gateConcurrency  int
		gateRoundTimeout time.Duration
		promAddress      string
		egressAllow      string
		egressCluster    string
		receiver         alerts.Options
		shares           controllers.FairShares
		promptShares     [2]int
		queryTenancy     string
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "", "Address of Go's /debug/pprof profiles, e.g. 127.0.0.1:6060; empty or 0 disables it. Bind it to loopback: profiles are not authenticated.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader, so that only one replica writes at a time.")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election Lease; the pod's namespace when empty.")
	flag.DurationVar(&leaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a leader's Lease holds after its last renewal. After a leader is killed, another replica takes over within this plus one retry period.")
	flag.DurationVar(&renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew its Lease before it gives up leadership and exits; less than the lease duration.")
	flag.DurationVar(&retryPeriod, "leader-elect-retry-period", 500*time.Millisecond, "How often replicas try to acquire or renew the Lease (the leader renews it this often).")
	flag.BoolVar(&warmStandby, "leader-elect-warm-standby", true, "Let a replica that does not lead start the controller's watches and fill its work queue, so that it reconciles at once when it takes over; false starts them only once it leads (less memory and API traffic on a standby, a slower failover).")
	flag.StringVar(&watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces to watch; all when empty.")
	flag.IntVar(&workers, "max-concurrent-reconciles", controllers.DefaultWorkers, "Number of rollouts reconciled at once.")
	flag.IntVar(&gateConcurrency, "gate-concurrency", controllers.DefaultGateConcurrency, "Number of gate rounds (all gates of one rollout) evaluated at once, off the reconcile workers.")
	flag.IntVar(&shares.GateConcurrencyPerNamespace, "gate-concurrency-per-namespace", controllers.DefaultGateConcurrencyPerNamespace, "Most gate rounds of one namespace's rollouts evaluated at once; the namespaces with rounds waiting take turns for the free slots.")
	flag.IntVar(&shares.WebhookConcurrency, "webhook-concurrency", controllers.DefaultWebhookConcurrency, "Number of webhook calls in flight at once.")
	flag.IntVar(&shares.WebhookConcurrencyPerNamespace, "webhook-concurrency-per-namespace", controllers.DefaultWebhookConcurrencyPerNamespace, "Most webhook calls in flight at once for one namespace's rollouts; the namespaces with calls waiting take turns for the free slots.")
	flag.IntVar(&promptShares[0], "prompt-concurrency", controllers.DefaultPromptConcurrency, "Number of prompt gate evaluations running at once (each sends up to its gate's concurrency of prompts).")
	flag.IntVar(&promptShares[1], "prompt-concurrency-per-namespace", controllers.DefaultPromptConcurrencyPerNamespace, "Most prompt gate evaluations running at once for one namespace's rollouts.")
	flag.StringVar(&queryTenancy, "query-tenancy", analysis.QueryTenancyNone, `"namespace" adds namespace="<rollout's namespace>" to every series selector of the PromQL a rollout writes itself (inline gates, GateTemplates) and refuses queries that select another namespace; presets and ClusterGateTemplates are exempt. "none" runs queries as written.`)
	flag.DurationVar(&gateRoundTimeout, "gate-round-timeout", controllers.DefaultGateRoundTimeout, "Bound on one round of a rollout's gates; each query also has its own timeout (spec.analysis.prometheus.timeout).")
	flag.StringVar(&promAddress, "prometheus-address", "", "Prometheus queried by rollouts that name none in spec.analysis.prometheus, e.g. http://prometheus.monitoring:9090.")
	flag.BoolVar(&sigV4AmbientCredentials, "prometheus-sigv4-ambient-credentials", false, "Let a rollout's spec.analysis.prometheus.sigv4 without an access key in its auth Secret sign with the operator's own AWS credentials (environment, IRSA web identity, instance role). Off: AWS keys come only from Secrets in the rollout's namespace.")
	flag.StringVar(&receiver.BindAddress, "alert-receiver-bind-address", "", "Address of the Alertmanager webhook receiver (POST /alerts), e.g. :8443; empty or 0 disables it.")
	flag.StringVar(&receiver.TokenFile, "alert-receiver-token-file", "", "File holding the bearer token Alertmanager must send; re-read when it changes. Required with the receiver.")
	flag.StringVar(&receiver.TLSCertFile, "alert-receiver-tls-cert-file", "", "TLS certificate of the receiver; plain HTTP when empty.")
	flag.StringVar(&receiver.TLSKeyFile, "alert-receiver-tls-key-file", "", "TLS key of the receiver.")
	flag.StringVar(&egressAllow, "egress-allow", "", "Comma-separated CIDRs, host names and *.domain suffixes that web gates, prompt gates, webhooks and Prometheus may call besides the cluster's networks, e.g. 203.0.113.0/24,eval.example.com. Loopback, link-local and off-cluster addresses are refused unless listed; cloud metadata addresses and the Kubernetes API server only open to an entry naming the exact address.")
	flag.BoolVar(&egressPrometheus, "egress-prometheus", true, "Send the Prometheus queries of rollouts (and their OAuth2 token requests) through the egress policy, like every other call: an in-cluster Prometheus needs nothing, an off-cluster one (Amazon Managed Prometheus, Grafana Cloud) an --egress-allow entry. false lets every rollout's author choose any Prometheus address the operator can reach, cloud metadata and loopback included.")
	flag.Int64Var(&promMaxResponseBytes, "prometheus-max-response-bytes", analysis.DefaultMaxResponseBytes, "Largest Prometheus answer the operator reads, in bytes after decompression; a larger one is an Error verdict.")
	flag.StringVar(&egressCluster, "egress-cluster-cidrs", strings.Join(egress.DefaultClusterCIDRs, ","), "Comma-separated CIDRs of the cluster's pod and Service networks, which web gates, prompt gates and webhooks may call.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	setupLog := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	utilruntime.Must(rolloutsv1.AddToScheme(scheme))

	// The cache keeps of each object only what the controller reads (no
	// managedFields, no last-applied annotation, a Service's ports, an
	// EndpointSlice's endpoint conditions): see controllers.CacheTransform.
	cacheOpts := cache.Options{DefaultTransform: controllers.CacheTransform()}
	if watchNamespaces != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range strings.Split(watchNamespaces, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				cacheOpts.DefaultNamespaces[ns] = cache.Config{}
			}
		}
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        probeAddr,
		PprofBindAddress:              pprofAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "modelrollout-controller.rollouts.modelrollout.io",
		LeaderElectionNamespace:       leaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retryPeriod,
	})
	if err != nil {
		setupLog.Error(err, "Unable to create the manager")
		os.Exit(1)
	}

	policy, err := egress.New(splitList(egressCluster), splitList(egressAllow))
	if err != nil {
		setupLog.Error(err, "Invalid egress flags")
		os.Exit(1)
	}

	switch queryTenancy {
	case analysis.QueryTenancyNone, analysis.QueryTenancyNamespace:
	default:
		setupLog.Error(fmt.Errorf("--query-tenancy=%q: want none or namespace", queryTenancy), "Invalid flags")
		os.Exit(1)
	}
	tenancy = tenancyOptions{shares: shares, promptConcurrency: promptShares[0], promptPerNamespace: promptShares[1], queryTenancy: queryTenancy}

	ctx := ctrl.SetupSignalHandler()
	if promMaxResponseBytes <= 0 {
		setupLog.Error(fmt.Errorf("--prometheus-max-response-bytes=%d", promMaxResponseBytes), "Invalid flag: the limit must be positive")
		os.Exit(1)
	}
	// The API server is never a gate's business: learn its addresses now,
	// before any gate runs, and keep them up to date.
	apiServer := &controllers.APIServerAddresses{Reader: mgr.GetAPIReader(), Policy: policy, Log: ctrl.Log.WithName("egress")}
	apiServer.SeedFromEnvironment(mgr.GetConfig().Host)
	apiServer.Refresh(ctx)
	if err := mgr.Add(apiServer); err != nil {
		setupLog.Error(err, "Unable to add the API server address refresh")
		os.Exit(1)
	}
	if err := setup(ctx, mgr, workers, gateConcurrency, gateRoundTimeout, !warmStandby, promAddress, policy, receiver); err != nil {
		setupLog.Error(err, "Unable to set up the controller")
		os.Exit(1)
	}
	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	utilruntime.Must(mgr.AddReadyzCheck("readyz", healthz.Ping))

	setupLog.Info("Starting the manager", "version", version)
	if err := mgr.Start(ctx); err != nil {
		setupLog.Error(err, "The manager stopped with an error")
		os.Exit(1)
	}
}

// splitList splits a comma-separated flag value, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func setup(ctx context.Context, mgr ctrl.Manager, workers, gateConcurrency int, gateRoundTimeout time.Duration, coldStandby bool, promAddress string, policy *egress.Policy, receiver alerts.Options) error {
	metrics := controllers.DefaultMetrics()
	rec := &controllers.ModelRolloutReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("modelrollout-controller"),
		Gates: &controllers.PrometheusGates{
			Secrets:        mgr.GetAPIReader(),
			Templates:      mgr.GetClient(),
			Clients:        analysis.NewClientCache(256),
			DefaultAddress: promAddress,
			Metrics:        metrics,
			Egress:         policy,
			// Only when the operator's AWS identity may be lent to every
			// namespace that can create a rollout.
			AmbientAWSCredentials:      sigV4AmbientCredentials,
			PrometheusEgressOff:        !egressPrometheus,
			MaxPrometheusResponseBytes: promMaxResponseBytes,

			PromptConcurrency:             tenancy.promptConcurrency,
			PromptConcurrencyPerNamespace: tenancy.promptPerNamespace,
			QueryTenancy:                  tenancy.queryTenancy,
		},
		Shares:                  tenancy.shares,
		Metrics:                 metrics,
		Egress:                  policy,
		MaxConcurrentReconciles: workers,
		GateConcurrency:         gateConcurrency,
		GateRoundTimeout:        gateRoundTimeout,
		ColdStandby:             coldStandby,
	}
	if err := rec.SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	if receiver.BindAddress != "" && receiver.BindAddress != "0" {
		receiver.Client = mgr.GetClient()
		receiver.Logger = ctrl.Log.WithName("alert-receiver")
		receiver.AlertsReceived = metrics.AlertsReceived
		receiver.AlertsMatched = metrics.AlertsMatched
		// On the leader, an alert's abort starts without waiting for its
		// annotation's watch event.
		receiver.Direct = rec.AbortNow
		r, err := alerts.New(receiver)
		if err != nil {
			return err
		}
		if err := mgr.Add(r); err != nil {
			return fmt.Errorf("add the alert receiver: %w", err)
		}
	}
	return nil
}
