// Package redact is the operator's one scrubber of credentials. Every
// message, Event, condition and log line built from a remote answer or a
// transport error goes through a Scrubber that knows what was sent: bearer
// tokens, passwords and the base64 form of user:password, header values read
// from Secrets, OAuth2 client secrets. Whatever it knows, and every URL's
// userinfo and query, is replaced by Mark.
//
// Scrub the whole text before cutting it to an excerpt: a secret cut in two
// by an excerpt is no longer found.
//
// A Scrubber catches the forms an honest endpoint echoes a credential in:
// as sent, in base64 (basic auth), percent-encoded, and escaped inside a JSON
// or Go string. It cannot catch a transformation it does not know (an
// endpoint that hashes or reverses what it got); keeping credentials from
// endpoints that are not meant to have them is the egress policy's job.
package redact

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Mark replaces what is scrubbed.
const Mark = "[redacted]"

// MinQueryValue is the shortest query value of a URL that was sent which is
// scrubbed wherever it appears. Shorter values (format=json, page=2) are
// rarely credentials; they are still scrubbed inside any URL.
const MinQueryValue = 8

// Scrubber replaces known secrets and the credentials of URLs in text. The
// zero value and nil scrub URLs and bearer tokens only. Add secrets before
// use; a Scrubber is safe for concurrent use.
type Scrubber struct {
	mu       sync.Mutex
	secrets  []string
	replacer *strings.Replacer
}

// New returns a Scrubber of the given secrets (empty ones are ignored).
func New(secrets ...string) *Scrubber {
	s := &Scrubber{}
	s.Add(secrets...)
	return s
}

// Add adds secrets, with the forms they may be echoed in.
func (s *Scrubber) Add(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range secrets {
		if v == "" {
			continue
		}
		s.secrets = append(s.secrets, forms(v)...)
		if t := strings.TrimSpace(v); t != v && t != "" {
			s.secrets = append(s.secrets, forms(t)...)
		}
	}
	s.replacer = nil
}

// AddBasic adds the password of basic auth and the base64 of user:password,
// the value of the Authorization header.
func (s *Scrubber) AddBasic(user, password string) {
	if user == "" && password == "" {
		return
	}
	s.Add(password)
	s.addExact(base64Forms(user + ":" + password)...)
}

// AddURL adds the credentials a URL carries: the password of its userinfo
// (and the basic auth header Go derives from it) and its query values of at
// least MinQueryValue bytes.
func (s *Scrubber) AddURL(raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		return
	}
	if u.User != nil {
		p, _ := u.User.Password()
		s.AddBasic(u.User.Username(), p)
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if len(v) >= MinQueryValue {
				s.Add(v)
			}
		}
	}
}

func (s *Scrubber) addExact(vs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets = append(s.secrets, vs...)
	s.replacer = nil
}

// forms lists v and its encodings.
func forms(v string) []string {
	q := strconv.Quote(v)
	out := []string{v, url.QueryEscape(v), url.PathEscape(v), q[1 : len(q)-1]}
	if b, err := json.Marshal(v); err == nil {
		out = append(out, string(b[1:len(b)-1]))
	}
	return append(out, base64Forms(v)...)
}

func base64Forms(v string) []string {
	b := []byte(v)
	return []string{
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
	}
}

// build makes the replacer: longest secrets first, so that a secret is
// replaced whole rather than a shorter one inside it.
func (s *Scrubber) build() *strings.Replacer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replacer != nil {
		return s.replacer
	}
	vs := slices.Clone(s.secrets)
	slices.SortFunc(vs, func(a, b string) int { return len(b) - len(a) })
	vs = slices.Compact(vs)
	pairs := make([]string, 0, 2*len(vs))
	for _, v := range vs {
		if v != "" {
			pairs = append(pairs, v, Mark)
		}
	}
	s.replacer = strings.NewReplacer(pairs...)
	return s.replacer
}

var (
	// urlPattern finds URLs in free text.
	urlPattern = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.\-]*://[^\s"'<>` + "`" + `]+`)
	// bearerPattern finds a bearer token, known or not (one an OAuth2
	// token endpoint handed out).
	bearerPattern = regexp.MustCompile(`\b(Bearer|bearer|BEARER)(\s+)[A-Za-z0-9\-._~+/]{8,}=*`)
)

// String scrubs text.
func (s *Scrubber) String(text string) string {
	if s != nil {
		s.mu.Lock()
		n := len(s.secrets)
		s.mu.Unlock()
		if n > 0 {
			text = s.build().Replace(text)
		}
	}
	if strings.Contains(text, "://") {
		text = urlPattern.ReplaceAllStringFunc(text, URL)
	}
	return bearerPattern.ReplaceAllString(text, "${1}${2}"+Mark)
}

// Bytes scrubs b.
func (s *Scrubber) Bytes(b []byte) []byte { return []byte(s.String(string(b))) }

// Error returns err with its text scrubbed; errors.Is and errors.As still
// see the errors it wraps. nil stays nil.
func (s *Scrubber) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := s.String(msg)
	if clean == msg {
		return err
	}
	return &scrubbed{msg: clean, err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// URL prints a URL without its userinfo and fragment, and with its query,
// if any, replaced by Mark. It works on text that does not parse as a URL
// too.
func URL(raw string) string {
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i+1] + Mark
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
		rest = rest[at+1:]
	}
	return scheme + "://" + rest
}
