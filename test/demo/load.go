package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelrollout/modelrollout/test/vllmsim"
)

// Backend keys of a Tally for responses that no simulator answered.
const (
	// FromGateway counts responses the gateway answered itself (no
	// x-backend header: no route, no healthy upstream, timeouts).
	FromGateway = "(gateway)"
	// NoResponse counts requests that got no HTTP response at all.
	NoResponse = "(no response)"
)

// LoadOptions configure a load generator. Every load is bounded: it stops
// after MaxRequests requests or MaxDuration, whichever comes first.
type LoadOptions struct {
	// URL is the gateway's base URL; it must be a loopback address.
	URL string
	// ModelID is the x-model-id header; "gpt-4" when empty.
	ModelID string
	// Rate is the target requests per second; 0 sends as fast as
	// Concurrency allows.
	Rate float64
	// Concurrency is the number of requests in flight at most; 8 when 0.
	Concurrency int
	// MaxRequests bounds the number of requests; 10000 when 0.
	MaxRequests int
	// MaxDuration bounds the duration; 10 minutes when 0.
	MaxDuration time.Duration
	// StreamEvery makes every n-th request a streamed one (SSE); 0 never.
	StreamEvery int
	// MaxTokens is the max_tokens of each request; 16 when 0.
	MaxTokens int
	// Header, when set, goes on every HeaderEvery-th request (every
	// request when HeaderEvery is 0 or 1): the eval harness or internal
	// users that a header-routed step sends to the canary, e.g.
	// x-ab-test-group: canary. Their responses are also counted apart
	// (Tagged, TaggedWindow).
	Header      http.Header
	HeaderEvery int
}

func (o LoadOptions) withDefaults() LoadOptions {
	if o.ModelID == "" {
		o.ModelID = ModelID
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = 10000
	}
	if o.MaxDuration <= 0 {
		o.MaxDuration = 10 * time.Minute
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 16
	}
	return o
}

// BackendCount counts the responses of one backend.
type BackendCount struct {
	// OK counts complete successful responses (2xx; a stream that ended with
	// [DONE]).
	OK int
	// Failed counts the others: error statuses, streams cut short.
	Failed int
}

// Total is OK + Failed.
func (c BackendCount) Total() int { return c.OK + c.Failed }

// Tally counts responses by the backend that served them (the x-backend
// header), or FromGateway, or NoResponse.
type Tally map[string]BackendCount

// Total is the number of requests counted.
func (t Tally) Total() int {
	n := 0
	for _, c := range t {
		n += c.Total()
	}
	return n
}

// Add adds another tally to t.
func (t Tally) Add(o Tally) {
	for k, c := range o {
		cur := t[k]
		cur.OK += c.OK
		cur.Failed += c.Failed
		t[k] = cur
	}
}

// Backends returns the keys, sorted.
func (t Tally) Backends() []string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// String renders "name 123 (2 failed), ...".
func (t Tally) String() string {
	var parts []string
	for _, k := range t.Backends() {
		c := t[k]
		s := fmt.Sprintf("%s %d", k, c.Total())
		if c.Failed > 0 {
			s += fmt.Sprintf(" (%d failed)", c.Failed)
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "no requests"
	}
	return strings.Join(parts, ", ")
}

// Result is the outcome of one request.
type Result struct {
	Backend string
	Status  int
	Stream  bool
	OK      bool
	Err     error
}

// newHTTPClient returns a client that never uses a proxy.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		// The gateway's route timeout is 120 s.
		Timeout: 3 * time.Minute,
	}
}

// checkLoopbackURL refuses URLs whose host is not a loopback IP.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: traffic is only ever sent to loopback addresses", raw)
	}
	return nil
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatRequest struct {
	Model     string        `json:"model"`
	Messages  []chatMessage `json:"messages"`
	MaxTokens int           `json:"max_tokens"`
	Stream    bool          `json:"stream,omitempty"`
}

// newChatRequest builds POST /v1/chat/completions for the model.
func newChatRequest(ctx context.Context, base, modelID string, maxTokens int, stream bool) (*http.Request, error) {
	body, err := json.Marshal(chatRequest{
		Model:     modelID,
		Messages:  []chatMessage{{Role: "user", Content: "Summarise the canary procedure in one sentence."}},
		MaxTokens: maxTokens,
		Stream:    stream,
	})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-model-id", modelID)
	if stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	return req, nil
}

// Chat sends one chat completion through the gateway and reports who served
// it. A streamed response is read to its end and is OK only when it ends
// with "data: [DONE]".
func Chat(ctx context.Context, c *http.Client, base, modelID string, maxTokens int, stream bool) Result {
	return chatWith(ctx, c, base, modelID, maxTokens, stream, nil)
}

// chatWith is Chat with extra request headers (e.g. x-ab-test-group).
func chatWith(ctx context.Context, c *http.Client, base, modelID string, maxTokens int, stream bool, header http.Header) Result {
	res := Result{Stream: stream}
	req, err := newChatRequest(ctx, base, modelID, maxTokens, stream)
	if err != nil {
		res.Err = err
		res.Backend = NoResponse
		return res
	}
	for name, values := range header {
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		res.Err = err
		res.Backend = NoResponse
		return res
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	res.Backend = resp.Header.Get(vllmsim.BackendHeader)
	if res.Backend == "" {
		res.Backend = FromGateway
	}
	if !stream || resp.StatusCode != http.StatusOK {
		_, err = io.Copy(io.Discard, resp.Body)
		res.Err = err
		res.OK = err == nil && resp.StatusCode/100 == 2
		return res
	}
	sawDone := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "data: [DONE]" {
			sawDone = true
		}
	}
	res.Err = sc.Err()
	res.OK = res.Err == nil && sawDone
	if res.Err == nil && !sawDone {
		res.Err = errors.New("stream ended without [DONE]")
	}
	return res
}

// Load is a running load generator.
type Load struct {
	opts   LoadOptions
	cancel context.CancelFunc
	done   chan struct{}
	sent   atomic.Int64

	mu      sync.Mutex
	total   Tally
	buckets map[int64]Tally // per second of completion, the last few minutes
	// tagged and taggedBuckets count the requests that carried
	// opts.Header, likewise.
	tagged        Tally
	taggedBuckets map[int64]Tally
}

// StartLoad starts sending requests in the background. It stops by itself at
// its bounds, or at Stop, or when ctx ends.
func StartLoad(ctx context.Context, opts LoadOptions) (*Load, error) {
	opts = opts.withDefaults()
	if err := checkLoopbackURL(opts.URL); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.MaxDuration)
	l := &Load{opts: opts, cancel: cancel, done: make(chan struct{}), total: Tally{}, buckets: map[int64]Tally{},
		tagged: Tally{}, taggedBuckets: map[int64]Tally{}}
	go l.run(ctx)
	return l, nil
}

func (l *Load) run(ctx context.Context) {
	defer close(l.done)
	defer l.cancel()
	client := newHTTPClient(l.opts.Concurrency)
	defer client.CloseIdleConnections()

	// Tokens pace the requests at Rate; without a rate, workers send back
	// to back. Reaching MaxRequests stops the workers from starting new
	// requests; the end of ctx (Stop, MaxDuration) also cuts those in
	// flight.
	pacerCtx, stopPacer := context.WithCancel(ctx)
	defer stopPacer()
	tokens := make(chan struct{})
	var pacer sync.WaitGroup
	if l.opts.Rate > 0 {
		pacer.Add(1)
		go func() {
			defer pacer.Done()
			interval := time.Duration(float64(time.Second) / l.opts.Rate)
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-pacerCtx.Done():
					return
				case <-t.C:
					select {
					case tokens <- struct{}{}:
					default: // all workers busy: drop the tick rather than burst later
					}
				}
			}
		}()
	}

	var wg sync.WaitGroup
	for range l.opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if l.opts.Rate > 0 {
					select {
					case <-pacerCtx.Done():
						return
					case <-tokens:
					}
				} else if pacerCtx.Err() != nil {
					return
				}
				n := l.sent.Add(1)
				if n > int64(l.opts.MaxRequests) {
					stopPacer()
					return
				}
				stream := l.opts.StreamEvery > 0 && n%int64(l.opts.StreamEvery) == 0
				var header http.Header
				if len(l.opts.Header) > 0 && (l.opts.HeaderEvery <= 1 || n%int64(l.opts.HeaderEvery) == 0) {
					header = l.opts.Header
				}
				res := chatWith(ctx, client, l.opts.URL, l.opts.ModelID, l.opts.MaxTokens, stream, header)
				if ctx.Err() != nil && res.Err != nil {
					return // cut by Stop or MaxDuration: not a response
				}
				l.record(res, header != nil)
			}
		}()
	}
	wg.Wait()
	stopPacer()
	pacer.Wait()
}

func (l *Load) record(r Result, tagged bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sec := time.Now().Unix()
	tallies := []Tally{l.total, bucket(l.buckets, sec)}
	if tagged {
		tallies = append(tallies, l.tagged, bucket(l.taggedBuckets, sec))
	}
	for _, t := range tallies {
		c := t[r.Backend]
		if r.OK {
			c.OK++
		} else {
			c.Failed++
		}
		t[r.Backend] = c
	}
}

// bucket returns the tally of second sec, made on first use; it drops the
// buckets older than ten minutes.
func bucket(buckets map[int64]Tally, sec int64) Tally {
	b := buckets[sec]
	if b == nil {
		b = Tally{}
		buckets[sec] = b
		for k := range buckets {
			if k < sec-600 {
				delete(buckets, k)
			}
		}
	}
	return b
}

// Stop stops the load and waits for the requests in flight to end.
func (l *Load) Stop() {
	l.cancel()
	<-l.done
}

// Done is closed when the load has stopped.
func (l *Load) Done() <-chan struct{} { return l.done }

// Total returns the counts since the start.
func (l *Load) Total() Tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := Tally{}
	out.Add(l.total)
	return out
}

// Window returns the counts of the responses completed in the last d
// (whole seconds).
func (l *Load) Window(d time.Duration) Tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	return window(l.buckets, d)
}

// Tagged returns the counts since the start of the requests that carried
// LoadOptions.Header.
func (l *Load) Tagged() Tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := Tally{}
	out.Add(l.tagged)
	return out
}

// TaggedWindow is Window for the requests that carried LoadOptions.Header.
func (l *Load) TaggedWindow(d time.Duration) Tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	return window(l.taggedBuckets, d)
}

// Between returns the counts of the responses completed in the whole
// seconds strictly between from and to (the ten minutes before now at
// most), all of them and those that carried LoadOptions.Header.
func (l *Load) Between(from, to time.Time) (all, tagged Tally) {
	l.mu.Lock()
	defer l.mu.Unlock()
	all, tagged = Tally{}, Tally{}
	for sec, t := range l.buckets {
		if sec > from.Unix() && sec < to.Unix() {
			all.Add(t)
			tagged.Add(l.taggedBuckets[sec])
		}
	}
	return all, tagged
}

func window(buckets map[int64]Tally, d time.Duration) Tally {
	out := Tally{}
	from := time.Now().Add(-d).Unix()
	for sec, t := range buckets {
		if sec > from {
			out.Add(t)
		}
	}
	return out
}

// RunBatch sends exactly n requests (none streamed unless streamEvery > 0)
// with the given concurrency and returns who served them. It stops early
// when ctx ends.
func RunBatch(ctx context.Context, base string, n, concurrency, streamEvery int) (Tally, error) {
	return RunBatchWithHeader(ctx, base, n, concurrency, streamEvery, nil)
}

// RunBatchWithHeader is RunBatch with extra headers on every request, e.g.
// x-ab-test-group: canary to reach a header-routed canary.
func RunBatchWithHeader(ctx context.Context, base string, n, concurrency, streamEvery int, header http.Header) (Tally, error) {
	if err := checkLoopbackURL(base); err != nil {
		return nil, err
	}
	if concurrency <= 0 {
		concurrency = 8
	}
	client := newHTTPClient(concurrency)
	defer client.CloseIdleConnections()
	var next atomic.Int64
	var mu sync.Mutex
	out := Tally{}
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				stream := streamEvery > 0 && i%int64(streamEvery) == 0
				r := chatWith(ctx, client, base, ModelID, 16, stream, header)
				mu.Lock()
				c := out[r.Backend]
				if r.OK {
					c.OK++
				} else {
					c.Failed++
				}
				out[r.Backend] = c
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out, ctx.Err()
}

// Stream is a streamed chat completion being read in the background.
type Stream struct {
	// Backend is the x-backend header of the response.
	Backend string
	// Status is the HTTP status.
	Status int

	cancel  context.CancelFunc
	chunks  atomic.Int64
	done    chan struct{}
	err     error
	sawDone bool
}

// OpenStream starts a streamed chat completion of maxTokens tokens through
// the gateway and returns once the response headers arrived; the body is read
// in the background, counting the chunks.
func OpenStream(ctx context.Context, base string, maxTokens int) (*Stream, error) {
	if err := checkLoopbackURL(base); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	req, err := newChatRequest(ctx, base, ModelID, maxTokens, true)
	if err != nil {
		cancel()
		return nil, err
	}
	client := newHTTPClient(1)
	client.Timeout = 0 // bounded by ctx and the gateway's route timeout
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &Stream{Backend: resp.Header.Get(vllmsim.BackendHeader), Status: resp.StatusCode, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer cancel()
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			switch {
			case line == "data: [DONE]":
				s.sawDone = true
			case strings.HasPrefix(line, "data: "):
				s.chunks.Add(1)
			}
		}
		s.err = sc.Err()
	}()
	return s, nil
}

// Chunks is the number of data chunks received so far ([DONE] excluded).
func (s *Stream) Chunks() int64 { return s.chunks.Load() }

// Done is closed when the stream has ended.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Result reports, after Done, whether the stream ended with [DONE] and the
// read error, if any.
func (s *Stream) Result() (sawDone bool, err error) {
	<-s.done
	return s.sawDone, s.err
}

// Close cuts the stream and waits for the reader to end.
func (s *Stream) Close() {
	s.cancel()
	<-s.done
}
