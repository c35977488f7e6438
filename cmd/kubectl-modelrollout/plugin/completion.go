package plugin

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// completionTimeout bounds the API calls made while the shell waits for
// completions.
const completionTimeout = 5 * time.Second

// completionHelp is added to the help of `completion`.
const completionHelp = `

Completion of "kubectl modelrollout ..." (kubectl 1.26 and later) needs an
executable named kubectl_complete-modelrollout on your PATH, next to
kubectl-modelrollout; kubectl runs it to complete the plugin's arguments.
Either install the script cmd/kubectl-modelrollout/kubectl_complete-modelrollout,
or link the plugin under that name:

  ln -s "$(command -v kubectl-modelrollout)" "$(dirname "$(command -v kubectl-modelrollout)")/kubectl_complete-modelrollout"

Rollout names, namespaces, contexts, clusters, users and -o formats are
completed from your kubeconfig and the cluster.`

// completeNames completes the one NAME argument of a verb with the rollouts
// of the namespace the flags select, each described by its phase and weight.
func (a *App) completeNames(g *globalFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completionContext(cmd)
		defer cancel()
		p, err := a.plugin(g)
		if err != nil {
			cobra.CompDebugln(err.Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list := &rolloutsv1.ModelRolloutList{}
		if err := p.Client.List(ctx, list, p.listOpts(false, "")); err != nil {
			cobra.CompDebugln(p.apiError(err, p.Namespace, "").Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, ro := range list.Items {
			if !strings.HasPrefix(ro.Name, toComplete) {
				continue
			}
			desc := string(ro.Status.Phase)
			if desc == "" {
				desc = "not reconciled yet"
			} else if ro.Spec.Canary != nil {
				desc += fmt.Sprintf(", canary %s at %d%%", ro.Spec.Canary.Name, ro.Status.CanaryWeight)
			}
			out = append(out, cobra.CompletionWithDesc(ro.Name, desc))
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func completionContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}

// registerFlagCompletions completes the values of the connection flags:
// namespaces from the cluster, contexts, clusters and users from the
// kubeconfig.
func (a *App) registerFlagCompletions(root *cobra.Command, g *globalFlags) {
	_ = root.RegisterFlagCompletionFunc("namespace", func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		ctx, cancel := completionContext(cmd)
		defer cancel()
		p, err := a.plugin(g)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list := &corev1.NamespaceList{}
		if err := p.Client.List(ctx, list, ListOptions{}); err != nil {
			cobra.CompDebugln(err.Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, ns := range list.Items {
			if strings.HasPrefix(ns.Name, toComplete) {
				out = append(out, ns.Name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	fromKubeconfig := func(names func(cfg rawNames) []string) cobra.CompletionFunc {
		return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			raw, err := g.kube.ToRawKubeConfigLoader().RawConfig()
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, n := range names(rawNames{contexts: keysOf(raw.Contexts), clusters: keysOf(raw.Clusters), users: keysOf(raw.AuthInfos)}) {
				if strings.HasPrefix(n, toComplete) {
					out = append(out, n)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
	}
	_ = root.RegisterFlagCompletionFunc("context", fromKubeconfig(func(r rawNames) []string { return r.contexts }))
	_ = root.RegisterFlagCompletionFunc("cluster", fromKubeconfig(func(r rawNames) []string { return r.clusters }))
	_ = root.RegisterFlagCompletionFunc("user", fromKubeconfig(func(r rawNames) []string { return r.users }))
}

type rawNames struct{ contexts, clusters, users []string }

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
