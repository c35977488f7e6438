package analysis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"sigs.k8s.io/yaml"

	"github.com/modelrollout/modelrollout/analysis/egress"
	"github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/redact"
)

// Prompt gates send a few prompts straight to a backend (OpenAI chat or
// completions API) and judge each answer: it must arrive within the
// prompt's maxLatency, with HTTP 200, as an OpenAI response whose first
// choice holds the expected content (a substring, a regular expression, or
// JSON valid under a JSON Schema). The gate's value is the fraction of
// prompts that passed.
//
// Nothing is retried: a prompt that fails, fails. Answers are never logged;
// a failure's message carries at most a short, sanitised excerpt
// (egress.Excerpt).

// Limits of prompt gates, beyond those of the CRD.
const (
	// MaxPrompts bounds the prompts of one gate, from the spec or a
	// ConfigMap.
	MaxPrompts = 32
	// MaxPromptBytes bounds one prompt.
	MaxPromptBytes = 8192
	// MaxExpectationBytes bounds contains and regex.
	MaxExpectationBytes = 1024
	// MaxSchemaBytes bounds a JSON Schema.
	MaxSchemaBytes = 8192
	// MaxPromptTokens bounds a prompt's maxTokens.
	MaxPromptTokens = 4096
	// MaxPromptListBytes bounds the ConfigMap value holding a prompt list.
	MaxPromptListBytes = 256 << 10
	// MaxAnswerBytes bounds the body of one answer; a larger one fails.
	MaxAnswerBytes = 256 << 10
	// MaxPromptConcurrency bounds the prompts in flight at once.
	MaxPromptConcurrency = 16

	// DefaultPromptMaxTokens is a prompt's maxTokens when unset.
	DefaultPromptMaxTokens = 64
	// DefaultPromptMaxLatency is a prompt's maxLatency when unset.
	DefaultPromptMaxLatency = 10 * time.Second
	// DefaultPromptTimeout bounds one evaluation of a gate when unset.
	DefaultPromptTimeout = v1alpha1.DefaultPromptTimeout
	// DefaultPromptConcurrency is the gate's concurrency when unset.
	DefaultPromptConcurrency = 4

	// excerptRunes is the length of an answer excerpt in a message.
	excerptRunes = 60
)

// Expectation is a parsed PromptExpectation.
type Expectation struct {
	contains string
	re       *regexp.Regexp
	schema   *jsonschema.Schema
}

// ParseExpectation checks and compiles what an answer must hold: exactly
// one of contains, regex (RE2) or jsonSchema, within their size limits.
func ParseExpectation(e v1alpha1.PromptExpectation) (Expectation, error) {
	n := 0
	for _, s := range []string{e.Contains, e.Regex, e.JSONSchema} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return Expectation{}, errors.New("set exactly one of contains, regex or jsonSchema")
	}
	switch {
	case e.Contains != "":
		if len(e.Contains) > MaxExpectationBytes {
			return Expectation{}, fmt.Errorf("contains is longer than %d bytes", MaxExpectationBytes)
		}
		return Expectation{contains: e.Contains}, nil
	case e.Regex != "":
		if len(e.Regex) > MaxExpectationBytes {
			return Expectation{}, fmt.Errorf("regex is longer than %d bytes", MaxExpectationBytes)
		}
		re, err := regexp.Compile(e.Regex)
		if err != nil {
			return Expectation{}, fmt.Errorf("regex: %w", err)
		}
		return Expectation{re: re}, nil
	}
	if len(e.JSONSchema) > MaxSchemaBytes {
		return Expectation{}, fmt.Errorf("jsonSchema is longer than %d bytes", MaxSchemaBytes)
	}
	sch, err := compileSchema(e.JSONSchema)
	if err != nil {
		return Expectation{}, fmt.Errorf("jsonSchema: %w", err)
	}
	return Expectation{schema: sch}, nil
}

const schemaURL = "urn:modelrollout:prompt-expectation"

// noLoader refuses every reference to another document: a schema must not
// make the operator read files or fetch URLs.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("references to other documents are not loaded (%s)", url)
}

func compileSchema(s string) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	if err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, errors.New(firstLine(err.Error()))
	}
	return sch, nil
}

// Check judges an answer. When it fails, why says how, with a short excerpt
// of the answer.
func (x Expectation) Check(answer string) (ok bool, why string) {
	switch {
	case x.re != nil:
		if x.re.MatchString(answer) {
			return true, ""
		}
		return false, fmt.Sprintf("answer does not match %s: %q", excerpt(x.re.String(), 40), excerpt(answer, excerptRunes))
	case x.schema != nil:
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(strings.TrimSpace(answer)))
		if err != nil {
			return false, fmt.Sprintf("answer is not JSON: %q", excerpt(answer, excerptRunes))
		}
		if err := x.schema.Validate(v); err != nil {
			return false, fmt.Sprintf("answer does not match the JSON Schema (%s): %q", excerpt(schemaError(err), 80), excerpt(answer, excerptRunes))
		}
		return true, ""
	case x.contains != "":
		if strings.Contains(answer, x.contains) {
			return true, ""
		}
		return false, fmt.Sprintf("answer does not contain %q: %q", excerpt(x.contains, 40), excerpt(answer, excerptRunes))
	}
	return false, "no expectation"
}

// schemaError is the most specific cause of a validation error.
func schemaError(err error) string {
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		for len(ve.Causes) > 0 {
			ve = ve.Causes[0]
		}
		loc := "/" + strings.Join(ve.InstanceLocation, "/")
		return loc + ": " + ve.ErrorKind.LocalizedString(englishPrinter)
	}
	return firstLine(err.Error())
}

var englishPrinter = message.NewPrinter(language.English)

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func excerpt(s string, n int) string { return egress.Excerpt([]byte(s), n) }

// PromptCheck is one prompt, ready to send.
type PromptCheck struct {
	Prompt     string
	MaxTokens  int
	MaxLatency time.Duration
	Expect     Expectation
}

// ParsePrompts checks and compiles prompt cases, applying the defaults of
// maxTokens and maxLatency. Errors name the prompt by its position (1-based).
func ParsePrompts(cases []v1alpha1.PromptCase) ([]PromptCheck, error) {
	if len(cases) == 0 {
		return nil, errors.New("no prompts")
	}
	if len(cases) > MaxPrompts {
		return nil, fmt.Errorf("%d prompts, at most %d allowed", len(cases), MaxPrompts)
	}
	var msgs []string
	out := make([]PromptCheck, 0, len(cases))
	for i, c := range cases {
		pc, err := parsePrompt(c)
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("prompt %d: %v", i+1, err))
			continue
		}
		out = append(out, pc)
	}
	if len(msgs) > 0 {
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	return out, nil
}

func parsePrompt(c v1alpha1.PromptCase) (PromptCheck, error) {
	pc := PromptCheck{Prompt: c.Prompt, MaxTokens: int(c.MaxTokens), MaxLatency: DefaultPromptMaxLatency}
	switch {
	case strings.TrimSpace(c.Prompt) == "":
		return pc, errors.New("prompt is empty")
	case len(c.Prompt) > MaxPromptBytes:
		return pc, fmt.Errorf("prompt is longer than %d bytes", MaxPromptBytes)
	case c.MaxTokens < 0 || c.MaxTokens > MaxPromptTokens:
		return pc, fmt.Errorf("maxTokens must be between 1 and %d", MaxPromptTokens)
	}
	if pc.MaxTokens == 0 {
		pc.MaxTokens = DefaultPromptMaxTokens
	}
	if c.MaxLatency != "" {
		d, err := c.MaxLatency.Parse()
		if err != nil || d <= 0 {
			return pc, fmt.Errorf("maxLatency %q is not a positive duration such as 10s", string(c.MaxLatency))
		}
		pc.MaxLatency = d
	}
	x, err := ParseExpectation(c.Expect)
	if err != nil {
		return pc, fmt.Errorf("expect: %w", err)
	}
	pc.Expect = x
	return pc, nil
}

// ParsePromptList reads a prompt list from a ConfigMap value: a YAML or JSON
// list of prompts as in spec (prompt, expect, maxTokens, maxLatency).
// Unknown fields are errors, so that a typo is not silently ignored.
func ParsePromptList(data []byte) ([]PromptCheck, error) {
	if len(data) > MaxPromptListBytes {
		return nil, fmt.Errorf("the prompt list is larger than %d bytes", MaxPromptListBytes)
	}
	var cases []v1alpha1.PromptCase
	if err := yaml.UnmarshalStrict(data, &cases); err != nil {
		return nil, fmt.Errorf("not a YAML or JSON list of prompts: %s", firstLine(err.Error()))
	}
	return ParsePrompts(cases)
}

// PromptTarget is where prompts are sent.
type PromptTarget struct {
	// URL is the full URL of the API, path included.
	URL string
	// API is Chat or Completions.
	API v1alpha1.PromptAPI
	// Model is the request's model field; omitted when empty.
	Model string
}

// PromptRun is the outcome of sending every prompt once to one target.
type PromptRun struct {
	// Total is the number of prompts; Sent those that were sent (all but
	// those the overall timeout cut off); Passed those that passed.
	Total, Sent, Passed int
	// Refused is set when the egress policy refused the target; the run
	// then has no verdict.
	Refused error
	// Failures says why prompts failed, by position ("prompt 2: ...").
	Failures []string
	// Took is the wall time of the run.
	Took time.Duration
}

// Value is the fraction of prompts that passed.
func (r PromptRun) Value() float64 {
	if r.Total == 0 {
		return 0
	}
	return float64(r.Passed) / float64(r.Total)
}

// RunPrompts sends every prompt once to the target, at most concurrency at
// a time, each bounded by its maxLatency and all by timeout, and judges the
// answers. The client must be the egress policy's (egress.Policy.Client).
func RunPrompts(ctx context.Context, c *http.Client, t PromptTarget, prompts []PromptCheck, concurrency int, timeout time.Duration) PromptRun {
	start := time.Now()
	if concurrency <= 0 {
		concurrency = DefaultPromptConcurrency
	}
	concurrency = min(concurrency, MaxPromptConcurrency)
	if timeout <= 0 {
		timeout = DefaultPromptTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	type outcome struct {
		sent, ok bool
		why      string
		refused  error
	}
	// Prompts carry no credentials of their own, but the URL may (its
	// userinfo is sent as basic auth): answers are scrubbed of it.
	sc := redact.New()
	sc.AddURL(t.URL)
	results := make([]outcome, len(prompts))
	slots := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i := range prompts {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			results[i] = outcome{why: fmt.Sprintf("not sent: the gate's timeout of %s ran out", timeout)}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			ok, why, refused := sendPrompt(ctx, c, t, prompts[i], timeout, sc)
			results[i] = outcome{sent: true, ok: ok, why: why, refused: refused}
		}()
	}
	wg.Wait()

	run := PromptRun{Total: len(prompts), Took: time.Since(start)}
	for i, r := range results {
		if r.sent {
			run.Sent++
		}
		if r.refused != nil && run.Refused == nil {
			run.Refused = sc.Error(r.refused)
		}
		if r.ok {
			run.Passed++
		} else {
			run.Failures = append(run.Failures, fmt.Sprintf("prompt %d: %s", i+1, r.why))
		}
	}
	return run
}

// openAIAnswer holds the fields of chat and text completions that are
// judged.
type openAIAnswer struct {
	Choices []struct {
		Message *struct {
			Content *string `json:"content"`
		} `json:"message"`
		Text *string `json:"text"`
	} `json:"choices"`
}

// sendPrompt sends one prompt and judges its answer. refused is set when
// the egress policy refused the call.
func sendPrompt(ctx context.Context, c *http.Client, t PromptTarget, p PromptCheck, overall time.Duration, sc *redact.Scrubber) (ok bool, why string, refused error) {
	req := map[string]any{"max_tokens": p.MaxTokens, "temperature": 0, "stream": false}
	if t.Model != "" {
		req["model"] = t.Model
	}
	if t.API == v1alpha1.PromptAPICompletions {
		req["prompt"] = p.Prompt
	} else {
		req["messages"] = []map[string]string{{"role": "user", "content": p.Prompt}}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return false, "encode request: " + err.Error(), nil
	}
	pctx, cancel := context.WithTimeout(ctx, p.MaxLatency)
	defer cancel()
	hreq, err := http.NewRequestWithContext(pctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return false, "build request: " + sc.String(err.Error()), nil
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")

	start := time.Now()
	resp, err := c.Do(hreq)
	if err != nil {
		return false, transportFailure(ctx, pctx, sc.Error(err), p.MaxLatency, overall), refusal(err)
	}
	defer resp.Body.Close()
	raw, err := egress.ReadCapped(resp.Body, MaxAnswerBytes)
	took := time.Since(start)
	switch {
	case errors.Is(err, egress.ErrTooLarge):
		return false, fmt.Sprintf("answer larger than %d KiB", MaxAnswerBytes>>10), nil
	case err != nil:
		return false, transportFailure(ctx, pctx, sc.Error(err), p.MaxLatency, overall), nil
	case resp.StatusCode != http.StatusOK:
		return false, fmt.Sprintf("HTTP %d: %q", resp.StatusCode, egress.Excerpt(sc.Bytes(raw), excerptRunes)), nil
	case took > p.MaxLatency:
		return false, fmt.Sprintf("answered in %s, over maxLatency %s", took.Round(time.Millisecond), p.MaxLatency), nil
	}
	var a openAIAnswer
	if err := json.Unmarshal(raw, &a); err != nil || len(a.Choices) == 0 {
		return false, fmt.Sprintf("not an OpenAI %s response: %q", apiName(t.API), egress.Excerpt(sc.Bytes(raw), excerptRunes)), nil
	}
	var content *string
	if ch := a.Choices[0]; ch.Message != nil && ch.Message.Content != nil {
		content = ch.Message.Content
	} else if ch.Text != nil {
		content = ch.Text
	}
	if content == nil {
		return false, fmt.Sprintf("the first choice has no content: %q", egress.Excerpt(sc.Bytes(raw), excerptRunes)), nil
	}
	ok, why = p.Expect.Check(*content)
	if !ok {
		// The expectation is judged on the answer as it came; the
		// excerpt of it in why is not, so the content is scrubbed and
		// checked again for the message only.
		_, why = p.Expect.Check(sc.String(*content))
		if why == "" {
			why = "answer does not meet the expectation"
		}
	}
	return ok, why, nil
}

func apiName(a v1alpha1.PromptAPI) string {
	if a == v1alpha1.PromptAPICompletions {
		return "completions"
	}
	return "chat"
}

// refusal returns err when it is an egress policy refusal.
func refusal(err error) error {
	if errors.Is(err, egress.ErrRefused) {
		return err
	}
	return nil
}

// transportFailure says why a request got no (complete) answer.
func transportFailure(overall, prompt context.Context, err error, maxLatency, timeout time.Duration) string {
	switch {
	case errors.Is(err, egress.ErrRefused):
		return excerpt(err.Error(), 200)
	case overall.Err() != nil:
		return fmt.Sprintf("no answer before the gate's timeout of %s", timeout)
	case prompt.Err() != nil:
		return fmt.Sprintf("no answer within maxLatency %s", maxLatency)
	}
	return "request failed: " + excerpt(err.Error(), 120)
}

// PromptOutcome combines the canary's run with the stable backend's, when
// it ran too, into an Evaluation judged by the gate's min and max. Only
// the canary's pass rate is judged; the stable one is shown beside it.
func PromptOutcome(g v1alpha1.Gate, canary PromptRun, stable *PromptRun) Evaluation {
	if canary.Refused != nil {
		return Evaluation{Verdict: v1alpha1.VerdictError, Message: "canary: " + canary.Refused.Error()}
	}
	if canary.Total == 0 {
		return Evaluation{Verdict: v1alpha1.VerdictNoData, Message: "no prompts to send"}
	}
	v := canary.Value()
	ev := Evaluation{Value: &v}
	threshold := Threshold(g)
	passed := fmt.Sprintf("%d of %d prompts passed (%s)", canary.Passed, canary.Total, FormatValue(v))
	if InRange(v, g.Min, g.Max) {
		ev.Verdict = v1alpha1.VerdictPass
		ev.Message = fmt.Sprintf("%s, within %s", passed, threshold)
	} else {
		ev.Verdict = v1alpha1.VerdictFail
		ev.Message = fmt.Sprintf("%s, outside %s", passed, threshold)
	}
	if stable != nil {
		if stable.Refused != nil {
			ev.Message += "; stable: " + stable.Refused.Error()
		} else if stable.Total > 0 {
			sv := stable.Value()
			ev.StableValue = &sv
			ev.Message += fmt.Sprintf("; stable %d of %d (%s)", stable.Passed, stable.Total, FormatValue(sv))
		}
	}
	if len(canary.Failures) > 0 {
		ev.Message += "; " + canary.Failures[0]
		if n := len(canary.Failures) - 1; n > 0 {
			ev.Message += fmt.Sprintf(" (and %d more)", n)
		}
	}
	return ev
}
