package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/internal/teachersim"
	"github.com/understudy-dev/understudy/storage"
)

// pairsOf returns the pairs the pair log holds for a domain.
func (h *harness) pairsOf(domain string) []storage.Pair {
	h.t.Helper()
	if err := h.pairs.Flush(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	var out []storage.Pair
	if err := h.pairs.Pairs(context.Background(), domain, func(p storage.Pair) error {
		out = append(out, p)
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// TestPairLogging checks what the gateway logs: eligible answers, plain and
// streamed (rebuilt from the deltas), with their labels and usage; nothing
// for ineligible requests or failed answers.
func TestPairLogging(t *testing.T) {
	h := startWith(t, teachersim.Config{}, nil, &storage.Options{})
	ctx := context.Background()
	dom := option.WithHeader("X-Understudy-Domain", "spam")

	plain, err := h.gw.Chat.Completions.New(ctx, chatParams(spamTask.Examples[0].Text), dom)
	if err != nil {
		t.Fatal(err)
	}
	p := chatParams(spamTask.Examples[1].Text)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := h.gw.Chat.Completions.NewStreaming(ctx, p, dom)
	for s.Next() {
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	// Not logged: tools (ineligible), a teacher error.
	withTools := chatParams(spamTask.Examples[2].Text)
	withTools.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "f"})}
	if _, err := h.gw.Chat.Completions.New(ctx, withTools, dom); err != nil {
		t.Fatal(err)
	}
	h.simConfig(map[string]any{"error_rate": 1})
	_, _ = h.gw.Chat.Completions.New(ctx, chatParams(spamTask.Examples[3].Text), dom)
	h.simConfig(map[string]any{"error_rate": 0})

	pairs := h.pairsOf("spam")
	if len(pairs) != 2 {
		t.Fatalf("%d pairs logged, want 2 (plain and streamed): %+v", len(pairs), pairs)
	}
	got, want := pairs[0], storage.Pair{
		Domain: "spam", Model: "teacher-sim", Input: spamTask.Examples[0].Text, System: spamSystem,
		Answer: "spam", Label: "spam", PromptTokens: int(plain.Usage.PromptTokens), CompletionTokens: int(plain.Usage.CompletionTokens),
	}
	if got.Domain != want.Domain || got.Model != want.Model || got.Input != want.Input || got.System != want.System ||
		got.Answer != want.Answer || got.Label != want.Label || got.PromptTokens != want.PromptTokens ||
		got.CompletionTokens != want.CompletionTokens || got.Stream || got.TeacherLatency <= 0 {
		t.Errorf("plain pair\n got %+v\nwant %+v", got, want)
	}
	var msgs []map[string]any
	if err := json.Unmarshal(got.Messages, &msgs); err != nil || len(msgs) != 2 || msgs[1]["content"] != spamTask.Examples[0].Text {
		t.Errorf("kept messages %s (%v)", got.Messages, err)
	}
	if st := pairs[1]; !st.Stream || st.Answer != "ham" || st.Label != "ham" || st.PromptTokens == 0 || st.Input != spamTask.Examples[1].Text {
		t.Errorf("streamed pair %+v", st)
	}
}

// TestFullQueue fills a one-place pair queue with concurrent requests:
// every request still succeeds, and every pair is either stored or counted
// as dropped.
func TestFullQueue(t *testing.T) {
	h := startWith(t, teachersim.Config{}, func(c *config.Config) { c.Storage.KeepRequests = false },
		&storage.Options{SyncWrites: true, LogOptions: storage.LogOptions{QueueSize: 1, BatchSize: 1}})
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.gw.Chat.Completions.New(context.Background(), chatParams(spamTask.Examples[i%4].Text),
				option.WithHeader("X-Understudy-Domain", "spam"), option.WithRequestTimeout(30*time.Second))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a request failed while the pair queue was full: %v", err)
		}
	}
	stored := len(h.pairsOf("spam"))
	dropped := h.metric("understudy_storage_pairs_dropped_total", map[string]string{"reason": "queue_full"})
	if stored+int(dropped) != n || dropped == 0 {
		t.Errorf("%d stored + %v dropped, want %d in all with some dropped", stored, dropped, n)
	}
	t.Logf("%d stored, %v dropped", stored, dropped)
}

// TestHostileTeacherAnswers has a teacher answer with JSON nested two
// million levels deep, torn JSON, and a stream chunk nested just short of
// what the relay reads whole. The gateway relays each unchanged, stays up
// and logs none of them; the control answer is logged.
func TestHostileTeacherAnswers(t *testing.T) {
	const depth = 2_000_000
	deep := strings.Repeat("[", depth) + strings.Repeat("]", depth)
	answers := map[string]string{
		"deep content":    `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":` + deep + `},"finish_reason":"stop"}]}`,
		"deep extra":      `{"object":"chat.completion","x":` + deep + `,"choices":[{"index":0,"message":{"role":"assistant","content":"spam"},"finish_reason":"stop"}]}`,
		"never closed":    `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"spam"},"finish_reason":"stop"}],"x":` + strings.Repeat("[", 2*depth),
		"torn":            `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"sp`,
		"deep stream":     "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":" + strings.Repeat("[", 7000) + strings.Repeat("]", 7000) + "}}]}\n\n",
		"control":         `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ham"},"finish_reason":"stop"}]}`,
		"control, stream": "",
	}
	teacher := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		name := r.Header.Get("X-Answer")
		if !strings.Contains(name, "stream") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, answers[name])
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, answers[name]+
			"data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ham\"}}]}\n\n"+
			"data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"+
			"data: [DONE]\n\n")
	}))
	t.Cleanup(teacher.Close)
	h := startWith(t, teachersim.Config{}, func(c *config.Config) { c.Teacher.URL = teacher.URL + "/v1" }, &storage.Options{})

	for _, name := range []string{"deep content", "deep extra", "never closed", "torn", "deep stream", "control", "control, stream"} {
		t.Run(name, func(t *testing.T) {
			stream := strings.Contains(name, "stream")
			body := `{"model":"m","stream":` + strconv.FormatBool(stream) + `,"messages":[{"role":"system","content":"` + spamSystem + `"},{"role":"user","content":"` + name + `"}]}`
			status, _, got := h.raw("POST", "/v1/chat/completions", []byte(body), map[string]string{"X-Answer": name, "X-Understudy-Domain": "spam"})
			if status != 200 {
				t.Fatalf("status %d, %.200q; want the teacher's 200", status, got)
			}
			if !stream && string(got) != answers[name] {
				t.Errorf("answer of %d bytes relayed as %d bytes; want it unchanged", len(answers[name]), len(got))
			}
		})
	}
	var inputs []string
	for _, p := range h.pairsOf("spam") {
		inputs = append(inputs, p.Input+" → "+p.Label)
	}
	if want := []string{"control → ham", "control, stream → ham"}; !slices.Equal(inputs, want) {
		t.Errorf("pairs logged: %q; want %q", inputs, want)
	}
}
