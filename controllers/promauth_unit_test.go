package controllers

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/modelrollout/modelrollout/analysis"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// TestClientConfigFromSecret covers the mapping from spec and Secret keys to
// the client settings, and each problem's message. The envtest specs in
// promauth_test.go run the same code against the real API server.
func TestClientConfigFromSecret(t *testing.T) {
	src := func(edit func(*rolloutsv1.PrometheusSource)) *rolloutsv1.PrometheusSource {
		s := &rolloutsv1.PrometheusSource{Address: "https://prom:9090", AuthSecretRef: &rolloutsv1.LocalObjectReference{Name: "auth"}}
		edit(s)
		return s
	}
	tests := []struct {
		name    string
		src     *rolloutsv1.PrometheusSource
		data    map[string][]byte
		ambient bool
		want    func(analysis.ClientConfig) bool
		problem string
	}{
		{
			name: "headers, plain and from the Secret",
			src: src(func(s *rolloutsv1.PrometheusSource) {
				s.Headers = []rolloutsv1.PrometheusHeader{{Name: "X-Scope-OrgID", Value: ptr.To("team-a")}, {Name: "X-Api-Key", SecretKey: "api-key"}}
			}),
			data: map[string][]byte{"api-key": []byte("k3y\n")},
			want: func(c analysis.ClientConfig) bool {
				return len(c.Headers) == 2 && c.Headers[0] == analysis.Header{Name: "X-Scope-OrgID", Value: "team-a"} &&
					c.Headers[1] == analysis.Header{Name: "X-Api-Key", Value: "k3y", Secret: true}
			},
		},
		{
			name: "oauth2",
			src: src(func(s *rolloutsv1.PrometheusSource) {
				s.OAuth2 = &rolloutsv1.PrometheusOAuth2{ClientID: "c", TokenURL: "https://login/token", Scopes: []string{"a"}}
			}),
			data: map[string][]byte{"client_secret": []byte("s\n"), "ca.crt": nil},
			want: func(c analysis.ClientConfig) bool {
				return c.OAuth2 != nil && c.OAuth2.ClientID == "c" && c.OAuth2.ClientSecret == "s" && c.OAuth2.TokenURL == "https://login/token"
			},
		},
		{
			name: "sigv4 with static keys",
			src: src(func(s *rolloutsv1.PrometheusSource) {
				s.SigV4 = &rolloutsv1.PrometheusSigV4{Region: "eu-west-1", RoleARN: "arn:aws:iam::123456789012:role/r"}
			}),
			data: map[string][]byte{"access_key": []byte("AKID"), "secret_key": []byte("SECRET")},
			want: func(c analysis.ClientConfig) bool {
				return c.SigV4 != nil && *c.SigV4 == analysis.SigV4{Region: "eu-west-1", AccessKey: "AKID", SecretKey: "SECRET", RoleARN: "arn:aws:iam::123456789012:role/r"}
			},
		},
		{
			name: "sigv4 with the operator's identity, allowed",
			src: src(func(s *rolloutsv1.PrometheusSource) {
				s.SigV4 = &rolloutsv1.PrometheusSigV4{Region: "eu-west-1"}
				s.AuthSecretRef = nil
			}),
			ambient: true,
			want:    func(c analysis.ClientConfig) bool { return c.SigV4 != nil && c.SigV4.AccessKey == "" },
		},
		{
			name: "sigv4 with the operator's identity, not allowed",
			src: src(func(s *rolloutsv1.PrometheusSource) {
				s.SigV4 = &rolloutsv1.PrometheusSigV4{Region: "eu-west-1"}
				s.AuthSecretRef = nil
			}),
			problem: "sigv4 has no AWS access key: set spec.analysis.prometheus.authSecretRef",
		},
		{
			name:    "sigv4 with half a key",
			src:     src(func(s *rolloutsv1.PrometheusSource) { s.SigV4 = &rolloutsv1.PrometheusSigV4{Region: "eu-west-1"} }),
			data:    map[string][]byte{"access_key": []byte("AKID")},
			problem: `Prometheus auth Secret auth has "access_key" but no "secret_key"`,
		},
		{
			name:    "sigv4 next to basic auth",
			src:     src(func(s *rolloutsv1.PrometheusSource) { s.SigV4 = &rolloutsv1.PrometheusSigV4{Region: "eu-west-1"} }),
			data:    map[string][]byte{"access_key": []byte("AKID"), "secret_key": []byte("S"), "username": []byte("u")},
			problem: `has "username" but spec.analysis.prometheus sets sigv4`,
		},
		{
			name:    "a key without its certificate",
			src:     src(func(*rolloutsv1.PrometheusSource) {}),
			data:    map[string][]byte{"tls.key": []byte("k")},
			problem: `has "tls.key" but no "tls.crt"`,
		},
		{
			name:    "a Secret with nothing the spec uses",
			src:     src(func(*rolloutsv1.PrometheusSource) {}),
			data:    map[string][]byte{"other": []byte("x")},
			problem: `has none of the keys "token", "username" and "password", "ca.crt", or "tls.crt" and "tls.key"`,
		},
		{
			name:    "a CA that is not PEM",
			src:     src(func(*rolloutsv1.PrometheusSource) {}),
			data:    map[string][]byte{"ca.crt": []byte("x")},
			problem: "Prometheus auth Secret auth: prometheus CA bundle: no PEM certificate found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ro := &rolloutsv1.ModelRollout{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"},
				Spec: rolloutsv1.ModelRolloutSpec{Analysis: &rolloutsv1.Analysis{Prometheus: tt.src}}}
			secrets := fake.NewClientBuilder().WithObjects(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "auth", Namespace: "ns"}, Data: tt.data}).Build()
			g := &PrometheusGates{Secrets: secrets, AmbientAWSCredentials: tt.ambient}
			cfg, p, err := g.clientConfig(context.Background(), ro)
			if err != nil {
				t.Fatal(err)
			}
			if tt.problem != "" {
				if p == nil || p.Reason != rolloutsv1.ReasonInvalidConfig || !strings.Contains(p.Message, tt.problem) {
					t.Fatalf("problem %+v, want InvalidConfig with %q", p, tt.problem)
				}
				return
			}
			if p != nil {
				t.Fatalf("unexpected problem: %s", p.Message)
			}
			if !tt.want(cfg) {
				t.Errorf("config %+v", cfg)
			}
		})
	}
}
