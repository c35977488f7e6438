package vllmsim

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The OpenAI wire types the simulator speaks. They are exported so tests in
// other packages can decode responses without redefining them.

// Usage is the token accounting of a response.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// ChatMessage is a chat message of a request or a non-streaming response.
type ChatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatChoice is a choice of a non-streaming chat completion.
type ChatChoice struct {
	Index        int         `json:"index"`
	Message      ChatMessage `json:"message"`
	Logprobs     any         `json:"logprobs"`
	FinishReason string      `json:"finish_reason"`
}

// ChatCompletion is the response of a non-streaming POST /v1/chat/completions.
type ChatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"` // "chat.completion"
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage"`
}

// ChatDelta is the incremental message of a streaming chunk.
type ChatDelta struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content,omitempty"`
}

// ChatChunkChoice is a choice of a streaming chat chunk.
type ChatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        ChatDelta `json:"delta"`
	Logprobs     any       `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

// ChatCompletionChunk is one SSE event of a streaming chat completion.
type ChatCompletionChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"` // "chat.completion.chunk"
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []ChatChunkChoice `json:"choices"`
	Usage   *Usage            `json:"usage,omitempty"`
}

// CompletionChoice is a choice of a (streaming or not) text completion.
type CompletionChoice struct {
	Index        int     `json:"index"`
	Text         string  `json:"text"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

// Completion is the response of POST /v1/completions, and also the shape of
// each of its streaming chunks (object "text_completion" in both cases, as
// in vLLM).
type Completion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"` // "text_completion"
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []CompletionChoice `json:"choices"`
	Usage   *Usage             `json:"usage,omitempty"`
}

// Embedding is one vector of an embeddings response.
type Embedding struct {
	Object    string    `json:"object"` // "embedding"
	Index     int       `json:"index"`
	Embedding []float64 `json:"embedding"`
}

// EmbeddingList is the response of POST /v1/embeddings.
type EmbeddingList struct {
	ID      string      `json:"id"`
	Object  string      `json:"object"` // "list"
	Created int64       `json:"created"`
	Model   string      `json:"model"`
	Data    []Embedding `json:"data"`
	Usage   Usage       `json:"usage"`
}

// Model is an entry of GET /v1/models.
type Model struct {
	ID          string `json:"id"`
	Object      string `json:"object"` // "model"
	Created     int64  `json:"created"`
	OwnedBy     string `json:"owned_by"`
	Root        string `json:"root"`
	Parent      any    `json:"parent"`
	MaxModelLen int    `json:"max_model_len"`
}

// ModelList is the response of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"` // "list"
	Data   []Model `json:"data"`
}

// APIError is the body of an OpenAI error response.
type APIError struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   any    `json:"param"`
	Code    int    `json:"code"`
}

// ErrorResponse is an OpenAI-style error response: {"error": {...}}.
type ErrorResponse struct {
	Error APIError `json:"error"`
}

// streamOptions is the OpenAI stream_options request field.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// generationRequest holds the fields of chat and text completion requests
// the simulator looks at; others are accepted and ignored.
type generationRequest struct {
	Model               string          `json:"model"`
	Messages            []requestMsg    `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
}

// requestMsg is a chat message of a request; content is a string or an
// array of content parts.
type requestMsg struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type embeddingRequest struct {
	Model string          `json:"model"`
	Input json.RawMessage `json:"input"`
}

// countWords approximates the token count of a text: one token per
// whitespace-separated word.
func countWords(s string) int {
	return len(strings.Fields(s))
}

// promptTokens flattens an OpenAI prompt or input value (a string, an array of
// strings, an array of token ids or an array of such arrays) into texts and
// a token count. Token id arrays count one token per id.
func promptTokens(raw json.RawMessage) (texts []string, tokens int, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, 0, fmt.Errorf("missing")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, countWords(s), nil
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil {
		for _, x := range ss {
			tokens += countWords(x)
		}
		return ss, tokens, nil
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil {
		return []string{fmt.Sprint(ids)}, len(ids), nil
	}
	var idss [][]int
	if json.Unmarshal(raw, &idss) == nil {
		for _, x := range idss {
			texts = append(texts, fmt.Sprint(x))
			tokens += len(x)
		}
		return texts, tokens, nil
	}
	return nil, 0, fmt.Errorf("must be a string, an array of strings or an array of token ids")
}

// messageTokens counts the tokens of chat messages (text parts only).
func messageTokens(msgs []requestMsg) (int, error) {
	n := 0
	for i, m := range msgs {
		if len(m.Content) == 0 || string(m.Content) == "null" {
			continue
		}
		var s string
		if json.Unmarshal(m.Content, &s) == nil {
			n += countWords(s)
			continue
		}
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(m.Content, &parts); err != nil {
			return 0, fmt.Errorf("messages[%d].content: must be a string or an array of content parts", i)
		}
		for _, p := range parts {
			n += countWords(p.Text)
		}
	}
	return n, nil
}

// words are the tokens the simulator generates, cycled.
var words = strings.Fields("The quick brown fox jumps over the lazy dog while a canary sings of weights and routes")

// tokenText is the text of generated token i (0-based).
func tokenText(i int) string {
	w := words[i%len(words)]
	if i == 0 {
		return w
	}
	return " " + w
}

// tokenText is the text of generated token i under the configuration: the
// generated word, or with Answer set, the whole answer at token 0 and
// nothing after it.
func (c Config) tokenText(i int) string {
	if c.Answer == "" {
		return tokenText(i)
	}
	if i == 0 {
		return c.Answer
	}
	return ""
}
