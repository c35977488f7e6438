package redact

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestScrubForms(t *testing.T) {
	const tok = `s3cr3t-t0ken/with+odd"chars<&>`
	s := New(tok)
	j, _ := json.Marshal(map[string]string{"authorization": "Bearer " + tok})
	for _, in := range []string{
		"got " + tok,
		"got " + base64.StdEncoding.EncodeToString([]byte(tok)),
		"got " + url.QueryEscape(tok),
		"got " + url.PathEscape(tok),
		fmt.Sprintf("got %q", tok),
		string(j),
	} {
		out := s.String(in)
		if strings.Contains(out, "s3cr3t") || strings.Contains(out, base64.StdEncoding.EncodeToString([]byte(tok))[:12]) {
			t.Errorf("%q scrubbed to %q", in, out)
		}
		if !strings.Contains(out, Mark) {
			t.Errorf("%q: no mark in %q", in, out)
		}
	}
}

func TestScrubBasic(t *testing.T) {
	s := New()
	s.AddBasic("alice", "pa55word!")
	b64 := base64.StdEncoding.EncodeToString([]byte("alice:pa55word!"))
	out := s.String("401: Authorization: Basic " + b64 + " (password pa55word!)")
	if strings.Contains(out, b64) || strings.Contains(out, "pa55word") {
		t.Fatalf("not scrubbed: %q", out)
	}
	if !strings.Contains(out, "Authorization: Basic "+Mark) {
		t.Fatalf("got %q", out)
	}
}

func TestScrubURLs(t *testing.T) {
	var s *Scrubber // nil still scrubs URLs and bearer tokens
	for in, want := range map[string]string{
		`Get "https://bob:hunter2@eval.ml:8443/score?api_key=abc&x=1#frag": EOF`: `Get "https://eval.ml:8443/score?[redacted]": EOF`,
		`dial http://user:***@10.0.0.1/path failed`:                              `dial http://10.0.0.1/path failed`,
		`see https://host/path`:                                                  `see https://host/path`,
		`Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y`:                         `Authorization: Bearer [redacted]`,
		`use a bearer token`:                                                     `use a bearer token`,
	} {
		if got := s.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScrubURLSecrets(t *testing.T) {
	s := New()
	s.AddURL("https://u:pw-from-url@h/x?token=qwertyuiop123&format=json")
	out := s.String("echo: token qwertyuiop123, pw pw-from-url, basic " + base64.StdEncoding.EncodeToString([]byte("u:pw-from-url")) + ", format json")
	for _, bad := range []string{"qwertyuiop123", "pw-from-url", base64.StdEncoding.EncodeToString([]byte("u:pw-from-url"))} {
		if strings.Contains(out, bad) {
			t.Errorf("%q left in %q", bad, out)
		}
	}
	if !strings.Contains(out, "format json") {
		t.Errorf("short query value scrubbed: %q", out)
	}
}

func TestScrubError(t *testing.T) {
	base := errors.New("base")
	err := fmt.Errorf("%w: token tok-123456789", base)
	got := New("tok-123456789").Error(err)
	if strings.Contains(got.Error(), "tok-123456789") || !errors.Is(got, base) {
		t.Fatalf("got %v (is base: %v)", got, errors.Is(got, base))
	}
	if New("x").Error(nil) != nil {
		t.Fatal("nil error not nil")
	}
}

func TestLongestFirst(t *testing.T) {
	s := New("abc", "abcdef")
	if got := s.String("xabcdefx"); got != "x"+Mark+"x" {
		t.Fatalf("got %q", got)
	}
}
