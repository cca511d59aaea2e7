package teachersim

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

// These tests use the official openai-go SDK as the client, as the gateway
// and users do.

func TestSDKChat(t *testing.T) {
	const story = "Once upon a time, the model said: hello world."
	tasks := append(loadTasks(t), Task{Name: "story", System: "Tell a story.", Examples: []Example{{"story please", story}}})
	ts := start(t, Config{Tasks: tasks, APIKey: "sk-test"})
	client := ts.sdk("sk-test")

	tests := []struct {
		name, system, user, want string
	}{
		{"sentiment", sentimentSystem, "Terrible service, never again.", "negative"},
		{"topic", defaultSystem, "I loved every minute of it.", "sports"},
		{"multi-word answer", "Tell a story.", "story please", story},
		{"unknown", "", "nothing like it", "unknown"},
	}
	for _, tt := range tests {
		params := openai.ChatCompletionNewParams{Model: "teacher-sim"}
		if tt.system != "" {
			params.Messages = append(params.Messages, openai.SystemMessage(tt.system))
		}
		params.Messages = append(params.Messages, openai.UserMessage(tt.user))

		t.Run(tt.name+"/plain", func(t *testing.T) {
			resp, err := client.Chat.Completions.New(t.Context(), params)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != tt.want || resp.Choices[0].FinishReason != "stop" {
				t.Fatalf("response %s, want content %q", resp.RawJSON(), tt.want)
			}
			if !strings.HasPrefix(resp.ID, "chatcmpl-sim-") || resp.Model != "teacher-sim" ||
				resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens || resp.Usage.CompletionTokens < 1 {
				t.Errorf("response %s", resp.RawJSON())
			}
		})

		for _, includeUsage := range []bool{false, true} {
			name := tt.name + "/stream"
			if includeUsage {
				name += "+usage"
			}
			t.Run(name, func(t *testing.T) {
				p := params
				if includeUsage {
					p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				}
				stream := client.Chat.Completions.NewStreaming(t.Context(), p)
				defer stream.Close()
				var content strings.Builder
				var finish string
				var usage *openai.CompletionUsage
				chunks := 0
				for stream.Next() {
					c := stream.Current()
					chunks++
					for _, ch := range c.Choices {
						content.WriteString(ch.Delta.Content)
						if ch.FinishReason != "" {
							finish = ch.FinishReason
						}
					}
					if c.JSON.Usage.Valid() && len(c.Choices) == 0 {
						u := c.Usage
						usage = &u
					}
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				if content.String() != tt.want || finish != "stop" {
					t.Errorf("stream gave %q, finish %q; want %q, stop", content.String(), finish, tt.want)
				}
				if words := len(strings.Fields(tt.want)); chunks < words+2 {
					t.Errorf("%d chunks for %d words, want a chunk per word plus role and stop", chunks, words)
				}
				if includeUsage != (usage != nil) {
					t.Fatalf("usage chunk %v, want %v", usage != nil, includeUsage)
				}
				if usage != nil && (usage.CompletionTokens < 1 || usage.TotalTokens != usage.PromptTokens+usage.CompletionTokens) {
					t.Errorf("usage %+v", *usage)
				}
			})
		}
	}
}

func TestSDKCompletions(t *testing.T) {
	ts := start(t, Config{Tasks: loadTasks(t)})
	client := ts.sdk("none")
	params := openai.CompletionNewParams{
		Model:  "teacher-sim",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("The striker scored twice in the final.")},
	}
	resp, err := client.Completions.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Text != "sports" || resp.Choices[0].FinishReason != "stop" {
		t.Errorf("response %s", resp.RawJSON())
	}

	stream := client.Completions.NewStreaming(t.Context(), params)
	defer stream.Close()
	var text strings.Builder
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			text.WriteString(ch.Text)
		}
	}
	if err := stream.Err(); err != nil || text.String() != "sports" {
		t.Errorf("stream gave %q, %v; want sports", text.String(), err)
	}
}

func TestSDKEmbeddings(t *testing.T) {
	ts := start(t, Config{})
	client := ts.sdk("none")
	inputs := []string{"the quick brown fox", "", "héllo wörld", "the quick brown fox"}
	tests := []struct {
		name string
		dims int64 // 0: the server's default, 16
	}{
		{"default dims", 0},
		{"requested dims", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			get := func(format openai.EmbeddingNewParamsEncodingFormat) [][]float64 {
				t.Helper()
				p := openai.EmbeddingNewParams{
					Model:          "embed-sim",
					Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
					EncodingFormat: format,
				}
				if tt.dims > 0 {
					p.Dimensions = openai.Int(tt.dims)
				}
				resp, err := client.Embeddings.New(t.Context(), p)
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.Data) != len(inputs) || resp.Model != "embed-sim" || resp.Usage.PromptTokens < int64(len(inputs)) {
					t.Fatalf("response %s", resp.RawJSON())
				}
				var out [][]float64
				for i, d := range resp.Data {
					if d.Index != int64(i) {
						t.Errorf("data[%d].index = %d", i, d.Index)
					}
					out = append(out, d.Embedding)
				}
				return out
			}
			floats := get(openai.EmbeddingNewParamsEncodingFormatFloat)
			b64 := get(openai.EmbeddingNewParamsEncodingFormatBase64)
			want := tt.dims
			if want == 0 {
				want = 16
			}
			for i := range inputs {
				if int64(len(floats[i])) != want || len(b64[i]) != len(floats[i]) {
					t.Fatalf("input %d: %d float and %d base64 dims, want %d", i, len(floats[i]), len(b64[i]), want)
				}
				var norm float64
				for j := range floats[i] {
					// The float form is the shortest decimal of each
					// float32, so compare as float32.
					if float32(floats[i][j]) != float32(b64[i][j]) {
						t.Errorf("input %d dim %d: float %v, base64 %v", i, j, floats[i][j], b64[i][j])
					}
					norm += b64[i][j] * b64[i][j]
				}
				if math.Abs(norm-1) > 1e-5 {
					t.Errorf("input %d: squared norm %v, want 1", i, norm)
				}
			}
			if !equalVec(floats[0], floats[3]) || equalVec(floats[0], floats[2]) {
				t.Error("want equal vectors exactly for equal inputs")
			}
		})
	}
}

func equalVec(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSDKErrors(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		key    string
		status int
		code   string
	}{
		{"wrong key", Config{APIKey: "sk-test"}, "sk-wrong", 401, "invalid_api_key"},
		{"injected error", Config{ErrorRate: 1, ErrorStatus: 503}, "none", 503, "injected_error"},
		{"injected rate limit", Config{ErrorRate: 1, ErrorStatus: 429}, "none", 429, "injected_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := start(t, tt.cfg)
			client := ts.sdk(tt.key)
			_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
				Model:    "teacher-sim",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %v, want *openai.Error", err)
			}
			if apiErr.StatusCode != tt.status || apiErr.Code != tt.code {
				t.Errorf("status %d code %q, want %d %q", apiErr.StatusCode, apiErr.Code, tt.status, tt.code)
			}
		})
	}
}
