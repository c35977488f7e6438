package vllmsim

import (
	"testing"
	"time"
)

func TestPacerSchedules(t *testing.T) {
	s := New(Config{Seed: 1})
	ms := time.Millisecond

	// Streaming (and non-streaming without Latency): TTFT, then one ITL per token.
	cfg := Config{TTFT: 50 * ms, InterTokenLatency: 10 * ms, Latency: time.Hour}
	p := s.newPacer(cfg, 4, true)
	for i, want := range []time.Duration{50 * ms, 60 * ms, 70 * ms, 80 * ms} {
		if got := p.next(i); got != want {
			t.Fatalf("stream token %d at %s, want %s", i, got, want)
		}
	}

	// Non-streaming with Latency: first token at TTFT, last at Latency.
	cfg = Config{TTFT: 10 * ms, InterTokenLatency: time.Hour, Latency: 100 * ms}
	p = s.newPacer(cfg, 4, false)
	for i, want := range []time.Duration{10 * ms, 40 * ms, 70 * ms, 100 * ms} {
		if got := p.next(i); got != want {
			t.Fatalf("fixed token %d at %s, want %s", i, got, want)
		}
	}
	if got := s.newPacer(cfg, 1, false).next(0); got != 100*ms {
		t.Fatalf("single token at %s, want the full latency", got)
	}
	cfg.TTFT = time.Second // TTFT beyond Latency is capped
	if got := s.newPacer(cfg, 3, false).next(0); got != 100*ms {
		t.Fatalf("capped first token at %s", got)
	}

	// Latency 0 derives the same time a stream takes.
	if got := (Config{TTFT: 50 * ms, InterTokenLatency: 10 * ms}).nonStreamLatency(16); got != 200*ms {
		t.Fatalf("derived latency %s, want 200ms", got)
	}
}

func TestJitterBoundsAndSeed(t *testing.T) {
	draw := func(seed int64) []time.Duration {
		s := New(Config{Seed: seed})
		out := make([]time.Duration, 1000)
		for i := range out {
			out[i] = s.jitter(time.Second, 0.2)
		}
		return out
	}
	a, b := draw(7), draw(7)
	var lo, hi bool
	for i, d := range a {
		if d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("jittered %s outside [0.8s, 1.2s]", d)
		}
		if d != b[i] {
			t.Fatal("same seed, different jitter")
		}
		lo = lo || d < 900*time.Millisecond
		hi = hi || d > 1100*time.Millisecond
	}
	if !lo || !hi {
		t.Fatal("jitter does not spread over its range")
	}
	if s := New(Config{}); s.jitter(time.Second, 0) != time.Second {
		t.Fatal("zero jitter changed a delay")
	}
}
