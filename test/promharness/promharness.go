// Package promharness runs real Prometheus and Alertmanager servers as child
// processes for tests: on free loopback ports, with a generated config and a
// temporary storage directory.
//
// The binaries come from Debian's packages (prometheus 2.42 and
// prometheus-alertmanager 0.25): /usr/bin/prometheus and
// /usr/bin/prometheus-alertmanager, or $PROMETHEUS_BIN and
// $ALERTMANAGER_BIN. Call Available first to fail with an actionable
// message where they are missing.
//
// Children never outlive the test process: they get SIGKILL when it dies
// (PR_SET_PDEATHSIG on Linux), and Stop/Close end them with SIGTERM, then
// SIGKILL after a grace period. Every wait polls with a deadline; none
// relies on a fixed sleep.
package promharness

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
)

const (
	// DefaultPrometheusBinary is where Debian's prometheus package installs
	// Prometheus.
	DefaultPrometheusBinary = "/usr/bin/prometheus"
	// DefaultAlertmanagerBinary is where Debian's prometheus-alertmanager
	// package installs Alertmanager.
	DefaultAlertmanagerBinary = "/usr/bin/prometheus-alertmanager"
	// PrometheusBinEnv and AlertmanagerBinEnv name environment variables
	// that override the binaries.
	PrometheusBinEnv   = "PROMETHEUS_BIN"
	AlertmanagerBinEnv = "ALERTMANAGER_BIN"

	installHint = "apt-get install -y prometheus prometheus-alertmanager"
)

// Available reports whether the Prometheus and Alertmanager binaries can be
// found, naming what is missing and how to install it.
func Available() error {
	_, perr := PrometheusBinary("")
	_, aerr := AlertmanagerBinary("")
	return errors.Join(perr, aerr)
}

// PrometheusBinary resolves the Prometheus binary: explicit if not empty,
// else $PROMETHEUS_BIN, else /usr/bin/prometheus, else "prometheus" on
// $PATH.
func PrometheusBinary(explicit string) (string, error) {
	return resolveBinary("prometheus", explicit, PrometheusBinEnv, DefaultPrometheusBinary, "prometheus")
}

// AlertmanagerBinary resolves the Alertmanager binary: explicit if not
// empty, else $ALERTMANAGER_BIN, else /usr/bin/prometheus-alertmanager, else
// "prometheus-alertmanager" or "alertmanager" on $PATH.
func AlertmanagerBinary(explicit string) (string, error) {
	return resolveBinary("alertmanager", explicit, AlertmanagerBinEnv, DefaultAlertmanagerBinary,
		"prometheus-alertmanager", "alertmanager")
}

func resolveBinary(what, explicit, env, def string, names ...string) (string, error) {
	if explicit != "" {
		return checkExecutable(what, explicit, "the Binary option")
	}
	if v := os.Getenv(env); v != "" {
		return checkExecutable(what, v, "$"+env)
	}
	if _, err := checkExecutable(what, def, ""); err == nil {
		return def, nil
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("promharness: %s binary not found at %s, in $%s or on $PATH; install it with: %s",
		what, def, env, installHint)
}

func checkExecutable(what, path, source string) (string, error) {
	fi, err := os.Stat(path)
	if err == nil && (fi.IsDir() || fi.Mode().Perm()&0o111 == 0) {
		err = errors.New("not an executable file")
	}
	if err != nil {
		if source == "" {
			return "", err
		}
		return "", fmt.Errorf("promharness: %s binary %s (from %s): %w; install it with: %s", what, path, source, err, installHint)
	}
	return path, nil
}

// FreePort returns a TCP port that is free on 127.0.0.1 right now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("promharness: finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startAttempts is how many free ports a child is tried on when another
// process takes its port between FreePort and the bind.
const startAttempts = 3
