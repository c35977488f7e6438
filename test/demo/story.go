package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// StoryOptions configure RunStory.
type StoryOptions struct {
	// Out receives the live view and the summary.
	Out io.Writer
	// Plain prints log lines instead of redrawing the screen.
	Plain bool
	// Keep keeps the stack running after the summary until ctx ends.
	Keep bool
	// Rate and Concurrency of the load through the gateway (25 rps and 16
	// when 0); every StreamEvery-th request is streamed (4 when 0), and
	// every HeaderEvery-th carries ABTestHeader: ABTestCanary (5 when 0):
	// the traffic a header-routed step sends to the canary.
	Rate        float64
	Concurrency int
	StreamEvery int
	HeaderEvery int
	// LoadDuration bounds the load (30 minutes when 0): it stops by itself.
	LoadDuration time.Duration
	// Timeout bounds each rollout (5 minutes when 0).
	Timeout time.Duration
	// StepPause, when set, replaces the pause of every step of the
	// manifests (10s), for a slower or faster story.
	StepPause time.Duration
	// Started is when the demo started (for the elapsed times); now when
	// zero.
	Started time.Time
}

// RolloutResult is what one rollout of the story did.
type RolloutResult struct {
	Title    string
	Revision string
	Phase    rolloutsv1.Phase
	// Took is from applying the manifest to the terminal phase with the
	// route at its final weights.
	Took time.Duration
	// Steps are the step records of the revision.
	Steps    []rolloutsv1.StepRecord
	Rollback *rolloutsv1.RollbackStatus
	// Traffic is what the load generator saw during the rollout.
	Traffic Tally
	// Tagged is the part of Traffic that carried ABTestHeader.
	Tagged Tally
	// Schedule is the rollout's steps, as applied.
	Schedule []rolloutsv1.Step
	// Weights are the gpt-4 rule's weights at the end.
	Weights map[string]int32
}

// story is one run of the demo.
type story struct {
	s       *Stack
	o       StoryOptions
	out     io.Writer
	load    *Load
	started time.Time
	results []RolloutResult
}

func (o StoryOptions) withDefaults() StoryOptions {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Rate <= 0 {
		o.Rate = 25
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.StreamEvery <= 0 {
		o.StreamEvery = 4
	}
	if o.HeaderEvery <= 0 {
		o.HeaderEvery = 5
	}
	if o.LoadDuration <= 0 {
		o.LoadDuration = 30 * time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Started.IsZero() {
		o.Started = time.Now()
	}
	return o
}

// RunStory runs the demo on a started stack: load through the gateway, a
// good canary walked to Succeeded, then a bad one rolled back, then a
// wrong one (fast, error-free, wrong answers) rolled back by its prompt
// gate before it gets any traffic, with a live view, a summary and the
// commands to poke the stack by hand.
func RunStory(ctx context.Context, s *Stack, o StoryOptions) error {
	o = o.withDefaults()
	st := &story{s: s, o: o, out: o.Out, started: o.Started}
	var err error
	st.load, err = StartLoad(context.Background(), LoadOptions{
		URL: s.GatewayURL, Rate: o.Rate, Concurrency: o.Concurrency, StreamEvery: o.StreamEvery,
		MaxDuration: o.LoadDuration, MaxRequests: int(o.Rate*o.LoadDuration.Seconds()) + 1,
		Header: http.Header{ABTestHeader: []string{ABTestCanary}}, HeaderEvery: o.HeaderEvery,
	})
	if err != nil {
		return err
	}
	defer st.load.Stop()

	st.printf("Stack up in %s. Load: %.0f requests/s of gpt-4 chat completions through the gateway (1 in %d streamed, 1 in %d with %s: %s).\n",
		shortDuration(s.Timings[len(s.Timings)-1].Took), o.Rate, o.StreamEvery, o.HeaderEvery, ABTestHeader, ABTestCanary)
	st.printf("Watch along in another terminal:  KUBECONFIG=%s kubectl get modelrollouts -w\n\n", s.Kubeconfig)

	// Let the stable version serve for a moment, so that Prometheus has a
	// baseline and the traffic view has something to show.
	if err := poll(ctx, time.Minute, "traffic through the gateway", func() (bool, error) {
		return st.load.Window(10 * time.Second)[Stable].OK >= 10, nil
	}); err != nil {
		return err
	}

	good, err := st.rollout(ctx, "rollout 1 (good canary)", GoodRolloutFile, rolloutsv1.PhaseSucceeded)
	st.results = append(st.results, good)
	if err != nil {
		return err
	}
	bad, err := st.rollout(ctx, "rollout 2 (bad canary)", BadRolloutFile, rolloutsv1.PhaseRolledBack)
	st.results = append(st.results, bad)
	if err != nil {
		return err
	}
	wrong, err := st.rollout(ctx, "rollout 3 (wrong canary)", WrongRolloutFile, rolloutsv1.PhaseRolledBack)
	st.results = append(st.results, wrong)
	if err != nil {
		return err
	}
	st.summary(ctx)
	st.hints()
	if !o.Keep {
		fmt.Fprintf(st.out, "\n(Run with --keep, e.g. `make demo DEMO_FLAGS=--keep`, to keep the stack up and try these.)\n")
	}
	if o.Keep {
		fmt.Fprintf(st.out, "\nThe stack keeps running (the load stops by itself after %s). Press Ctrl-C to stop it.\n", o.LoadDuration)
		<-ctx.Done()
	}
	return nil
}

func (st *story) elapsed() string { return clock(time.Since(st.started)) }

func (st *story) printf(format string, args ...any) { fmt.Fprintf(st.out, format, args...) }

// logf prints one plain-mode line with the elapsed time.
func (st *story) logf(format string, args ...any) {
	fmt.Fprintf(st.out, "[%s] %s\n", st.elapsed(), fmt.Sprintf(format, args...))
}

// view is what one refresh of the live view observed.
type view struct {
	ro      *rolloutsv1.ModelRollout
	current bool // the status belongs to the applied revision
	weights map[string]int32
	window  Tally
}

func (st *story) rollout(ctx context.Context, title, file string, want rolloutsv1.Phase) (RolloutResult, error) {
	res := RolloutResult{Title: title}
	ro, err := ReadRollout(st.s.File(file))
	if err != nil {
		return res, err
	}
	if st.o.StepPause > 0 {
		for i := range ro.Spec.Steps {
			ro.Spec.Steps[i].Pause = ptr.To(apiDuration(st.o.StepPause))
		}
	}
	res.Schedule = ro.Spec.EffectiveSteps()
	st.s.LocalPromptGates(ro)
	st.s.GatewayGates(ro)
	rev := ro.Spec.Revision()
	res.Revision = rev
	if st.o.Plain {
		st.printf("\n")
		st.logf("=== %s: %s", title, strings.ReplaceAll(rev, "Service/", ""))
		st.logf("kubectl apply -f %s", filepath.Join(TestdataDir, file))
	}
	before, taggedBefore := st.load.Total(), st.load.Tagged()
	applied := time.Now()
	if err := ApplyRollout(ctx, st.s.Client, ro); err != nil {
		return res, err
	}

	ctx, cancel := context.WithTimeout(ctx, st.o.Timeout)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last view
	var lastRow, lastWeights, lastGates string
	lastHeader := headerRouteLine(&rolloutsv1.ModelRollout{}) // "none" is news only after a header route
	var lastTraffic time.Time
	seenEvents := map[string]bool{}
	headerDone := false
	for {
		v, err := st.observe(ctx, ro.Name, rev)
		if err == nil {
			last = v
			if st.o.Plain {
				if !headerDone {
					st.logf("%s", formatRow(tableHeader))
					headerDone = true
				}
				if v.current {
					row := fmt.Sprintf("%d/%s/%s", v.ro.Status.CanaryWeight, v.ro.Status.Step, v.ro.Status.Phase)
					if row != lastRow {
						st.logf("%s", formatRow(tableRow(v.ro, time.Now())))
						lastRow = row
					}
					if g := gatesCompact(v.ro); g != "" && g+lastEval(v.ro) != lastGates {
						st.logf("    gates    %s", g)
						lastGates = g + lastEval(v.ro)
					}
				}
				if w := weightsLine(v.weights); w != lastWeights {
					st.logf("    route    rule gpt4: %s", w)
					lastWeights = w
				}
				if h := headerRouteLine(v.ro); v.current && h != lastHeader {
					st.logf("    header   %s", h)
					lastHeader = h
				}
				if time.Since(lastTraffic) >= 5*time.Second {
					st.logf("    traffic  last 5s at the gateway: %s", splitLine(st.load.Window(5*time.Second)))
					st.logf("             of which with %s: %s: %s", ABTestHeader, ABTestCanary, splitLine(st.load.TaggedWindow(5*time.Second)))
					lastTraffic = time.Now()
				}
				st.printEvents(ctx, ro.Name, applied, seenEvents)
			} else {
				st.redraw(ctx, title, rev, v, applied)
			}
			if v.current && v.ro.Status.Phase == rolloutsv1.PhaseSucceeded || v.current && v.ro.Status.Phase == rolloutsv1.PhaseRolledBack {
				if settled(v) {
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			if last.ro != nil {
				res.Phase = last.ro.Status.Phase
			}
			return res, fmt.Errorf("%s: %s did not finish within %s (phase %q): %w", title, rev, st.o.Timeout, res.Phase, ctx.Err())
		case <-tick.C:
		}
	}
	res.Took = time.Since(applied)
	res.Phase = last.ro.Status.Phase
	res.Steps = last.ro.Status.StepHistory
	res.Rollback = last.ro.Status.Rollback
	res.Weights = last.weights
	res.Traffic = since(st.load.Total(), before)
	res.Tagged = since(st.load.Tagged(), taggedBefore)
	if st.o.Plain {
		st.printEvents(ctx, ro.Name, applied, seenEvents)
	}
	st.printf("\n")
	st.logf("%s: %s after %s", title, res.Phase, shortDuration(res.Took))
	if res.Rollback != nil {
		st.logf("    rollback %s: %s", res.Rollback.Reason, res.Rollback.Message)
	}
	if res.Phase != want {
		return res, fmt.Errorf("%s ended %s, expected %s", title, res.Phase, want)
	}
	return res, nil
}

// since is after − before, without the backends that served nothing in
// between.
func since(after, before Tally) Tally {
	out := Tally{}
	for k, c := range after {
		b := before[k]
		if d := (BackendCount{OK: c.OK - b.OK, Failed: c.Failed - b.Failed}); d.Total() > 0 {
			out[k] = d
		}
	}
	return out
}

// headerRouteLine says which requests the rollout's header route sends to
// the canary, or that there is none.
func headerRouteLine(ro *rolloutsv1.ModelRollout) string {
	hr := ro.Status.HeaderRoute
	if hr == nil || ro.Spec.Canary == nil {
		return "none: every request follows the weights"
	}
	return fmt.Sprintf("requests with %s go to %s (HTTPRoute %s, owned by the rollout)", hr.Match.String(), ro.Spec.Canary.Name, strings.Join(hr.Routes, ", "))
}

// apiDuration renders d the way the CRD takes durations: whole seconds, or
// milliseconds.
func apiDuration(d time.Duration) rolloutsv1.Duration {
	if d%time.Second == 0 {
		return rolloutsv1.Duration(fmt.Sprintf("%ds", d/time.Second))
	}
	return rolloutsv1.Duration(fmt.Sprintf("%dms", d/time.Millisecond))
}

func lastEval(ro *rolloutsv1.ModelRollout) string {
	if t := lastEvaluation(ro.Status.Gates); !t.IsZero() {
		return t.String()
	}
	return ""
}

func lastEvaluation(gates []rolloutsv1.GateStatus) time.Time {
	var last time.Time
	for _, g := range gates {
		if g.LastEvaluatedAt != nil && g.LastEvaluatedAt.After(last) {
			last = g.LastEvaluatedAt.Time
		}
	}
	return last
}

// settled says whether the route carries the terminal phase's weights.
func settled(v view) bool {
	c := v.ro.Spec.Canary
	if c == nil {
		return true
	}
	switch v.ro.Status.Phase {
	case rolloutsv1.PhaseSucceeded:
		return v.weights[c.Name] == 100 && v.weights[v.ro.Spec.Stable.Name] == 0
	case rolloutsv1.PhaseRolledBack:
		return v.weights[c.Name] == 0 && v.weights[v.ro.Spec.Stable.Name] == 100
	}
	return false
}

func (st *story) observe(ctx context.Context, name, rev string) (view, error) {
	ro, err := st.s.Rollout(ctx, name)
	if err != nil {
		return view{}, err
	}
	w, err := st.s.RouteWeights(ctx)
	if err != nil {
		return view{}, err
	}
	return view{ro: ro, current: ro.Status.Revision == rev && ro.Status.ObservedGeneration == ro.Generation, weights: w, window: st.load.Window(5 * time.Second)}, nil
}

// printEvents prints the rollout's new events since the rollout started
// (plain mode).
func (st *story) printEvents(ctx context.Context, name string, since time.Time, seen map[string]bool) {
	evs, err := st.s.Events(ctx, name)
	if err != nil {
		return
	}
	for _, e := range evs {
		if seen[string(e.UID)] || eventTime(e).Before(since) {
			continue
		}
		seen[string(e.UID)] = true
		if e.Reason == "StepStarted" {
			continue // the table row shows it
		}
		st.logf("    event    %s %s: %s", e.Type, e.Reason, truncateText(e.Note, 160))
	}
}

// redraw paints the live view (TTY mode).
func (st *story) redraw(ctx context.Context, title, rev string, v view, applied time.Time) {
	var b bytes.Buffer
	b.WriteString("\033[H\033[2J")
	fmt.Fprintf(&b, "ModelRollout demo   %s   %s   elapsed %s\n\n", title, rev, st.elapsed())
	fmt.Fprintf(&b, "$ kubectl get modelrollouts -n %s\n", Namespace)
	fmt.Fprintln(&b, formatRow(tableHeader))
	if v.current {
		fmt.Fprintln(&b, formatRow(tableRow(v.ro, time.Now())))
	} else {
		fmt.Fprintln(&b, "(waiting for the operator to pick the new revision up)")
	}
	fmt.Fprintln(&b)
	if v.current {
		fmt.Fprintf(&b, "Steps    %s\n", stepsLine(v.ro))
	}
	fmt.Fprintf(&b, "Route    %s rule %s: %s\n", RouteName, RuleName, weightsLine(v.weights))
	if v.current && v.ro.Status.HeaderRoute != nil {
		fmt.Fprintf(&b, "Header   %s\n", headerRouteLine(v.ro))
	}
	fmt.Fprintf(&b, "Message  %s\n\n", truncateText(v.ro.Status.Message, 120))
	fmt.Fprintf(&b, "Traffic at the gateway, last 5 s (%d responses):\n", v.window.Total())
	splitBars(&b, v.window, 40)
	tagged := st.load.TaggedWindow(5 * time.Second)
	fmt.Fprintf(&b, "  of which with %s: %s (%d responses):\n", ABTestHeader, ABTestCanary, tagged.Total())
	splitBars(&b, tagged, 40)
	fmt.Fprintln(&b)
	if v.current && len(v.ro.Status.Gates) > 0 {
		interval := ""
		if a := v.ro.Spec.Analysis; a != nil {
			interval = " (every " + string(a.Interval) + ")"
		}
		fmt.Fprintf(&b, "Gates%s\n", interval)
		for _, l := range gateLines(v.ro) {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		fmt.Fprintln(&b)
	}
	if evs, err := st.s.Events(ctx, v.ro.Name); err == nil {
		var recent []string
		for _, e := range evs {
			if !eventTime(e).Before(applied) {
				recent = append(recent, eventLine(e, st.started))
			}
		}
		if len(recent) > 8 {
			recent = recent[len(recent)-8:]
		}
		fmt.Fprintln(&b, "Events")
		for _, l := range recent {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	_, _ = st.out.Write(b.Bytes())
}

// summary prints what happened and how long each phase took.
func (st *story) summary(ctx context.Context) {
	out := st.out
	fmt.Fprintf(out, "\n================ Summary ================\n")
	fmt.Fprintf(out, "%-34s %s\n", "stack start-up", shortDuration(st.s.Timings[len(st.s.Timings)-1].Took))
	var parts []string
	for _, t := range st.s.Timings[:len(st.s.Timings)-1] {
		parts = append(parts, fmt.Sprintf("%s %s", t.What, shortDuration(t.Took)))
	}
	fmt.Fprintf(out, "    %s\n", strings.Join(parts, ", "))
	for _, r := range st.results {
		fmt.Fprintf(out, "%-34s %-11s %s\n", r.Title, r.Phase, shortDuration(r.Took))
		fmt.Fprintf(out, "    %s\n", r.Revision)
		var steps []string
		for i, s := range r.Steps {
			d := "…"
			if s.EndedAt != nil {
				d = shortDuration(s.EndedAt.Sub(s.StartedAt.Time))
			}
			weight := fmt.Sprintf("%d%%", s.Weight)
			if i < len(r.Schedule) && r.Schedule[i].Match != nil {
				weight += " +" + r.Schedule[i].Match.String()
			}
			steps = append(steps, fmt.Sprintf("%s %s", weight, d))
		}
		if len(steps) > 0 {
			fmt.Fprintf(out, "    steps: %s\n", strings.Join(steps, ", "))
		}
		if r.Rollback != nil {
			by := map[string]string{
				rolloutsv1.ReasonGateFailed:  "caught by a gate",
				rolloutsv1.ReasonAlertFiring: "caught by the Alertmanager alert",
				rolloutsv1.ReasonAborted:     "aborted by hand",
			}[r.Rollback.Reason]
			fmt.Fprintf(out, "    rolled back at %d%%, %s (%s): %s\n", r.Rollback.FromWeight, by, r.Rollback.Reason, r.Rollback.Message)
			if len(r.Steps) > 0 {
				fmt.Fprintf(out, "    from the canary's first request to the rollback: %s\n", shortDuration(r.Rollback.At.Sub(r.Steps[0].StartedAt.Time)))
			}
		}
		fmt.Fprintf(out, "    traffic: %s\n", r.Traffic)
		fmt.Fprintf(out, "    of which with %s: %s: %s\n", ABTestHeader, ABTestCanary, r.Tagged)
		fmt.Fprintf(out, "    route rule gpt4 after: %s\n", weightsLine(r.Weights))
	}
	if msg := st.untouched(ctx); msg != "" {
		fmt.Fprintf(out, "%-34s %s\n", "rest of the route", msg)
	}
	fmt.Fprintf(out, "%-34s %s\n", "total", shortDuration(time.Since(st.started)))

	if kubectl := st.s.kubectl(); kubectl != "" {
		fmt.Fprintf(out, "\n$ kubectl get modelrollouts -n %s -o wide\n", Namespace)
		st.run(ctx, kubectl, "--kubeconfig", st.s.Kubeconfig, "get", "modelrollouts", "-n", Namespace, "-o", "wide")
	}
	if st.s.PluginPath != "" {
		fmt.Fprintf(out, "\n$ kubectl modelrollout status %s -n %s\n", RolloutName, Namespace)
		st.run(ctx, st.s.PluginPath, "--kubeconfig", st.s.Kubeconfig, "status", RolloutName, "-n", Namespace)
	}
}

// untouched checks that the rules the rollouts do not manage, and the gpt4
// rule's matches and timeouts, are exactly as applied from Git.
func (st *story) untouched(ctx context.Context) string {
	changed, err := st.s.ChangedRules(ctx)
	switch {
	case err != nil:
		return err.Error()
	case len(changed) > 0:
		return "CHANGED: " + strings.Join(changed, ", ")
	}
	return "untouched: the claude, mixtral and /health rules, the gpt4 rule's matches and timeouts (120s/60s) are as in Git"
}

// run runs a command and copies its output, indented.
func (st *story) run(ctx context.Context, name string, args ...string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	fmt.Fprint(st.out, indent(string(out), "  "))
	if err != nil {
		fmt.Fprintf(st.out, "  (%s: %v)\n", filepath.Base(name), err)
	}
}

func indent(s, prefix string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix) + "\n"
}

// kubectl finds a kubectl: the one beside the control plane, else $PATH.
func (s *Stack) kubectl() string {
	p := filepath.Join(s.opts.KubebuilderAssets, "kubectl")
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		return p
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	return ""
}

// hints prints how to poke the stack by hand.
func (st *story) hints() {
	s := st.s
	out := st.out
	fmt.Fprintf(out, "\n================ Poke it by hand ================\n")
	fmt.Fprintf(out, "export KUBECONFIG=%s        # admin, namespace %s\n", s.Kubeconfig, Namespace)
	fmt.Fprintf(out, "kubectl get modelrollouts -w\n")
	fmt.Fprintf(out, "kubectl get httproute %s -o yaml\n", RouteName)
	if s.PluginPath != "" {
		fmt.Fprintf(out, "export PATH=%s:$PATH         # the kubectl plugin\n", s.BinDir)
		fmt.Fprintf(out, "kubectl modelrollout status %s\n", RolloutName)
		fmt.Fprintf(out, "kubectl modelrollout retry %s            # restart the rolled-back rollout at step 1\n", RolloutName)
		fmt.Fprintf(out, "kubectl modelrollout abort %s --reason \"bad outputs\"\n", RolloutName)
	} else if s.PluginMissing != "" {
		fmt.Fprintf(out, "(kubectl plugin: %s)\n", s.PluginMissing)
	}
	if s.IsTraefik() {
		fmt.Fprintf(out, "\nGateway      %s   (Traefik %s; its metrics and API: %s/metrics, %s/api/http/routers, %s/api/http/services)\n", s.GatewayURL, TraefikVersion, s.GatewayMetricsURL, s.GatewayMetricsURL, s.GatewayMetricsURL)
	} else {
		fmt.Fprintf(out, "\nGateway      %s   (Envoy-style metrics and the routing table: %s/stats/prometheus, %s/routes)\n", s.GatewayURL, s.GatewayMetricsURL, s.GatewayMetricsURL)
	}
	fmt.Fprintf(out, "  curl -sS %s/v1/chat/completions -H 'x-model-id: gpt-4' -H 'content-type: application/json' \\\n", s.GatewayURL)
	fmt.Fprintf(out, "    -d '{\"model\":\"gpt-4\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":8}' -D - -o /dev/null | grep -i x-backend\n")
	fmt.Fprintf(out, "Prometheus   %s   (alerts: %s/alerts; try sum by (service) (rate(vllm:request_success_total[30s])))\n", s.Prometheus.URL(), s.Prometheus.URL())
	fmt.Fprintf(out, "Alertmanager %s\n", s.Alertmanager.URL())
	fmt.Fprintf(out, "Simulators   (PUT /control turns one bad at run time, e.g. -d '{\"error_rate\":0.3}' or '{\"latency\":\"2s\"}')\n")
	for _, sim := range simulators {
		fmt.Fprintf(out, "  %-22s %s\n", sim.service, s.Sims[sim.service].URL())
	}
	receiver := "not served by this operator build"
	if s.AlertReceiverURL != "" {
		receiver = s.AlertReceiverURL
	}
	fmt.Fprintf(out, "Operator     metrics http://%s/metrics, alert receiver %s\n", s.OperatorMetrics, receiver)
	logs := "operator.log, gateway.log"
	if s.IsTraefik() {
		logs = "operator.log, traefik.log"
	}
	fmt.Fprintf(out, "Logs         %s (%s)\n", s.Dir, logs)
}

// LocalPromptGates points the rollout's prompt gates without a url at the
// canary's simulator on loopback: the demo's Service names do not resolve
// on this machine.
func (s *Stack) LocalPromptGates(ro *rolloutsv1.ModelRollout) {
	a := ro.Spec.Analysis
	if a == nil || ro.Spec.Canary == nil || s.Sims[ro.Spec.Canary.Name] == nil {
		return
	}
	for i := range a.Gates {
		if pg := a.Gates[i].Prompt; pg != nil && pg.URL == "" {
			pg.URL = s.Sims[ro.Spec.Canary.Name].URL()
		}
	}
}
