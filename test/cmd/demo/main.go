// Command demo runs `make demo`: the whole ModelRollout story on one machine.
// It starts kube-apiserver and etcd, vLLM simulators, the test gateway,
// Prometheus, Alertmanager and the operator (all on 127.0.0.1), sends load
// through the gateway, walks a good canary to Succeeded, rolls a bad one
// back, prints a summary and how to poke the stack by hand. Everything lives
// in package test/demo; this file only maps flags onto it.
//
//	go run ./test/cmd/demo [--plain] [--keep] [--rate 25] [--gateway traefik] ...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/term"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/modelrollout/modelrollout/test/demo"
)

func main() {
	os.Exit(run())
}

func run() int {
	tty := term.IsTerminal(int(os.Stdout.Fd()))
	plain := flag.Bool("plain", !tty, "print log lines instead of redrawing the screen (the default when stdout is not a terminal)")
	keep := flag.Bool("keep", false, "keep the stack running after the summary until Ctrl-C")
	rate := flag.Float64("rate", 25, "requests per second sent through the gateway")
	concurrency := flag.Int("concurrency", 16, "requests in flight at most")
	streamEvery := flag.Int("stream-every", 4, "stream (SSE) every n-th request")
	badErrorRate := flag.Float64("bad-error-rate", 0.25, "share of requests the bad canary vllm-gpt4-v3 fails")
	timeout := flag.Duration("timeout", 5*time.Minute, "how long each rollout may take before the demo gives up")
	stepPause := flag.Duration("step-pause", 0, "pause of every step, replacing the manifests' 10s (e.g. 30s for a slower story)")
	loadDuration := flag.Duration("load-duration", 30*time.Minute, "the load stops by itself after this long")
	verbose := flag.Bool("v", false, "copy the output of Prometheus and Alertmanager to stderr")
	gw := flag.String("gateway", demo.GatewayTest, "the data plane: \"test\" (test/gateway, in process) or \"traefik\" (Traefik, built by `make traefik`)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected arguments %q\n", flag.Args())
		return 2
	}

	started := time.Now()
	// The control plane's clients log through controller-runtime; the demo
	// shows its own view instead.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var childOut io.Writer
	if *verbose {
		childOut = os.Stderr
	}
	gwName := "test gateway"
	if *gw == demo.GatewayTraefik {
		gwName = "Traefik " + demo.TraefikVersion
	}
	fmt.Printf("Starting the stack: kube-apiserver + etcd, vLLM simulators, %s, Prometheus, Alertmanager, operator ...\n", gwName)
	stack, err := demo.Start(ctx, demo.Options{
		Logf:         func(format string, args ...any) { fmt.Printf("  "+format+"\n", args...) },
		ChildOutput:  childOut,
		BadErrorRate: *badErrorRate,
		BuildPlugin:  true,
		Gateway:      *gw,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: starting the stack:", err)
		return 1
	}
	defer func() {
		fmt.Println("\nStopping the stack ...")
		if err := stack.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: stopping the stack:", err)
		}
	}()
	// The reverse proxy logs through the standard logger.
	log.SetOutput(stack.LogWriter())

	err = demo.RunStory(ctx, stack, demo.StoryOptions{
		Out:          os.Stdout,
		Plain:        *plain,
		Keep:         *keep,
		Rate:         *rate,
		Concurrency:  *concurrency,
		StreamEvery:  *streamEvery,
		LoadDuration: *loadDuration,
		Timeout:      *timeout,
		StepPause:    *stepPause,
		Started:      started,
	})
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Println("\nInterrupted.")
		return 130
	default:
		fmt.Fprintln(os.Stderr, "\ndemo:", err)
		stack.Diagnostics(context.Background(), os.Stderr)
		return 1
	}
}
