package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Scheme holds the types the plugin reads and writes.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(rolloutsv1.AddToScheme(Scheme))
	utilruntime.Must(corev1.AddToScheme(Scheme))
	utilruntime.Must(eventsv1.AddToScheme(Scheme))
	utilruntime.Must(authenticationv1.AddToScheme(Scheme))
}

// KubeFlags are the kubectl-style connection flags.
type KubeFlags struct {
	Kubeconfig string
	Context    string
	Namespace  string
}

// Cluster is a connection to one API server.
type Cluster struct {
	Client client.WithWatch
	// Namespace is -n, else the kubeconfig context's namespace, else "default".
	Namespace string
	// Host is the API server's URL, for error messages.
	Host string
	// User is the kubeconfig user of the context, a fallback for who acts.
	User string
}

// Connect loads the kubeconfig the way kubectl does (--kubeconfig, then
// KUBECONFIG, then ~/.kube/config, then in-cluster) and builds a client.
func Connect(f KubeFlags) (*Cluster, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.Kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: f.Context}
	overrides.Context.Namespace = f.Namespace
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)

	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, kubeconfigError(f, err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, kubeconfigError(f, err)
	}
	if ns == "" {
		ns = "default"
	}
	user := ""
	if raw, err := cc.RawConfig(); err == nil {
		name := raw.CurrentContext
		if f.Context != "" {
			name = f.Context
		}
		if c := raw.Contexts[name]; c != nil {
			user = c.AuthInfo
		}
	}
	cfg.UserAgent = "kubectl-modelrollout/" + version()
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, &Error{Code: 1, Msg: fmt.Sprintf("cannot create a client for %s: %v", cfg.Host, err)}
	}
	return &Cluster{Client: c, Namespace: ns, Host: cfg.Host, User: user}, nil
}

// kubeconfigError says which kubeconfig could not be used and why.
func kubeconfigError(f KubeFlags, err error) error {
	where := "~/.kube/config"
	switch {
	case f.Kubeconfig != "":
		where = f.Kubeconfig + " (--kubeconfig)"
	case os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
		where = os.Getenv(clientcmd.RecommendedConfigPathEnvVar) + " (KUBECONFIG)"
	}
	if clientcmd.IsEmptyConfig(err) {
		problem := "has no cluster to talk to"
		if f.Kubeconfig == "" && !anyExists(os.Getenv(clientcmd.RecommendedConfigPathEnvVar)) {
			problem = "does not exist"
		}
		return &Error{Code: 1, Msg: fmt.Sprintf("no usable kubeconfig: %s %s; "+
			"pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config", where, problem)}
	}
	return &Error{Code: 1, Msg: fmt.Sprintf("cannot load kubeconfig %s: %v", where, err)}
}

// anyExists says whether any file of a KUBECONFIG-style list (or
// ~/.kube/config when the list is empty) exists.
func anyExists(list string) bool {
	paths := filepath.SplitList(list)
	if list == "" {
		paths = []string{clientcmd.RecommendedHomeFile}
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// Error is an error with the process exit code it maps to: 1 for a failure,
// 2 for a usage error.
type Error struct {
	Code int
	Msg  string
	// Usage is true when the command's usage should be printed with it.
	Usage bool
}

func (e *Error) Error() string { return e.Msg }

func usageErrorf(format string, args ...any) error {
	return &Error{Code: 2, Msg: fmt.Sprintf(format, args...), Usage: true}
}

func failf(format string, args ...any) error {
	return &Error{Code: 1, Msg: fmt.Sprintf(format, args...)}
}

// apiError turns a client error into one a person can act on.
func (p *Plugin) apiError(err error, ns, name string) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	switch {
	case apierrors.IsNotFound(err) && name != "":
		return failf("modelrollout %q not found in namespace %q", name, ns)
	case meta.IsNoMatchError(err) || isNoAPI(err):
		return failf("the ModelRollout API (%s) is not served by %s: install the CRDs from config/crd/bases first",
			rolloutsv1.GroupVersion.String(), p.host())
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return failf("%v", err)
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return failf("%v", err)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return failf("cannot reach the Kubernetes API server at %s: %v", p.host(), err)
}

func (p *Plugin) host() string {
	if p.Host == "" {
		return "the API server"
	}
	return p.Host
}

// isNoAPI recognises discovery failing because the group is not served.
func isNoAPI(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "the server could not find the requested resource") && strings.Contains(msg, rolloutsv1.GroupVersion.Group)
}
