// Command golangci-lint is golangci-lint with kube-api-linter built in as a
// module plugin: what `golangci-lint custom` would generate, written here
// because `custom` clones golangci-lint's Git repository, which machines
// without internet access cannot reach. Built and cached by
// test/scripts/golangci-lint.sh; this module's dependencies stay out of the
// project's go.mod.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/golangci/golangci-lint/v2/pkg/commands"
	"github.com/golangci/golangci-lint/v2/pkg/exitcodes"

	// Registers the "kubeapilinter" module plugin (linters.settings.custom).
	_ "sigs.k8s.io/kube-api-linter"
)

func main() {
	info := commands.BuildInfo{Version: "unknown", Commit: "?", Date: "(unknown)", GoVersion: "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.GoVersion = bi.GoVersion
		for _, dep := range bi.Deps {
			switch dep.Path {
			case "github.com/golangci/golangci-lint/v2":
				info.Version = strings.TrimPrefix(dep.Version, "v")
			case "sigs.k8s.io/kube-api-linter":
				info.Commit = "kube-api-linter " + dep.Version
			}
		}
	}
	if err := commands.Execute(info); err != nil {
		_, _ = fmt.Fprintf(os.Stderr, "The command is terminated due to an error: %v\n", err)
		os.Exit(exitcodes.Failure)
	}
}
