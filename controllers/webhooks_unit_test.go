package controllers

import (
	"testing"
)

// From plan_webhooks_test.go.

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://hook.svc/run?token=abc":        "http://hook.svc/run?[redacted]",
		"https://user:pw@hook.svc/x#frag":      "https://hook.svc/x",
		"http://hook.svc:8080/plain":           "http://hook.svc:8080/plain",
		"http://hook.svc/a?next=http://b@c.de": "http://hook.svc/a?[redacted]",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
