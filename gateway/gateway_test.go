package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/internal/teachersim"
)

func chatParams(text string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    "teacher-sim",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(spamSystem), openai.UserMessage(text)},
	}
}

func TestChatCompletion(t *testing.T) {
	h := start(t, teachersim.Config{}, nil)
	ctx := context.Background()
	for _, ex := range spamTask.Examples {
		var resp *http.Response
		got, err := h.gw.Chat.Completions.New(ctx, chatParams(ex.Text), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		want, err := h.direct.Chat.Completions.New(ctx, chatParams(ex.Text))
		if err != nil {
			t.Fatal(err)
		}
		if got.Choices[0].Message.Content != ex.Label || got.Choices[0].Message.Content != want.Choices[0].Message.Content {
			t.Errorf("%q: content %q via gateway, %q direct, want %q", ex.Text, got.Choices[0].Message.Content, want.Choices[0].Message.Content, ex.Label)
		}
		if got.Usage.PromptTokens != want.Usage.PromptTokens || got.Usage.CompletionTokens != want.Usage.CompletionTokens {
			t.Errorf("usage %+v via gateway, %+v direct", got.Usage, want.Usage)
		}
		if id := resp.Header.Get("X-Request-Id"); !strings.HasPrefix(id, "sim-") {
			t.Errorf("x-request-id = %q, want the teacher's (sim-N)", id)
		}
		if d := resp.Header.Get("X-Understudy-Domain"); d != gateway.Fingerprint("teacher-sim", spamSystem) {
			t.Errorf("X-Understudy-Domain = %q, want the fingerprint domain", d)
		}
		if r := resp.Header.Get("X-Understudy-Route"); r != "teacher" {
			t.Errorf("X-Understudy-Route = %q, want teacher", r)
		}
	}
	if n := h.metric("understudy_gateway_overhead_seconds", map[string]string{"endpoint": "chat_completions"}); n != float64(len(spamTask.Examples)) {
		t.Errorf("overhead histogram has %v samples, want %d", n, len(spamTask.Examples))
	}
}

func TestChatCompletionStream(t *testing.T) {
	h := start(t, teachersim.Config{}, nil)
	ctx := context.Background()
	collect := func(c openai.Client, includeUsage bool) (string, openai.CompletionUsage, int) {
		p := chatParams(spamTask.Examples[0].Text)
		if includeUsage {
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		}
		s := c.Chat.Completions.NewStreaming(ctx, p)
		var content strings.Builder
		var usage openai.CompletionUsage
		chunks := 0
		for s.Next() {
			ch := s.Current()
			chunks++
			if len(ch.Choices) > 0 {
				content.WriteString(ch.Choices[0].Delta.Content)
			}
			if ch.Usage.TotalTokens > 0 {
				usage = ch.Usage
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		return content.String(), usage, chunks
	}
	for _, includeUsage := range []bool{false, true} {
		gotText, gotUsage, gotChunks := collect(h.gw, includeUsage)
		wantText, wantUsage, wantChunks := collect(h.direct, includeUsage)
		if gotText != "spam" || gotText != wantText || gotChunks != wantChunks {
			t.Errorf("include_usage=%v: %q in %d chunks via gateway, %q in %d direct", includeUsage, gotText, gotChunks, wantText, wantChunks)
		}
		if gotUsage.TotalTokens != wantUsage.TotalTokens || (includeUsage && gotUsage.TotalTokens == 0) || (!includeUsage && gotUsage.TotalTokens != 0) {
			t.Errorf("include_usage=%v: usage %+v via gateway, %+v direct", includeUsage, gotUsage, wantUsage)
		}
	}
}

// TestStreamRelaysAsItArrives checks events reach the client while the
// teacher is still generating, not all at the end.
func TestStreamRelaysAsItArrives(t *testing.T) {
	long := teachersim.Task{Name: "long", System: "Write.", Examples: []teachersim.Example{{Text: "go", Label: "one two three four five six"}}}
	h := start(t, teachersim.Config{Tasks: []teachersim.Task{long}, ChunkDelay: 150 * time.Millisecond}, nil)
	s := h.gw.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Write."), openai.UserMessage("go")},
	})
	var arrivals []time.Time
	var text strings.Builder
	for s.Next() {
		if ch := s.Current(); len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			arrivals = append(arrivals, time.Now())
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != "one two three four five six" || len(arrivals) < 4 {
		t.Fatalf("got %q in %d content chunks", text.String(), len(arrivals))
	}
	// Six chunks 150 ms apart: buffered, they would arrive together.
	if spread := arrivals[len(arrivals)-1].Sub(arrivals[0]); spread < 300*time.Millisecond {
		t.Errorf("content chunks arrived within %v of each other: the stream was buffered", spread)
	}
	if n := h.metric("understudy_teacher_time_to_first_token_seconds", nil); n != 1 {
		t.Errorf("time-to-first-token histogram has %v samples, want 1", n)
	}
}

func TestCompletionsModelsEmbeddings(t *testing.T) {
	h := start(t, teachersim.Config{Models: []string{"teacher-sim", "teacher-sim-large"}}, nil)
	ctx := context.Background()

	c, err := h.gw.Completions.New(ctx, openai.CompletionNewParams{
		Model: "teacher-sim", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(spamTask.Examples[1].Text)},
	})
	if err != nil || c.Choices[0].Text != "ham" {
		t.Errorf("completion: %+v, %v", c, err)
	}

	page, err := h.gw.Models.List(ctx)
	if err != nil || len(page.Data) != 2 || page.Data[1].ID != "teacher-sim-large" {
		t.Errorf("models: %+v, %v", page, err)
	}
	m, err := h.gw.Models.Get(ctx, "teacher-sim-large")
	if err != nil || m.ID != "teacher-sim-large" {
		t.Errorf("model: %+v, %v", m, err)
	}
	_, err = h.gw.Models.Get(ctx, "nope")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("unknown model: err = %v, want the teacher's 404 model_not_found", err)
	}

	emb, err := h.gw.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "teacher-sim", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}},
	})
	if err != nil || len(emb.Data) != 2 || len(emb.Data[0].Embedding) == 0 {
		t.Fatalf("embeddings: %+v, %v", emb, err)
	}
	// Both encodings pass through byte for byte.
	for _, enc := range []string{"float", "base64"} {
		body := []byte(`{"model":"teacher-sim","input":"hello","encoding_format":"` + enc + `"}`)
		status, _, viaGateway := h.raw("POST", "/v1/embeddings", body, nil)
		resp, err := http.Post(h.simURL+"/embeddings", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		direct := readAll(t, resp)
		if status != 200 || !bytes.Equal(viaGateway, direct) {
			t.Errorf("%s embeddings differ:\n gateway %d %s\n direct %s", enc, status, viaGateway, direct)
		}
	}
}

func TestErrors(t *testing.T) {
	h := start(t, teachersim.Config{}, func(c *config.Config) {
		c.Gateway.MaxBodySize = 64 * config.KiB
	})
	ctx := context.Background()
	for _, tc := range []struct {
		name           string
		call           func() error
		status         int
		errType, param string
	}{
		{"missing model", func() error {
			_, err := h.gw.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Messages: chatParams("x").Messages})
			return err
		}, 400, "invalid_request_error", "model"},
		{"missing messages", func() error {
			_, err := h.gw.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "m"})
			return err
		}, 400, "invalid_request_error", "messages"},
		{"wrong type", func() error {
			_, err := h.gw.Chat.Completions.New(ctx, chatParams("x"), option.WithJSONSet("stream_options", 7))
			return err
		}, 400, "invalid_request_error", "stream_options"},
		{"malformed domain header", func() error {
			_, err := h.gw.Chat.Completions.New(ctx, chatParams("x"), option.WithHeader("X-Understudy-Domain", "no spaces please"))
			return err
		}, 400, "invalid_request_error", "X-Understudy-Domain"},
		{"unknown path", func() error {
			return h.gw.Post(ctx, "chat/complete", map[string]any{"model": "m"}, nil)
		}, 404, "invalid_request_error", ""},
		{"wrong method", func() error {
			return h.gw.Get(ctx, "chat/completions", nil, nil)
		}, 405, "invalid_request_error", ""},
		{"body too large", func() error {
			_, err := h.gw.Chat.Completions.New(ctx, chatParams(strings.Repeat("x", 100<<10)))
			return err
		}, 413, "invalid_request_error", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v, want *openai.Error", err)
			}
			if apiErr.StatusCode != tc.status || apiErr.Type != tc.errType || apiErr.Param != tc.param || apiErr.Message == "" {
				t.Errorf("got %d %q param %q (%q), want %d %q param %q", apiErr.StatusCode, apiErr.Type, apiErr.Param, apiErr.Message, tc.status, tc.errType, tc.param)
			}
		})
	}

	t.Run("malformed JSON", func(t *testing.T) {
		status, hdr, body := h.raw("POST", "/v1/chat/completions", []byte(`{"model": "m", "messages": [`), nil)
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Param   *string `json:"param"`
				Code    *string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || status != 400 || e.Error.Type != "invalid_request_error" || e.Error.Message == "" {
			t.Errorf("status %d body %s (%v)", status, body, err)
		}
		if !bytes.Contains(body, []byte(`"param":null`)) || !bytes.Contains(body, []byte(`"code":null`)) {
			t.Errorf("error object lacks null param/code: %s", body)
		}
		if hdr.Get("X-Request-Id") == "" || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", hdr)
		}
	})

	t.Run("teacher error passes through", func(t *testing.T) {
		h.simConfig(map[string]any{"error_rate": 1, "error_status": 429})
		defer h.simConfig(map[string]any{"error_rate": 0})
		_, err := h.gw.Chat.Completions.New(ctx, chatParams("x"))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "injected_error" {
			t.Errorf("err = %v, want the teacher's 429 injected_error", err)
		}
	})
}

func TestGatewayKeys(t *testing.T) {
	h := start(t, teachersim.Config{APIKey: "sk-teacher"}, func(c *config.Config) {
		c.Gateway.APIKeys = []string{"sk-gateway-1", "sk-gateway-2"}
	})
	ctx := context.Background()
	for _, tc := range []struct {
		key    string
		status int
	}{{"sk-gateway-1", 200}, {"sk-gateway-2", 200}, {"sk-gateway-3", 401}, {"sk-gateway", 401}, {"", 401}} {
		t.Run("key="+tc.key, func(t *testing.T) {
			opts := []option.RequestOption{option.WithAPIKey(tc.key)}
			if tc.key == "" {
				opts = []option.RequestOption{option.WithHeaderDel("Authorization")}
			}
			_, err := h.gw.Chat.Completions.New(ctx, chatParams("x"), opts...)
			var apiErr *openai.Error
			switch {
			case tc.status == 200 && err != nil:
				t.Errorf("valid key refused: %v", err)
			case tc.status == 401 && (!errors.As(err, &apiErr) || apiErr.StatusCode != 401):
				t.Errorf("err = %v, want 401", err)
			}
		})
	}
	// Health and metrics need no key.
	if status, _, _ := h.raw("GET", "/healthz", nil, nil); status != 200 {
		t.Errorf("/healthz: %d", status)
	}
}

// TestBreaker drives the breaker open against a failing teacher and closed
// again once it recovers.
func TestBreaker(t *testing.T) {
	h := start(t, teachersim.Config{ErrorRate: 1}, func(c *config.Config) {
		c.Teacher.Breaker.ConsecutiveFailures = 3
		c.Teacher.Breaker.OpenTimeout = 500 * time.Millisecond
	})
	ctx := context.Background()
	var apiErr *openai.Error
	for i := range 3 {
		_, err := h.gw.Chat.Completions.New(ctx, chatParams("x"))
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 {
			t.Fatalf("request %d: err = %v, want the teacher's 500", i, err)
		}
	}
	var resp *http.Response
	_, err := h.gw.Chat.Completions.New(ctx, chatParams("x"), option.WithResponseInto(&resp))
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Code != "teacher_unavailable" {
		t.Fatalf("with the breaker open: err = %v, want 503 teacher_unavailable", err)
	}
	if resp.Header.Get("Retry-After") != "1" || resp.Header.Get("X-Should-Retry") != "true" {
		t.Errorf("retry-after %q x-should-retry %q", resp.Header.Get("Retry-After"), resp.Header.Get("X-Should-Retry"))
	}
	if s := h.metric("understudy_teacher_breaker_state", nil); s != 2 {
		t.Errorf("breaker_state = %v, want 2 (open)", s)
	}
	_, _, ready := h.raw("GET", "/readyz", nil, nil)
	if !bytes.Contains(ready, []byte(`"teacher_breaker":"open"`)) {
		t.Errorf("/readyz = %s, want the open breaker shown", ready)
	}
	// Refused requests are logged at most once a second, not one line each.
	began := time.Now()
	for range 50 {
		h.gw.Chat.Completions.New(ctx, chatParams("x"))
	}
	lines := strings.Count(h.log.String(), "reason=breaker_open")
	if most := 2 + int(time.Since(began)/time.Second); lines > most {
		t.Errorf("%d log lines for 51 refused requests in %v, want at most %d", lines, time.Since(began), most)
	}

	h.simConfig(map[string]any{"error_rate": 0})
	time.Sleep(600 * time.Millisecond) // past open_timeout: half-open
	// half_open_requests probes, all answered, close it.
	for range h.cfg.Teacher.Breaker.HalfOpenRequests {
		if _, err := h.gw.Chat.Completions.New(ctx, chatParams(spamTask.Examples[0].Text)); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
	if s := h.metric("understudy_teacher_breaker_state", nil); s != 0 {
		t.Errorf("breaker_state = %v, want 0 (closed)", s)
	}
}

// TestClientErrorsDoNotTrip checks 4xx answers and clients that hang up
// mid-stream are not counted as teacher failures.
func TestClientErrorsDoNotTrip(t *testing.T) {
	slow := teachersim.Task{Name: "slow", System: "Write.", Examples: []teachersim.Example{{Text: "go", Label: "a b c d e f g h"}}}
	h := start(t, teachersim.Config{Tasks: []teachersim.Task{slow}, ChunkDelay: 100 * time.Millisecond}, func(c *config.Config) {
		c.Teacher.Breaker.ConsecutiveFailures = 2
	})
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		s := h.gw.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Write."), openai.UserMessage("go")},
		})
		s.Next() // first chunk, then hang up
		cancel()
		s.Close()
	}
	h.simConfig(map[string]any{"error_rate": 1, "error_status": 400})
	for range 3 {
		_, _ = h.gw.Chat.Completions.New(context.Background(), chatParams("x"))
	}
	h.simConfig(map[string]any{"error_rate": 0})
	time.Sleep(300 * time.Millisecond) // let the abandoned streams finish on the gateway
	if s := h.metric("understudy_teacher_breaker_state", nil); s != 0 {
		t.Errorf("breaker_state = %v after client hang-ups and 4xx answers, want 0 (closed)", s)
	}
}

func TestTeacherUnreachable(t *testing.T) {
	ln := listen(t)
	dead := "http://" + ln.Addr().String() + "/v1"
	ln.Close() // nothing listens there now
	h := start(t, teachersim.Config{}, func(c *config.Config) {
		c.Teacher.URL = dead
		c.Teacher.Retries = 2
	})
	_, err := h.gw.Chat.Completions.New(context.Background(), chatParams("x"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 502 || apiErr.Code != "teacher_error" {
		t.Fatalf("err = %v, want 502 teacher_error", err)
	}
	if n := h.metric("understudy_teacher_retries_total", nil); n != 2 {
		t.Errorf("retries = %v, want 2 (dial errors are retried)", n)
	}
}

// TestTimeouts checks the first-byte timeout ends a silent teacher's request
// but not a stream that keeps sending.
func TestTimeouts(t *testing.T) {
	task := teachersim.Task{Name: "t", System: "Write.", Examples: []teachersim.Example{{Text: "go", Label: "a b c d e f"}}}
	h := start(t, teachersim.Config{Tasks: []teachersim.Task{task}, ChunkDelay: 100 * time.Millisecond}, func(c *config.Config) {
		c.Teacher.FirstByteTimeout = 300 * time.Millisecond
		c.Teacher.Retries = 0
	})
	params := openai.ChatCompletionNewParams{Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Write."), openai.UserMessage("go")}}
	// A stream lasting ~600 ms whose bytes keep coming is not cut off.
	s := h.gw.Chat.Completions.NewStreaming(context.Background(), params)
	var text strings.Builder
	for s.Next() {
		if ch := s.Current(); len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if s.Err() != nil || text.String() != "a b c d e f" {
		t.Errorf("stream longer than the first-byte timeout: %q, %v", text.String(), s.Err())
	}
	// A teacher silent for longer than the first-byte timeout is.
	h.simConfig(map[string]any{"latency": "2s"})
	began := time.Now()
	_, err := h.gw.Chat.Completions.New(context.Background(), params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 504 || apiErr.Code != "teacher_timeout" {
		t.Errorf("err = %v, want 504 teacher_timeout", err)
	}
	if waited := time.Since(began); waited > 1500*time.Millisecond {
		t.Errorf("waited %v for a 300ms first-byte timeout", waited)
	}
}

// TestForwarding uses a recording upstream to check what reaches the
// teacher: the body untouched, the teacher's key, no gateway headers.
func TestForwarding(t *testing.T) {
	type seen struct {
		path, auth, domainHdr, accept string
		credentials                   []string // Cookie, OpenAI-Organization, Api-Key as the teacher got them
		body                          []byte
	}
	got := make(chan seen, 4)
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := readAll(t, &http.Response{Body: r.Body})
		got <- seen{r.URL.RequestURI(), r.Header.Get("Authorization"), r.Header.Get("X-Understudy-Domain"), r.Header.Get("Accept-Encoding"),
			[]string{r.Header.Get("Cookie"), r.Header.Get("OpenAI-Organization"), r.Header.Get("Api-Key")}, b}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=teacher-only")
		w.Write([]byte(`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`))
	})}
	ln := listen(t)
	go upstream.Serve(ln)
	defer upstream.Close()

	for _, pass := range []bool{false, true} {
		h := start(t, teachersim.Config{}, func(c *config.Config) {
			c.Teacher.URL = "http://" + ln.Addr().String() + "/openai/v1"
			c.Teacher.PassClientAuthorization = pass
		})
		body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"x_vendor_field":{"keep":[1,2,3]},"temperature":0.2}`)
		status, hdr, _ := h.raw("POST", "/v1/chat/completions?api-version=2", body, map[string]string{
			"Authorization": "Bearer sk-client", "X-Understudy-Domain": "greetings", "Accept-Encoding": "gzip",
			"Cookie": "user=alice", "OpenAI-Organization": "org-client", "Api-Key": "azure-client",
		})
		s := <-got
		if status != 200 || !bytes.Equal(s.body, body) {
			t.Errorf("status %d; teacher got body %s, want it untouched", status, s.body)
		}
		if s.path != "/openai/v1/chat/completions?api-version=2" {
			t.Errorf("teacher got path %q", s.path)
		}
		wantAuth := "Bearer sk-teacher"
		if pass {
			wantAuth = "Bearer sk-client"
		}
		if s.auth != wantAuth || s.domainHdr != "" || s.accept != "" {
			t.Errorf("pass=%v: teacher got Authorization %q, X-Understudy-Domain %q, Accept-Encoding %q", pass, s.auth, s.domainHdr, s.accept)
		}
		// The client's own credentials go with its own key only, and the
		// teacher's cookie only back to that client.
		wantCreds, wantCookie := "[  ]", ""
		if pass {
			wantCreds, wantCookie = "[user=alice org-client azure-client]", "session=teacher-only"
		}
		if fmt.Sprint(s.credentials) != wantCreds || hdr.Get("Set-Cookie") != wantCookie {
			t.Errorf("pass=%v: teacher got credentials %q, client got Set-Cookie %q; want %s and %q", pass, s.credentials, hdr.Get("Set-Cookie"), wantCreds, wantCookie)
		}
		// The upstream sent no x-request-id: the gateway's own is returned.
		if id := hdr.Get("X-Request-Id"); !strings.HasPrefix(id, "req_") || hdr.Get("X-Understudy-Domain") != "greetings" {
			t.Errorf("x-request-id %q, domain %q", id, hdr.Get("X-Understudy-Domain"))
		}
	}
}

func TestDomainResolution(t *testing.T) {
	h := start(t, teachersim.Config{}, func(c *config.Config) {
		c.Domains = []config.Domain{
			{Name: "spam-rule", SystemPromptPrefix: "Classify this e-mail"},
			{Name: "by-model", Model: "special-model"},
		}
	})
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		params openai.ChatCompletionNewParams
		opts   []option.RequestOption
		want   string
	}{
		{"header beats everything", chatParams("x"), []option.RequestOption{option.WithHeader("X-Understudy-Domain", "from-header")}, "from-header"},
		{"metadata.task", func() openai.ChatCompletionNewParams {
			p := chatParams("x")
			p.Metadata = shared.Metadata{"task": "from-metadata"}
			return p
		}(), nil, "from-metadata"},
		{"system prompt prefix rule", chatParams("x"), nil, "spam-rule"},
		{"model rule", openai.ChatCompletionNewParams{Model: "special-model", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}}, nil, "by-model"},
		{"fingerprint", openai.ChatCompletionNewParams{Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Other task."), openai.UserMessage("x")}}, nil, gateway.Fingerprint("m", "other task.")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			if _, err := h.gw.Chat.Completions.New(ctx, tc.params, append(tc.opts, option.WithResponseInto(&resp))...); err != nil {
				t.Fatal(err)
			}
			if d := resp.Header.Get("X-Understudy-Domain"); d != tc.want {
				t.Errorf("domain %q, want %q", d, tc.want)
			}
		})
	}
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestCostModelLabelsBounded sends more distinct model names than the cost
// metrics name one by one: the first 64 keep their label, the rest count
// under "_other", and no spend is lost.
func TestCostModelLabelsBounded(t *testing.T) {
	const maxModels, extra = 64, 6 // gateway's maxModelLabels
	h := start(t, teachersim.Config{}, func(c *config.Config) {
		c.Pricing.Default = config.Price{Input: 1e6, Output: 1e6} // a dollar a token
	})
	var tokens int64
	for i := range maxModels + extra {
		p := chatParams(spamTask.Examples[0].Text)
		p.Model = shared.ChatModel("model-" + strconv.Itoa(i))
		c, err := h.gw.Chat.Completions.New(context.Background(), p, option.WithHeader("X-Understudy-Domain", "spam"))
		if err != nil {
			t.Fatal(err)
		}
		tokens += c.Usage.TotalTokens
	}
	families, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "understudy_teacher_spend_dollars_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "model" {
					models[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	var spent float64
	for _, v := range models {
		spent += v
	}
	if len(models) != maxModels+1 || models["_other"] == 0 || spent != float64(tokens) {
		t.Errorf("%d model labels (want %d), _other $%v, $%v spent in all for %d tokens", len(models), maxModels+1, models["_other"], spent, tokens)
	}
}

// TestMetricsKey: with metrics.require_api_key, /metrics asks for a gateway
// key like /v1; without it, it stays open for scrapers; health stays open.
func TestMetricsKey(t *testing.T) {
	for _, protect := range []bool{false, true} {
		h := start(t, teachersim.Config{}, func(c *config.Config) {
			c.Gateway.APIKeys = []string{"sk-gw"}
			c.Metrics.RequireAPIKey = protect
		})
		open, _, _ := h.raw("GET", "/metrics", nil, nil)
		keyed, _, body := h.raw("GET", "/metrics", nil, map[string]string{"Authorization": "Bearer sk-gw"})
		health, _, _ := h.raw("GET", "/healthz", nil, nil)
		wantOpen := 200
		if protect {
			wantOpen = 401
		}
		if open != wantOpen || keyed != 200 || !bytes.Contains(body, []byte("understudy_teacher_breaker_state")) || health != 200 {
			t.Errorf("require_api_key=%v: /metrics %d without a key, %d with; /healthz %d", protect, open, keyed, health)
		}
	}
}
