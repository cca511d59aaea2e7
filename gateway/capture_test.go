package gateway_test

import (
	"context"
	"encoding/json"
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
		&storage.Options{QueueSize: 1, BatchSize: 1, SyncWrites: true})
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
