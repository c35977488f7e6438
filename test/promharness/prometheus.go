package promharness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Target is a scrape target.
type Target struct {
	// Job is the job label (and scrape pool). Targets of one job share a
	// scrape config. Empty means "test".
	Job string
	// Addr is host:port, such as 127.0.0.1:8000. It becomes the instance
	// label.
	Addr string
	// Labels are extra target labels, such as service=vllm-gpt4-v2.
	Labels map[string]string
	// MetricsPath is the path to scrape; empty means /metrics.
	MetricsPath string
}

// DefaultJob is the job of a Target without one.
const DefaultJob = "test"

// PrometheusOptions configures StartPrometheus.
type PrometheusOptions struct {
	Targets []Target
	// ScrapeInterval is the global scrape interval (and timeout); default 1s.
	ScrapeInterval time.Duration
	// EvaluationInterval is the rule evaluation interval; default 1s.
	EvaluationInterval time.Duration
	// RuleFiles maps file names (no directories) to rules YAML content.
	RuleFiles map[string]string
	// AlertmanagerURL is an optional Alertmanager to send alerts to, such as
	// http://127.0.0.1:9093 (a path is kept as its prefix).
	AlertmanagerURL string
	// Binary defaults to $PROMETHEUS_BIN or /usr/bin/prometheus.
	Binary string
	// LogWriter, if set, receives the child's stdout and stderr.
	LogWriter io.Writer
	// AlertResendDelay is how often firing alerts are re-sent to
	// Alertmanager (--rules.alert.resend-delay); default 1s, so an alert
	// that fired before Prometheus discovered its Alertmanager still
	// arrives within seconds (Prometheus' own default is 1m).
	AlertResendDelay time.Duration
	// ExtraArgs are appended to the Prometheus command line.
	ExtraArgs []string
}

// Prometheus is a Prometheus server run as a child process. Its methods are
// safe for concurrent use.
type Prometheus struct {
	mu     sync.Mutex
	opts   PrometheusOptions
	binary string
	dir    string // temp dir: config, rules/, data/
	port   int
	proc   *process // nil while stopped
	closed bool
}

// StartPrometheus writes a config for opts into a new temp dir and starts
// Prometheus on a free 127.0.0.1 port, with the lifecycle API enabled. It
// returns once /-/ready answers 200. ctx bounds the start-up only (with
// no deadline, the wait is bounded by two minutes); the process runs until
// Stop or Close.
func StartPrometheus(ctx context.Context, opts PrometheusOptions) (*Prometheus, error) {
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = time.Second
	}
	if opts.EvaluationInterval <= 0 {
		opts.EvaluationInterval = time.Second
	}
	if opts.AlertResendDelay <= 0 {
		opts.AlertResendDelay = time.Second
	}
	opts.Targets = slices.Clone(opts.Targets)
	opts.RuleFiles = maps.Clone(opts.RuleFiles)
	binary, err := PrometheusBinary(opts.Binary)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "promharness-prometheus-")
	if err != nil {
		return nil, fmt.Errorf("promharness: %w", err)
	}
	p := &Prometheus{opts: opts, binary: binary, dir: dir}
	if err = p.writeRules(opts.RuleFiles); err == nil {
		err = p.writeConfig()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if p.port, err = FreePort(); err == nil {
			err = p.start(ctx)
		}
		if err == nil {
			return p, nil
		}
		if attempt == startAttempts || !errors.Is(err, errBind) {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

var errBind = errors.New("port taken")

// start launches the process on p.port and waits for readiness. p.mu must be
// held or p not yet shared.
func (p *Prometheus) start(ctx context.Context) error {
	args := []string{
		"--config.file=" + p.configPath(),
		"--storage.tsdb.path=" + filepath.Join(p.dir, "data"),
		"--storage.tsdb.retention.time=1d",
		"--web.listen-address=" + p.addr(),
		"--web.enable-lifecycle",
		"--web.enable-admin-api",
		"--rules.alert.resend-delay=" + promDuration(p.opts.AlertResendDelay),
		"--log.level=info",
	}
	args = append(args, p.opts.ExtraArgs...)
	proc, err := startProcess("prometheus", p.binary, args, p.opts.LogWriter)
	if err != nil {
		return err
	}
	if err := proc.waitReady(ctx, p.urlLocked()+"/-/ready"); err != nil {
		bind := proc.bindFailed()
		_ = proc.stop()
		if bind {
			return fmt.Errorf("%w: %w", errBind, err)
		}
		return err
	}
	p.proc = proc
	return nil
}

func (p *Prometheus) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

func (p *Prometheus) urlLocked() string { return "http://" + p.addr() }

func (p *Prometheus) configPath() string { return filepath.Join(p.dir, "prometheus.yml") }

func (p *Prometheus) rulesDir() string { return filepath.Join(p.dir, "rules") }

// URL returns the base URL, http://127.0.0.1:PORT. It stays the same across
// Stop and Start.
func (p *Prometheus) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.urlLocked()
}

// Dir returns the temp dir holding the config (prometheus.yml), rules/ and
// the TSDB (data/).
func (p *Prometheus) Dir() string { return p.dir }

// API returns a Prometheus HTTP API client for this server.
func (p *Prometheus) API() promv1.API {
	c, err := api.NewClient(api.Config{Address: p.URL()})
	if err != nil {
		panic("promharness: " + err.Error()) // the URL is always valid
	}
	return promv1.NewAPI(c)
}

// Running reports whether the process is up (between Start and Stop).
func (p *Prometheus) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc != nil && !p.proc.exited()
}

// Stop stops Prometheus (SIGTERM, so the TSDB is closed cleanly) and waits
// for it to exit. The data dir and port are kept, so Start brings the same
// server back. Stopping a stopped server does nothing. It returns an error
// if the process had died on its own.
func (p *Prometheus) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return nil
	}
	err := p.proc.stop()
	p.proc = nil
	return err
}

// Start restarts a stopped Prometheus on the same port and data dir, with
// the current targets and rules, and waits until it is ready. Starting a
// running server is an error.
func (p *Prometheus) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return errors.New("promharness: Prometheus is closed")
	case p.proc != nil && !p.proc.exited():
		return errors.New("promharness: Prometheus is already running")
	case p.proc != nil: // died on its own
		p.proc = nil
	}
	return p.start(ctx)
}

// Close stops Prometheus and removes its temp dir. It is safe to call more
// than once.
func (p *Prometheus) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var err error
	if p.proc != nil {
		err = p.proc.stop()
		p.proc = nil
	}
	return errors.Join(err, os.RemoveAll(p.dir))
}

// SetTargets replaces the scrape targets: it rewrites the config and, if
// Prometheus is running, reloads it (POST /-/reload). Prometheus applies
// target changes asynchronously (within about 5-10 s); use
// WaitForTargetsUp to wait for them.
func (p *Prometheus) SetTargets(ctx context.Context, targets []Target) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.opts.Targets
	p.opts.Targets = slices.Clone(targets)
	if err := p.writeConfig(); err != nil {
		p.opts.Targets = old
		return err
	}
	return p.reloadLocked(ctx)
}

// SetRuleFiles replaces all rule files (name -> YAML) and reloads
// Prometheus if it is running. A rules file Prometheus rejects makes the
// reload fail with Prometheus' message.
func (p *Prometheus) SetRuleFiles(ctx context.Context, files map[string]string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.writeRules(files); err != nil {
		return err
	}
	p.opts.RuleFiles = maps.Clone(files)
	if err := p.writeConfig(); err != nil {
		return err
	}
	return p.reloadLocked(ctx)
}

// Reload asks a running Prometheus to reload its config and rule files.
func (p *Prometheus) Reload(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reloadLocked(ctx)
}

func (p *Prometheus) reloadLocked(ctx context.Context) error {
	if p.proc == nil || p.proc.exited() {
		return nil // Start reads the new files
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.urlLocked()+"/-/reload", nil)
	if err != nil {
		return err
	}
	mark := p.proc.tail.mark()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("promharness: reloading Prometheus: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		// The answer is generic; the log says which file and rule failed.
		// Prometheus logs before it answers, but the log reaches us through
		// a pipe: give it a moment to arrive.
		logged := p.proc.tail.since(mark)
		for deadline := time.Now().Add(2 * time.Second); !strings.Contains(logged, "Error reloading config") && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			logged = p.proc.tail.since(mark)
		}
		var errs []string
		for _, line := range strings.Split(logged, "\n") {
			if strings.Contains(line, "level=error") {
				errs = append(errs, line)
			}
		}
		return fmt.Errorf("promharness: reloading Prometheus: %s: %s\n%s",
			resp.Status, strings.TrimSpace(string(body)), strings.Join(errs, "\n"))
	}
	return nil
}

// WaitForTargetsUp polls /api/v1/targets until the active targets are
// exactly the configured ones and every one of them is up (has been scraped
// successfully), or until ctx ends (with no deadline, two minutes). The
// error then lists each target's health and last scrape error.
func (p *Prometheus) WaitForTargetsUp(ctx context.Context) error {
	return p.waitForTargets(ctx, time.Time{})
}

// WaitForScrapesAfter is WaitForTargetsUp, and moreover every target's last
// successful scrape started after t. Samples are stamped with the start of
// their scrape and a target's last scrape is reported once its samples are
// stored, so a query made after it returns sees everything the targets had
// recorded before t, with no scrape-interval race.
func (p *Prometheus) WaitForScrapesAfter(ctx context.Context, t time.Time) error {
	return p.waitForTargets(ctx, t)
}

func (p *Prometheus) waitForTargets(ctx context.Context, after time.Time) error {
	p.mu.Lock()
	want := expectedTargets(p.opts.Targets)
	proc := p.proc
	p.mu.Unlock()
	if proc == nil {
		return fmt.Errorf("promharness: waiting for targets: Prometheus %w", errNotRunning)
	}
	promAPI := p.API()
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var state string
	for {
		reqCtx, reqCancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := promAPI.Targets(reqCtx)
		reqCancel()
		if err != nil {
			if state == "" || ctx.Err() == nil {
				state = "targets API: " + err.Error()
			}
		} else if ok, s := targetsMatch(want, res.Active, after); ok {
			return nil
		} else {
			state = s
		}
		select {
		case <-proc.done:
			return proc.exitError()
		case <-ctx.Done():
			return fmt.Errorf("promharness: targets not all up (%v): %s", ctx.Err(), state)
		case <-ticker.C:
		}
	}
}

// expectedTarget is the label set Prometheus gives a configured target.
type expectedTarget struct {
	labels map[string]string
	path   string
}

func (e expectedTarget) key() string {
	keys := slices.Sorted(maps.Keys(e.labels))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q,", k, e.labels[k])
	}
	return b.String() + e.path
}

func expectedTargets(targets []Target) []expectedTarget {
	seen := map[string]bool{}
	var out []expectedTarget
	for _, t := range targets {
		l := map[string]string{"job": jobOf(t), "instance": t.Addr}
		maps.Copy(l, t.Labels)
		e := expectedTarget{labels: l, path: pathOf(t)}
		if !seen[e.key()] {
			seen[e.key()] = true
			out = append(out, e)
		}
	}
	return out
}

// targetsMatch reports whether active is exactly want, all up; if not, it
// describes the difference.
// targetsMatch tells whether the active targets are exactly the wanted ones,
// each up and last scraped after the given time; if not, it says why.
func targetsMatch(want []expectedTarget, active []promv1.ActiveTarget, scrapedAfter time.Time) (bool, string) {
	var problems []string
	used := make([]bool, len(active))
	for _, w := range want {
		found := false
		for i, a := range active {
			if used[i] || !labelsInclude(a, w.labels) || !strings.HasSuffix(urlPath(a.ScrapeURL), w.path) {
				continue
			}
			used[i], found = true, true
			if a.Health != promv1.HealthGood {
				problems = append(problems, fmt.Sprintf("%s is %s (last error: %q)", a.ScrapeURL, a.Health, a.LastError))
			} else if !a.LastScrape.After(scrapedAfter) {
				problems = append(problems, fmt.Sprintf("%s last scraped at %s, not after %s",
					a.ScrapeURL, a.LastScrape.Format(time.RFC3339Nano), scrapedAfter.Format(time.RFC3339Nano)))
			}
			break
		}
		if !found {
			problems = append(problems, fmt.Sprintf("target %v%s not active yet", w.labels, w.path))
		}
	}
	for i, a := range active {
		if !used[i] {
			problems = append(problems, fmt.Sprintf("%s (%v) is active but no longer configured", a.ScrapeURL, a.Labels))
		}
	}
	return len(problems) == 0, strings.Join(problems, "; ")
}

func labelsInclude(a promv1.ActiveTarget, want map[string]string) bool {
	for k, v := range want {
		if string(a.Labels[model.LabelName(k)]) != v {
			return false
		}
	}
	return true
}

func urlPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Path
}

func jobOf(t Target) string {
	if t.Job == "" {
		return DefaultJob
	}
	return t.Job
}

func pathOf(t Target) string {
	if t.MetricsPath == "" {
		return "/metrics"
	}
	return t.MetricsPath
}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// validRuleFileName accepts plain file names only.
func validRuleFileName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, `/\`)
}

// writeRules replaces the rules dir with files.
func (p *Prometheus) writeRules(files map[string]string) error {
	for name := range files {
		if !validRuleFileName(name) {
			return fmt.Errorf("promharness: rule file name %q: want a plain file name", name)
		}
	}
	if err := os.RemoveAll(p.rulesDir()); err != nil {
		return fmt.Errorf("promharness: %w", err)
	}
	if err := os.MkdirAll(p.rulesDir(), 0o755); err != nil {
		return fmt.Errorf("promharness: %w", err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(p.rulesDir(), name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("promharness: %w", err)
		}
	}
	return nil
}

// writeConfig renders the config for p.opts and replaces the config file
// atomically.
func (p *Prometheus) writeConfig() error {
	cfg, err := renderPrometheusConfig(p.opts, p.rulesDir())
	if err != nil {
		return err
	}
	tmp := p.configPath() + ".tmp"
	if err := os.WriteFile(tmp, cfg, 0o644); err != nil {
		return fmt.Errorf("promharness: %w", err)
	}
	if err := os.Rename(tmp, p.configPath()); err != nil {
		return fmt.Errorf("promharness: %w", err)
	}
	return nil
}

// renderPrometheusConfig renders a Prometheus config. It is JSON, which
// Prometheus reads as YAML.
func renderPrometheusConfig(opts PrometheusOptions, rulesDir string) ([]byte, error) {
	type staticConfig struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels,omitempty"`
	}
	type scrapeConfig struct {
		JobName       string         `json:"job_name"`
		StaticConfigs []staticConfig `json:"static_configs"`
	}
	type amConfig struct {
		Scheme        string         `json:"scheme"`
		PathPrefix    string         `json:"path_prefix,omitempty"`
		APIVersion    string         `json:"api_version"`
		StaticConfigs []staticConfig `json:"static_configs"`
	}
	type config struct {
		Global struct {
			ScrapeInterval     string `json:"scrape_interval"`
			ScrapeTimeout      string `json:"scrape_timeout"`
			EvaluationInterval string `json:"evaluation_interval"`
		} `json:"global"`
		RuleFiles []string `json:"rule_files,omitempty"`
		Alerting  *struct {
			Alertmanagers []amConfig `json:"alertmanagers"`
		} `json:"alerting,omitempty"`
		ScrapeConfigs []scrapeConfig `json:"scrape_configs"`
	}

	var c config
	c.Global.ScrapeInterval = promDuration(opts.ScrapeInterval)
	c.Global.ScrapeTimeout = promDuration(opts.ScrapeInterval)
	c.Global.EvaluationInterval = promDuration(opts.EvaluationInterval)
	for _, name := range slices.Sorted(maps.Keys(opts.RuleFiles)) {
		c.RuleFiles = append(c.RuleFiles, filepath.Join(rulesDir, name))
	}
	if opts.AlertmanagerURL != "" {
		u, err := url.Parse(opts.AlertmanagerURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("promharness: AlertmanagerURL %q: want http://host:port", opts.AlertmanagerURL)
		}
		c.Alerting = &struct {
			Alertmanagers []amConfig `json:"alertmanagers"`
		}{[]amConfig{{
			Scheme: u.Scheme, PathPrefix: strings.TrimRight(u.Path, "/"), APIVersion: "v2",
			StaticConfigs: []staticConfig{{Targets: []string{u.Host}}},
		}}}
	}
	c.ScrapeConfigs = []scrapeConfig{}
	jobIndex := map[string]int{}
	for i, t := range opts.Targets {
		if t.Addr == "" {
			return nil, fmt.Errorf("promharness: target %d: Addr is empty", i)
		}
		if t.MetricsPath != "" && !strings.HasPrefix(t.MetricsPath, "/") {
			return nil, fmt.Errorf("promharness: target %s: MetricsPath %q must start with /", t.Addr, t.MetricsPath)
		}
		labels := map[string]string{}
		for k, v := range t.Labels {
			if !labelNameRE.MatchString(k) || strings.HasPrefix(k, "__") {
				return nil, fmt.Errorf("promharness: target %s: invalid label name %q", t.Addr, k)
			}
			labels[k] = v
		}
		if t.MetricsPath != "" {
			labels["__metrics_path__"] = t.MetricsPath
		}
		sc := staticConfig{Targets: []string{t.Addr}, Labels: labels}
		job := jobOf(t)
		j, ok := jobIndex[job]
		if !ok {
			j = len(c.ScrapeConfigs)
			jobIndex[job] = j
			c.ScrapeConfigs = append(c.ScrapeConfigs, scrapeConfig{JobName: job})
		}
		c.ScrapeConfigs[j].StaticConfigs = append(c.ScrapeConfigs[j].StaticConfigs, sc)
	}
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("promharness: %w", err)
	}
	return append(out, '\n'), nil
}

// promDuration formats d the way Prometheus configs take durations
// (whole milliseconds at least).
func promDuration(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10) + "ms"
}
