package analysis

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"k8s.io/utils/ptr"

	"github.com/modelrollout/modelrollout/analysis/egress"
	"github.com/modelrollout/modelrollout/api/v1alpha1"
)

func webGate(u, path string) v1alpha1.Gate {
	return v1alpha1.Gate{Name: "quality", GateSpec: v1alpha1.GateSpec{Min: ptr.To(0.8), Web: &v1alpha1.WebGate{URL: u, JSONPath: path}}}
}

var webVars = Vars{Namespace: "team-a", Rollout: "gpt4", Route: "r", Stable: "vllm-v1", Canary: "vllm-v2", CanaryPort: 8000, Weight: 10}

func TestRenderWeb(t *testing.T) {
	g := webGate("http://eval.ml:8080/scores/{{ .Canary }}?ns={{ .Namespace }}&w={{ .Weight }}", "$.score")
	g.Web.Method = v1alpha1.WebMethodPost
	g.Web.Headers = []v1alpha1.WebHeader{{Name: "X-Scope-OrgID", Value: "{{ .Namespace }}"}}
	g.Web.Body = `{"model": "{{ .Canary }}", "weight": {{ .Weight }}, "cluster": "{{ .CanaryCluster }}"}`
	r, err := RenderWeb(g, webVars)
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://eval.ml:8080/scores/vllm-v2?ns=team-a&w=10"; r.URL != want {
		t.Errorf("url %q, want %q", r.URL, want)
	}
	if r.Method != http.MethodPost || r.Header.Get("X-Scope-OrgID") != "team-a" {
		t.Errorf("method %s, headers %v", r.Method, r.Header)
	}
	if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Accept") != "application/json" {
		t.Errorf("headers %v", r.Header)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	if body["model"] != "vllm-v2" || body["weight"] != 10.0 || body["cluster"] != "kube_team-a_vllm-v2_8000" {
		t.Errorf("body %v", body)
	}
	if r.Timeout != DefaultWebTimeout || r.MaxBytes != DefaultWebMaxResponseBytes {
		t.Errorf("defaults: timeout %s, max %d", r.Timeout, r.MaxBytes)
	}

	// Kubernetes names need no escaping, so they can name a host.
	u, err := RenderURL("http://{{ .Canary }}-eval.{{ .Namespace }}.svc:8080/score", webVars)
	if err != nil || u != "http://vllm-v2-eval.team-a.svc:8080/score" {
		t.Errorf("in-cluster URL %q (%v)", u, err)
	}
}

// Values that could change a URL's or a body's structure are escaped.
func TestRenderWebEscapesHostileValues(t *testing.T) {
	hostile := Vars{Namespace: "a/../b?x=1&y=2#frag", Canary: "c\"}, \"evil\": {\"x", Weight: 1}
	r, err := RenderURL("http://h/p/{{ .Namespace }}?q={{ .Namespace }}", hostile)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(r)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != "h" || u.Fragment != "" || u.Query().Get("q") != hostile.Namespace || len(u.Query()) != 1 {
		t.Errorf("url %q parsed to host %q, query %v, fragment %q", r, u.Host, u.Query(), u.Fragment)
	}
	if got := strings.TrimPrefix(u.EscapedPath(), "/p/"); strings.Contains(got, "/") {
		t.Errorf("path segment split: %q", u.EscapedPath())
	}

	body, err := RenderJSON(`{"model": "{{ .Canary }}"}`, hostile)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil || len(m) != 1 || m["model"] != hostile.Canary {
		t.Errorf("body %q decoded to %v (%v)", body, m, err)
	}
}

func TestEscapeJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "new\nline\ttab\x00\x1f", "<&>", "ünï", "\u2028"} {
		var got string
		if err := json.Unmarshal([]byte(`"`+EscapeJSONString(s)+`"`), &got); err != nil || got != s {
			t.Errorf("%q: escaped %q, read back %q (%v)", s, EscapeJSONString(s), got, err)
		}
	}
	if got := EscapeJSONString("\xff"); !utf8.ValidString(got) {
		t.Errorf("invalid UTF-8 passed through: %q", got)
	}
}

func TestEscapeURLComponent(t *testing.T) {
	if got, want := EscapeURLComponent("a-b_c.d~e f/g?h&i=j#k+l%"), "a-b_c.d~e%20f%2Fg%3Fh%26i%3Dj%23k%2Bl%25"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, s := range []string{"ä/ö", "x y+z", "%zz"} {
		if back, err := url.PathUnescape(EscapeURLComponent(s)); err != nil || back != s {
			t.Errorf("%q: path unescaped to %q (%v)", s, back, err)
		}
		if back, err := url.QueryUnescape(EscapeURLComponent(s)); err != nil || back != s {
			t.Errorf("%q: query unescaped to %q (%v)", s, back, err)
		}
	}
}

func TestRenderWebErrors(t *testing.T) {
	cases := []struct {
		name string
		edit func(*v1alpha1.Gate)
		want string
	}{
		{"unknown variable in url", func(g *v1alpha1.Gate) { g.Web.URL = "http://h/{{ .Nope }}" }, "unknown variable .Nope; the variables are .Namespace"},
		{"selector is PromQL only", func(g *v1alpha1.Gate) { g.Web.URL = "http://h/{{ .Selector }}" }, "unknown variable .Selector"},
		{"unknown variable in body", func(g *v1alpha1.Gate) {
			g.Web.Method = v1alpha1.WebMethodPost
			g.Web.Body = `{"a": "{{ .Model }}"}`
		}, "web.body: template: 1:10: unknown variable .Model"},
		{"unknown variable in header", func(g *v1alpha1.Gate) {
			g.Web.Headers = []v1alpha1.WebHeader{{Name: "X-A", Value: "{{ .Nope }}"}}
		}, "web.headers[X-A]: template"},
		{"bad jsonPath", func(g *v1alpha1.Gate) { g.Web.JSONPath = "$.data[" }, `web.jsonPath "$.data[": `},
		{"jsonPath without root", func(g *v1alpha1.Gate) { g.Web.JSONPath = "data.score" }, `web.jsonPath "data.score"`},
		{"body not JSON", func(g *v1alpha1.Gate) {
			g.Web.Method = v1alpha1.WebMethodPost
			g.Web.Body = `{"model": {{ .Canary }}}`
		}, "web.body does not render to JSON"},
		{"body with GET", func(g *v1alpha1.Gate) { g.Web.Body = `{}` }, "only with method: POST"},
		{"not http", func(g *v1alpha1.Gate) { g.Web.URL = "file:///etc/passwd" }, "must be an http:// or https:// URL"},
		{"no host", func(g *v1alpha1.Gate) { g.Web.URL = "http:///x" }, "has no host"},
		{"credentials in url", func(g *v1alpha1.Gate) { g.Web.URL = "http://u:p@h/" }, "must not carry credentials"},
		{"header line break", func(g *v1alpha1.Gate) {
			g.Web.Headers = []v1alpha1.WebHeader{{Name: "X-A", Value: "a\r\nX-Injected: 1"}}
		}, "line break"},
		{"no threshold", func(g *v1alpha1.Gate) { g.Min = nil }, "set min, max or both"},
		{"also a query", func(g *v1alpha1.Gate) { g.Query = "vector(1)" }, "set exactly one gate kind"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := webGate("http://eval.ml/score", "$.score")
			c.edit(&g)
			_, err := RenderWeb(g, webVars)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), `gate "quality": `) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestValidateGatesWithWebGate(t *testing.T) {
	a := &v1alpha1.Analysis{Gates: []v1alpha1.Gate{
		{Name: "errors", GateSpec: v1alpha1.GateSpec{Preset: "vllm-error-ratio", Max: ptr.To(0.05)}},
		webGate("http://eval.ml/score", "$.score"),
	}}
	if err := ValidateGates(a, webVars); err != nil {
		t.Fatal(err)
	}
	a.Gates[1].Web.JSONPath = "$["
	if err := ValidateGates(a, webVars); err == nil || !strings.Contains(err.Error(), `gate "quality": web.jsonPath`) {
		t.Fatalf("err = %v", err)
	}
}

func TestSelectNumber(t *testing.T) {
	cases := []struct {
		name, path, body string
		value            float64
		noData, err      string
	}{
		{"number", "$.score", `{"score": 0.93}`, 0.93, "", ""},
		{"integer", "$.n", `{"n": 42}`, 42, "", ""},
		{"negative exponent", "$.n", `{"n": -1.5e-3}`, -0.0015, "", ""},
		{"numeric string", "$.score", `{"score": " 0.93 "}`, 0.93, "", ""},
		{"array index", "$.results[0].value", `{"results": [{"value": 7}, {"value": 8}]}`, 7, "", ""},
		{"filter selecting one", "$.models[?@.name=='v2'].acc", `{"models": [{"name":"v1","acc":0.7},{"name":"v2","acc":0.9}]}`, 0.9, "", ""},
		{"root number", "$", `3`, 3, "", ""},
		{"nothing", "$.missing", `{"score": 1}`, 0, "selected nothing", ""},
		{"null", "$.score", `{"score": null}`, 0, "selected null", ""},
		{"NaN string", "$.score", `{"score": "NaN"}`, 0, `selected "NaN"`, ""},
		{"Inf string", "$.score", `{"score": "+Inf"}`, 0, `selected "+Inf"`, ""},
		{"several", "$.results[*].value", `{"results": [{"value": 7}, {"value": 8}]}`, 0, "", "selected 2 values; it must select exactly one"},
		{"descendants", "$..v", `{"a": {"v": 1}, "b": {"v": 2}}`, 0, "", "selected 2 values"},
		{"boolean", "$.ok", `{"ok": true}`, 0, "", "selected the boolean true, not a number"},
		{"object", "$.data", `{"data": {"x": 1}}`, 0, "", "selected an object, not a number"},
		{"array", "$.data", `{"data": [1]}`, 0, "", "selected an array, not a number"},
		{"word", "$.score", `{"score": "good"}`, 0, "", `selected the string "good", not a number`},
		{"out of range", "$.n", `{"n": 1e400}`, 0, "", "beyond the range of a float64"},
		{"not JSON", "$.score", `<html><body>Bad gateway</body></html>`, 0, "", "the answer is not JSON (invalid character '<' looking for beginning of value): <html><body>Bad gateway</body></html>"},
		{"empty", "$.score", ``, 0, "", "the answer is not JSON (empty body)"},
		{"two documents", "$.score", `{"score": 1} {"score": 2}`, 0, "", "not one JSON value"},
		{"truncated", "$.score", `{"score": 1`, 0, "", "the answer is not JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParseJSONPath(c.path)
			if err != nil {
				t.Fatal(err)
			}
			v, noData, err := SelectNumber(p, []byte(c.body))
			switch {
			case c.err != "":
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
			case c.noData != "":
				if err != nil || !strings.Contains(noData, c.noData) {
					t.Fatalf("noData %q, err %v, want no data %q", noData, err, c.noData)
				}
			default:
				if err != nil || noData != "" || v != c.value {
					t.Fatalf("got %v, noData %q, err %v; want %v", v, noData, err, c.value)
				}
			}
		})
	}
}

func TestJudgeWebAnswer(t *testing.T) {
	g := webGate("http://h/", "$.score")
	p, _ := ParseJSONPath("$.score")
	for body, want := range map[string]v1alpha1.GateVerdict{
		`{"score": 0.9}`:   v1alpha1.VerdictPass,
		`{"score": 0.8}`:   v1alpha1.VerdictPass, // inclusive
		`{"score": "0.5"}`: v1alpha1.VerdictFail,
		`{"score": null}`:  v1alpha1.VerdictNoData,
		`{}`:               v1alpha1.VerdictNoData,
		`{"score": [1]}`:   v1alpha1.VerdictError,
		`nope`:             v1alpha1.VerdictError,
	} {
		ev := JudgeWebAnswer(g, p, []byte(body))
		if ev.Verdict != want {
			t.Errorf("%s: %s (%s), want %s", body, ev.Verdict, ev.Message, want)
		}
		if (ev.Value != nil) != (want == v1alpha1.VerdictPass || want == v1alpha1.VerdictFail) {
			t.Errorf("%s: value %v with verdict %s", body, ev.Value, ev.Verdict)
		}
	}
	ev := JudgeWebAnswer(g, p, []byte(`{"score": 0.5}`))
	if ev.Message != "0.5 is outside >= 0.8" {
		t.Errorf("message %q", ev.Message)
	}
}

// loopback allows the httptest servers on 127.0.0.1, as --egress-allow
// 127.0.0.0/8 would.
var loopback = egress.MustNew(nil, []string{"127.0.0.0/8"})

func serveWeb(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

func evalWeb(t *testing.T, p *egress.Policy, g v1alpha1.Gate, auth WebAuth) Evaluation {
	t.Helper()
	r, err := RenderWeb(g, webVars)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewWebClients(4).Get(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return EvaluateWeb(context.Background(), c, g, r, auth)
}

func TestEvaluateWeb(t *testing.T) {
	type seen struct {
		method, path, query, auth, org, ctype, body string
	}
	got := make(chan seen, 1)
	u := serveWeb(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("X-Scope-OrgID"), r.Header.Get("Content-Type"), string(b)}
		fmt.Fprint(w, `{"data": {"score": 0.91}}`)
	})

	g := webGate(u+"/eval/{{ .Canary }}?w={{ .Weight }}", "$.data.score")
	g.Web.Headers = []v1alpha1.WebHeader{{Name: "X-Scope-OrgID", Value: "{{ .Namespace }}"}}
	ev := evalWeb(t, loopback, g, WebAuth{BearerToken: "s3cret"})
	if ev.Verdict != v1alpha1.VerdictPass || *ev.Value != 0.91 || ev.Message != "0.91 is within >= 0.8" {
		t.Fatalf("%+v", ev)
	}
	s := <-got
	if s.method != "GET" || s.path != "/eval/vllm-v2" || s.query != "w=10" || s.auth != "Bearer s3cret" || s.org != "team-a" || s.body != "" {
		t.Errorf("server saw %+v", s)
	}

	g.Web.Method = v1alpha1.WebMethodPost
	g.Web.Body = `{"model": "{{ .Canary }}"}`
	ev = evalWeb(t, loopback, g, WebAuth{Username: "eval", Password: "pw"})
	if ev.Verdict != v1alpha1.VerdictPass {
		t.Fatalf("%+v", ev)
	}
	s = <-got
	if s.method != "POST" || s.body != `{"model": "vllm-v2"}` || s.ctype != "application/json" || !strings.HasPrefix(s.auth, "Basic ") {
		t.Errorf("server saw %+v", s)
	}

	g.Min = ptr.To(0.95)
	if ev := evalWeb(t, loopback, g, WebAuth{}); ev.Verdict != v1alpha1.VerdictFail || ev.Message != "0.91 is outside >= 0.95" {
		t.Errorf("%+v", ev)
	}
	<-got
}

// Hostile or broken answers never pass, and never reach status beyond a
// short, printable excerpt.
func TestEvaluateWebHostileAnswers(t *testing.T) {
	big := strings.Repeat("x", 4096)
	u := serveWeb(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/500":
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, "boom\x00\x1b[31m\n\n"+big)
		case "/html":
			fmt.Fprint(w, "<html>"+big+"</html>")
		case "/huge":
			fmt.Fprintf(w, `{"score": 1, "pad": "%s"}`, strings.Repeat("y", 2<<20))
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(time.Minute):
			}
		case "/slowbody":
			w.(http.Flusher).Flush()
			fmt.Fprint(w, `{"score":`)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(time.Minute):
			}
		case "/here":
			http.Redirect(w, r, "/ok?x=1", http.StatusFound)
		case "/ok":
			fmt.Fprint(w, `{"score": 0.9}`)
		case "/several":
			fmt.Fprint(w, `{"results": [{"score": 0.9}, {"score": 0.2}]}`)
		}
	})
	other := serveWeb(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"score": 1}`) })
	away := serveWeb(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other+"/steal", http.StatusFound)
	})

	cases := []struct {
		name, url, path string
		edit            func(*v1alpha1.WebGate)
		verdict         v1alpha1.GateVerdict
		want            string
	}{
		{"non-2xx", u + "/500", "$.score", nil, v1alpha1.VerdictError, "HTTP 500: boom??[31m x"},
		{"non-JSON", u + "/html", "$.score", nil, v1alpha1.VerdictError, "the answer is not JSON"},
		{"huge body", u + "/huge", "$.score", nil, v1alpha1.VerdictError, "response body exceeds the size limit of 1048576 bytes"},
		{"small limit", u + "/ok", "$.score", func(w *v1alpha1.WebGate) { w.MaxResponseBytes = 8 }, v1alpha1.VerdictError, "size limit of 8 bytes"},
		{"slow answer", u + "/slow", "$.score", func(w *v1alpha1.WebGate) { w.Timeout = "200ms" }, v1alpha1.VerdictError, "no answer within the timeout of 200ms"},
		{"slow body", u + "/slowbody", "$.score", func(w *v1alpha1.WebGate) { w.Timeout = "200ms" }, v1alpha1.VerdictError, "read the answer: no answer within the timeout of 200ms"},
		{"same-host redirect", u + "/here", "$.score", nil, v1alpha1.VerdictPass, "0.9 is within"},
		{"redirect to another host", away + "/", "$.score", nil, v1alpha1.VerdictError, "refused by the operator's egress policy: redirect from"},
		{"several values", u + "/several", "$.results[*].score", nil, v1alpha1.VerdictError, "selected 2 values; it must select exactly one"},
		{"no value", u + "/ok", "$.nope", nil, v1alpha1.VerdictNoData, `no data: jsonPath $["nope"] selected nothing`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := webGate(c.url, c.path)
			if c.edit != nil {
				c.edit(g.Web)
			}
			ev := evalWeb(t, loopback, g, WebAuth{})
			if ev.Verdict != c.verdict || !strings.Contains(ev.Message, c.want) {
				t.Fatalf("%s: %q, want %s containing %q", ev.Verdict, ev.Message, c.verdict, c.want)
			}
			if n := utf8.RuneCountInString(ev.Message); n > 300 {
				t.Errorf("message of %d characters echoes too much of the answer: %q", n, ev.Message)
			}
			for _, r := range ev.Message {
				if r < 0x20 || r == 0x7f {
					t.Errorf("control character %q in message %q", r, ev.Message)
				}
			}
		})
	}
}

// Each refusal of the egress policy is the gate's Error verdict, with the
// policy's reason, and no request reaches the server.
func TestEvaluateWebEgressRefusals(t *testing.T) {
	reached := make(chan struct{}, 10)
	u := serveWeb(t, func(w http.ResponseWriter, _ *http.Request) {
		reached <- struct{}{}
		fmt.Fprint(w, `{"score": 1}`)
	})
	strict := egress.MustNew(nil, nil)
	cases := []struct {
		name, url string
		policy    *egress.Policy
		want      string
	}{
		{"loopback without allowlist", u + "/score", strict, "refused by the operator's egress policy: 127.0.0.1 is a loopback address"},
		{"localhost by name", strings.Replace(u, "127.0.0.1", "localhost", 1) + "/score", strict, "is a loopback address"},
		{"cloud metadata", "http://169.254.169.254/latest/meta-data/iam", strict, "169.254.169.254 is cloud instance metadata (AWS, Google Cloud, Azure, Oracle Cloud); only an --egress-allow entry naming exactly this address opens it"},
		{"metadata even with loopback allowed", "http://169.254.169.254/", loopback, "cloud instance metadata"},
		{"off-cluster", "http://8.8.8.8/", strict, "outside the cluster's networks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := evalWeb(t, c.policy, webGate(c.url, "$.score"), WebAuth{})
			if ev.Verdict != v1alpha1.VerdictError || !strings.Contains(ev.Message, c.want) {
				t.Fatalf("%s: %q, want Error containing %q", ev.Verdict, ev.Message, c.want)
			}
			if strings.Contains(ev.Message, "dial tcp") {
				t.Errorf("message keeps the dialer's prefix: %q", ev.Message)
			}
		})
	}
	if len(reached) != 0 {
		t.Errorf("%d refused requests reached the server", len(reached))
	}

	// A redirect from an allowed server to another host is not followed.
	redirector := serveWeb(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, u+"/score", http.StatusTemporaryRedirect)
	})
	ev := evalWeb(t, loopback, webGate(redirector, "$.score"), WebAuth{})
	if ev.Verdict != v1alpha1.VerdictError || !strings.Contains(ev.Message, "redirect from http://127.0.0.1:") || !strings.Contains(ev.Message, "another port") {
		t.Fatalf("%s: %q", ev.Verdict, ev.Message)
	}
	if len(reached) != 0 {
		t.Error("the redirect was followed to another host")
	}
}

func TestEvaluateWebRedactsQuery(t *testing.T) {
	u := serveWeb(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
	ev := evalWeb(t, loopback, webGate(u+"/s?api_key=s3cret", "$.score"), WebAuth{})
	if ev.Verdict != v1alpha1.VerdictError || strings.Contains(ev.Message, "s3cret") || !strings.Contains(ev.Message, "HTTP 403") {
		t.Fatalf("%s: %q", ev.Verdict, ev.Message)
	}
}

func TestEvaluateWebCABundle(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"score": 0.9}`) }))
	t.Cleanup(s.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	g := webGate(s.URL, "$.score")
	r, err := RenderWeb(g, webVars)
	if err != nil {
		t.Fatal(err)
	}
	clients := NewWebClients(4)

	c, err := clients.Get(loopback, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev := EvaluateWeb(context.Background(), c, g, r, WebAuth{}); ev.Verdict != v1alpha1.VerdictError || !strings.Contains(ev.Message, "certificate") {
		t.Errorf("system roots trusted the test CA: %s %q", ev.Verdict, ev.Message)
	}
	c, err = clients.Get(loopback, ca)
	if err != nil {
		t.Fatal(err)
	}
	if ev := EvaluateWeb(context.Background(), c, g, r, WebAuth{}); ev.Verdict != v1alpha1.VerdictPass {
		t.Errorf("with the CA bundle: %s %q", ev.Verdict, ev.Message)
	}
	if _, err := clients.Get(loopback, []byte("not PEM")); err == nil {
		t.Error("a CA bundle without a certificate was accepted")
	}
}

func TestWebClientsReuseAndBound(t *testing.T) {
	clients := NewWebClients(2)
	a1, _ := clients.Get(loopback, nil)
	a2, _ := clients.Get(loopback, nil)
	if a1 != a2 {
		t.Error("same policy and CA: a new client")
	}
	other := egress.MustNew(nil, nil)
	b, _ := clients.Get(other, nil)
	if b == a1 {
		t.Error("another policy shares the client")
	}
	s := httptest.NewTLSServer(http.NotFoundHandler())
	defer s.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if _, err := clients.Get(loopback, ca); err != nil {
		t.Fatal(err)
	}
	if n := clients.Len(); n != 2 {
		t.Errorf("%d clients kept, want at most 2", n)
	}
	if a3, _ := clients.Get(loopback, nil); a3 == a1 {
		t.Error("the oldest client was not dropped")
	}
}

func TestCallErrorKeepsTransportErrors(t *testing.T) {
	err := &url.Error{Op: "Get", URL: "http://x", Err: errors.New("connection refused")}
	if got := callError(context.Background(), context.Background(), err, time.Second); got != "connection refused" {
		t.Errorf("%q", got)
	}
}

// A round that runs out of time is not blamed on the gate's own timeout.
func TestEvaluateWebParentCancelled(t *testing.T) {
	u := serveWeb(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	g := webGate(u, "$.score")
	r, err := RenderWeb(g, webVars)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewWebClients(1).Get(loopback, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	ev := EvaluateWeb(ctx, c, g, r, WebAuth{})
	if ev.Verdict != v1alpha1.VerdictError || !strings.Contains(ev.Message, "the call was cut short: context deadline exceeded") {
		t.Fatalf("%s: %q", ev.Verdict, ev.Message)
	}
}

// FuzzWebJSONPath feeds arbitrary expressions and answers through the
// parsing and selection of a web gate: nothing panics, and a number comes
// back only as a finite value without an error or a no-data reason.
func FuzzWebJSONPath(f *testing.F) {
	seeds := []struct{ path, body string }{
		{"$.score", `{"score": 0.9}`},
		{"$.data.result[0].value[1]", `{"data":{"result":[{"value":[1700000000,"0.02"]}]}}`},
		{"$..v", `{"a":{"v":1},"b":[{"v":2}]}`},
		{"$.items[?@.name=='canary'].acc", `{"items":[{"name":"canary","acc":0.9}]}`},
		{"$.items[?length(@.tags) > 1].n", `{"items":[{"tags":[1,2],"n":3}]}`},
		{"$[-1:0:-1]", `[1,2,3]`},
		{"$['a','b']", `{"a":1,"b":"x"}`},
		{"$.a", `{"a": null}`},
		{"$.a", `{"a": "NaN"}`},
		{"$.a", `{"a": 1e999}`},
		{"$", `"12"`},
		{"$.a[", `{}`},
		{"$[?match(@, '.*')]", `["a"]`},
		{"$.a", "\xff\xfe"},
		{"$..*", strings.Repeat("[", 100) + strings.Repeat("]", 100)},
	}
	for _, s := range seeds {
		f.Add(s.path, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		if len(path) > 1024 || len(body) > 1<<16 {
			return
		}
		p, err := ParseJSONPath(path)
		if err != nil {
			if p != nil {
				t.Fatal("a path and an error")
			}
			return
		}
		v, noData, err := SelectNumber(p, body)
		if err != nil && noData != "" {
			t.Fatalf("both an error %v and no data %q", err, noData)
		}
		if err == nil && noData == "" && (v != v || v > 1.7976931348623157e308 || v < -1.7976931348623157e308) {
			t.Fatalf("non-finite value %v judged", v)
		}
		ev := JudgeWebAnswer(webGate("http://h/", path), p, body)
		if len(ev.Message) > 1024 {
			t.Fatalf("message of %d bytes", len(ev.Message))
		}
	})
}

// The web gates guide's example (docs/guides/web-gates.md) renders, and its path picks the accuracy.
func TestReadmeWebExample(t *testing.T) {
	g := v1alpha1.Gate{Name: "quality", GateSpec: v1alpha1.GateSpec{Min: ptr.To(0.85), NoData: v1alpha1.NoDataFail, FailureLimit: 2, Web: &v1alpha1.WebGate{
		URL:      "https://eval.ml-platform:8443/v1/scores?model={{ .Canary }}&ns={{ .Namespace }}",
		Method:   v1alpha1.WebMethodPost,
		Headers:  []v1alpha1.WebHeader{{Name: "X-Scope-OrgID", Value: "{{ .Namespace }}"}},
		Body:     `{"model": "{{ .Canary }}", "suite": "smoke", "weight": {{ .Weight }}}`,
		JSONPath: "$.results[?@.metric=='accuracy'].value",
		Timeout:  "10s", MaxResponseBytes: 1048576,
	}}}
	r, err := RenderWeb(g, webVars)
	if err != nil {
		t.Fatal(err)
	}
	if r.URL != "https://eval.ml-platform:8443/v1/scores?model=vllm-v2&ns=team-a" || r.Body != `{"model": "vllm-v2", "suite": "smoke", "weight": 10}` {
		t.Errorf("url %q, body %q", r.URL, r.Body)
	}
	ev := JudgeWebAnswer(g, r.Path, []byte(`{"results": [{"metric": "accuracy", "value": 0.91}, {"metric": "latency", "value": 3}]}`))
	if ev.Verdict != v1alpha1.VerdictPass || *ev.Value != 0.91 {
		t.Errorf("%+v", ev)
	}
}
