package plugin

import (
	"context"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// withReview makes the harness's API server answer SelfSubjectReviews:
// with the user name, or, when it is empty, with Forbidden.
func withReview(h *harness, user string) *harness {
	h.c = interceptor.NewClient(h.c, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			ssr, ok := obj.(*authenticationv1.SelfSubjectReview)
			if !ok {
				return c.Create(ctx, obj, opts...)
			}
			if user == "" {
				return apierrors.NewForbidden(schema.GroupResource{Group: "authentication.k8s.io", Resource: "selfsubjectreviews"}, "",
					errString(`User "dave" cannot create resource "selfsubjectreviews"`))
			}
			ssr.Status.UserInfo.Username = user
			return nil
		},
	})
	return h
}

type errString string

func (e errString) Error() string { return string(e) }

func TestPromoteOverrides(t *testing.T) {
	tok := now.Format(time.RFC3339Nano)
	for _, tt := range []struct {
		flag, key string
	}{
		{"--full", rolloutsv1.AnnotationPromoteFull},
		{"--skip-gates", rolloutsv1.AnnotationSkipGates},
	} {
		h := withReview(newHarness(t, progressing()), "alice@example.com")
		h.expect(0, "promote", "gpt4", "-n", "ai-gateway", tt.flag, "--reason", "  eval harness checked v2  ")
		a := h.get("gpt4").Annotations
		for k, want := range map[string]string{
			tt.key:                             tok,
			rolloutsv1.AnnotationPromoteReason: "eval harness checked v2",
			rolloutsv1.AnnotationRequestedBy:   "alice@example.com",
		} {
			if a[k] != want {
				t.Errorf("%s: annotation %s = %q, want %q", tt.flag, k, a[k], want)
			}
		}
		if _, ok := a[rolloutsv1.AnnotationPromote]; ok {
			t.Errorf("%s also wrote the plain promote annotation", tt.flag)
		}
		assertContains(t, h.stdout.String(), []string{`at step 2/5 by alice@example.com: "eval harness checked v2" (` + tt.key + "=" + tok + ")"})
		if h.stderr.String() != "" {
			t.Errorf("%s: unexpected stderr %q", tt.flag, h.stderr)
		}
	}
}

func TestPromoteOverrideFallsBackWhenTheReviewIsRefused(t *testing.T) {
	h := withReview(newHarness(t, progressing()), "")
	h.user = "kube-admin"
	h.expect(0, "promote", "gpt4", "-n", "ai-gateway", "--skip-gates", "--reason", "x")
	if got := h.get("gpt4").Annotations[rolloutsv1.AnnotationRequestedBy]; got != "kube-admin" {
		t.Errorf("requested-by = %q, want the kubeconfig user", got)
	}
	assertContains(t, h.stderr.String(), []string{`note: the API server did not say who you are (SelfSubjectReview: selfsubjectreviews.authentication.k8s.io is forbidden: User "dave" cannot create resource "selfsubjectreviews"); recording the kubeconfig user name "kube-admin" instead` + "\n"})
}

func TestPromoteOverrideRefused(t *testing.T) {
	pausedByAnnotation := progressing()
	pausedByAnnotation.Annotations = map[string]string{rolloutsv1.AnnotationPaused: "true"}
	pausedBySpec := progressing()
	pausedBySpec.Spec.Paused = true
	last := progressing()
	last.Status.CurrentStepIndex, last.Status.Step, last.Status.CanaryWeight = i32(4), "5/5", 100
	for _, tt := range []struct {
		ro   *rolloutsv1.ModelRollout
		flag string
		want string
	}{
		{rolledBack(), "--skip-gates", "gpt4 is RolledBack; only a Progressing or Paused rollout can be overridden (to start again at step 1: kubectl modelrollout retry gpt4 -n ai-gateway)"},
		{succeeded(), "--full", "gpt4 is Succeeded; only a Progressing or Paused rollout can be overridden"},
		{waiting(), "--full", "gpt4 is Waiting; only a Progressing or Paused rollout can be overridden"},
		{pausedByAnnotation, "--full", "gpt4 is paused by the rollouts.modelrollout.io/paused annotation; an override does not lift a hold: resume it first (kubectl modelrollout resume gpt4 -n ai-gateway)"},
		{pausedBySpec, "--skip-gates", "gpt4 is paused by spec.paused; an override does not lift a hold: set spec.paused to false in Git first"},
		{last, "--full", "gpt4 is already at the last step 5/5 (100%); promote ends its pause, promote --skip-gates passes over its gates"},
	} {
		h := withReview(newHarness(t, tt.ro), "alice")
		h.expect(1, "promote", "gpt4", "-n", "ai-gateway", tt.flag, "--reason", "x")
		if h.stderr.String() != "Error: "+tt.want+"\n" {
			t.Errorf("%s %s: stderr %q, want %q", tt.ro.Status.Phase, tt.flag, h.stderr, "Error: "+tt.want+"\n")
		}
		a := h.get("gpt4").Annotations
		for _, k := range []string{rolloutsv1.AnnotationPromoteFull, rolloutsv1.AnnotationSkipGates, rolloutsv1.AnnotationRequestedBy} {
			if _, ok := a[k]; ok {
				t.Errorf("%s %s: %s written on a refused override", tt.ro.Status.Phase, tt.flag, k)
			}
		}
	}
	// At the last step a skip of the gates is still possible.
	h := withReview(newHarness(t, last), "alice")
	h.expect(0, "promote", "gpt4", "-n", "ai-gateway", "--skip-gates", "--reason", "x")
}

func TestPromoteOverrideUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--full", "--skip-gates", "--reason", "x"}, "--full and --skip-gates cannot be combined"},
		{[]string{"--full"}, "an override needs --reason"},
		{[]string{"--skip-gates", "--reason", "  "}, "an override needs --reason"},
		{[]string{"--reason", "x"}, "--reason goes with --full or --skip-gates"},
	} {
		h := newHarness(t, progressing())
		h.expect(2, append([]string{"promote", "gpt4", "-n", "ai-gateway"}, tt.args...)...)
		assertContains(t, h.stderr.String(), []string{"Error: " + tt.want, "Usage:"})
		if len(h.get("gpt4").Annotations) != 0 {
			t.Errorf("%v: annotations written on a usage error", tt.args)
		}
	}
}

// --wait reports whether the controller (simulated here) applied the
// override or ignored it.
func TestPromoteOverrideWait(t *testing.T) {
	tok := now.Format(time.RFC3339Nano)
	for _, applied := range []bool{true, false} {
		h := withReview(newHarness(t, progressing()), "alice")
		h.stdout, h.stderr = &syncBuffer{}, &syncBuffer{}
		done := make(chan int)
		go func() {
			done <- h.runCtx(context.Background(), "promote", "gpt4", "-n", "ai-gateway", "--full", "--reason", "x", "--wait", "--timeout", "20s")
		}()
		deadline := time.After(15 * time.Second)
	loop:
		for n := 0; ; n++ {
			select {
			case code := <-done:
				if applied {
					if code != 0 {
						t.Fatalf("exit %d; stderr: %s", code, h.stderr)
					}
					assertContains(t, h.stdout.String(), []string{"gpt4 is Progressing, step 5/5", "applied: canary weight 25 -> 100 (step 5/5)\n"})
				} else {
					if code != 1 {
						t.Fatalf("exit %d for an ignored override; stdout: %s", code, h.stdout)
					}
					assertContains(t, h.stderr.String(), []string{"Error: the controller did not apply the full promote; the reason is in its Warning event: kubectl modelrollout status gpt4 -n ai-gateway\n"})
				}
				break loop
			case <-deadline:
				t.Fatalf("promote --full --wait did not return; stdout: %s stderr: %s", h.stdout, h.stderr)
			case <-time.After(20 * time.Millisecond):
			}
			ro := &rolloutsv1.ModelRollout{}
			if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: "ai-gateway", Name: "gpt4"}, ro); err != nil {
				t.Fatal(err)
			}
			if ro.Annotations[rolloutsv1.AnnotationPromoteFull] != tok {
				continue
			}
			ro.Status.LastHandledPromoteFull = tok
			ro.Status.ObservedGeneration = int64(n)
			if applied {
				ro.Status.Step, ro.Status.CanaryWeight, ro.Status.CurrentStepIndex = "5/5", 100, i32(4)
				ro.Status.Overrides = []rolloutsv1.OverrideRecord{{Kind: rolloutsv1.OverridePromoteFull, Token: tok, Message: "canary weight 25 -> 100 (step 5/5)"}}
			}
			if err := h.c.Status().Update(context.Background(), ro); err != nil && !strings.Contains(err.Error(), "modified") {
				t.Fatal(err)
			}
		}
	}
}
