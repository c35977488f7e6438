// Command test-gateway runs the TEST-ONLY Gateway API data plane of package
// github.com/modelrollout/modelrollout/test/gateway against a Kubernetes API
// server: it serves the HTTPRoutes attached to one Gateway on --listen and
// Envoy-style metrics on --metrics-listen. It only listens on and dials
// loopback addresses. See the package documentation for the conventions.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/config" // registers --kubeconfig
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/modelrollout/modelrollout/test/gateway"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "test-gateway:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:8080", "data-plane address (loopback only); port 0 picks a free port")
	metricsListen := flag.String("metrics-listen", "127.0.0.1:19001", "metrics address (loopback only) serving /metrics, /stats/prometheus, /ready and /routes")
	gwNamespace := flag.String("gateway-namespace", "default", "namespace of the Gateway to serve")
	gwName := flag.String("gateway-name", "", "name of the Gateway to serve (required)")
	verbosity := flag.Int("v", 0, "log verbosity (1: table updates and upstream errors, 2: every request)")
	flag.Parse()

	if *gwName == "" {
		return errors.New("--gateway-name is required")
	}
	log := logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.Level(-*verbosity)}))
	ctrllog.SetLogger(log)

	cfg, err := config.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	gw, err := gateway.New(gateway.Options{
		Config:  cfg,
		Gateway: types.NamespacedName{Namespace: *gwNamespace, Name: *gwName},
		Logger:  log,
	})
	if err != nil {
		return err
	}

	dataLn, err := listenLoopback(*listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	metricsLn, err := listenLoopback(*metricsListen)
	if err != nil {
		return fmt.Errorf("--metrics-listen: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	servers := []*http.Server{
		{Handler: gw.Handler(), ReadHeaderTimeout: 30 * time.Second},
		{Handler: gw.MetricsHandler(), ReadHeaderTimeout: 30 * time.Second},
	}
	errc := make(chan error, 3)
	for i, ln := range []net.Listener{dataLn, metricsLn} {
		go func() {
			if err := servers[i].Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	log.Info("test gateway listening", "listen", dataLn.Addr().String(), "metricsListen", metricsLn.Addr().String(),
		"gateway", *gwNamespace+"/"+*gwName)

	go func() { errc <- gw.Start(ctx) }()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		stop()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdownCtx)
	}
	return runErr
}

// listenLoopback listens on addr, refusing anything but a loopback host.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("%q is not a loopback address", addr)
	}
	return net.Listen("tcp", addr)
}
