package analysis

// Web gates: an HTTP(S) GET or POST whose JSON answer yields the gate's
// number through an RFC 9535 JSONPath expression. The number is judged by
// min and max, and recorded by Record, exactly like a PromQL value.
//
// The verdicts of one call:
//
//   - a transport error, a timeout or a refusal of the egress policy: Error;
//   - a status outside 2xx: Error, with a short sanitised excerpt of the body;
//   - a body over maxResponseBytes, or one that is not a single JSON value:
//     Error;
//   - the JSONPath selects nothing, or selects null: NoData (judged by the
//     gate's noData policy);
//   - it selects several values: Error;
//   - it selects one number, or one string holding a number ("0.93"): that
//     value, Pass or Fail by min and max; NaN and ±Inf (only reachable as
//     strings) are NoData, as in PromQL gates;
//   - it selects anything else (a boolean, an object, an array, a
//     non-numeric string), or a number beyond float64: Error.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/theory/jsonpath"
	"golang.org/x/net/http/httpguts"

	"github.com/modelrollout/modelrollout/analysis/egress"
	"github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/redact"
)

// Defaults and bounds of web gates; the CRD defaults match.
const (
	// DefaultWebTimeout bounds a web gate's call when the gate sets none.
	DefaultWebTimeout = v1alpha1.DefaultWebGateTimeout
	// DefaultWebMaxResponseBytes bounds a web gate's answer when the gate
	// sets no maxResponseBytes.
	DefaultWebMaxResponseBytes = 1 << 20
	// MaxWebMaxResponseBytes is the largest maxResponseBytes.
	MaxWebMaxResponseBytes = 16 << 20
	// webExcerpt is how many characters of an answer a message may quote.
	webExcerpt = 120
)

// WebRequest is a web gate with its templates rendered, its URL checked and
// its JSONPath parsed: everything needed for one call.
type WebRequest struct {
	// Method is GET or POST.
	Method string
	// URL is the rendered URL.
	URL string
	// Header holds the rendered headers.
	Header http.Header
	// Body is the rendered JSON body of a POST; empty for GET.
	Body string
	// Path selects the number in the answer.
	Path *jsonpath.Path
	// Timeout bounds the call.
	Timeout time.Duration
	// MaxBytes bounds the answer's body.
	MaxBytes int64
}

// WebAuth holds the credentials of a web gate, from its Secret.
type WebAuth struct {
	// BearerToken is sent as "Authorization: Bearer <token>".
	BearerToken string
	// Username and Password are sent as basic auth.
	Username, Password string
}

// HTTPDoer sends one request. The *http.Client of an egress.Policy is the
// one used in production; WebClients hands them out.
type HTTPDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// ParseJSONPath parses an RFC 9535 JSONPath expression.
func ParseJSONPath(expr string) (*jsonpath.Path, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("jsonPath is empty; write e.g. $.data.score")
	}
	p, err := jsonpath.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("jsonPath %q: %w", truncate(expr, 128), err)
	}
	return p, nil
}

// RenderWeb renders a web gate's URL, headers and body over v, checks them
// and parses its JSONPath. Errors name the gate, like RenderGate's.
func RenderWeb(g v1alpha1.Gate, v Vars) (WebRequest, error) {
	r, err := renderWeb(g, v)
	if err != nil {
		return WebRequest{}, fmt.Errorf("gate %q: %w", g.Name, err)
	}
	return r, nil
}

func renderWeb(g v1alpha1.Gate, v Vars) (WebRequest, error) {
	w := g.Web
	var r WebRequest
	switch {
	case w == nil:
		return r, errors.New("not a web gate")
	case g.Preset != "" || g.Query != "":
		return r, errors.New("set exactly one gate kind: preset, query or web")
	case g.Min == nil && g.Max == nil:
		return r, errors.New("set min, max or both: a gate without a threshold would always pass")
	case g.Min != nil && g.Max != nil && *g.Min > *g.Max:
		return r, fmt.Errorf("min %s is greater than max %s", formatFloat(*g.Min), formatFloat(*g.Max))
	}

	switch w.Method {
	case "", v1alpha1.WebMethodGet:
		r.Method = http.MethodGet
		if w.Body != "" {
			return r, errors.New("web.body is sent only with method: POST")
		}
	case v1alpha1.WebMethodPost:
		r.Method = http.MethodPost
	default:
		return r, fmt.Errorf("web.method %q is not GET or POST", w.Method)
	}

	raw, err := RenderURL(w.URL, v)
	if err != nil {
		return r, fmt.Errorf("web.url: %w", err)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return r, fmt.Errorf("web.url %q: %w", truncate(raw, 256), errors.Unwrap(err))
	case u.Scheme != "http" && u.Scheme != "https":
		return r, fmt.Errorf("web.url %q must be an http:// or https:// URL", truncate(raw, 256))
	case u.Host == "":
		return r, fmt.Errorf("web.url %q has no host", truncate(raw, 256))
	case u.User != nil:
		return r, errors.New("web.url must not carry credentials; put them in the Secret of web.authSecretRef")
	}
	r.URL = u.String()

	r.Header = http.Header{}
	for _, h := range w.Headers {
		if !httpguts.ValidHeaderFieldName(h.Name) {
			return r, fmt.Errorf("web.headers: %q is not a valid header name", h.Name)
		}
		val, err := RenderHeader(h.Value, v)
		if err != nil {
			return r, fmt.Errorf("web.headers[%s]: %w", h.Name, err)
		}
		if !httpguts.ValidHeaderFieldValue(val) {
			return r, fmt.Errorf("web.headers[%s]: the rendered value holds a line break or another control character", h.Name)
		}
		r.Header.Add(h.Name, val)
	}

	if w.Body != "" {
		body, err := RenderJSON(w.Body, v)
		if err != nil {
			return r, fmt.Errorf("web.body: %w", err)
		}
		if !json.Valid([]byte(body)) {
			return r, fmt.Errorf("web.body does not render to JSON: %s", egress.Excerpt([]byte(body), webExcerpt))
		}
		r.Body = body
		if r.Header.Get("Content-Type") == "" {
			r.Header.Set("Content-Type", "application/json")
		}
	}
	if r.Header.Get("Accept") == "" {
		r.Header.Set("Accept", "application/json")
	}

	if r.Path, err = ParseJSONPath(w.JSONPath); err != nil {
		return r, fmt.Errorf("web.%w", err)
	}

	r.Timeout = DefaultWebTimeout
	if w.Timeout != "" {
		d, err := w.Timeout.Parse()
		if err != nil || d <= 0 {
			return r, fmt.Errorf("web.timeout %q must be a positive duration", w.Timeout)
		}
		r.Timeout = d
	}
	r.MaxBytes = DefaultWebMaxResponseBytes
	if w.MaxResponseBytes != 0 {
		if w.MaxResponseBytes < 0 || w.MaxResponseBytes > MaxWebMaxResponseBytes {
			return r, fmt.Errorf("web.maxResponseBytes %d must be between 1 and %d", w.MaxResponseBytes, MaxWebMaxResponseBytes)
		}
		r.MaxBytes = w.MaxResponseBytes
	}
	return r, nil
}

// EvaluateWeb calls the gate's endpoint once through c and judges the
// answer. See the verdicts at the top of this file.
func EvaluateWeb(parent context.Context, c HTTPDoer, g v1alpha1.Gate, r WebRequest, auth WebAuth) Evaluation {
	ctx, cancel := context.WithTimeout(parent, r.Timeout)
	defer cancel()
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, body)
	if err != nil {
		return webError("build request: %s", redact.New().String(err.Error()))
	}
	req.Header = r.Header.Clone()
	switch {
	case auth.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+auth.BearerToken)
	case auth.Username != "":
		req.SetBasicAuth(auth.Username, auth.Password)
	}

	// Whatever comes back is scrubbed of what was sent.
	sc := redact.New(auth.BearerToken)
	sc.AddBasic(auth.Username, auth.Password)
	sc.AddURL(r.URL)

	resp, err := c.Do(req)
	if err != nil {
		return webError("%s %s: %s", r.Method, redactURL(req.URL), sc.String(callError(parent, ctx, err, r.Timeout)))
	}
	defer resp.Body.Close()
	b, err := egress.ReadCapped(resp.Body, r.MaxBytes)
	switch {
	case errors.Is(err, egress.ErrTooLarge):
		return webError("%s %s: %v", r.Method, redactURL(req.URL), sc.Error(err))
	case err != nil:
		return webError("%s %s: read the answer: %s", r.Method, redactURL(req.URL), sc.String(callError(parent, ctx, err, r.Timeout)))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := fmt.Sprintf("%s %s: HTTP %d", r.Method, redactURL(req.URL), resp.StatusCode)
		if ex := egress.Excerpt(sc.Bytes(b), webExcerpt); ex != "" {
			msg += ": " + ex
		}
		return webError("%s", msg)
	}
	return judgeWebAnswer(g, r.Path, b, sc)
}

// JudgeWebAnswer selects the gate's number from a 2xx answer's body and
// compares it with min and max.
func JudgeWebAnswer(g v1alpha1.Gate, path *jsonpath.Path, body []byte) Evaluation {
	return judgeWebAnswer(g, path, body, nil)
}

// judgeWebAnswer is JudgeWebAnswer with the excerpts of its messages
// scrubbed by sc.
func judgeWebAnswer(g v1alpha1.Gate, path *jsonpath.Path, body []byte, sc *redact.Scrubber) Evaluation {
	v, noData, err := selectNumber(path, body, sc)
	switch {
	case err != nil:
		return Evaluation{Verdict: v1alpha1.VerdictError, Message: err.Error()}
	case noData != "":
		return Evaluation{Verdict: v1alpha1.VerdictNoData, Message: "no data: " + noData}
	}
	ev := Evaluation{Value: &v}
	if InRange(v, g.Min, g.Max) {
		ev.Verdict = v1alpha1.VerdictPass
		ev.Message = fmt.Sprintf("%s is within %s", FormatValue(v), Threshold(g))
	} else {
		ev.Verdict = v1alpha1.VerdictFail
		ev.Message = fmt.Sprintf("%s is outside %s", FormatValue(v), Threshold(g))
	}
	return ev
}

// SelectNumber parses body as one JSON value and selects path in it. It
// returns the number, or a reason for no data (nothing selected, null,
// NaN, ±Inf), or an error (not JSON, several values, not a number).
func SelectNumber(path *jsonpath.Path, body []byte) (v float64, noData string, err error) {
	return selectNumber(path, body, nil)
}

func selectNumber(path *jsonpath.Path, body []byte, sc *redact.Scrubber) (v float64, noData string, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return 0, "", fmt.Errorf("the answer is not JSON (%s): %s", jsonErr(err), egress.Excerpt(sc.Bytes(body), webExcerpt))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return 0, "", fmt.Errorf("the answer is not one JSON value: %s", egress.Excerpt(sc.Bytes(body), webExcerpt))
	}
	nodes := path.Select(doc)
	switch len(nodes) {
	case 0:
		return 0, fmt.Sprintf("jsonPath %s selected nothing", truncate(path.String(), 128)), nil
	case 1:
	default:
		return 0, "", fmt.Errorf("jsonPath %s selected %d values; it must select exactly one", truncate(path.String(), 128), len(nodes))
	}
	var s string
	switch n := nodes[0].(type) {
	case nil:
		return 0, fmt.Sprintf("jsonPath %s selected null", truncate(path.String(), 128)), nil
	case json.Number:
		s = string(n)
	case string:
		s = strings.TrimSpace(n)
	default:
		return 0, "", fmt.Errorf("jsonPath %s selected %s, not a number", truncate(path.String(), 128), describeJSON(n))
	}
	f, perr := strconv.ParseFloat(s, 64)
	switch {
	case perr == nil && (math.IsNaN(f) || math.IsInf(f, 0)):
		return 0, fmt.Sprintf("jsonPath %s selected %s", truncate(path.String(), 128), strconv.Quote(truncate(sc.String(s), 32))), nil
	case errors.Is(perr, strconv.ErrRange):
		return 0, "", fmt.Errorf("jsonPath %s selected %s, beyond the range of a float64", truncate(path.String(), 128), truncate(sc.String(s), 32))
	case perr != nil:
		return 0, "", fmt.Errorf("jsonPath %s selected the string %s, not a number", truncate(path.String(), 128), strconv.Quote(egress.Excerpt(sc.Bytes([]byte(s)), 32)))
	}
	return f, "", nil
}

func describeJSON(v any) string {
	switch v.(type) {
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("a %T", v)
}

// jsonErr shortens a decoding error to what it says about the input.
func jsonErr(err error) string {
	if errors.Is(err, io.EOF) {
		return "empty body"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func webError(format string, args ...any) Evaluation {
	return Evaluation{Verdict: v1alpha1.VerdictError, Message: fmt.Sprintf(format, args...)}
}

// callError says why a call failed: the gate's timeout, the caller's
// cancellation, the egress policy's
// refusal (its own words), or the transport's error without the URL, which
// the caller prints once.
func callError(parent, ctx context.Context, err error, timeout time.Duration) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	switch {
	case errors.Is(err, egress.ErrRefused):
		// Keep the policy's message, without the dialer's "dial tcp ..."
		// prefix.
		msg := err.Error()
		if i := strings.Index(msg, egress.ErrRefused.Error()); i > 0 {
			msg = msg[i:]
		}
		return msg
	case parent.Err() != nil:
		// The caller gave up first (the gate round's own bound, or the
		// operator stopping), not the gate's timeout.
		return fmt.Sprintf("the call was cut short: %v", context.Cause(parent))
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within the timeout of %s", timeout)
	}
	return err.Error()
}

// redactURL prints u without its userinfo and query, which may carry
// tokens.
func redactURL(u *url.URL) string {
	return truncate(redact.URL(u.String()), 200)
}

// WebClients hands out one HTTP client per (egress policy, CA bundle), so
// evaluations reuse transports and connections. It keeps at most max
// clients; beyond that the oldest is dropped and its idle connections
// closed. Safe for concurrent use.
type WebClients struct {
	mu      sync.Mutex
	max     int
	clients map[webClientKey]*http.Client
	order   []webClientKey // oldest first
}

type webClientKey struct {
	policy *egress.Policy
	ca     [sha256.Size]byte
}

// NewWebClients returns a cache of at most max clients (at least 1).
func NewWebClients(n int) *WebClients {
	return &WebClients{max: max(n, 1), clients: map[webClientKey]*http.Client{}}
}

// Get returns the client for the policy and the PEM CA bundle (nil: the
// system roots). The client sets no timeout of its own: EvaluateWeb bounds
// each call with the gate's. A CA bundle without a certificate is an error.
func (c *WebClients) Get(p *egress.Policy, caPEM []byte) (*http.Client, error) {
	key := webClientKey{policy: p}
	if len(caPEM) > 0 {
		key.ca = sha256.Sum256(caPEM)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[key]; ok {
		return cl, nil
	}
	opts := egress.Options{}
	if len(caPEM) > 0 {
		opts.TLS = &egress.TLSOptions{CAPEM: caPEM}
	}
	cl, err := p.Client(opts)
	if err != nil {
		return nil, err
	}
	c.clients[key] = cl
	c.order = append(c.order, key)
	for len(c.order) > c.max {
		old := c.order[0]
		c.order = c.order[1:]
		c.clients[old].CloseIdleConnections()
		delete(c.clients, old)
	}
	return cl, nil
}

// Len is the number of cached clients.
func (c *WebClients) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.clients)
}
