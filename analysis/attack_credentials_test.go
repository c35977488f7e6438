package analysis

// Attack suite, credentials: a hostile or careless endpoint echoes what the
// operator sent it, and the echo must not reach a gate's message (status,
// Events, logs). Every server is on loopback.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelrollout/modelrollout/api/v1alpha1"
)

// echoAuth answers with code and a body quoting the Authorization header
// the way a debugging proxy or a framework's error page does, after pad
// bytes (so that the credential straddles the message's excerpt limit).
func echoAuth(code int, pad int, jsonBody bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		h := r.Header.Get("Authorization")
		if jsonBody {
			b, _ := json.Marshal(map[string]any{"error": strings.Repeat("x", pad), "headers": map[string]string{"authorization": h}})
			_, _ = w.Write(b)
			return
		}
		fmt.Fprintf(w, "%sunauthorized: Authorization: %s", strings.Repeat("x", pad), h)
	}
}

// leaks says which part of any of the secrets (a prefix of 6 bytes or
// more) appears in msg.
func leaks(msg string, secrets ...string) string {
	for _, s := range secrets {
		for n := len(s); n >= 6; n-- {
			if strings.Contains(msg, s[:n]) {
				return s[:n]
			}
		}
	}
	return ""
}

const (
	attackToken = "tok-9f8e7d6c5b4a39281706"
	attackUser  = "svc-eval"
	attackPass  = "pw-Zx81&<q>\"7!"
)

var attackBasic = base64.StdEncoding.EncodeToString([]byte(attackUser + ":" + attackPass))

func TestAttackWebGateEchoes(t *testing.T) {
	bearer := WebAuth{BearerToken: attackToken}
	basic := WebAuth{Username: attackUser, Password: attackPass}
	for _, c := range []struct {
		name    string
		h       http.HandlerFunc
		auth    WebAuth
		secrets []string
	}{
		{"bearer in a 401 body", echoAuth(401, 0, false), bearer, []string{attackToken}},
		{"bearer in a 401 body, cut by the excerpt", echoAuth(401, webExcerpt-50, false), bearer, []string{attackToken}},
		{"bearer in a 200 that is not JSON", echoAuth(200, 10, false), bearer, []string{attackToken}},
		{"bearer in a 403 JSON body", echoAuth(403, 0, true), bearer, []string{attackToken}},
		{"basic auth in a 401 body", echoAuth(401, 0, false), basic, []string{attackBasic, attackPass}},
		{"basic auth in a 401 JSON body (escaped)", echoAuth(401, 0, true), basic, []string{attackBasic, attackPass}},
		{"password alone in a 200 that is not JSON", func(w http.ResponseWriter, r *http.Request) {
			_, p, _ := r.BasicAuth()
			fmt.Fprintf(w, "welcome, your password is %s", p)
		}, basic, []string{attackPass}},
		{"the selected value is the token", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"score": %q}`, r.Header.Get("Authorization"))
		}, bearer, []string{attackToken}},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := serveWeb(t, c.h)
			ev := evalWeb(t, loopback, webGate(u+"/score", "$.score"), c.auth)
			if ev.Verdict != v1alpha1.VerdictError {
				t.Fatalf("verdict %s: %q", ev.Verdict, ev.Message)
			}
			if l := leaks(ev.Message, c.secrets...); l != "" {
				t.Fatalf("message leaks %q: %q", l, ev.Message)
			}
			if !strings.Contains(ev.Message, "[redacted]") {
				t.Fatalf("nothing was scrubbed (the echo did not reach the message?): %q", ev.Message)
			}
		})
	}
}

// CR and LF rendered into a web gate's URL or headers never reach the wire.
func TestAttackWebGateCRLF(t *testing.T) {
	hostile := webVars
	hostile.Canary = "v2\r\nX-Injected: 1"
	g := webGate("http://eval.ml/score/{{ .Canary }}?m={{ .Canary }}", "$.score")
	r, err := RenderWeb(g, hostile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(r.URL, "\r\n") {
		t.Fatalf("URL holds a line break: %q", r.URL)
	}
	g.Web.Headers = []v1alpha1.WebHeader{{Name: "X-Model", Value: "{{ .Canary }}"}}
	if _, err := RenderWeb(g, hostile); err == nil || !strings.Contains(err.Error(), "line break") {
		t.Fatalf("a header with CR LF was not refused: %v", err)
	}
}

func TestAttackPromptGateEchoes(t *testing.T) {
	// Userinfo in prompt.url is sent as basic auth; an echo of it, or
	// of the URL, is scrubbed.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, "denied %s for %s", r.Header.Get("Authorization"), r.URL.String())
	}))
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://"+attackUser+":pw-prompt-secret@", 1) + "/v1/chat/completions?api_key=key-0123456789abcdef"
	run := RunPrompts(context.Background(), loopbackClient(t), PromptTarget{URL: u}, mustPrompts(t, v1alpha1.PromptCase{Prompt: "hi", Expect: v1alpha1.PromptExpectation{Contains: "x"}}), 1, 10*time.Second)
	msg := strings.Join(run.Failures, "; ")
	b64 := base64.StdEncoding.EncodeToString([]byte(attackUser + ":pw-prompt-secret"))
	if l := leaks(msg, b64, "pw-prompt-secret", "key-0123456789abcdef"); l != "" || !strings.Contains(msg, "HTTP 401") {
		t.Fatalf("leaks %q: %q", l, msg)
	}
}

func TestAttackPromptTransportErrorQuotesURL(t *testing.T) {
	// Nothing listens: the transport error quotes the URL, query included.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	u := "http://" + addr + "/v1/chat/completions?api_key=key-0123456789abcdef"
	run := RunPrompts(context.Background(), loopbackClient(t), PromptTarget{URL: u}, mustPrompts(t, v1alpha1.PromptCase{Prompt: "hi", Expect: v1alpha1.PromptExpectation{Contains: "x"}}), 1, 10*time.Second)
	msg := strings.Join(run.Failures, "; ")
	if l := leaks(msg, "key-0123456789abcdef"); l != "" || !strings.Contains(msg, "request failed") {
		t.Fatalf("leaks %q: %q", l, msg)
	}
}

// promEcho is a Prometheus that refuses every query with code, echoing the
// request's credentials.
func promEcho(t *testing.T, code int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.WriteHeader(code)
		fmt.Fprintf(w, "refused: authorization=%q x-api-key=%q url=%s", r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"), r.URL.String())
	}))
	t.Cleanup(srv.Close)
	return srv
}

func queryErr(t *testing.T, cfg ClientConfig) string {
	t.Helper()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Query(context.Background(), "up", time.Time{})
	if err == nil {
		t.Fatal("the query passed")
	}
	return err.Error()
}

func TestAttackPrometheusEchoes(t *testing.T) {
	for _, c := range []struct {
		name    string
		cfg     func(addr string) ClientConfig
		secrets []string
	}{
		{"bearer in a 401", func(a string) ClientConfig { return ClientConfig{Address: a, BearerToken: attackToken} }, []string{attackToken}},
		{"basic auth in a 401", func(a string) ClientConfig {
			return ClientConfig{Address: a, Username: attackUser, Password: attackPass}
		}, []string{attackBasic}},
		{"header from a Secret in a 401", func(a string) ClientConfig {
			return ClientConfig{Address: a, Headers: []Header{{Name: "X-Api-Key", Value: "hdr-5ecret-value-42", Secret: true}}}
		}, []string{"hdr-5ecret-value-42"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := promEcho(t, http.StatusUnauthorized)
			msg := queryErr(t, c.cfg(srv.URL))
			if l := leaks(msg, c.secrets...); l != "" || !strings.Contains(msg, "401") {
				t.Fatalf("leaks %q: %q", l, msg)
			}
		})
	}
}

func TestAttackPrometheusAddressCredentials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// Nothing listens: the transport error quotes the address.
	msg := queryErr(t, ClientConfig{Address: "http://admin:addr-pa55word@" + addr + "/prom?token=qtok-0123456789"})
	if l := leaks(msg, "addr-pa55word", "qtok-0123456789", "admin:"); l != "" {
		t.Fatalf("leaks %q: %q", l, msg)
	}
}

func TestAttackPrometheusOAuth2EchoesClientSecret(t *testing.T) {
	// The token endpoint refuses, echoing the form it got.
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":"invalid_client","error_description":"got %s with %s"}`, b, r.Header.Get("Authorization"))
	}))
	defer tokenSrv.Close()
	prom := promEcho(t, http.StatusOK)
	msg := queryErr(t, ClientConfig{Address: prom.URL, OAuth2: &OAuth2{ClientID: "cid", ClientSecret: "oauth-client-s3cret", TokenURL: tokenSrv.URL + "/token"}})
	cs := base64.StdEncoding.EncodeToString([]byte("cid:oauth-client-s3cret"))
	if l := leaks(msg, "oauth-client-s3cret", cs); l != "" {
		t.Fatalf("leaks %q: %q", l, msg)
	}
}

func TestAttackPrometheusEchoesUnknownBearer(t *testing.T) {
	// A token the operator never saw (an OAuth2 endpoint's) is still
	// scrubbed when it is echoed after "Bearer".
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"acquired-0123456789abcdef","token_type":"Bearer","expires_in":3600}`)
	}))
	defer tokenSrv.Close()
	prom := promEcho(t, http.StatusForbidden)
	msg := queryErr(t, ClientConfig{Address: prom.URL, OAuth2: &OAuth2{ClientID: "cid", ClientSecret: "oauth-client-s3cret", TokenURL: tokenSrv.URL}})
	if l := leaks(msg, "acquired-0123456789abcdef"); l != "" || !strings.Contains(msg, "403") {
		t.Fatalf("leaks %q: %q", l, msg)
	}
}
