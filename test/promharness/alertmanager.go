package promharness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// AlertmanagerOptions configures StartAlertmanager.
type AlertmanagerOptions struct {
	// WebhookURL receives every alert (Alertmanager webhook payload,
	// version "4"). Empty means alerts go to a receiver that drops them.
	WebhookURL string
	// BearerToken, if set, is sent to the webhook as
	// "Authorization: Bearer <token>" (http_config.authorization).
	BearerToken string
	// GroupWait (default 0s: notify at once), GroupInterval (default 1s)
	// and RepeatInterval (default 1m) are the route timers.
	GroupWait, GroupInterval, RepeatInterval time.Duration
	// GroupBy are the route's grouping labels; default ["alertname"].
	// ["..."] groups by all labels (one notification per alert).
	GroupBy []string
	// Binary defaults to $ALERTMANAGER_BIN or /usr/bin/prometheus-alertmanager.
	Binary string
	// LogWriter, if set, receives the child's stdout and stderr.
	LogWriter io.Writer
	// ExtraArgs are appended to the Alertmanager command line.
	ExtraArgs []string
}

// Alertmanager is an Alertmanager run as a child process, with clustering
// disabled.
type Alertmanager struct {
	mu     sync.Mutex
	dir    string
	port   int
	proc   *process
	closed bool
}

// StartAlertmanager writes a config routing every alert to opts.WebhookURL
// and starts Alertmanager on a free 127.0.0.1 port, returning once /-/ready
// answers 200. ctx bounds the start-up only (with no deadline, the wait is
// bounded by two minutes); the process runs until Close.
func StartAlertmanager(ctx context.Context, opts AlertmanagerOptions) (*Alertmanager, error) {
	binary, err := AlertmanagerBinary(opts.Binary)
	if err != nil {
		return nil, err
	}
	cfg, err := renderAlertmanagerConfig(opts)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "promharness-alertmanager-")
	if err != nil {
		return nil, fmt.Errorf("promharness: %w", err)
	}
	configPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(configPath, cfg, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("promharness: %w", err)
	}
	a := &Alertmanager{dir: dir}
	for attempt := 1; ; attempt++ {
		a.port, err = FreePort()
		if err != nil {
			break
		}
		args := append([]string{
			"--config.file=" + configPath,
			"--storage.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + a.addr(),
			"--cluster.listen-address=", // no clustering
			"--log.level=info",
		}, opts.ExtraArgs...)
		var proc *process
		proc, err = startProcess("alertmanager", binary, args, opts.LogWriter)
		if err != nil {
			break
		}
		if err = proc.waitReady(ctx, "http://"+a.addr()+"/-/ready"); err == nil {
			a.proc = proc
			return a, nil
		}
		bind := proc.bindFailed()
		_ = proc.stop()
		if !bind || attempt == startAttempts {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, err
}

func (a *Alertmanager) addr() string { return "127.0.0.1:" + strconv.Itoa(a.port) }

// URL returns the base URL, http://127.0.0.1:PORT, to use as
// PrometheusOptions.AlertmanagerURL.
func (a *Alertmanager) URL() string { return "http://" + a.addr() }

// Close stops Alertmanager and removes its temp dir. It is safe to call more
// than once. It returns an error if the process had died on its own.
func (a *Alertmanager) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	err := a.proc.stop()
	return errors.Join(err, os.RemoveAll(a.dir))
}

// renderAlertmanagerConfig renders the Alertmanager config as JSON, which
// Alertmanager reads as YAML.
func renderAlertmanagerConfig(opts AlertmanagerOptions) ([]byte, error) {
	if opts.GroupWait < 0 || opts.GroupInterval < 0 || opts.RepeatInterval < 0 {
		return nil, errors.New("promharness: negative Alertmanager interval")
	}
	if opts.GroupInterval == 0 {
		opts.GroupInterval = time.Second
	}
	if opts.RepeatInterval == 0 {
		opts.RepeatInterval = time.Minute
	}
	if len(opts.GroupBy) == 0 {
		opts.GroupBy = []string{"alertname"}
	}
	type authorization struct {
		Type        string `json:"type"`
		Credentials string `json:"credentials"`
	}
	type httpConfig struct {
		Authorization *authorization `json:"authorization,omitempty"`
	}
	type webhookConfig struct {
		URL          string      `json:"url"`
		SendResolved bool        `json:"send_resolved"`
		HTTPConfig   *httpConfig `json:"http_config,omitempty"`
	}
	type receiver struct {
		Name           string          `json:"name"`
		WebhookConfigs []webhookConfig `json:"webhook_configs,omitempty"`
	}
	type route struct {
		Receiver       string   `json:"receiver"`
		GroupBy        []string `json:"group_by"`
		GroupWait      string   `json:"group_wait"`
		GroupInterval  string   `json:"group_interval"`
		RepeatInterval string   `json:"repeat_interval"`
	}
	type config struct {
		Route     route      `json:"route"`
		Receivers []receiver `json:"receivers"`
	}
	rcv := receiver{Name: "default"}
	if opts.WebhookURL != "" {
		u, err := url.Parse(opts.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("promharness: WebhookURL %q: want an absolute http(s) URL", opts.WebhookURL)
		}
		wh := webhookConfig{URL: opts.WebhookURL, SendResolved: true}
		if opts.BearerToken != "" {
			wh.HTTPConfig = &httpConfig{Authorization: &authorization{Type: "Bearer", Credentials: opts.BearerToken}}
		}
		rcv.WebhookConfigs = []webhookConfig{wh}
	}
	c := config{
		Route: route{
			Receiver:       rcv.Name,
			GroupBy:        opts.GroupBy,
			GroupWait:      amDuration(opts.GroupWait),
			GroupInterval:  amDuration(opts.GroupInterval),
			RepeatInterval: amDuration(opts.RepeatInterval),
		},
		Receivers: []receiver{rcv},
	}
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("promharness: %w", err)
	}
	return append(out, '\n'), nil
}

// amDuration formats d in whole milliseconds, which Alertmanager accepts
// ("0ms" included).
func amDuration(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}
