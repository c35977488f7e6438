package alerts

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

func TestAuth(t *testing.T) {
	c := fakeClient(nil, rollout("prod", "chat", rolloutsv1.PhaseProgressing, map[string]string{"model": "gpt-4"}))
	r := newTestReceiver(t, c, nil)
	body := mustJSON(t, payload(firing("fp", gpt4Labels)))
	for _, tc := range []struct {
		auth string
		code int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
		{"Bearer ", http.StatusUnauthorized},
		{"Basic " + testToken, http.StatusUnauthorized},
		{testToken, http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearer " + testToken + "x", http.StatusUnauthorized},
		{"Bearer " + testToken[:len(testToken)-1], http.StatusUnauthorized},
		{"Bearer " + strings.ToUpper(testToken), http.StatusUnauthorized},
		{"Bearer " + testToken, http.StatusOK},
		{"bearer " + testToken, http.StatusOK},
		{"BEARER  " + testToken + " ", http.StatusOK},
	} {
		rec := post(r, tc.auth, body)
		if rec.Code != tc.code {
			t.Errorf("Authorization %q: status %d, want %d", tc.auth, rec.Code, tc.code)
		}
		if tc.code == http.StatusUnauthorized {
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("Authorization %q: no WWW-Authenticate", tc.auth)
			}
			if got := getRollout(t, c, "prod", "chat").Annotations; len(got) != 0 {
				t.Fatalf("Authorization %q: patched %v", tc.auth, got)
			}
		}
	}
}

func TestAuthBeforeBody(t *testing.T) {
	// An unauthenticated client learns nothing about the body's validity.
	r := newTestReceiver(t, fakeClient(nil), func(o *Options) { o.MaxBodyBytes = 10 })
	for _, body := range []string{"not json", strings.Repeat("x", 100)} {
		if rec := post(r, "Bearer nope", []byte(body)); rec.Code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", rec.Code)
		}
	}
}

func TestRefusesEmptyToken(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	blank := filepath.Join(dir, "blank")
	good := filepath.Join(dir, "good")
	for f, content := range map[string]string{empty: "", blank: " \n\t\n", good: "tok\n"} {
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := fakeClient(nil)
	for name, o := range map[string]Options{
		"nothing":      {Client: c},
		"blank static": {Client: c, Token: "  \n"},
		"both":         {Client: c, Token: "a", TokenFile: good},
		"no client":    {Token: "a"},
		"half TLS":     {Client: c, Token: "a", TLSCertFile: "cert.pem"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		} else if strings.Contains(name, "blank") || name == "nothing" {
			if !strings.Contains(err.Error(), "refuses to run unauthenticated") {
				t.Errorf("%s: unclear error %q", name, err)
			}
		}
	}

	// A token file that is empty, blank or not there yet (a Secret created
	// after the operator) does not stop the operator, but every request is
	// refused with 503 until the file holds a token.
	later := filepath.Join(dir, "later")
	for name, f := range map[string]string{"empty file": empty, "blank file": blank, "missing file": later} {
		r, err := New(Options{Client: c, TokenFile: f, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, auth := range []string{"", "Bearer ", "Bearer tok"} {
			if rec := post(r, auth, mustJSON(t, payload())); rec.Code != http.StatusServiceUnavailable {
				t.Errorf("%s, %q: status %d, want 503", name, auth, rec.Code)
			}
		}
	}
	r, err := New(Options{Client: c, TokenFile: later, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(later, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	if rec := post(r, "Bearer nope", mustJSON(t, payload())); rec.Code != http.StatusUnauthorized {
		t.Errorf("wrong token once the file exists: status %d, want 401", rec.Code)
	}
	if rec := post(r, "Bearer tok", mustJSON(t, payload())); rec.Code != http.StatusOK {
		t.Errorf("right token once the file exists: status %d, want 200", rec.Code)
	}
}

// TestTokenFileRotation rotates the token the way the kubelet updates a
// Secret volume: the files live in a timestamped folder, ..data links to
// it, the token file links into ..data, and a rotation swaps ..data.
func TestTokenFileRotation(t *testing.T) {
	dir := t.TempDir()
	writeVersion := func(version, token string) {
		t.Helper()
		v := filepath.Join(dir, version)
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v, "token"), []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..2026_03_14_09_00_00.1", "first-token")
	path := filepath.Join(dir, "token")
	if err := os.Symlink(filepath.Join("..data", "token"), path); err != nil {
		t.Fatal(err)
	}

	r := newTestReceiver(t, fakeClient(nil), func(o *Options) { o.Token, o.TokenFile = "", path })
	body := mustJSON(t, payload())
	check := func(token string, want int) {
		t.Helper()
		if rec := post(r, "Bearer "+token, body); rec.Code != want {
			t.Errorf("token %q: status %d, want %d", token, rec.Code, want)
		}
	}
	check("first-token", http.StatusOK)
	check("second-token", http.StatusUnauthorized)

	writeVersion("..2026_03_14_10_00_00.2", "second-token")
	check("first-token", http.StatusUnauthorized)
	check("second-token", http.StatusOK)

	// Rewritten in place, same size, within the same second.
	if err := os.WriteFile(filepath.Join(dir, "..2026_03_14_10_00_00.2", "token"), []byte("third--token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("second-token", http.StatusUnauthorized)
	check("third--token", http.StatusOK)

	// The file disappears: fail closed, and recover when it is back.
	if err := os.Remove(filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	check("third--token", http.StatusServiceUnavailable)
	writeVersion("..2026_03_14_11_00_00.3", "fourth-token")
	check("fourth-token", http.StatusOK)
}
