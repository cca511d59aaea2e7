package teachersim

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestChatLookup(t *testing.T) {
	tasks := append(loadTasks(t), Task{Name: "multi", System: "Join the lines.", Examples: []Example{{"first\nsecond", "joined"}}})
	ts := start(t, Config{Tasks: tasks})

	type msg map[string]any
	parts := func(texts ...string) []msg {
		var p []msg
		for _, s := range texts {
			p = append(p, msg{"type": "text", "text": s})
		}
		return p
	}
	tests := []struct {
		name     string
		messages []msg
		want     string
	}{
		{"system selects sentiment", []msg{{"role": "system", "content": sentimentSystem}, {"role": "user", "content": "I loved every minute of it."}}, "positive"},
		{"default system selects topic", []msg{{"role": "system", "content": defaultSystem}, {"role": "user", "content": "I loved every minute of it."}}, "sports"},
		{"developer role is the system prompt", []msg{{"role": "developer", "content": defaultSystem}, {"role": "user", "content": "I loved every minute of it."}}, "sports"},
		{"system as content parts", []msg{{"role": "system", "content": parts(defaultSystem)}, {"role": "user", "content": "I loved every minute of it."}}, "sports"},
		{"no system searches all tasks", []msg{{"role": "user", "content": "The central bank raised interest rates."}}, "business"},
		{"no system, first task wins", []msg{{"role": "user", "content": "I loved every minute of it."}}, "positive"},
		{"unmatched system searches all tasks", []msg{{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Terrible service, never again."}}, "negative"},
		{"matched system searches only its tasks", []msg{{"role": "system", "content": sentimentSystem}, {"role": "user", "content": "The striker scored twice in the final."}}, "unknown"},
		{"trimmed system and text", []msg{{"role": "system", "content": "\n  " + sentimentSystem + "  "}, {"role": "user", "content": "  Terrible service, never again.\n"}}, "negative"},
		{"user content parts", []msg{{"role": "system", "content": sentimentSystem}, {"role": "user", "content": parts("An absolute masterpiece.")}}, "positive"},
		{"messages joined by newline", []msg{{"role": "system", "content": "Join the lines."}, {"role": "user", "content": "first"}, {"role": "user", "content": "second"}}, "joined"},
		{"text parts joined by newline", []msg{{"role": "system", "content": "Join the lines."}, {"role": "user", "content": parts("first", "second")}}, "joined"},
		{"unknown text", []msg{{"role": "user", "content": "What is the capital of France?"}}, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, "POST", "/v1/chat/completions", mustJSON(t, map[string]any{"model": "teacher-sim", "messages": tt.messages}))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var got struct {
				Choices []struct {
					Message struct{ Content string }
				}
			}
			if err := json.Unmarshal(body, &got); err != nil || len(got.Choices) != 1 {
				t.Fatalf("decoding %s: %v", body, err)
			}
			if got.Choices[0].Message.Content != tt.want {
				t.Errorf("answer %q, want %q", got.Choices[0].Message.Content, tt.want)
			}
		})
	}
}

func TestChatResponseFormat(t *testing.T) {
	ts := start(t, Config{Tasks: []Task{{Name: "t", System: "abcd", Examples: []Example{{"héllo", "yes"}}}}})
	tests := []struct {
		name                      string
		user                      string
		want                      string
		prompt, completion, total int
	}{
		// (4+5 runes + 3) / 4 = 3 prompt tokens; "yes" is 1 token.
		{"known", "héllo", "yes", 3, 1, 4},
		// "unknown": (7+3)/4 = 2 tokens.
		{"unknown", "héllo there", "unknown", 4, 2, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().Unix()
			resp, body := ts.do(t, "POST", "/v1/chat/completions", mustJSON(t, map[string]any{
				"model":    "my-model",
				"messages": []map[string]any{{"role": "system", "content": "abcd"}, {"role": "user", "content": tt.user}},
			}))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			rid := resp.Header.Get("x-request-id")
			n, ok := strings.CutPrefix(rid, "sim-")
			if !ok {
				t.Fatalf("x-request-id %q, want sim-<n>", rid)
			}
			var got struct {
				ID      string `json:"id"`
				Object  string `json:"object"`
				Created int64  `json:"created"`
				Model   string `json:"model"`
				Choices []struct {
					Index   int `json:"index"`
					Message struct {
						Role    string  `json:"role"`
						Content string  `json:"content"`
						Refusal *string `json:"refusal"`
					} `json:"message"`
					Logprobs     *struct{} `json:"logprobs"`
					FinishReason string    `json:"finish_reason"`
				} `json:"choices"`
				Usage struct {
					PromptTokens     int `json:"prompt_tokens"`
					CompletionTokens int `json:"completion_tokens"`
					TotalTokens      int `json:"total_tokens"`
				} `json:"usage"`
				SystemFingerprint string `json:"system_fingerprint"`
			}
			dec := json.NewDecoder(strings.NewReader(string(body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("decoding %s: %v", body, err)
			}
			if got.ID != "chatcmpl-sim-"+n || got.Object != "chat.completion" || got.Model != "my-model" ||
				got.Created < before || got.Created > time.Now().Unix() || got.SystemFingerprint != "fp_teachersim" {
				t.Errorf("head of %s: want id chatcmpl-sim-%s, object chat.completion, model my-model, created now", body, n)
			}
			if len(got.Choices) != 1 {
				t.Fatalf("%d choices", len(got.Choices))
			}
			c := got.Choices[0]
			if c.Index != 0 || c.Message.Role != "assistant" || c.Message.Content != tt.want || c.Message.Refusal != nil ||
				c.Logprobs != nil || c.FinishReason != "stop" {
				t.Errorf("choice %+v, want assistant %q, finish_reason stop", c, tt.want)
			}
			if u := got.Usage; u.PromptTokens != tt.prompt || u.CompletionTokens != tt.completion || u.TotalTokens != tt.total {
				t.Errorf("usage %+v, want %d+%d=%d", u, tt.prompt, tt.completion, tt.total)
			}
			// The null fields are present, as in the OpenAI API.
			for _, key := range []string{`"refusal":null`, `"logprobs":null`} {
				if !strings.Contains(string(body), key) {
					t.Errorf("body %s lacks %s", body, key)
				}
			}
		})
	}
}

// sseEvents reads server-sent events up to and including [DONE].
func sseEvents(t *testing.T, r io.Reader) []string {
	t.Helper()
	br := bufio.NewReader(r)
	var events []string
	for {
		ev, ok := nextEvent(t, br)
		if !ok {
			t.Fatalf("stream ended without [DONE] after %d events", len(events))
		}
		events = append(events, ev)
		if ev == "[DONE]" {
			return events
		}
	}
}

// nextEvent reads one "data: ...\n\n" event.
func nextEvent(t *testing.T, br *bufio.Reader) (string, bool) {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		return "", false
	}
	data, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "data: ")
	if !ok {
		t.Fatalf("event line %q, want data: ...", line)
	}
	if blank, err := br.ReadString('\n'); err != nil || blank != "\n" {
		t.Fatalf("after %q got %q, %v; want a blank line", line, blank, err)
	}
	return data, true
}

type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta *struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Text         *string `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
	raw map[string]json.RawMessage
}

func decodeChunk(t *testing.T, ev string) chunk {
	t.Helper()
	var c chunk
	if err := json.Unmarshal([]byte(ev), &c); err != nil {
		t.Fatalf("decoding chunk %s: %v", ev, err)
	}
	if err := json.Unmarshal([]byte(ev), &c.raw); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStreamWireFormat(t *testing.T) {
	answers := []string{"positive", "  The answer is\tforty two.\n", "héllo wörld ", "x"}
	var examples []Example
	for i, a := range answers {
		examples = append(examples, Example{Text: "q" + strconv.Itoa(i), Label: a})
	}
	ts := start(t, Config{Tasks: []Task{{Name: "t", Examples: examples}}})

	for i, answer := range answers {
		for _, endpoint := range []string{"chat", "completions"} {
			for _, usage := range []bool{false, true} {
				t.Run(endpoint+"/"+strconv.Quote(answer)+"/usage="+strconv.FormatBool(usage), func(t *testing.T) {
					path, body := "/v1/chat/completions", chatBody(t, "", "q"+strconv.Itoa(i), map[string]any{
						"stream": true, "stream_options": map[string]any{"include_usage": usage},
					})
					object := "chat.completion.chunk"
					if endpoint == "completions" {
						path, object = "/v1/completions", "text_completion"
						body = mustJSON(t, map[string]any{"model": "teacher-sim", "prompt": "q" + strconv.Itoa(i),
							"stream": true, "stream_options": map[string]any{"include_usage": usage}})
					}
					resp, raw := ts.do(t, "POST", path, body)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("status %d: %s", resp.StatusCode, raw)
					}
					if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
						t.Errorf("Content-Type %q, want text/event-stream", ct)
					}
					events := sseEvents(t, strings.NewReader(string(raw)))
					events = events[:len(events)-1] // [DONE]
					var chunks []chunk
					for _, ev := range events {
						chunks = append(chunks, decodeChunk(t, ev))
					}
					if usage {
						last := chunks[len(chunks)-1]
						chunks = chunks[:len(chunks)-1]
						if len(last.Choices) != 0 || last.Usage == nil || last.Usage.TotalTokens != last.Usage.PromptTokens+last.Usage.CompletionTokens ||
							last.Usage.CompletionTokens != estimateTokens(len([]rune(answer))) {
							t.Errorf("usage chunk %s: want no choices and usage", events[len(events)-1])
						}
					}
					var content strings.Builder
					var pieces []string
					for j, c := range chunks {
						if c.Object != object || c.ID != chunks[0].ID || c.Model != "teacher-sim" || len(c.Choices) != 1 {
							t.Fatalf("chunk %d %s: want object %s, one choice, same id", j, events[j], object)
						}
						if u, ok := c.raw["usage"]; usage != ok || (ok && string(u) != "null") {
							t.Errorf("chunk %d %s: usage present=%v, want %v and null", j, events[j], ok, usage)
						}
						ch := c.Choices[0]
						last := j == len(chunks)-1
						if last != (ch.FinishReason != nil) || (last && *ch.FinishReason != "stop") {
							t.Errorf("chunk %d %s: finish_reason only on the last chunk, \"stop\"", j, events[j])
						}
						var piece *string
						if endpoint == "chat" {
							if j == 0 && (ch.Delta == nil || ch.Delta.Role == nil || *ch.Delta.Role != "assistant" || ch.Delta.Content == nil || *ch.Delta.Content != "") {
								t.Errorf("first chunk %s: want delta role assistant, content \"\"", events[j])
							}
							if last && (ch.Delta == nil || ch.Delta.Content != nil || ch.Delta.Role != nil) {
								t.Errorf("last chunk %s: want empty delta", events[j])
							}
							if j > 0 && ch.Delta != nil {
								piece = ch.Delta.Content
							}
						} else {
							piece = ch.Text
						}
						if piece != nil && *piece != "" {
							pieces = append(pieces, *piece)
							content.WriteString(*piece)
						}
					}
					if content.String() != answer {
						t.Errorf("chunks concatenate to %q, want %q", content.String(), answer)
					}
					words := 0
					for _, p := range pieces {
						if n := len(strings.Fields(p)); n > 1 {
							t.Errorf("chunk %q holds %d words, want at most one", p, n)
						} else {
							words += n
						}
					}
					if want := len(strings.Fields(answer)); words != want || len(pieces) > want+1 {
						t.Errorf("content chunks %q, want about one per word", pieces)
					}
				})
			}
		}
	}
}

func TestStreamFlushesEachChunk(t *testing.T) {
	// With an hour between chunks, reading the first chunk proves it was
	// flushed on its own; shutting down must then cut the delays short
	// and finish the stream.
	ts := start(t, Config{Tasks: loadTasks(t), ChunkDelay: time.Hour})
	resp, err := ts.client.Post(ts.base+"/v1/chat/completions", "application/json",
		strings.NewReader(chatBody(t, "", "Terrible service, never again.", map[string]any{"stream": true})))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, ok := nextEvent(t, br)
	if !ok {
		t.Fatal("no first chunk")
	}
	if c := decodeChunk(t, first); c.Choices[0].Delta == nil || c.Choices[0].Delta.Role == nil {
		t.Fatalf("first chunk %s, want the role chunk", first)
	}
	stopped := make(chan struct{})
	go func() {
		ts.stop()
		close(stopped)
	}()
	rest := sseEvents(t, br)
	var content strings.Builder
	for _, ev := range rest[:len(rest)-1] {
		if c := decodeChunk(t, ev); c.Choices[0].Delta.Content != nil {
			content.WriteString(*c.Choices[0].Delta.Content)
		}
	}
	if content.String() != "negative" {
		t.Errorf("stream content %q, want %q", content.String(), "negative")
	}
	<-stopped
}

func TestLatency(t *testing.T) {
	t.Run("delays the answer", func(t *testing.T) {
		const latency = 30 * time.Millisecond
		ts := start(t, Config{Tasks: loadTasks(t), Latency: latency, Jitter: latency / 2})
		for range 3 {
			began := time.Now()
			resp, body := ts.do(t, "POST", "/v1/chat/completions", chatBody(t, "", "Terrible service, never again.", nil))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if took := time.Since(began); took < latency/2 {
				t.Errorf("answered after %v, want at least Latency-Jitter = %v", took, latency/2)
			}
		}
	})
	t.Run("shutdown cuts it short", func(t *testing.T) {
		ts := start(t, Config{Tasks: loadTasks(t), Latency: time.Hour})
		type result struct {
			status int
			body   []byte
		}
		got := make(chan result, 1)
		go func() {
			resp, err := ts.client.Post(ts.base+"/v1/chat/completions", "application/json",
				strings.NewReader(chatBody(t, "", "Terrible service, never again.", nil)))
			if err != nil {
				got <- result{body: []byte(err.Error())}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			got <- result{resp.StatusCode, b}
		}()
		for ts.Stats().Requests == 0 { // the request is in its delay
			time.Sleep(time.Millisecond)
		}
		ts.stop()
		r := <-got
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"content":"negative"`) {
			t.Errorf("got %d %s, want the answer", r.status, r.body)
		}
	})
}

func TestStreamClientGoneMidStream(t *testing.T) {
	ts := start(t, Config{Tasks: loadTasks(t), ChunkDelay: time.Hour})
	resp, err := ts.client.Post(ts.base+"/v1/chat/completions", "application/json",
		strings.NewReader(chatBody(t, "", "Terrible service, never again.", map[string]any{"stream": true})))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := nextEvent(t, bufio.NewReader(resp.Body)); !ok {
		t.Fatal("no first chunk")
	}
	resp.Body.Close() // hang up while the server waits out the chunk delay
	ts.stop()         // must return, leaving no stream writer behind (goleak)
}
