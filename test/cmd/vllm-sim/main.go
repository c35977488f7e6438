// Command vllm-sim serves a simulated vLLM (OpenAI-compatible) server for
// tests and demos. All behaviour lives in package vllmsim; this program only
// maps flags onto vllmsim.Config.
//
//	vllm-sim --listen 127.0.0.1:8000 --name vllm-gpt4-v1 --model gpt-4 \
//	  --ttft 50ms --itl 10ms --latency 200ms --error-rate 0 --tokens 16
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/modelrollout/modelrollout/test/vllmsim"
)

func main() {
	cfg := vllmsim.DefaultConfig()
	cfg.BindFlags(flag.CommandLine)
	listen := flag.String("listen", "127.0.0.1:8000", "address to listen on")
	flag.Parse()
	if flag.NArg() > 0 {
		fail(fmt.Errorf("unexpected arguments: %v", flag.Args()))
	}
	if err := cfg.Validate(); err != nil {
		fail(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := vllmsim.New(cfg)
	addr, err := srv.Start(*listen)
	if err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "vllm-sim: %s serving model %q on http://%s\n", cfg.Name, cfg.Model, addr)
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "vllm-sim:", err)
	os.Exit(2)
}
