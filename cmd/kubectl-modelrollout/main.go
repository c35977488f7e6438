// Command kubectl-modelrollout is the kubectl plugin for ModelRollouts:
// `kubectl modelrollout get|status|promote|pause|resume|abort|retry`.
// The logic lives in package plugin; this file only wires the process.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/modelrollout/modelrollout/cmd/kubectl-modelrollout/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := plugin.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
