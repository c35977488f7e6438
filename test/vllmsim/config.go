package vllmsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"time"
)

// Config holds the behaviour knobs of a simulated vLLM server.
//
// Zero durations are valid and mean "no delay", which is what fast unit tests
// want. DefaultConfig returns the values the vllm-sim program starts with.
type Config struct {
	// Name identifies the backend. Every response carries it in the
	// x-backend header so tests can see which backend served a request.
	Name string
	// Model is the only model the server serves (OpenAI "model" field and the
	// model_name label of the vllm:* metrics).
	Model string

	// Latency is the total time of a non-streaming completion. Zero means
	// "derived": TTFT + (tokens-1) * InterTokenLatency, the same time a
	// streaming request takes. Streaming requests ignore Latency.
	Latency time.Duration
	// TTFT is the time from the start of generation to the first token.
	TTFT time.Duration
	// InterTokenLatency is the time between two consecutive tokens.
	InterTokenLatency time.Duration
	// Tokens is the number of completion tokens a response has when the
	// request does not cap it with max_tokens (finish_reason "stop"). A lower
	// max_tokens ends the response early with finish_reason "length".
	Tokens int
	// ErrorRate is the probability (0..1) that a completion or embedding
	// request fails with HTTP 500. The decision is made before the first
	// byte of the response, so a streaming request fails as a whole.
	ErrorRate float64
	// Jitter (0..1) randomises every delay by a factor drawn uniformly from
	// [1-Jitter, 1+Jitter].
	Jitter float64
	// Seed seeds the random source used for error injection and jitter.
	// Zero picks a random seed. Setting it at run time reseeds the source.
	Seed int64
	// MaxRunning caps the requests generating at once (vLLM's max_num_seqs);
	// further requests wait in the queue (vllm:num_requests_waiting,
	// vllm:request_queue_time_seconds). Zero means unlimited.
	MaxRunning int
	// KVCacheTokens is the simulated KV cache capacity in tokens.
	// vllm:kv_cache_usage_perc is the tokens held by running requests
	// (prompt plus generated so far) divided by this, capped at 1.
	KVCacheTokens int
	// Answer, when set, is the text of every completion instead of the
	// generated words: a model that answers, fast and with HTTP 200, but
	// wrongly. WrongAnswer and InvalidJSONAnswer are two such answers. The
	// timing and token accounting stay those of the generated tokens; a
	// streaming response sends the whole answer with the first token.
	Answer string
}

// Answers for Config.Answer.
const (
	// WrongAnswer is a fluent answer that answers nothing.
	WrongAnswer = "I am sorry, but I cannot help with that request."
	// InvalidJSONAnswer is truncated JSON, as from a model that lost the
	// format.
	InvalidJSONAnswer = `{"answer": 4, "reason": "two plus two`
)

// Defaults used by DefaultConfig and by New for empty fields.
const (
	DefaultName          = "vllm-sim"
	DefaultModel         = "gpt-4"
	DefaultTokens        = 16
	DefaultKVCacheTokens = 16384
	// MaxTokens bounds Tokens to keep a misconfigured simulator from
	// streaming forever.
	MaxTokens = 1 << 20
	// maxAnswerBytes bounds Answer.
	maxAnswerBytes = 64 << 10
)

// DefaultConfig returns the configuration the vllm-sim program uses when no
// flags are given: 50ms to the first token, 10ms between tokens, 16 tokens.
func DefaultConfig() Config {
	return Config{
		Name:              DefaultName,
		Model:             DefaultModel,
		TTFT:              50 * time.Millisecond,
		InterTokenLatency: 10 * time.Millisecond,
		Tokens:            DefaultTokens,
		KVCacheTokens:     DefaultKVCacheTokens,
	}
}

// withDefaults fills the fields whose zero value is not meaningful.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Model == "" {
		c.Model = DefaultModel
	}
	if c.Tokens == 0 {
		c.Tokens = DefaultTokens
	}
	if c.KVCacheTokens == 0 {
		c.KVCacheTokens = DefaultKVCacheTokens
	}
	return c
}

// Validate reports the first invalid field, naming it as in the JSON form.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("name: must not be empty")
	case c.Model == "":
		return errors.New("model: must not be empty")
	case c.Latency < 0:
		return fmt.Errorf("latency: must not be negative, got %s", c.Latency)
	case c.TTFT < 0:
		return fmt.Errorf("ttft: must not be negative, got %s", c.TTFT)
	case c.InterTokenLatency < 0:
		return fmt.Errorf("itl: must not be negative, got %s", c.InterTokenLatency)
	case c.Tokens < 1 || c.Tokens > MaxTokens:
		return fmt.Errorf("tokens: must be between 1 and %d, got %d", MaxTokens, c.Tokens)
	case math.IsNaN(c.ErrorRate) || c.ErrorRate < 0 || c.ErrorRate > 1:
		return fmt.Errorf("error_rate: must be between 0 and 1, got %v", c.ErrorRate)
	case math.IsNaN(c.Jitter) || c.Jitter < 0 || c.Jitter > 1:
		return fmt.Errorf("jitter: must be between 0 and 1, got %v", c.Jitter)
	case c.MaxRunning < 0:
		return fmt.Errorf("max_running: must not be negative, got %d", c.MaxRunning)
	case c.KVCacheTokens < 1:
		return fmt.Errorf("kv_cache_tokens: must be at least 1, got %d", c.KVCacheTokens)
	case len(c.Answer) > maxAnswerBytes:
		return fmt.Errorf("answer: must be at most %d bytes, got %d", maxAnswerBytes, len(c.Answer))
	}
	return nil
}

// nonStreamLatency is the total time of a non-streaming response of n tokens.
func (c Config) nonStreamLatency(n int) time.Duration {
	if c.Latency > 0 {
		return c.Latency
	}
	return c.TTFT + time.Duration(max(n-1, 0))*c.InterTokenLatency
}

// BindFlags registers the knobs as command-line flags on fs, with the current
// values of c as defaults. Parsing fs writes into c.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "name", c.Name, "backend name, sent as the x-backend response header")
	fs.StringVar(&c.Model, "model", c.Model, "served model name")
	fs.DurationVar(&c.Latency, "latency", c.Latency, "total latency of a non-streaming completion; 0 = ttft + (tokens-1)*itl")
	fs.DurationVar(&c.TTFT, "ttft", c.TTFT, "time to first token")
	fs.DurationVar(&c.InterTokenLatency, "itl", c.InterTokenLatency, "inter-token latency")
	fs.IntVar(&c.Tokens, "tokens", c.Tokens, "completion tokens per response (unless max_tokens is lower)")
	fs.Float64Var(&c.ErrorRate, "error-rate", c.ErrorRate, "probability 0..1 that a request fails with HTTP 500")
	fs.Float64Var(&c.Jitter, "jitter", c.Jitter, "relative jitter 0..1 applied to every delay")
	fs.Int64Var(&c.Seed, "seed", c.Seed, "random seed for error injection and jitter; 0 = random")
	fs.IntVar(&c.MaxRunning, "max-running", c.MaxRunning, "max requests generating at once, the rest queue; 0 = unlimited")
	fs.IntVar(&c.KVCacheTokens, "kv-cache-tokens", c.KVCacheTokens, "simulated KV cache capacity in tokens")
	fs.StringVar(&c.Answer, "answer", c.Answer, "fixed text of every completion (a wrong answer); empty = the generated words")
}

// configJSON is the wire form of Config (GET /control). Durations are Go
// duration strings such as "250ms".
type configJSON struct {
	Name          string  `json:"name"`
	Model         string  `json:"model"`
	Latency       string  `json:"latency"`
	TTFT          string  `json:"ttft"`
	ITL           string  `json:"itl"`
	Tokens        int     `json:"tokens"`
	ErrorRate     float64 `json:"error_rate"`
	Jitter        float64 `json:"jitter"`
	Seed          int64   `json:"seed"`
	MaxRunning    int     `json:"max_running"`
	KVCacheTokens int     `json:"kv_cache_tokens"`
	Answer        string  `json:"answer"`
}

// configPatch is a partial update (PUT /control): absent fields stay as
// they are.
type configPatch struct {
	Name          *string  `json:"name"`
	Model         *string  `json:"model"`
	Latency       *string  `json:"latency"`
	TTFT          *string  `json:"ttft"`
	ITL           *string  `json:"itl"`
	Tokens        *int     `json:"tokens"`
	ErrorRate     *float64 `json:"error_rate"`
	Jitter        *float64 `json:"jitter"`
	Seed          *int64   `json:"seed"`
	MaxRunning    *int     `json:"max_running"`
	KVCacheTokens *int     `json:"kv_cache_tokens"`
	Answer        *string  `json:"answer"`
}

// MarshalJSON encodes c with snake_case names and duration strings.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(configJSON{
		Name:          c.Name,
		Model:         c.Model,
		Latency:       c.Latency.String(),
		TTFT:          c.TTFT.String(),
		ITL:           c.InterTokenLatency.String(),
		Tokens:        c.Tokens,
		ErrorRate:     c.ErrorRate,
		Jitter:        c.Jitter,
		Seed:          c.Seed,
		MaxRunning:    c.MaxRunning,
		KVCacheTokens: c.KVCacheTokens,
		Answer:        c.Answer,
	})
}

// UnmarshalJSON applies the fields present in data onto c and leaves the
// others unchanged, so decoding into an existing Config is a partial update.
// Unknown fields and malformed durations are errors. It does not validate
// ranges: call Validate.
func (c *Config) UnmarshalJSON(data []byte) error {
	var p configPatch
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON object")
	}
	next := *c
	dur := func(field string, s *string, dst *time.Duration) error {
		if s == nil {
			return nil
		}
		d, err := time.ParseDuration(*s)
		if err != nil {
			return fmt.Errorf("%s: want a Go duration string such as \"250ms\": %w", field, err)
		}
		*dst = d
		return nil
	}
	if err := errors.Join(
		dur("latency", p.Latency, &next.Latency),
		dur("ttft", p.TTFT, &next.TTFT),
		dur("itl", p.ITL, &next.InterTokenLatency),
	); err != nil {
		return err
	}
	set(p.Name, &next.Name)
	set(p.Model, &next.Model)
	set(p.Tokens, &next.Tokens)
	set(p.ErrorRate, &next.ErrorRate)
	set(p.Jitter, &next.Jitter)
	set(p.Seed, &next.Seed)
	set(p.MaxRunning, &next.MaxRunning)
	set(p.KVCacheTokens, &next.KVCacheTokens)
	set(p.Answer, &next.Answer)
	*c = next
	return nil
}

func set[T any](src *T, dst *T) {
	if src != nil {
		*dst = *src
	}
}
