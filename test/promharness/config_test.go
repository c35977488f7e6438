package promharness

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

func TestRenderPrometheusConfig(t *testing.T) {
	out, err := renderPrometheusConfig(PrometheusOptions{
		ScrapeInterval:     2 * time.Second,
		EvaluationInterval: 500 * time.Millisecond,
		RuleFiles:          map[string]string{"b.yml": "", "a.yml": ""},
		AlertmanagerURL:    "http://127.0.0.1:9093/am/",
		Targets: []Target{
			{Job: "vllm", Addr: "127.0.0.1:1", Labels: map[string]string{"service": "v1"}},
			{Addr: "127.0.0.1:2"},
			{Job: "vllm", Addr: "127.0.0.1:3", MetricsPath: "/m"},
		},
	}, "/rules")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Global    map[string]string `json:"global"`
		RuleFiles []string          `json:"rule_files"`
		Alerting  struct {
			Alertmanagers []struct {
				Scheme        string `json:"scheme"`
				PathPrefix    string `json:"path_prefix"`
				StaticConfigs []struct {
					Targets []string `json:"targets"`
				} `json:"static_configs"`
			} `json:"alertmanagers"`
		} `json:"alerting"`
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string          `json:"targets"`
				Labels  map[string]string `json:"labels"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatal(err)
	}
	if c.Global["scrape_interval"] != "2000ms" || c.Global["scrape_timeout"] != "2000ms" || c.Global["evaluation_interval"] != "500ms" {
		t.Fatalf("global %v", c.Global)
	}
	if strings.Join(c.RuleFiles, ",") != "/rules/a.yml,/rules/b.yml" {
		t.Fatalf("rule files %v", c.RuleFiles)
	}
	am := c.Alerting.Alertmanagers
	if len(am) != 1 || am[0].Scheme != "http" || am[0].PathPrefix != "/am" || am[0].StaticConfigs[0].Targets[0] != "127.0.0.1:9093" {
		t.Fatalf("alerting %+v", c.Alerting)
	}
	if len(c.ScrapeConfigs) != 2 || c.ScrapeConfigs[0].JobName != "vllm" || c.ScrapeConfigs[1].JobName != DefaultJob {
		t.Fatalf("scrape configs %+v", c.ScrapeConfigs)
	}
	vllm := c.ScrapeConfigs[0].StaticConfigs
	if len(vllm) != 2 || vllm[0].Labels["service"] != "v1" || vllm[1].Labels["__metrics_path__"] != "/m" {
		t.Fatalf("vllm static configs %+v", vllm)
	}

	for _, bad := range []PrometheusOptions{
		{Targets: []Target{{Job: "x"}}},
		{Targets: []Target{{Addr: "a:1", Labels: map[string]string{"bad-name": "x"}}}},
		{Targets: []Target{{Addr: "a:1", Labels: map[string]string{"__address__": "x"}}}},
		{Targets: []Target{{Addr: "a:1", MetricsPath: "metrics"}}},
		{AlertmanagerURL: "127.0.0.1:9093"},
	} {
		if _, err := renderPrometheusConfig(bad, "/rules"); err == nil {
			t.Fatalf("accepted %+v", bad)
		}
	}
}

func TestRenderAlertmanagerConfig(t *testing.T) {
	out, err := renderAlertmanagerConfig(AlertmanagerOptions{WebhookURL: "http://127.0.0.1:1/hook", BearerToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"group_wait": "0ms"`, `"group_interval": "1000ms"`, `"repeat_interval": "60000ms"`,
		`"url": "http://127.0.0.1:1/hook"`, `"type": "Bearer"`, `"credentials": "tok"`, `"alertname"`,
	} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("config lacks %s:\n%s", want, out)
		}
	}
	out, err = renderAlertmanagerConfig(AlertmanagerOptions{})
	if err != nil || strings.Contains(string(out), "webhook_configs") {
		t.Fatalf("no webhook: %v\n%s", err, out)
	}
	if _, err := renderAlertmanagerConfig(AlertmanagerOptions{WebhookURL: "/relative"}); err == nil {
		t.Fatal("accepted a relative webhook URL")
	}
}

func TestTargetsMatch(t *testing.T) {
	want := expectedTargets([]Target{
		{Job: "a", Addr: "h:1", Labels: map[string]string{"service": "s"}},
		{Job: "a", Addr: "h:1", Labels: map[string]string{"service": "s"}}, // duplicate
	})
	if len(want) != 1 {
		t.Fatalf("duplicates not merged: %v", want)
	}
	up := promv1.ActiveTarget{
		Labels:    model.LabelSet{"job": "a", "instance": "h:1", "service": "s"},
		ScrapeURL: "http://h:1/metrics", Health: promv1.HealthGood,
		LastScrape: time.Date(2026, 11, 25, 12, 0, 1, 0, time.UTC),
	}
	if ok, why := targetsMatch(want, []promv1.ActiveTarget{up}, time.Time{}); !ok {
		t.Fatal(why)
	}
	if ok, why := targetsMatch(want, []promv1.ActiveTarget{up}, up.LastScrape.Add(-time.Millisecond)); !ok {
		t.Fatalf("scraped after the time: %s", why)
	}
	if ok, why := targetsMatch(want, []promv1.ActiveTarget{up}, up.LastScrape); ok || !strings.Contains(why, "not after") {
		t.Fatalf("scraped at the time, not after it: %v %s", ok, why)
	}
	down := up
	down.Health, down.LastError = promv1.HealthBad, "connection refused"
	if ok, why := targetsMatch(want, []promv1.ActiveTarget{down}, time.Time{}); ok || !strings.Contains(why, "connection refused") {
		t.Fatalf("down target: %v %s", ok, why)
	}
	stale := up
	stale.Labels = model.LabelSet{"job": "old", "instance": "h:2"}
	if ok, why := targetsMatch(want, []promv1.ActiveTarget{up, stale}, time.Time{}); ok || !strings.Contains(why, "no longer configured") {
		t.Fatalf("stale target: %v %s", ok, why)
	}
	if ok, _ := targetsMatch(want, nil, time.Time{}); ok {
		t.Fatal("missing target matched")
	}
	if ok, _ := targetsMatch(nil, nil, time.Time{}); !ok {
		t.Fatal("no targets, none active: should match")
	}
}

func TestAvailableNamesMissingBinary(t *testing.T) {
	t.Setenv(PrometheusBinEnv, "/nonexistent/prometheus")
	err := Available()
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/prometheus") ||
		!strings.Contains(err.Error(), "apt-get install -y prometheus prometheus-alertmanager") {
		t.Fatalf("Available() = %v", err)
	}
	if _, err := StartPrometheus(t.Context(), PrometheusOptions{}); err == nil {
		t.Fatal("StartPrometheus with a missing binary succeeded")
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 || p > 65535 {
		t.Fatalf("FreePort() = %d, %v", p, err)
	}
}
