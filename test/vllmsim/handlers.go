package vllmsim

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

const maxBodyBytes = 8 << 20

// clientClosedRequest is the (nginx) status recorded for a non-streaming
// request whose client went away; nobody receives it.
const clientClosedRequest = 499

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, ErrorResponse{Error: APIError{Message: msg, Type: typ, Code: status}})
}

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, "BadRequestError", msg)
}

// readJSON decodes the request body into v, answering 400 on failure.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		badRequest(w, "cannot read request body: "+err.Error())
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		badRequest(w, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

// checkModel answers 404 unless model is empty or the served model.
func (s *Server) checkModel(w http.ResponseWriter, model string) bool {
	if model == "" || model == s.model {
		return true
	}
	writeError(w, http.StatusNotFound, "NotFoundError", fmt.Sprintf("The model `%s` does not exist.", model))
	return false
}

func (s *Server) newID(prefix string) string {
	return fmt.Sprintf("%s-%s%08x", prefix, s.idPrefix, s.seq.Add(1))
}

// admit queues the request until a running slot is free (Config.MaxRunning).
func (s *Server) admit(ctx context.Context) error {
	s.mu.Lock()
	s.waiting++
	for s.cfg.MaxRunning > 0 && s.running >= s.cfg.MaxRunning {
		freed := s.slotFreed
		s.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			s.mu.Lock()
			s.waiting--
			s.mu.Unlock()
			return ctx.Err()
		}
		s.mu.Lock()
	}
	s.waiting--
	s.running++
	s.mu.Unlock()
	return nil
}

// tracker follows one engine request from arrival to its end.
type tracker struct {
	s        *Server
	arrival  time.Time
	admitted bool
	kv       int64 // KV cache tokens held
	ended    bool
}

func (s *Server) track(arrival time.Time) *tracker { return &tracker{s: s, arrival: arrival} }

// admit queues the request until it may run; false means it was aborted
// while waiting (and has ended).
func (tr *tracker) admit(ctx context.Context) bool {
	if err := tr.s.admit(ctx); err != nil {
		tr.end(FinishAbort)
		return false
	}
	tr.admitted = true
	tr.s.metrics.queue.Observe(time.Since(tr.arrival).Seconds())
	return true
}

// hold adds n tokens to the KV cache usage.
func (tr *tracker) hold(n int) {
	tr.kv += int64(n)
	tr.s.kvTokens.Add(int64(n))
}

// end frees the request's slot and KV cache, then records it as finished
// with reason; later calls do nothing. Ending before the response is
// complete means a client that saw the end also sees the metrics.
func (tr *tracker) end(reason string) {
	if tr.ended {
		return
	}
	tr.ended = true
	if tr.admitted {
		tr.s.kvTokens.Add(-tr.kv)
		tr.s.mu.Lock()
		tr.s.running--
		tr.s.wakeLocked()
		tr.s.mu.Unlock()
	}
	tr.s.metrics.success.WithLabelValues(reason).Inc()
	tr.s.metrics.e2e.Observe(time.Since(tr.arrival).Seconds())
}

// drawError decides whether a request fails.
func (s *Server) drawError(rate float64) bool {
	if rate <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errRNG.Float64() < rate
}

// jitter scales d by a random factor in [1-j, 1+j].
func (s *Server) jitter(d time.Duration, j float64) time.Duration {
	if j == 0 || d == 0 {
		return d
	}
	s.mu.Lock()
	u := s.jitterRNG.Float64()
	s.mu.Unlock()
	return time.Duration(float64(d) * (1 + j*(2*u-1)))
}

// sleepUntil waits until t or until ctx is done.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pacer gives the time of each generated token, as an offset from the
// start of generation.
type pacer struct {
	s      *Server
	cfg    Config
	n      int
	fixed  bool          // non-streaming with an explicit Latency
	first  time.Duration // offset of token 0
	total  time.Duration // offset of the last token when fixed
	offset time.Duration // offset of the last token handed out when !fixed
}

func (s *Server) newPacer(cfg Config, n int, stream bool) *pacer {
	p := &pacer{s: s, cfg: cfg, n: n, first: s.jitter(cfg.TTFT, cfg.Jitter)}
	if !stream && cfg.Latency > 0 {
		p.fixed = true
		p.total = s.jitter(cfg.Latency, cfg.Jitter)
		p.first = min(p.first, p.total)
		if n == 1 {
			p.first = p.total
		}
	}
	return p
}

// next returns the offset of token i; call it for i = 0, 1, 2... in order.
func (p *pacer) next(i int) time.Duration {
	switch {
	case i == 0:
		p.offset = p.first
	case p.fixed:
		p.offset = p.first + time.Duration(float64(p.total-p.first)*float64(i)/float64(p.n-1))
	default:
		p.offset += p.s.jitter(p.cfg.InterTokenLatency, p.cfg.Jitter)
	}
	return p.offset
}

// generate produces n tokens on the schedule of cfg, calling emit for each
// (emit may be nil), and records the token metrics. It returns the number of
// tokens produced and a non-nil error if the request context ended or emit
// failed, which means the client is gone.
func (tr *tracker) generate(ctx context.Context, cfg Config, n int, stream bool, emit func(i int) error) (int, error) {
	s := tr.s
	p := s.newPacer(cfg, n, stream)
	start := time.Now()
	var last time.Time
	for i := range n {
		if err := sleepUntil(ctx, start.Add(p.next(i))); err != nil {
			return i, err
		}
		now := time.Now()
		if i == 0 {
			s.metrics.ttft.Observe(now.Sub(tr.arrival).Seconds())
		} else {
			s.metrics.itl.Observe(now.Sub(last).Seconds())
		}
		last = now
		s.metrics.genTok.Inc()
		tr.hold(1)
		if emit != nil {
			if err := emit(i); err != nil {
				return i + 1, err
			}
		}
	}
	return n, nil
}

const simulatedError = "simulated engine error (vllm-sim error_rate)"

// serveGeneration serves POST /v1/chat/completions (chat) and
// POST /v1/completions.
func (s *Server) serveGeneration(w http.ResponseWriter, r *http.Request, chat bool) {
	tr := s.track(time.Now())
	var req generationRequest
	if !readJSON(w, r, &req) || !s.checkModel(w, req.Model) {
		return
	}
	var promptToks int
	if chat {
		if len(req.Messages) == 0 {
			badRequest(w, "messages: must be a non-empty array")
			return
		}
		n, err := messageTokens(req.Messages)
		if err != nil {
			badRequest(w, err.Error())
			return
		}
		promptToks = n
	} else {
		_, n, err := promptTokens(req.Prompt)
		if err != nil {
			badRequest(w, "prompt: "+err.Error())
			return
		}
		promptToks = n
	}
	promptToks = max(promptToks, 1)
	limit := req.MaxTokens
	if chat && req.MaxCompletionTokens != nil {
		limit = req.MaxCompletionTokens
	}
	if limit != nil && *limit < 1 {
		badRequest(w, fmt.Sprintf("max_tokens: must be at least 1, got %d", *limit))
		return
	}

	ctx := r.Context()
	if !tr.admit(ctx) {
		w.WriteHeader(clientClosedRequest)
		return
	}
	// Whatever happens below ends the request; the paths that know better
	// end it first with their own reason.
	defer tr.end(FinishAbort)
	cfg := s.Config()
	if s.drawError(cfg.ErrorRate) {
		tr.end(FinishError)
		writeError(w, http.StatusInternalServerError, "InternalServerError", simulatedError)
		return
	}
	s.metrics.promptTok.Add(float64(promptToks))
	tr.hold(promptToks)

	n, reason := cfg.Tokens, FinishStop
	if limit != nil && *limit < n {
		n, reason = *limit, FinishLength
	}
	id := s.newID("cmpl")
	if chat {
		id = s.newID("chatcmpl")
	}
	created := time.Now().Unix()

	if !req.Stream {
		generated, err := tr.generate(ctx, cfg, n, false, nil)
		if err != nil {
			tr.end(FinishAbort)
			w.WriteHeader(clientClosedRequest)
			return
		}
		var text strings.Builder
		for i := range generated {
			text.WriteString(cfg.tokenText(i))
		}
		usage := &Usage{PromptTokens: promptToks, CompletionTokens: generated, TotalTokens: promptToks + generated}
		tr.end(reason)
		if chat {
			writeJSON(w, http.StatusOK, ChatCompletion{
				ID: id, Object: "chat.completion", Created: created, Model: s.model, Usage: usage,
				Choices: []ChatChoice{{Message: ChatMessage{Role: "assistant", Content: text.String()}, FinishReason: reason}},
			})
		} else {
			writeJSON(w, http.StatusOK, Completion{
				ID: id, Object: "text_completion", Created: created, Model: s.model, Usage: usage,
				Choices: []CompletionChoice{{Text: text.String(), FinishReason: &reason}},
			})
		}
		return
	}

	// Streaming: headers go out now, one SSE event per token follows.
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	send := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		return rc.Flush()
	}
	chunk := func(i int, token string, finish *string) any {
		if chat {
			delta := ChatDelta{Content: token}
			if i == 0 {
				delta.Role = "assistant"
			}
			return ChatCompletionChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.model,
				Choices: []ChatChunkChoice{{Delta: delta, FinishReason: finish}}}
		}
		return Completion{ID: id, Object: "text_completion", Created: created, Model: s.model,
			Choices: []CompletionChoice{{Text: token, FinishReason: finish}}}
	}
	generated, err := tr.generate(ctx, cfg, n, true, func(i int) error {
		return send(chunk(i, cfg.tokenText(i), nil))
	})
	if err != nil {
		return // the client is gone: abort
	}
	// The engine is done with the request: it ends before the closing events
	// reach the client.
	tr.end(reason)
	err = send(chunk(-1, "", &reason))
	if err == nil && req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		usage := &Usage{PromptTokens: promptToks, CompletionTokens: generated, TotalTokens: promptToks + generated}
		if chat {
			err = send(ChatCompletionChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.model,
				Choices: []ChatChunkChoice{}, Usage: usage})
		} else {
			err = send(Completion{ID: id, Object: "text_completion", Created: created, Model: s.model,
				Choices: []CompletionChoice{}, Usage: usage})
		}
	}
	if err == nil {
		if _, err = io.WriteString(w, "data: [DONE]\n\n"); err == nil {
			_ = rc.Flush()
		}
	}
}

// embeddingDims is the length of the vectors POST /v1/embeddings returns.
const embeddingDims = 16

// serveEmbeddings serves POST /v1/embeddings: deterministic unit vectors
// derived from each input, after TTFT (prefill only), subject to ErrorRate.
func (s *Server) serveEmbeddings(w http.ResponseWriter, r *http.Request) {
	tr := s.track(time.Now())
	var req embeddingRequest
	if !readJSON(w, r, &req) || !s.checkModel(w, req.Model) {
		return
	}
	texts, promptToks, err := promptTokens(req.Input)
	if err != nil {
		badRequest(w, "input: "+err.Error())
		return
	}
	if len(texts) == 0 {
		badRequest(w, "input: must not be empty")
		return
	}
	promptToks = max(promptToks, 1)
	ctx := r.Context()
	if !tr.admit(ctx) {
		w.WriteHeader(clientClosedRequest)
		return
	}
	defer tr.end(FinishAbort)
	cfg := s.Config()
	if s.drawError(cfg.ErrorRate) {
		tr.end(FinishError)
		writeError(w, http.StatusInternalServerError, "InternalServerError", simulatedError)
		return
	}
	s.metrics.promptTok.Add(float64(promptToks))
	tr.hold(promptToks)
	if err := sleepUntil(ctx, time.Now().Add(s.jitter(cfg.TTFT, cfg.Jitter))); err != nil {
		tr.end(FinishAbort)
		w.WriteHeader(clientClosedRequest)
		return
	}
	resp := EmbeddingList{
		ID: s.newID("embd"), Object: "list", Created: time.Now().Unix(), Model: s.model,
		Usage: Usage{PromptTokens: promptToks, TotalTokens: promptToks},
	}
	for i, t := range texts {
		resp.Data = append(resp.Data, Embedding{Object: "embedding", Index: i, Embedding: embed(t)})
	}
	tr.end(FinishStop)
	writeJSON(w, http.StatusOK, resp)
}

// embed returns a deterministic unit vector for text.
func embed(text string) []float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(text))
	rng := rand.New(rand.NewPCG(h.Sum64(), 0))
	v := make([]float64, embeddingDims)
	var norm float64
	for i := range v {
		v[i] = rng.NormFloat64()
		norm += v[i] * v[i]
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] /= norm
	}
	return v
}

// maxModelLen is what GET /v1/models reports as the context length.
const maxModelLen = 8192

func (s *Server) serveModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, ModelList{Object: "list", Data: []Model{{
		ID: s.model, Object: "model", Created: time.Now().Unix(), OwnedBy: "vllm", Root: s.model, MaxModelLen: maxModelLen,
	}}})
}

func (s *Server) serveGetControl(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Config())
}

// servePutControl applies a partial JSON config: only the fields present
// change. Invalid JSON, unknown fields and invalid values get 400 and change
// nothing. The answer is the resulting config.
func (s *Server) servePutControl(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		badRequest(w, "cannot read request body: "+err.Error())
		return
	}
	var decodeErr error
	var applied Config
	err = s.UpdateConfig(func(c *Config) {
		decodeErr = json.Unmarshal(body, c) // leaves c unchanged on error
		applied = *c
	})
	switch {
	case decodeErr != nil:
		badRequest(w, "invalid control body: "+decodeErr.Error())
	case err != nil:
		badRequest(w, err.Error())
	default:
		writeJSON(w, http.StatusOK, applied)
	}
}
