package controllers

import (
	"context"
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// TestPrometheusThroughEgressByDefault: a rollout's Prometheus address (and
// its OAuth2 token URL, on the same dialer) goes through the egress policy
// unless the operator is told otherwise.
func TestPrometheusThroughEgressByDefault(t *testing.T) {
	ro := &rolloutsv1.ModelRollout{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"},
		Spec: rolloutsv1.ModelRolloutSpec{Analysis: &rolloutsv1.Analysis{
			Prometheus: &rolloutsv1.PrometheusSource{Address: "http://127.0.0.1:9090"}}}}
	g := &PrometheusGates{MaxPrometheusResponseBytes: 1 << 20}
	cfg, p, err := g.clientConfig(context.Background(), ro)
	if err != nil || p != nil {
		t.Fatalf("clientConfig: %v %v", p, err)
	}
	if cfg.MaxResponseBytes != 1<<20 {
		t.Errorf("MaxResponseBytes = %d", cfg.MaxResponseBytes)
	}
	if cfg.DialContext == nil {
		t.Fatal("the Prometheus client dials around the egress policy by default")
	}
	// Nothing is dialled: the policy refuses before connecting.
	for _, addr := range []string{"127.0.0.1:9090", "[fd00:ec2::254]:80", "169.254.169.254:80"} {
		if _, err := cfg.DialContext(context.Background(), "tcp", addr); !errors.Is(err, egress.ErrRefused) {
			t.Errorf("dial %s: %v, want a refusal", addr, err)
		}
	}
	off := &PrometheusGates{PrometheusEgressOff: true}
	if cfg, _, _ := off.clientConfig(context.Background(), ro); cfg.DialContext != nil {
		t.Error("--egress-prometheus=false still dials through the policy")
	}
}
