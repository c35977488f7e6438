// Command bench-scale runs the scale benchmark of issue 10 (test/bench/scale)
// and prints its table: a real kube-apiserver and etcd, cmd/manager as a
// separate process, N rollouts applied at once. Run it with `make bench-scale`
// (1,000 rollouts, 5 × 30 s, then 10,000 resident and a failover); the
// stress run of issue 10 is
//
//	make bench-scale BENCH_SCALE_FLAGS="-pause=5s -failover=false"
//
// and its all-Succeeded time is printed beside the API server's write
// ceiling, measured in the same run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelrollout/modelrollout/test/bench/scale"
)

func main() {
	var o scale.Options
	flag.IntVar(&o.Rollouts, "n", 1000, "Rollouts applied at once, each with its own HTTPRoute, canary Service and EndpointSlice.")
	flag.IntVar(&o.Steps, "steps", 5, "Steps of the schedule (5 gives 10/25/50/75/100).")
	flag.DurationVar(&o.Pause, "pause", 30*time.Second, "Pause of every step.")
	flag.IntVar(&o.Namespaces, "namespaces", 4, "Namespaces the rollouts are spread over.")
	flag.DurationVar(&o.IdleWindow, "idle", 60*time.Second, "Window over which writes and queries are counted once all rollouts are Succeeded.")
	flag.IntVar(&o.Resident, "resident", 0, "Resident Idle rollouts (with routes, Services, EndpointSlices) to create after the run before reading RSS; 0 skips.")
	flag.BoolVar(&o.Failover, "failover", true, "Run a standby manager, kill -9 the leader and time the takeover.")
	flag.IntVar(&o.FailoverRollouts, "failover-rollouts", 20, "Rollouts the standby must resume after the kill.")
	flag.DurationVar(&o.LeaseDuration, "lease-duration", 0, "--leader-elect-lease-duration for the managers, if they have the flag; 0 keeps their default.")
	flag.DurationVar(&o.RenewDeadline, "renew-deadline", 0, "--leader-elect-renew-deadline, likewise.")
	flag.DurationVar(&o.RetryPeriod, "retry-period", 0, "--leader-elect-retry-period, likewise.")
	flag.IntVar(&o.CeilingPatches, "ceiling-patches", 2000, "Bare HTTPRoute PATCHes that measure the API server's write rate.")
	flag.IntVar(&o.CeilingWorkers, "ceiling-workers", 8, "Goroutines sending them.")
	flag.IntVar(&o.Workers, "workers", 0, "The manager's --max-concurrent-reconciles; 0 keeps its default.")
	flag.DurationVar(&o.Timeout, "timeout", 0, "Bound on the wait for every rollout to succeed; 0 is 10m + 10 × the schedule.")
	flag.IntVar(&o.Gates, "gates", 0, "PromQL gates per rollout, against a real Prometheus the run starts (0: none; the goal's scenario is 3).")
	flag.DurationVar(&o.GateInterval, "gate-interval", 10*time.Second, "analysis.interval of the gates.")
	flag.StringVar(&o.HeapProfile, "heap-profile", "", "File to save the manager's heap profile in once the resident rollouts settled (go tool pprof -top FILE).")
	flag.StringVar(&o.Dir, "dir", "", "Directory for the binaries, kubeconfig and manager logs (kept); a removed temporary directory when empty.")
	flag.Parse()
	o.Logf = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	start := time.Now()
	rep, err := scale.Run(ctx, o)
	if rep != nil && err == nil {
		fmt.Println(rep.Table())
		fmt.Printf("\n(total run time %s)\n", time.Since(start).Round(time.Second))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}
