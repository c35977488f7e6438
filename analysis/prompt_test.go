package analysis

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	"github.com/modelrollout/modelrollout/analysis/egress"
	"github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/vllmsim"
)

func TestParseExpectation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		e       v1alpha1.PromptExpectation
		wantErr string
	}{
		{name: "contains", e: v1alpha1.PromptExpectation{Contains: "Paris"}},
		{name: "regex", e: v1alpha1.PromptExpectation{Regex: `(?i)^\s*paris\b`}},
		{name: "schema", e: v1alpha1.PromptExpectation{JSONSchema: `{"type":"object","required":["answer"]}`}},
		{name: "any JSON", e: v1alpha1.PromptExpectation{JSONSchema: `{}`}},
		{name: "none", e: v1alpha1.PromptExpectation{}, wantErr: "exactly one"},
		{name: "two", e: v1alpha1.PromptExpectation{Contains: "a", Regex: "b"}, wantErr: "exactly one"},
		{name: "bad regex", e: v1alpha1.PromptExpectation{Regex: `(a`}, wantErr: "regex: error parsing regexp"},
		{name: "backreference", e: v1alpha1.PromptExpectation{Regex: `(a)\1`}, wantErr: "regex:"},
		{name: "schema not JSON", e: v1alpha1.PromptExpectation{JSONSchema: `{type: object}`}, wantErr: "jsonSchema: not valid JSON"},
		{name: "schema invalid", e: v1alpha1.PromptExpectation{JSONSchema: `{"type":"banana"}`}, wantErr: "jsonSchema:"},
		{name: "schema file ref", e: v1alpha1.PromptExpectation{JSONSchema: `{"$ref":"file:///etc/passwd"}`}, wantErr: "jsonSchema:"},
		{name: "schema remote ref", e: v1alpha1.PromptExpectation{JSONSchema: `{"$ref":"http://169.254.169.254/latest"}`}, wantErr: "jsonSchema:"},
		{name: "long contains", e: v1alpha1.PromptExpectation{Contains: strings.Repeat("x", MaxExpectationBytes+1)}, wantErr: "longer than"},
		{name: "long schema", e: v1alpha1.PromptExpectation{JSONSchema: `{"description":"` + strings.Repeat("x", MaxSchemaBytes) + `"}`}, wantErr: "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseExpectation(tc.e)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestExpectationCheck(t *testing.T) {
	schema := `{"type":"object","properties":{"answer":{"type":"integer","minimum":4,"maximum":4}},"required":["answer"]}`
	for _, tc := range []struct {
		name    string
		e       v1alpha1.PromptExpectation
		answer  string
		ok      bool
		wantWhy string
	}{
		{name: "contains", e: v1alpha1.PromptExpectation{Contains: "Paris"}, answer: "The capital is Paris.", ok: true},
		{name: "contains is case-sensitive", e: v1alpha1.PromptExpectation{Contains: "Paris"}, answer: "paris", wantWhy: `does not contain "Paris": "paris"`},
		{name: "regex", e: v1alpha1.PromptExpectation{Regex: `(?i)\bparis\b`}, answer: "PARIS!", ok: true},
		{name: "regex misses", e: v1alpha1.PromptExpectation{Regex: `^\d+$`}, answer: "four", wantWhy: `does not match ^\d+$`},
		{name: "JSON", e: v1alpha1.PromptExpectation{JSONSchema: schema}, answer: ` {"answer": 4} `, ok: true},
		{name: "JSON wrong value", e: v1alpha1.PromptExpectation{JSONSchema: schema}, answer: `{"answer": 5}`, wantWhy: "does not match the JSON Schema (/answer"},
		{name: "JSON missing key", e: v1alpha1.PromptExpectation{JSONSchema: schema}, answer: `{"reply": 4}`, wantWhy: "does not match the JSON Schema"},
		{name: "invalid JSON", e: v1alpha1.PromptExpectation{JSONSchema: schema}, answer: `{"answer": 4,`, wantWhy: `answer is not JSON: "{\"answer\": 4,"`},
		{name: "prose instead of JSON", e: v1alpha1.PromptExpectation{JSONSchema: `{}`}, answer: "Sure! Here is the JSON: {}", wantWhy: "answer is not JSON"},
		{name: "two JSON values", e: v1alpha1.PromptExpectation{JSONSchema: `{}`}, answer: `{} {}`, wantWhy: "answer is not JSON"},
		{name: "control characters are not echoed", e: v1alpha1.PromptExpectation{Contains: "x"}, answer: "\x1b[31mred\x00", wantWhy: `"?[31mred?"`},
		{name: "long answers are cut", e: v1alpha1.PromptExpectation{Contains: "x"}, answer: strings.Repeat("a", 10000), wantWhy: "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := ParseExpectation(tc.e)
			if err != nil {
				t.Fatal(err)
			}
			ok, why := x.Check(tc.answer)
			if ok != tc.ok {
				t.Fatalf("Check = %v (%s), want %v", ok, why, tc.ok)
			}
			if !strings.Contains(why, tc.wantWhy) {
				t.Fatalf("why = %q, want it to contain %q", why, tc.wantWhy)
			}
			if len(why) > 400 {
				t.Fatalf("why is %d bytes long", len(why))
			}
		})
	}
}

func TestParsePromptList(t *testing.T) {
	list := `
- prompt: "What is 2+2? Answer with a number."
  expect: {regex: '\b4\b'}
- prompt: Capital of France?
  expect: {contains: Paris}
  maxTokens: 16
  maxLatency: 2s
`
	got, err := ParsePromptList([]byte(list))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].MaxTokens != DefaultPromptMaxTokens || got[0].MaxLatency != DefaultPromptMaxLatency ||
		got[1].MaxTokens != 16 || got[1].MaxLatency != 2*time.Second {
		t.Fatalf("got %+v", got)
	}

	for _, tc := range []struct{ name, list, wantErr string }{
		{"not a list", `prompt: hi`, "not a YAML or JSON list"},
		{"unknown field", "- prompt: hi\n  expect: {contains: x}\n  expected: {contains: y}", "not a YAML or JSON list"},
		{"empty", `[]`, "no prompts"},
		{"no expectation", "- prompt: hi\n  expect: {}", "prompt 1: expect: set exactly one"},
		{"bad regex", "- prompt: hi\n  expect: {contains: x}\n- prompt: ho\n  expect: {regex: '(('}", "prompt 2: expect: regex"},
		{"bad latency", "- prompt: hi\n  expect: {contains: x}\n  maxLatency: soon", "maxLatency"},
		{"too many tokens", "- prompt: hi\n  expect: {contains: x}\n  maxTokens: 100000", "maxTokens"},
		{"empty prompt", "- prompt: ' '\n  expect: {contains: x}", "prompt is empty"},
		{"too many", strings.Repeat("- prompt: hi\n  expect: {contains: x}\n", MaxPrompts+1), "at most 32"},
		{"too large", "- prompt: " + strings.Repeat("x", MaxPromptListBytes), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePromptList([]byte(tc.list))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// loopbackClient is an egress client that may call the test servers.
func loopbackClient(t *testing.T) *http.Client {
	t.Helper()
	p, err := egress.New(nil, []string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Client(egress.Options{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustPrompts(t *testing.T, cases ...v1alpha1.PromptCase) []PromptCheck {
	t.Helper()
	p, err := ParsePrompts(cases)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func chatAnswer(content string) string {
	b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"message": map[string]any{"role": "assistant", "content": content}}}})
	return string(b)
}

func TestRunPromptsAgainstSimulator(t *testing.T) {
	sim := vllmsim.New(vllmsim.Config{Tokens: 4})
	if _, err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	c := loopbackClient(t)
	prompts := mustPrompts(t,
		v1alpha1.PromptCase{Prompt: "Name a fast animal.", Expect: v1alpha1.PromptExpectation{Contains: "quick brown fox"}},
		v1alpha1.PromptCase{Prompt: "Say hello.", Expect: v1alpha1.PromptExpectation{Regex: `^The quick`}},
		v1alpha1.PromptCase{Prompt: "Answer in JSON.", Expect: v1alpha1.PromptExpectation{JSONSchema: `{"type":"object"}`}},
	)
	g := v1alpha1.Gate{Name: "answers", GateSpec: v1alpha1.GateSpec{Min: ptr.To(0.6)}}

	for _, api := range []v1alpha1.PromptAPI{v1alpha1.PromptAPIChat, v1alpha1.PromptAPICompletions} {
		path := "/v1/chat/completions"
		if api == v1alpha1.PromptAPICompletions {
			path = "/v1/completions"
		}
		run := RunPrompts(context.Background(), c, PromptTarget{URL: sim.URL() + path, API: api}, prompts, 2, 10*time.Second)
		if run.Total != 3 || run.Sent != 3 || run.Passed != 2 || run.Refused != nil {
			t.Fatalf("%s: run = %+v", api, run)
		}
		ev := PromptOutcome(g, run, nil)
		if ev.Verdict != v1alpha1.VerdictPass || !strings.Contains(ev.Message, "2 of 3 prompts passed") || !strings.Contains(ev.Message, "prompt 3: answer is not JSON") {
			t.Fatalf("%s: evaluation = %+v", api, ev)
		}
	}

	// The simulator's wrong-answer switch.
	if err := sim.UpdateConfig(func(c *vllmsim.Config) { c.Answer = vllmsim.WrongAnswer }); err != nil {
		t.Fatal(err)
	}
	run := RunPrompts(context.Background(), c, PromptTarget{URL: sim.URL() + "/v1/chat/completions"}, prompts, 2, 10*time.Second)
	if run.Passed != 0 {
		t.Fatalf("wrong answers passed: %+v", run)
	}
	if ev := PromptOutcome(g, run, nil); ev.Verdict != v1alpha1.VerdictFail || *ev.Value != 0 {
		t.Fatalf("evaluation = %+v", ev)
	}
}

func TestRunPromptsHostileAnswers(t *testing.T) {
	var requests atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		var req struct {
			Model     string `json:"model"`
			MaxTokens int    `json:"max_tokens"`
			Messages  []struct{ Role, Content string }
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) != 1 || req.Messages[0].Role != "user" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, chatAnswer(fmt.Sprintf(`{"model":%q,"max_tokens":%d,"echo":%q}`, req.Model, req.MaxTokens, req.Messages[0].Content)))
	})
	mux.HandleFunc("/html", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = io.WriteString(w, "<html><body>502 Bad Gateway</body></html>")
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = io.WriteString(w, chatAnswer(strings.Repeat("Paris ", MaxAnswerBytes)))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body) // so that the server sees the client leave
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	})
	mux.HandleFunc("/error", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, `{"error":{"message":"engine dead"}}`, http.StatusInternalServerError)
	})
	mux.HandleFunc("/nochoices", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = io.WriteString(w, `{"choices":[]}`)
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = io.WriteString(w, `{"choices":[{"message":{"role":"assistant"}}]}`)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data", http.StatusTemporaryRedirect)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := loopbackClient(t)

	jsonEcho := v1alpha1.PromptCase{Prompt: "Q", MaxLatency: "2s",
		Expect: v1alpha1.PromptExpectation{JSONSchema: `{"type":"object","properties":{"model":{"const":"m"},"max_tokens":{"const":7},"echo":{"const":"Q"}},"required":["model","max_tokens","echo"]}`}}
	jsonEcho.MaxTokens = 7
	paris := v1alpha1.PromptCase{Prompt: "Capital of France?", MaxLatency: "300ms", Expect: v1alpha1.PromptExpectation{Contains: "Paris"}}

	for _, tc := range []struct {
		path    string
		p       v1alpha1.PromptCase
		ok      bool
		wantWhy string
	}{
		{path: "/ok", p: jsonEcho, ok: true},
		{path: "/html", p: paris, wantWhy: `not an OpenAI chat response: "<html><body>502 Bad Gateway</body></html>"`},
		{path: "/huge", p: paris, wantWhy: "answer larger than 256 KiB"},
		{path: "/slow", p: paris, wantWhy: "no answer within maxLatency 300ms"},
		{path: "/error", p: paris, wantWhy: `HTTP 500: "{\"error\":{\"message\":\"engine dead\"}}"`},
		{path: "/nochoices", p: paris, wantWhy: "not an OpenAI chat response"},
		{path: "/nocontent", p: paris, wantWhy: "the first choice has no content"},
		{path: "/redirect", p: paris, wantWhy: "refused by the operator's egress policy"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			before := requests.Load()
			run := RunPrompts(context.Background(), c, PromptTarget{URL: srv.URL + tc.path, Model: "m"}, mustPrompts(t, tc.p), 1, 10*time.Second)
			if got := requests.Load() - before; got != 1 {
				t.Fatalf("%d requests, want exactly 1 (no retries)", got)
			}
			if (run.Passed == 1) != tc.ok {
				t.Fatalf("run = %+v", run)
			}
			if !tc.ok && (len(run.Failures) != 1 || !strings.Contains(run.Failures[0], tc.wantWhy)) {
				t.Fatalf("failures %q, want %q", run.Failures, tc.wantWhy)
			}
			if !tc.ok && len(run.Failures[0]) > 300 {
				t.Fatalf("failure message is %d bytes", len(run.Failures[0]))
			}
		})
	}
}

func TestRunPromptsBoundsConcurrencyAndTime(t *testing.T) {
	var inflight, peak, requests atomic.Int32
	answering := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		_, _ = io.WriteString(w, chatAnswer("Paris"))
	}))
	t.Cleanup(answering.Close)
	stop := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(silent.Close)
	t.Cleanup(func() { close(stop) }) // runs before silent.Close
	c := loopbackClient(t)
	var cases []v1alpha1.PromptCase
	for range 10 {
		cases = append(cases, v1alpha1.PromptCase{Prompt: "Capital of France?", MaxLatency: "1m", Expect: v1alpha1.PromptExpectation{Contains: "Paris"}})
	}
	prompts := mustPrompts(t, cases...)

	// All answered, never more than 3 in flight.
	run := RunPrompts(context.Background(), c, PromptTarget{URL: answering.URL}, prompts, 3, time.Minute)
	if run.Passed != 10 || run.Sent != 10 || requests.Load() != 10 || peak.Load() > 3 {
		t.Fatalf("run = %+v, %d requests, peak concurrency %d", run, requests.Load(), peak.Load())
	}

	// Nothing answers: the overall timeout ends the run; prompts not sent
	// by then fail too.
	requests.Store(0)
	run = RunPrompts(context.Background(), c, PromptTarget{URL: silent.URL}, prompts, 4, 300*time.Millisecond)
	if run.Passed != 0 || run.Sent != 4 || run.Total != 10 || len(run.Failures) != 10 {
		t.Fatalf("run = %+v", run)
	}
	if !strings.Contains(run.Failures[0], "no answer before the gate's timeout of 300ms") || !strings.Contains(run.Failures[9], "not sent: the gate's timeout of 300ms ran out") {
		t.Fatalf("failures = %q", run.Failures)
	}
	if requests.Load() != 4 {
		t.Fatalf("%d requests, want 4", requests.Load())
	}
}

func TestRunPromptsRefusedByEgress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the egress policy let a request through to loopback")
	}))
	t.Cleanup(srv.Close)
	strict, err := egress.MustNew(nil, nil).Client(egress.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	prompts := mustPrompts(t, v1alpha1.PromptCase{Prompt: "hi", Expect: v1alpha1.PromptExpectation{Contains: "x"}})
	run := RunPrompts(context.Background(), strict, PromptTarget{URL: srv.URL}, prompts, 1, 5*time.Second)
	if run.Refused == nil {
		t.Fatalf("run = %+v", run)
	}
	ev := PromptOutcome(v1alpha1.Gate{Name: "answers", GateSpec: v1alpha1.GateSpec{Min: ptr.To(1.0)}}, run, nil)
	if ev.Verdict != v1alpha1.VerdictError || !strings.Contains(ev.Message, "--egress-allow") {
		t.Fatalf("evaluation = %+v", ev)
	}
}

func TestPromptOutcome(t *testing.T) {
	g := v1alpha1.Gate{Name: "answers", GateSpec: v1alpha1.GateSpec{Min: ptr.To(0.75)}}
	canary := PromptRun{Total: 4, Sent: 4, Passed: 2, Failures: []string{"prompt 1: answer does not contain \"Paris\": \"Lyon\"", "prompt 3: x"}}
	stable := PromptRun{Total: 4, Sent: 4, Passed: 4}
	ev := PromptOutcome(g, canary, &stable)
	if ev.Verdict != v1alpha1.VerdictFail || *ev.Value != 0.5 || ev.StableValue == nil || *ev.StableValue != 1 {
		t.Fatalf("evaluation = %+v", ev)
	}
	want := `2 of 4 prompts passed (0.5), outside >= 0.75; stable 4 of 4 (1); prompt 1: answer does not contain "Paris": "Lyon" (and 1 more)`
	if ev.Message != want {
		t.Fatalf("message\n got %s\nwant %s", ev.Message, want)
	}
	st, out := Record(v1alpha1.GateStatus{}, g, ev, 0, 0, time.Unix(0, 0))
	if out != OutcomeFail || st.Value != "0.5" || st.StableValue != "1" {
		t.Fatalf("status = %+v, outcome %s", st, out)
	}
	if ev := PromptOutcome(g, PromptRun{}, nil); ev.Verdict != v1alpha1.VerdictNoData {
		t.Fatalf("no prompts: %+v", ev)
	}
}

// FuzzPromptExpectation parses arbitrary expectations and prompt lists and
// judges arbitrary answers with them: nothing may panic, a parsed
// expectation must judge consistently, and messages stay short.
func FuzzPromptExpectation(f *testing.F) {
	f.Add("Paris", "", "", "The capital is Paris.")
	f.Add("", `(?i)\bparis\b`, "", "PARIS")
	f.Add("", `^\d+$`, "", "4\n")
	f.Add("", "", `{"type":"object","required":["answer"]}`, `{"answer":4}`)
	f.Add("", "", `{"type":"object"}`, `{"answer":4,`)
	f.Add("", "", `{"$ref":"file:///etc/passwd"}`, `{}`)
	f.Add("", "", `{"pattern":"(a+)+$"}`, `"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"`)
	f.Add("", "", `{"items":{"$ref":"#"}}`, `[[[[[[[[[[]]]]]]]]]]`)
	f.Add("x", "y", "", "xy")
	f.Add("", "(", "", "")
	f.Add("", "", "", "- prompt: hi\n  expect: {contains: x}\n")
	f.Fuzz(func(t *testing.T, contains, regex, schema, answer string) {
		x, err := ParseExpectation(v1alpha1.PromptExpectation{Contains: contains, Regex: regex, JSONSchema: schema})
		if err == nil {
			ok, why := x.Check(answer)
			if ok != (why == "") {
				t.Fatalf("Check(%q) = %v, %q", answer, ok, why)
			}
			if contains != "" && ok != strings.Contains(answer, contains) {
				t.Fatalf("contains %q on %q: %v", contains, answer, ok)
			}
			if len(why) > 1024 {
				t.Fatalf("why is %d bytes", len(why))
			}
		}
		// The same text as a ConfigMap prompt list.
		if ps, err := ParsePromptList([]byte(answer)); err == nil {
			if len(ps) == 0 || len(ps) > MaxPrompts {
				t.Fatalf("%d prompts parsed", len(ps))
			}
			for _, p := range ps {
				if p.MaxTokens < 1 || p.MaxTokens > MaxPromptTokens || p.MaxLatency <= 0 {
					t.Fatalf("prompt %+v out of bounds", p)
				}
			}
		}
	})
}
