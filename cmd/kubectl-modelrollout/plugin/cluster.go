package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

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

// KubeFlags are kubectl's own connection flags (--kubeconfig, --context,
// --cluster, --user, --as, --as-group, --token, --server, --request-timeout,
// -n and the TLS flags), from k8s.io/cli-runtime, so that they mean exactly
// what they mean to kubectl.
type KubeFlags = *genericclioptions.ConfigFlags

// NewKubeFlags returns the connection flags, unset.
func NewKubeFlags() KubeFlags {
	return genericclioptions.NewConfigFlags(true)
}

// Cluster is a connection to one API server.
type Cluster struct {
	Client Client
	// Namespace is -n, else the kubeconfig context's namespace, else "default".
	Namespace string
	// Host is the API server's URL, for error messages.
	Host string
	// User is the kubeconfig user of the context, a fallback for who acts.
	User string
	// As is the user of --as, when set.
	As string
	// Impersonating describes --as and --as-group when set, for error
	// messages; empty otherwise.
	Impersonating string
	// RequestTimeout is --request-timeout when set, for error messages.
	RequestTimeout string
}

// Connect loads the kubeconfig the way kubectl does (--kubeconfig, then
// KUBECONFIG, then ~/.kube/config, then in-cluster), applies the other
// connection flags and builds a client.
func Connect(f KubeFlags) (*Cluster, error) {
	if t := str(f.Timeout); t != "" && t != "0" {
		if _, err := time.ParseDuration(t); err != nil {
			if _, errInt := strconv.Atoi(t); errInt != nil {
				return nil, usageErrorf("invalid --request-timeout %q: use a duration with a unit, e.g. 30s or 2m (0 waits forever)", t)
			}
		}
	}
	cc := f.ToRawKubeConfigLoader()
	cfg, err := f.ToRESTConfig()
	if err != nil {
		return nil, kubeconfigError(f, err)
	}
	if raw, err := cc.RawConfig(); err == nil && len(raw.Clusters) == 0 && str(f.APIServer) == "" && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		// Like kubectl, client-go would fall back to http://localhost:8080.
		return nil, kubeconfigError(f, clientcmd.ErrEmptyConfig)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, kubeconfigError(f, err)
	}
	if ns == "" {
		ns = "default"
	}
	user := str(f.AuthInfoName)
	if raw, err := cc.RawConfig(); err == nil && user == "" {
		name := raw.CurrentContext
		if c := str(f.Context); c != "" {
			name = c
		}
		if c := raw.Contexts[name]; c != nil {
			user = c.AuthInfo
		}
	}
	cfg.UserAgent = "kubectl-modelrollout/" + version()
	c, err := newRESTClient(cfg)
	if err != nil {
		return nil, &Error{Code: 1, Msg: fmt.Sprintf("cannot create a client for %s: %v", cfg.Host, err)}
	}
	cl := &Cluster{Client: c, Namespace: ns, Host: cfg.Host, User: user, As: cfg.Impersonate.UserName, Impersonating: impersonating(cfg.Impersonate), RequestTimeout: str(f.Timeout)}
	if cl.RequestTimeout == "0" {
		cl.RequestTimeout = ""
	}
	if cl.Impersonating != "" {
		if err := checkImpersonation(cfg, cl); err != nil {
			return nil, err
		}
	}
	return cl, nil
}

// checkImpersonation asks the API server who the flags make us, so that
// impersonation refused by RBAC is reported as such, not as whatever the
// command's first request makes of it. Other failures are left to the
// command, which reports them in its own terms.
func checkImpersonation(cfg *rest.Config, cl *Cluster) error {
	rc := rest.CopyConfig(cfg)
	rc.NegotiatedSerializer = serializer.NewCodecFactory(Scheme).WithoutConversion()
	client, err := rest.UnversionedRESTClientFor(rc)
	if err != nil {
		return nil
	}
	timeout := 30 * time.Second
	if cfg.Timeout > 0 {
		timeout = cfg.Timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err = client.Post().AbsPath("/apis/authentication.k8s.io/v1/selfsubjectreviews").
		SetHeader("Content-Type", "application/json").
		Body([]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)).
		Do(ctx).Error()
	if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "cannot impersonate") {
		return (&Plugin{Host: cl.Host, Impersonating: cl.Impersonating}).apiError(err, "", "")
	}
	return nil
}

// impersonating describes who --as and --as-group act as.
func impersonating(im rest.ImpersonationConfig) string {
	var parts, flags []string
	if im.UserName != "" {
		parts = append(parts, fmt.Sprintf("user %q", im.UserName))
		flags = append(flags, "--as")
	}
	if len(im.Groups) > 0 {
		q := make([]string, len(im.Groups))
		for i, g := range im.Groups {
			q[i] = strconv.Quote(g)
		}
		parts = append(parts, "group "+strings.Join(q, ", "))
		flags = append(flags, "--as-group")
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, " in ") + " (" + strings.Join(flags, ", ") + ")"
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// kubeconfigError says which kubeconfig could not be used and why.
func kubeconfigError(f KubeFlags, err error) error {
	where := "~/.kube/config"
	kubeconfig := str(f.KubeConfig)
	switch {
	case kubeconfig != "":
		where = kubeconfig + " (--kubeconfig)"
	case os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
		where = os.Getenv(clientcmd.RecommendedConfigPathEnvVar) + " (KUBECONFIG)"
	}
	if clientcmd.IsEmptyConfig(err) {
		problem := "has no cluster to talk to"
		if kubeconfig == "" && !anyExists(os.Getenv(clientcmd.RecommendedConfigPathEnvVar)) {
			problem = "does not exist"
		}
		return &Error{Code: 1, Msg: fmt.Sprintf("no usable kubeconfig: %s %s; "+
			"pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, or pass --server with credentials", where, problem)}
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
	case apierrors.IsForbidden(err) && p.Impersonating != "" && strings.Contains(err.Error(), "cannot impersonate"):
		return failf("the API server at %s does not let you act as %s: %v; "+
			"acting as someone else needs the \"impersonate\" verb on users (and groups, for --as-group) in a role bound to you",
			p.host(), p.Impersonating, statusMessage(err))
	case apierrors.IsUnauthorized(err):
		return failf("the API server at %s did not accept your credentials (Unauthorized); "+
			"check --token, --user, --client-certificate or the kubeconfig", p.host())
	case apierrors.IsForbidden(err):
		return failf("%v", err)
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return failf("%v", err)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if p.RequestTimeout != "" && (errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "deadline exceeded") || strings.Contains(err.Error(), "Timeout exceeded")) {
		return failf("the Kubernetes API server at %s did not answer within --request-timeout %s: %v", p.host(), p.RequestTimeout, err)
	}
	return failf("cannot reach the Kubernetes API server at %s: %v", p.host(), err)
}

func (p *Plugin) host() string {
	if p.Host == "" {
		return "the API server"
	}
	return p.Host
}

// statusMessage is the API server's message of a status error.
func statusMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Message != "" {
		return status.Status().Message
	}
	return err.Error()
}

// isNoAPI recognises discovery failing because the group is not served.
func isNoAPI(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "the server could not find the requested resource") && strings.Contains(msg, rolloutsv1.GroupVersion.Group)
}
