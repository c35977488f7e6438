package gateway_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/modelrollout/modelrollout/test/gateway"
)

// weightedRule builds a one-rule table whose backends b0, b1, ... have the
// given weights (-1 leaves the weight unset).
func weightedRule(t *testing.T, weights ...int) *gateway.Rule {
	t.Helper()
	doc := "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: split, namespace: ns}\nspec:\n  rules:\n  - backendRefs:\n"
	for i, w := range weights {
		if w < 0 {
			doc += fmt.Sprintf("    - {name: b%d, port: 80}\n", i)
		} else {
			doc += fmt.Sprintf("    - {name: b%d, port: 80, weight: %d}\n", i, w)
		}
	}
	rules := gateway.BuildTable(decodeRoutes(t, doc), fakeResolver(nil)).Rules()
	if len(rules) != 1 {
		t.Fatalf("want 1 rule, got %d", len(rules))
	}
	return rules[0]
}

// pickCounts picks n times with a fixed seed and counts picks per backend
// name ("" for nil).
func pickCounts(r *gateway.Rule, n int) map[string]int {
	rng := rand.New(rand.NewPCG(20260101, 42)) // fixed seed: reproducible
	counts := map[string]int{}
	for range n {
		if b := r.Pick(rng); b != nil {
			counts[b.Name]++
		} else {
			counts[""]++
		}
	}
	return counts
}

// TestWeightedSplitFollowsWeights checks the split statistically.
//
// Each pick is a Bernoulli trial, so the number of picks of a backend with
// share p over N picks is Binomial(N, p): mean N·p, standard deviation
// sqrt(N·p·(1−p)). The tolerance is 5 standard deviations; for any seed the
// chance of a correct picker falling outside it is about 6e-7 (two-sided
// normal tail), and with the fixed seed the result is deterministic, so the
// test cannot flake. With N = 100000: 70/30 → σ ≈ 144.9, tolerance ±725
// picks (±0.72 %); 90/10 → σ ≈ 94.9, tolerance ±474 picks; 50/50 → σ = 158.
// A picker that ignored the weights (50/50) would miss 70/30 by 20000 picks.
func TestWeightedSplitFollowsWeights(t *testing.T) {
	const n = 100000
	for _, tc := range []struct {
		name    string
		weights []int
		shares  []float64
	}{
		{"70/30", []int{70, 30}, []float64{0.7, 0.3}},
		{"90/10", []int{90, 10}, []float64{0.9, 0.1}},
		{"7/3 (weights are not percentages)", []int{7, 3}, []float64{0.7, 0.3}},
		{"0/100", []int{0, 100}, []float64{0, 1}},
		{"100/0", []int{100, 0}, []float64{1, 0}},
		{"default weights 1/1", []int{-1, -1}, []float64{0.5, 0.5}},
		{"1/2/0/1", []int{1, 2, 0, 1}, []float64{0.25, 0.5, 0, 0.25}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			counts := pickCounts(weightedRule(t, tc.weights...), n)
			for i, p := range tc.shares {
				name := fmt.Sprintf("b%d", i)
				mean := n * p
				tol := 5 * math.Sqrt(n*p*(1-p)) // 0 when p is 0 or 1: exact
				if got := float64(counts[name]); math.Abs(got-mean) > tol {
					t.Errorf("%s: %v picks, want %v ± %.0f (5σ)", name, got, mean, tol)
				}
			}
			if counts[""] != 0 {
				t.Errorf("%d nil picks", counts[""])
			}
		})
	}
}

func TestWeightZeroNeverPicked(t *testing.T) {
	r := weightedRule(t, 0, 1, 0)
	for name, c := range pickCounts(r, 10000) {
		if name != "b1" {
			t.Errorf("%q picked %d times", name, c)
		}
	}
	// The global source (used when serving) obeys the same rule.
	for range 1000 {
		if b := r.Pick(nil); b == nil || b.Name != "b1" {
			t.Fatalf("picked %v", b)
		}
	}
}

func TestDefaultWeightIsOne(t *testing.T) {
	r := weightedRule(t, -1, 1, 2)
	for i, want := range []int32{1, 1, 2} {
		if got := r.Backends[i].Weight; got != want {
			t.Errorf("backend %d weight %d, want %d", i, got, want)
		}
	}
}

func TestAllWeightsZeroPicksNothing(t *testing.T) {
	if b := weightedRule(t, 0, 0).Pick(nil); b != nil {
		t.Fatalf("picked %s", b.Name)
	}
	if b := weightedRule(t).Pick(nil); b != nil {
		t.Fatalf("rule without backendRefs picked %s", b.Name)
	}
}
