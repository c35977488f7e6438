package plugin_test

// kubectl's connection flags, output formats and shell completion, run
// through the built binary against the test API server with RBAC on.

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// flagsFixture is what the flag tests share: a kubeconfig with an admin
// context (namespace ai-gateway), a viewer context (namespace team-c) and a
// cluster nobody listens on, plus a service account token.
type flagsFixture struct {
	kubeconfig string
	server     string
	caFile     string
	botToken   string
}

const flagsNS = "team-c"

func setupFlags(t *testing.T, g *WithT, env *envtest.Environment, cfg *rest.Config, c client.Client, admin *clientcmdapi.Config, tmp string) *flagsFixture {
	ctx := context.Background()
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: flagsNS}})).To(Succeed())
	llama := newRollout(flagsNS, "llama")
	llama.Spec.Stable.Name, llama.Spec.Canary.Name = "vllm-llama-v1", "vllm-llama-v2"
	g.Expect(c.Create(ctx, llama)).To(Succeed())
	(&e2e{t: t, g: g, c: c}).setStatus(flagsNS, "llama", progressingStatus)

	// The plugin's scheme has no RBAC types; client-go's has.
	builtin, err := client.New(cfg, client.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	// RBAC in team-c: the user viewer and the service account bot may read
	// rollouts; the group rollout-editors may also annotate them.
	rule := func(verbs ...string) []rbacv1.PolicyRule {
		return []rbacv1.PolicyRule{{APIGroups: []string{rolloutsv1.GroupVersion.Group}, Resources: []string{"modelrollouts"}, Verbs: verbs}}
	}
	for _, o := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: flagsNS, Name: "rollout-viewer"}, Rules: rule("get", "list", "watch")},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: flagsNS, Name: "rollout-editor"}, Rules: rule("get", "list", "watch", "patch")},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: flagsNS, Name: "bot"}},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: flagsNS, Name: "rollout-viewers"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "rollout-viewer"},
			Subjects: []rbacv1.Subject{
				{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "viewer"},
				{Kind: rbacv1.ServiceAccountKind, Namespace: flagsNS, Name: "bot"},
			},
		},
		// dave, impersonated outside system:authenticated, may not read
		// discovery (only authenticated users may by default): the plugin
		// makes no discovery calls.
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: flagsNS, Name: "rollout-editors"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "rollout-editor"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "rollout-editors"}},
		},
	} {
		g.Expect(builtin.Create(ctx, o)).To(Succeed())
	}

	cs, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(flagsNS).CreateToken(ctx, "bot",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	viewer, err := env.AddUser(envtest.User{Name: "viewer"}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	vkc, err := viewer.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	vraw, err := clientcmd.Load(vkc)
	g.Expect(err).NotTo(HaveOccurred())

	multi := admin.DeepCopy()
	cur := multi.Contexts[multi.CurrentContext]
	cluster := multi.Clusters[cur.Cluster]
	multi.AuthInfos["viewer"] = vraw.AuthInfos[vraw.Contexts[vraw.CurrentContext].AuthInfo]
	multi.Contexts["viewer"] = &clientcmdapi.Context{Cluster: cur.Cluster, AuthInfo: "viewer", Namespace: flagsNS}
	nowhere := cluster.DeepCopy()
	nowhere.Server = "https://127.0.0.1:1"
	multi.Clusters["nowhere"] = nowhere
	path := filepath.Join(tmp, "multi-kubeconfig")
	g.Expect(clientcmd.WriteToFile(*multi, path)).To(Succeed())

	ca := filepath.Join(tmp, "ca.crt")
	g.Expect(os.WriteFile(ca, cluster.CertificateAuthorityData, 0o600)).To(Succeed())
	return &flagsFixture{kubeconfig: path, server: cluster.Server, caFile: ca, botToken: tr.Status.Token}
}

// blackhole accepts connections and never answers, like an API server that
// hangs.
func blackhole(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

// subtest runs fn as a subtest with its own e and g.
type subtest func(name string, fn func(e *e2e, g *WithT))

// withKubeconfig is e with KUBECONFIG set to path.
func withKubeconfig(e *e2e, path string) *e2e {
	c := *e
	c.kubeconfig = path
	return &c
}

func testFlags(run subtest, f *flagsFixture, tmp string) {
	run("--kubeconfig and --context", func(e *e2e, g *WithT) {
		// The viewer context's namespace is team-c and its user viewer.
		r := e.expect(0, "get", "--kubeconfig", f.kubeconfig, "--context", "viewer", "-o", "name")
		g.Expect(r.stdout).To(Equal("modelrollout.rollouts.modelrollout.io/llama\n"))
		r = e.expect(1, "get", "--kubeconfig", f.kubeconfig, "--context", "viewer", "-n", "ai-gateway")
		g.Expect(r.stderr).To(Equal(`Error: modelrollouts.rollouts.modelrollout.io is forbidden: User "viewer" cannot list resource "modelrollouts" in API group "rollouts.modelrollout.io" in the namespace "ai-gateway"` + "\n"))
	})

	run("--user", func(e *e2e, g *WithT) {
		r := withKubeconfig(e, f.kubeconfig).expect(0, "get", "--user", "viewer", "-n", flagsNS, "-o", "jsonpath={.items[*].metadata.name}")
		g.Expect(r.stdout).To(Equal("llama"))
		r = withKubeconfig(e, f.kubeconfig).expect(1, "status", "gpt4", "--user", "viewer")
		g.Expect(r.stderr).To(ContainSubstring(`User "viewer" cannot get resource "modelrollouts"`))
	})

	run("--cluster and --server", func(e *e2e, g *WithT) {
		r := withKubeconfig(e, f.kubeconfig).expect(1, "get", "--cluster", "nowhere")
		g.Expect(r.stderr).To(HavePrefix("Error: cannot reach the Kubernetes API server at https://127.0.0.1:1: "))
		r = withKubeconfig(e, f.kubeconfig).expect(1, "get", "--server", "https://127.0.0.1:1")
		g.Expect(r.stderr).To(HavePrefix("Error: cannot reach the Kubernetes API server at https://127.0.0.1:1: "))
		r = withKubeconfig(e, f.kubeconfig).expect(1, "get", "-s", "https://127.0.0.1:1")
		g.Expect(r.stderr).To(HavePrefix("Error: cannot reach the Kubernetes API server at https://127.0.0.1:1: "))
	})

	run("--token with --server and --certificate-authority, no kubeconfig", func(e *e2e, g *WithT) {
		none := filepath.Join(tmp, "no-such-kubeconfig")
		r := withKubeconfig(e, none).expect(0, "get", "llama", "--server", f.server, "--certificate-authority", f.caFile, "--token", f.botToken, "-n", flagsNS)
		g.Expect(r.stdout).To(ContainSubstring("llama   model-header-routing   vllm-llama-v2   25       2/5    Progressing"))
		// The API server sees the service account.
		r = withKubeconfig(e, none).expect(1, "pause", "llama", "--server", f.server, "--insecure-skip-tls-verify", "--token", f.botToken, "-n", flagsNS)
		g.Expect(r.stderr).To(ContainSubstring(`User "system:serviceaccount:team-c:bot" cannot patch resource "modelrollouts"`))
		r = withKubeconfig(e, none).expect(1, "get", "--server", f.server, "--insecure-skip-tls-verify", "--token", "not-a-token", "-n", flagsNS)
		g.Expect(r.stderr).To(Equal("Error: the API server at " + f.server + " did not accept your credentials (Unauthorized); check --token, --user, --client-certificate or the kubeconfig\n"))
		// Without any server there is nothing to talk to.
		r = withKubeconfig(e, none).expect(1, "get")
		g.Expect(r.stderr).To(ContainSubstring("no usable kubeconfig"))
	})

	run("--as and --as-group", func(e *e2e, g *WithT) {
		// The admin acts as viewer: viewer's rights apply.
		r := withKubeconfig(e, f.kubeconfig).expect(0, "get", "--as", "viewer", "-n", flagsNS, "-o", "name")
		g.Expect(r.stdout).To(Equal("modelrollout.rollouts.modelrollout.io/llama\n"))
		r = withKubeconfig(e, f.kubeconfig).expect(1, "get", "--as", "viewer")
		g.Expect(r.stderr).To(ContainSubstring(`User "viewer" cannot list resource "modelrollouts"`))

		// carol may annotate only through the group rollout-editors.
		r = withKubeconfig(e, f.kubeconfig).expect(1, "pause", "llama", "-n", flagsNS, "--as", "carol")
		g.Expect(r.stderr).To(ContainSubstring(`User "carol" cannot get resource "modelrollouts"`))
		withKubeconfig(e, f.kubeconfig).expect(0, "abort", "llama", "-n", flagsNS, "--as", "carol", "--as-group", "rollout-editors", "--as-group", "system:authenticated")
		// The abort reason names whom the API server saw: the impersonated user.
		g.Expect(e.annotations(flagsNS, "llama")).To(HaveKeyWithValue(rolloutsv1.AnnotationAbortReason, "aborted by carol"))
	})

	run("requested-by when the SelfSubjectReview is refused", func(e *e2e, g *WithT) {
		// dave, impersonated outside system:authenticated, may annotate
		// rollouts in team-c but not review himself: system:basic-user,
		// which grants SelfSubjectReviews, is bound to system:authenticated.
		r := withKubeconfig(e, f.kubeconfig).expect(0, "promote", "llama", "-n", flagsNS, "--skip-gates", "--reason", "gate flaps",
			"--as", "dave", "--as-group", "system:unauthenticated", "--as-group", "rollout-editors")
		a := e.annotations(flagsNS, "llama")
		e.isToken(a[rolloutsv1.AnnotationSkipGates])
		g.Expect(a).To(HaveKeyWithValue(rolloutsv1.AnnotationRequestedBy, "dave"))
		g.Expect(r.stderr).To(HavePrefix(`note: the API server did not say who you are (SelfSubjectReview: `))
		g.Expect(r.stderr).To(ContainSubstring(`User "dave" cannot create resource "selfsubjectreviews"`))
		g.Expect(r.stderr).To(HaveSuffix(`); recording the --as user "dave" instead` + "\n"))
	})

	run("impersonation refused by RBAC", func(e *e2e, g *WithT) {
		r := withKubeconfig(e, f.kubeconfig).expect(1, "get", "--context", "viewer", "--as", "admin")
		// The server's own words sit between what was refused and what to
		// do about it; they name the impersonate verb it checked.
		g.Expect(r.stderr).To(HavePrefix(`Error: the API server at ` + f.server + ` does not let you act as user "admin" (--as): `))
		g.Expect(r.stderr).To(ContainSubstring(`User "viewer" cannot impersonate`))
		g.Expect(r.stderr).To(HaveSuffix(`; acting as someone else needs the "impersonate" verb on users (and groups, for --as-group) in a role bound to you` + "\n"))
		g.Expect(strings.Count(r.stderr, "\n")).To(Equal(1), "one line, no usage")
		r = withKubeconfig(e, f.kubeconfig).expect(1, "status", "llama", "--context", "viewer", "--as", "viewer", "--as-group", "system:masters")
		g.Expect(r.stderr).To(HavePrefix(`Error: the API server at ` + f.server + ` does not let you act as user "viewer" in group "system:masters" (--as, --as-group): `))
		g.Expect(r.stderr).To(ContainSubstring(`User "viewer" cannot impersonate`))
	})

	run("--request-timeout", func(e *e2e, g *WithT) {
		hang := "https://" + blackhole(e.t)
		r := withKubeconfig(e, f.kubeconfig).expect(1, "get", "--server", hang, "--insecure-skip-tls-verify", "--request-timeout", "1s")
		g.Expect(r.stderr).To(HavePrefix("Error: the Kubernetes API server at " + hang + " did not answer within --request-timeout 1s: "))
		r = withKubeconfig(e, f.kubeconfig).expect(2, "get", "--request-timeout", "soon")
		g.Expect(r.stderr).To(HavePrefix(`Error: invalid --request-timeout "soon": use a duration with a unit, e.g. 30s or 2m (0 waits forever)`))
		withKubeconfig(e, f.kubeconfig).expect(0, "get", "--request-timeout", "30s")
	})

	run("-n and -A", func(e *e2e, g *WithT) {
		r := withKubeconfig(e, f.kubeconfig).expect(0, "get", "-n", flagsNS, "--no-headers")
		g.Expect(r.stdout).To(HavePrefix("llama "))
		r = withKubeconfig(e, f.kubeconfig).expect(0, "get", "-A", "-o", "custom-columns=NS:.metadata.namespace,NAME:.metadata.name")
		g.Expect(r.stdout).To(ContainSubstring("ai-gateway   gpt4\n"))
		g.Expect(r.stdout).To(ContainSubstring("team-c       llama\n"))
	})
}

func testOutputAndCompletion(run subtest, tmp, context string) {
	run("output formats", func(e *e2e, g *WithT) {
		r := e.expect(0, "get", "gpt4", "-o", "yaml")
		g.Expect(r.stdout).To(HavePrefix("apiVersion: rollouts.modelrollout.io/v1alpha1\nkind: ModelRollout\n"))
		g.Expect(r.stdout).NotTo(ContainSubstring("managedFields"))
		r = e.expect(0, "get", "-o", "json")
		g.Expect(r.stdout).To(ContainSubstring(`"kind": "List"`))
		g.Expect(r.stdout).To(ContainSubstring(`"name": "gpt4"`))
		r = e.expect(0, "get", "gpt4", "-o", "jsonpath={.status.phase} {.status.canaryWeight}")
		g.Expect(r.stdout).To(MatchRegexp(`^[A-Za-z]+ \d+$`))
		r = e.expect(0, "get", "-o", "wide")
		g.Expect(r.stdout).To(HavePrefix("NAME   ROUTE                  CANARY         WEIGHT   STEP   PHASE"))
		g.Expect(r.stdout).To(ContainSubstring("STABLE         MESSAGE\n"))
		g.Expect(r.stdout).To(ContainSubstring("vllm-gpt4-v1   "))
		e.expect(2, "get", "-o", "xml")
	})

	run("completion of rollout names from the cluster", func(e *e2e, g *WithT) {
		r := e.expect(0, "__complete", "status", "")
		g.Expect(r.stdout).To(HavePrefix("gpt4\t"))
		g.Expect(r.stdout).To(HaveSuffix(":4\n"))
		r = e.expect(0, "__complete", "promote", "-n", "team-b", "")
		g.Expect(r.stdout).To(HavePrefix("mixtral\t"))
		r = e.expect(0, "__complete", "get", "--context", "")
		g.Expect(strings.Split(r.stdout, "\n")).To(ContainElement(context))
		r = e.expect(0, "__complete", "status", "-n", "team-")
		g.Expect(strings.Split(r.stdout, "\n")).To(ContainElements("team-b", "team-c"))
		for _, shell := range []string{"bash", "zsh", "fish"} {
			r = e.expect(0, "completion", shell)
			g.Expect(r.stdout).To(ContainSubstring("__complete"))
		}
	})

	run("completion through kubectl", func(e *e2e, g *WithT) {
		kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
		if _, err := os.Stat(kubectl); err != nil {
			e.t.Skipf("no kubectl in KUBEBUILDER_ASSETS: %v", err)
		}
		// kubectl runs kubectl_complete-modelrollout from PATH: the shipped
		// script in one setup, a link to the plugin in the other.
		script, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "kubectl-modelrollout", "kubectl_complete-modelrollout"))
		g.Expect(err).NotTo(HaveOccurred())
		withScript, withLink := filepath.Join(tmp, "with-script"), filepath.Join(tmp, "with-link")
		for _, dir := range []string{withScript, withLink} {
			g.Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
			g.Expect(os.Symlink(e.bin, filepath.Join(dir, "kubectl-modelrollout"))).To(Succeed())
		}
		g.Expect(os.WriteFile(filepath.Join(withScript, "kubectl_complete-modelrollout"), script, 0o755)).To(Succeed())
		g.Expect(os.Symlink(e.bin, filepath.Join(withLink, "kubectl_complete-modelrollout"))).To(Succeed())
		for _, dir := range []string{withScript, withLink} {
			cmd := exec.Command(kubectl, "__complete", "modelrollout", "abort", "-n", "team-b", "")
			cmd.Env = []string{"PATH=" + dir + string(os.PathListSeparator) + "/usr/bin:/bin", "HOME=" + e.home, "KUBECONFIG=" + e.kubeconfig}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			e.t.Logf("$ kubectl __complete modelrollout abort -n team-b ''   # %s\n%s%s", filepath.Base(dir), out, stderr.String())
			g.Expect(err).NotTo(HaveOccurred(), "%s%s", out, stderr.String())
			g.Expect(string(out)).To(HavePrefix("mixtral\t"))
		}
	})
}
