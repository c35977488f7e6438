// Command kubectl-modelrollout is the kubectl plugin for ModelRollouts:
// `kubectl modelrollout get|status|promote|pause|resume|abort|retry`.
// The logic lives in package plugin; this file only wires the process.
//
// Run under the name kubectl_complete-modelrollout (a link or a copy), it
// answers kubectl's shell completion of `kubectl modelrollout ...`.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/modelrollout/modelrollout/cmd/kubectl-modelrollout/plugin"
)

// completeName is the name kubectl runs to complete the plugin's arguments.
const completeName = "kubectl_complete-modelrollout"

// version is the release's version, stamped at link time by `make release`
// (internal/release.GoBuild: -ldflags "-X main.version=..."), as the
// manager's is. Empty in a plain `go build`.
var version string

func main() {
	if version != "" {
		plugin.Version = version
	}
	args := os.Args[1:]
	if strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe") == completeName {
		args = append([]string{"__complete"}, args...)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := plugin.Main(ctx, args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
