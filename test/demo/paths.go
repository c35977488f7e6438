package demo

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// ModulePath is the module this stack belongs to.
const ModulePath = "github.com/modelrollout/modelrollout"

// FindRepoRoot returns the root of this repository: the first directory
// holding the module's go.mod, searched upward from the working directory,
// then from this source file.
func FindRepoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if isModuleRoot(dir) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("cannot find the repository root (the directory of the go.mod of " + ModulePath + "); run from inside the repository")
}

func isModuleRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == ModulePath
		}
	}
	return false
}

// TestdataDir is where the demo's manifests live, relative to the root.
const TestdataDir = "test/testdata/demo"

// Manifest file names in TestdataDir.
const (
	GatewayManifest    = "gateway.yaml"
	ServicesManifest   = "services.yaml"
	RouteManifest      = "httproute.yaml"
	GoodRolloutFile    = "rollout-gpt4-v2.yaml"
	BadRolloutFile     = "rollout-gpt4-v3.yaml"
	WrongRolloutFile   = "rollout-gpt4-v4.yaml"
	AlertRulesManifest = "alert-rules.yaml"
)
