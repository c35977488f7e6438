package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Version is the plugin's version, set at build time with
// -ldflags "-X github.com/modelrollout/modelrollout/cmd/kubectl-modelrollout/plugin.Version=v0.1.0".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}

// App is the command line: verbs, flags and exit codes.
type App struct {
	Out, ErrOut io.Writer
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// TTY is true when Out is a terminal.
	TTY bool
	// Connect connects to the cluster; the kubeconfig-based Connect when nil.
	Connect func(KubeFlags) (*Cluster, error)
	// Getenv reads the environment; os.Getenv when nil.
	Getenv func(string) string
}

// Main runs the plugin with the process's arguments and streams and
// returns the exit code: 0 on success, 1 on failure, 2 on a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	tty := false
	if f, ok := stdout.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return (&App{Out: stdout, ErrOut: stderr, TTY: tty}).Run(ctx, args)
}

type globalFlags struct {
	kube    KubeFlags
	noColor bool
	ascii   bool
}

// Run executes one command line.
func (a *App) Run(ctx context.Context, args []string) int {
	g := &globalFlags{kube: NewKubeFlags()}
	root := a.rootCommand(g)
	root.SetArgs(args)
	root.SetOut(a.Out)
	root.SetErr(a.ErrOut)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var pe *Error
	if !errors.As(err, &pe) {
		// Errors that do not come from a verb come from parsing the
		// command line: an unknown verb or flag, a missing argument.
		pe = &Error{Code: 2, Msg: err.Error(), Usage: true}
	}
	fmt.Fprintf(a.ErrOut, "Error: %s\n", pe.Msg)
	if pe.Usage && cmd != nil {
		fmt.Fprintf(a.ErrOut, "\n%s", cmd.UsageString())
	}
	return pe.Code
}

func (a *App) getenv(k string) string {
	if a.Getenv != nil {
		return a.Getenv(k)
	}
	return os.Getenv(k)
}

// plugin connects and returns the Plugin that runs the verbs.
func (a *App) plugin(g *globalFlags) (*Plugin, error) {
	connect := a.Connect
	if connect == nil {
		connect = Connect
	}
	c, err := connect(g.kube)
	if err != nil {
		return nil, err
	}
	now := a.Now
	if now == nil {
		now = time.Now
	}
	return &Plugin{
		Client:         c.Client,
		Namespace:      c.Namespace,
		Out:            a.Out,
		ErrOut:         a.ErrOut,
		Now:            now,
		TTY:            a.TTY,
		Host:           c.Host,
		User:           c.User,
		As:             c.As,
		Impersonating:  c.Impersonating,
		RequestTimeout: c.RequestTimeout,
		Style: Style{
			Color: a.TTY && !g.noColor && a.getenv("NO_COLOR") == "" && a.getenv("TERM") != "dumb",
			ASCII: g.ascii,
		},
	}, nil
}

// run adapts a verb: it connects, runs it and makes any error it returns a
// failure (exit 1), so that only command-line errors are usage errors.
func (a *App) run(g *globalFlags, fn func(ctx context.Context, p *Plugin, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		p, err := a.plugin(g)
		if err != nil {
			return asFailure(err)
		}
		err = fn(cmd.Context(), p, args)
		if err != nil && isCanceled(err) {
			return &Error{Code: 1, Msg: "interrupted"}
		}
		return asFailure(err)
	}
}

func asFailure(err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return &Error{Code: 1, Msg: err.Error()}
}

// oneName accepts exactly one rollout name.
func oneName(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		return nil
	case 0:
		return usageErrorf("%s needs the name of a ModelRollout, e.g. kubectl modelrollout %s gpt4", cmd.Name(), cmd.Name())
	}
	return usageErrorf("%s takes one ModelRollout name, got %d arguments: %q", cmd.Name(), len(args), args)
}

func (a *App) rootCommand(g *globalFlags) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-modelrollout",
		Short: "Show and steer ModelRollouts: canary rollouts of LLM inference services",
		Long: `kubectl modelrollout shows ModelRollouts and steers them.

Actions (promote, pause, resume, abort, retry) write annotations on the
ModelRollout, never its spec, so they do not fight Argo CD or Flux, which own
the spec. The controller acts on each request once and records it in status.
finish is the exception: it changes spec.stable and spec.canary, so under
GitOps use finish --print and commit its output instead.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl modelrollout"},
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	// `completion bash|zsh|fish|powershell` prints a completion script; the
	// hidden __complete command answers it (and kubectl, through the
	// kubectl_complete-modelrollout executable).
	root.CompletionOptions.HiddenDefaultCmd = false
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErrorf("%v", err) })

	pf := root.PersistentFlags()
	g.kube.AddFlags(pf)
	a.registerFlagCompletions(root, g)
	pf.BoolVar(&g.noColor, "no-color", false, "do not colour the output (also NO_COLOR=1)")
	pf.BoolVar(&g.ascii, "ascii", false, "use ASCII marks instead of ✔ ▶ · ✖ …")

	root.AddCommand(a.getCommand(g), a.statusCommand(g), a.promoteCommand(g), a.pauseCommand(g),
		a.resumeCommand(g), a.abortCommand(g), a.retryCommand(g), a.finishCommand(g), a.versionCommand())
	// The completion command writes to the output set before it is made.
	root.SetOut(a.Out)
	root.SetErr(a.ErrOut)
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Long += completionHelp
		}
	}
	return root
}

func (a *App) getCommand(g *globalFlags) *cobra.Command {
	o := GetOptions{PrintFlags: newPrintFlags()}
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "List rollouts as a table: NAME ROUTE CANARY WEIGHT STEP PHASE AGE",
		Example: `  kubectl modelrollout get -n ai-gateway
  kubectl modelrollout get gpt4 -n ai-gateway --watch
  kubectl modelrollout get -A -o wide
  kubectl modelrollout get gpt4 -o yaml
  kubectl modelrollout get -o jsonpath='{.items[*].status.canaryWeight}'
  kubectl modelrollout get -o custom-columns=NAME:.metadata.name,WEIGHT:.status.canaryWeight`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("get takes at most one ModelRollout name, got %d arguments", len(args))
			}
			return nil
		},
		ValidArgsFunction: a.completeNames(g),
		RunE: a.run(g, func(ctx context.Context, p *Plugin, args []string) error {
			if len(args) == 1 {
				o.Name = args[0]
			}
			return p.Get(ctx, o)
		}),
	}
	f := cmd.Flags()
	f.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "list the rollouts of every namespace")
	f.BoolVarP(&o.Watch, "watch", "w", false, "after listing, print a row whenever a rollout changes (Ctrl-C to stop)")
	f.StringVarP(&o.Output, "output", "o", "", "output format, one of: "+strings.Join(outputFormats(o.PrintFlags), ", ")+
		"; custom-columns=HEADER:.json.path,... and jsonpath=TEMPLATE as in kubectl")
	f.BoolVar(&o.NoHeaders, "no-headers", false, "print the table without its header")
	o.PrintFlags.JSONYamlPrintFlags.AddFlags(cmd)
	o.PrintFlags.TemplatePrinterFlags.AddFlags(cmd)
	o.PrintFlags.OutputFlagSpecified = func() bool { return cmd.Flags().Changed("output") }
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return outputFormats(o.PrintFlags), cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func (a *App) statusCommand(g *globalFlags) *cobra.Command {
	watch := false
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a rollout in detail: phase, steps, gates, rollback reason, issues and events",
		Example: `  kubectl modelrollout status gpt4 -n ai-gateway
  kubectl modelrollout status gpt4 -n ai-gateway -w`,
		Args:              oneName,
		ValidArgsFunction: a.completeNames(g),
		RunE: a.run(g, func(ctx context.Context, p *Plugin, args []string) error {
			return p.Status(ctx, args[0], watch)
		}),
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw on every change of the rollout or its events (Ctrl-C to stop)")
	return cmd
}

func addWaitFlags(cmd *cobra.Command, o *ActionOptions) {
	cmd.Flags().BoolVar(&o.Wait, "wait", false, "wait until the controller has handled the request, then print the phase")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", DefaultWaitTimeout, "how long --wait waits")
}

func (a *App) promoteCommand(g *globalFlags) *cobra.Command {
	o := ActionOptions{}
	oo := OverrideOptions{}
	cmd := &cobra.Command{
		Use:   "promote NAME [--full | --skip-gates] [--reason TEXT]",
		Short: "End the current step's pause; the step advances once its gates pass",
		Long: `End the current step's pause now. The step still advances only once the
latest evaluation of every gate passes. Only a Progressing or Paused rollout
can be promoted. Writes the annotation ` + rolloutsv1.AnnotationPromote + `=<RFC 3339 time>.

Overrides, which need --reason:

  --full        go to the last step (100%) at once, past the current step's
                pause and gates and every step in between. The last step then
                bakes its pause and is gated as usual; a failing gate still
                rolls back. Writes ` + rolloutsv1.AnnotationPromoteFull + `=<time>.
  --skip-gates  advance the current step now, past its pause and the verdicts
                of its gates (holding, not yet evaluated, or failing fewer
                times in a row than failureLimit), once. The next step is
                gated as usual; skipping the last step ends the rollout
                Succeeded. Writes ` + rolloutsv1.AnnotationSkipGates + `=<time>.

Neither lifts a pause (spec.paused or the paused annotation), moves traffic
while a precondition is unmet, or undoes a rollback. Both also write
` + rolloutsv1.AnnotationPromoteReason + ` and ` + rolloutsv1.AnnotationRequestedBy + `: who you
are as the API server says (a SelfSubjectReview), or, when it does not, the
--as or kubeconfig user name, with a note. The controller records an applied
override in status.overrides and an Event; an override it cannot apply is
ignored with a Warning event.`,
		Example: `  kubectl modelrollout promote gpt4 -n ai-gateway --wait
  kubectl modelrollout promote gpt4 -n ai-gateway --skip-gates --reason "minRequests too high at night" --wait
  kubectl modelrollout promote gpt4 -n ai-gateway --full --reason "v1 is down; all traffic to v2"`,
		Args:              oneName,
		ValidArgsFunction: a.completeNames(g),
		PreRunE: func(*cobra.Command, []string) error {
			switch {
			case oo.Full && oo.SkipGates:
				return usageErrorf("--full and --skip-gates cannot be combined: --full already passes over every gate up to the last step")
			case (oo.Full || oo.SkipGates) && strings.TrimSpace(oo.Reason) == "":
				return usageErrorf("an override needs --reason: say why, it is recorded in status.overrides and in an Event")
			case !oo.Full && !oo.SkipGates && oo.Reason != "":
				return usageErrorf("--reason goes with --full or --skip-gates; a plain promote records no reason")
			}
			return nil
		},
		RunE: a.run(g, func(ctx context.Context, p *Plugin, args []string) error {
			if oo.Full || oo.SkipGates {
				return p.Override(ctx, args[0], oo, o)
			}
			return p.Promote(ctx, args[0], o)
		}),
	}
	cmd.Flags().BoolVar(&oo.Full, "full", false, "go to the last step (100%) at once, past pauses and gates (needs --reason)")
	cmd.Flags().BoolVar(&oo.SkipGates, "skip-gates", false, "advance the current step now, past its pause and gate verdicts, once (needs --reason)")
	cmd.Flags().StringVar(&oo.Reason, "reason", "", "why you override; recorded in status.overrides and the Event")
	addWaitFlags(cmd, &o)
	return cmd
}

func (a *App) pauseCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "pause NAME",
		Short: "Hold the rollout at its current step (gates still roll back)",
		Long: `Hold the rollout at its current step: weights stay and no step advances
until it is resumed. Gates keep being evaluated and a failing gate still rolls
back. Only a Waiting, Progressing or Paused rollout can be paused.

Writes the annotation ` + rolloutsv1.AnnotationPaused + `=true.`,
		Example:           `  kubectl modelrollout pause gpt4 -n ai-gateway`,
		Args:              oneName,
		ValidArgsFunction: a.completeNames(g),
		RunE: a.run(g, func(ctx context.Context, p *Plugin, args []string) error {
			return p.Pause(ctx, args[0])
		}),
	}
}

func (a *App) resumeCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "resume NAME",
		Short: "Undo pause: remove the paused annotation",
		Long: `Undo a pause by removing the annotation ` + rolloutsv1.AnnotationPaused + `.
A rollout paused by spec.paused is resumed in Git, not here.`,
		Example:           `  kubectl modelrollout resume gpt4 -n ai-gateway`,
		Args:              oneName,
		ValidArgsFunction: a.completeNames(g),
		RunE: a.run(g, func(ctx context.Context, p *Plugin, args []string) error {
			return p.Resume(ctx, args[0])
		}),
	}
}

func (a *App) abortCommand(g *globalFlags) *cobra.Command {
	o := ActionOptions{}
	reason := ""
	cmd := &cobra.Command{
		Use:   "abort NAME [--reason TEXT]",
		Short: "Roll the canary back now, like a firing alert",
		Long: `Roll the canary back now: its weight goes to 0 and the rollout is
RolledBack with reason Aborted. Only a Waiting, Progressing or Paused rollout
can be aborted.

Writes the annotations ` + rolloutsv1.AnnotationAbort + `=<RFC 3339 time> and
` + rolloutsv1.AnnotationAbortReason + `=<reason>; without --reason the
reason is "aborted by <your user name>".`,
		Example:           `  kubectl modelrollout abort gpt4 -n ai-gateway --reason "bad outputs"`,
		Args:              oneName,
		ValidArgsFunction: a.completeNames(g),
		RunE: a.run(g, func(ctx context.Context, p *Plugin, args []string) error {
			return p.Abort(ctx, args[0], reason, o)
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the rollout is aborted; recorded in status.rollback.message")
	addWaitFlags(cmd, &o)
	return cmd
}

func (a *App) retryCommand(g *globalFlags) *cobra.Command {
	o := ActionOptions{}
	cmd := &cobra.Command{
		Use:   "retry NAME",
		Short: "Restart a RolledBack rollout at step 1",
		Long: `Restart a RolledBack rollout at its first step, with the same canary.
Only a RolledBack rollout can be retried.

Writes the annotation ` + rolloutsv1.AnnotationRetry + `=<RFC 3339 time>.`,
		Example:           `  kubectl modelrollout retry gpt4 -n ai-gateway --wait`,
		Args:              oneName,
		ValidArgsFunction: a.completeNames(g),
		RunE: a.run(g, func(ctx context.Context, p *Plugin, args []string) error {
			return p.Retry(ctx, args[0], o)
		}),
	}
	addWaitFlags(cmd, &o)
	return cmd
}

func (a *App) finishCommand(g *globalFlags) *cobra.Command {
	o := FinishOptions{}
	cmd := &cobra.Command{
		Use:   "finish NAME [--print]",
		Short: "Make a Succeeded rollout's canary the stable backend",
		Long: `Finish a Succeeded rollout (its canary holds 100% of traffic): set
spec.stable to the canary and remove spec.canary. The operator then removes
the old stable's backendRef from the managed rules of every route (nothing
else of the routes changes) and the rollout goes Idle, ready for the next
canary.

finish changes the rollout's spec: where Git holds the rollout (Argo CD,
Flux), a sync would undo it. There, use --print: nothing is changed, and the
rollout and its routes are printed as Git should hold them after the finish;
commit that, as one change.`,
		Example: `  kubectl modelrollout finish gpt4 -n ai-gateway --wait
  kubectl modelrollout finish gpt4 -n ai-gateway --print > finish.yaml`,
		Args:              oneName,
		ValidArgsFunction: a.completeNames(g),
		RunE: a.run(g, func(ctx context.Context, p *Plugin, args []string) error {
			return p.Finish(ctx, args[0], o)
		}),
	}
	cmd.Flags().BoolVar(&o.Print, "print", false, "print the Git change (the rollout and its routes after the finish) instead of applying it")
	addWaitFlags(cmd, &o.ActionOptions)
	return cmd
}

func (a *App) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := "kubectl-modelrollout " + version()
			if r := revision(); r != "" {
				v += " (" + r + ")"
			}
			_, err := fmt.Fprintln(a.Out, v)
			return asFailure(err)
		},
	}
}
