package teachersim

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
)

// msg is one message of a conversation, sent as a chat message and as a
// Responses input item.
type msg struct{ role, text string }

// chatAnswerOf is the chat endpoint's answer to the messages.
func chatAnswerOf(t *testing.T, client openai.Client, msgs []msg) string {
	t.Helper()
	params := openai.ChatCompletionNewParams{Model: "teacher-sim"}
	for _, m := range msgs {
		var p openai.ChatCompletionMessageParamUnion
		switch m.role {
		case "system":
			p = openai.SystemMessage(m.text)
		case "developer":
			p = openai.DeveloperMessage(m.text)
		case "user":
			p = openai.UserMessage(m.text)
		case "assistant":
			p = openai.AssistantMessage(m.text)
		default:
			t.Fatalf("role %q", m.role)
		}
		params.Messages = append(params.Messages, p)
	}
	resp, err := client.Chat.Completions.New(t.Context(), params)
	if err != nil || len(resp.Choices) != 1 {
		t.Fatalf("chat: %v", err)
	}
	return resp.Choices[0].Message.Content
}

// responsesTasks are the fixtures and two tasks whose answers show the
// input rule: a multi-word answer and an answer to two joined lines.
func responsesTasks(t *testing.T) []Task {
	return append(loadTasks(t),
		Task{Name: "story", System: "Tell a story.", Examples: []Example{{"story please", "Once upon a time, the model said: hello world."}}},
		Task{Name: "multi", System: "Join the lines.", Examples: []Example{{"first\nsecond", "joined"}, {"first\nyes\nsecond", "with the reply"}}},
	)
}

// streamEventOrder is the order of a one-message Responses stream;
// deltas repeat.
var streamEventOrder = []string{
	"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
	"response.output_text.delta",
	"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
}

func TestSDKResponses(t *testing.T) {
	ts := start(t, Config{Tasks: responsesTasks(t), APIKey: "sk-test"})
	client := ts.sdk("sk-test")
	tests := []struct {
		name         string
		instructions string
		input        []msg // one user message is sent as a string input
		want         string
	}{
		{"instructions select sentiment", sentimentSystem, []msg{{"user", "I loved every minute of it."}}, "positive"},
		{"instructions select topic", defaultSystem, []msg{{"user", "I loved every minute of it."}}, "sports"},
		{"system item selects the task", "", []msg{{"system", sentimentSystem}, {"user", "Terrible service, never again."}}, "negative"},
		{"developer item selects the task", "", []msg{{"developer", defaultSystem}, {"user", "I loved every minute of it."}}, "sports"},
		{"instructions beat a system item", defaultSystem, []msg{{"system", sentimentSystem}, {"user", "I loved every minute of it."}}, "sports"},
		{"no system searches all tasks", "", []msg{{"user", "The central bank raised interest rates."}}, "business"},
		{"matched system searches only its tasks", sentimentSystem, []msg{{"user", "The striker scored twice in the final."}}, "unknown"},
		{"user items joined by newline", "Join the lines.", []msg{{"user", "first"}, {"user", "second"}}, "joined"},
		{"assistant items joined too", "Join the lines.", []msg{{"user", "first"}, {"assistant", "yes"}, {"user", "second"}}, "with the reply"},
		{"multi-word answer", "Tell a story.", []msg{{"user", "story please"}}, "Once upon a time, the model said: hello world."},
		{"unknown", "", []msg{{"user", "What is the capital of France?"}}, "unknown"},
	}
	for _, tt := range tests {
		// The same conversation as chat messages: the instructions are
		// its first system message.
		chatMsgs := tt.input
		if tt.instructions != "" {
			chatMsgs = append([]msg{{"system", tt.instructions}}, tt.input...)
		}
		params := responses.ResponseNewParams{Model: "teacher-sim"}
		if tt.instructions != "" {
			params.Instructions = openai.String(tt.instructions)
		}
		if len(tt.input) == 1 && tt.input[0].role == "user" {
			params.Input.OfString = openai.String(tt.input[0].text)
		} else {
			for _, m := range tt.input {
				params.Input.OfInputItemList = append(params.Input.OfInputItemList,
					responses.ResponseInputItemParamOfMessage(m.text, responses.EasyInputMessageRole(m.role)))
			}
		}

		t.Run(tt.name+"/plain", func(t *testing.T) {
			if got := chatAnswerOf(t, client, chatMsgs); got != tt.want {
				t.Fatalf("chat answers %q, want %q", got, tt.want)
			}
			resp, err := client.Responses.New(t.Context(), params)
			if err != nil {
				t.Fatal(err)
			}
			if resp.OutputText() != tt.want || resp.Status != responses.ResponseStatusCompleted {
				t.Errorf("response %s: want completed, output text %q", resp.RawJSON(), tt.want)
			}
			if !strings.HasPrefix(resp.ID, "resp_") || resp.Model != "teacher-sim" || len(resp.Output) != 1 ||
				resp.Usage.OutputTokens < 1 || resp.Usage.TotalTokens != resp.Usage.InputTokens+resp.Usage.OutputTokens {
				t.Errorf("response %s", resp.RawJSON())
			}
		})

		t.Run(tt.name+"/stream", func(t *testing.T) {
			stream := client.Responses.NewStreaming(t.Context(), params)
			defer stream.Close()
			var (
				types   []string
				deltas  strings.Builder
				seq     int64 = -1
				final   responses.Response
				acc     responses.ResponseAccumulator
				accErrs []error
			)
			for stream.Next() {
				ev := stream.Current()
				types = append(types, ev.Type)
				if ev.SequenceNumber != seq+1 {
					t.Errorf("event %d (%s): sequence_number %d, want %d", len(types)-1, ev.Type, ev.SequenceNumber, seq+1)
				}
				seq = ev.SequenceNumber
				switch ev.Type {
				case "response.output_text.delta":
					deltas.WriteString(ev.AsResponseOutputTextDelta().Delta)
				case "response.completed":
					final = ev.AsResponseCompleted().Response
				}
				// The accumulator reads the same events off a WebSocket.
				var wsEv responses.ResponsesServerEventUnion
				if err := json.Unmarshal([]byte(ev.RawJSON()), &wsEv); err != nil {
					t.Fatal(err)
				}
				if err := acc.AddEvent(wsEv); err != nil {
					accErrs = append(accErrs, err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if deltas.String() != tt.want || final.OutputText() != tt.want || final.Status != responses.ResponseStatusCompleted {
				t.Errorf("deltas %q, completed response %s; want %q", deltas.String(), final.RawJSON(), tt.want)
			}
			if final.Usage.TotalTokens != final.Usage.InputTokens+final.Usage.OutputTokens || final.Usage.OutputTokens < 1 {
				t.Errorf("completed response usage %s", final.JSON.Usage.Raw())
			}
			if got := slices.Compact(slices.Clone(types)); !slices.Equal(got, streamEventOrder) {
				t.Errorf("events %v, want %v with deltas repeated", types, streamEventOrder)
			}
			if n := strings.Count(strings.Join(types, " "), "delta"); n != len(pieces(tt.want)) {
				t.Errorf("%d deltas for %q, want one a word", n, tt.want)
			}
			rec, err := acc.ReconstructedResponse()
			if len(accErrs) > 0 || err != nil || rec.OutputText() != tt.want {
				t.Errorf("accumulator: %v, %v; text %q, want %q", accErrs, err, rec.OutputText(), tt.want)
			}
		})
	}
}

func TestResponsesWireFormat(t *testing.T) {
	ts := start(t, Config{Tasks: []Task{{Name: "t", System: "abcd", Examples: []Example{{"héllo", "yes"}}}}})
	body := mustJSON(t, map[string]any{
		"model":             "my-model",
		"instructions":      "abcd",
		"input":             []map[string]any{{"type": "message", "role": "user", "content": []map[string]any{{"type": "input_text", "text": "héllo"}}}},
		"metadata":          map[string]any{"k": "v"},
		"text":              map[string]any{"format": map[string]any{"type": "json_schema", "name": "answer", "schema": map[string]any{"type": "object"}, "strict": true}},
		"max_output_tokens": 64,
		"temperature":       0.5,
	})
	before := time.Now().Unix()
	resp, raw := ts.do(t, "POST", "/v1/responses", body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
	got := decode(t, raw)
	n, _ := strings.CutPrefix(resp.Header.Get("x-request-id"), "sim-")
	created, _ := got["created_at"].(json.Number).Int64()
	completed, _ := got["completed_at"].(json.Number).Int64()
	if created < before || completed < created || completed > time.Now().Unix() {
		t.Errorf("created_at %d, completed_at %d: want now", created, completed)
	}
	delete(got, "created_at")
	delete(got, "completed_at")
	// (4+5 runes + 3) / 4 = 3 input tokens; "yes" is 1.
	want := decode(t, []byte(`{"id":"resp_sim-`+n+`","object":"response","status":"completed","background":false,
		"error":null,"incomplete_details":null,"instructions":"abcd","max_output_tokens":64,"max_tool_calls":null,"model":"my-model",
		"output":[{"id":"msg_sim-`+n+`","type":"message","status":"completed",
			"content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"yes"}],"role":"assistant"}],
		"parallel_tool_calls":true,"previous_response_id":null,"prompt_cache_key":null,"reasoning":{"effort":null,"summary":null},
		"safety_identifier":null,"service_tier":"default","store":true,"temperature":0.5,
		"text":{"format":{"type":"json_schema","name":"answer","schema":{"type":"object"},"strict":true},"verbosity":"medium"},
		"tool_choice":"auto","tools":[],"top_logprobs":0,"top_p":1,"truncation":"disabled",
		"usage":{"input_tokens":3,"input_tokens_details":{"cached_tokens":0},"output_tokens":1,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":4},
		"user":null,"metadata":{"k":"v"}}`))
	if !equalJSON(got, want) {
		t.Errorf("response\n%s\nwant (less created_at, completed_at)\n%s", mustJSON(t, got), mustJSON(t, want))
	}
}

// sseTypedEvent is one "event: <type>\ndata: <json>\n\n" server-sent event.
type sseTypedEvent struct {
	typ  string
	data map[string]any
}

// nextTypedEvent reads one event; ok is false at the end of the stream.
func nextTypedEvent(t *testing.T, br *bufio.Reader) (ev sseTypedEvent, ok bool) {
	t.Helper()
	line, err := br.ReadString('\n')
	if err == io.EOF && line == "" {
		return ev, false
	}
	typ, ok := strings.CutPrefix(line, "event: ")
	if err != nil || !ok {
		t.Fatalf("event line %q, %v; want event: <type>", line, err)
	}
	ev.typ = strings.TrimSuffix(typ, "\n")
	line, err = br.ReadString('\n')
	data, ok := strings.CutPrefix(line, "data: ")
	if err != nil || !ok {
		t.Fatalf("after event %s: line %q, %v; want data: <json>", ev.typ, line, err)
	}
	ev.data = decode(t, []byte(data))
	if blank, err := br.ReadString('\n'); err != nil || blank != "\n" {
		t.Fatalf("after %q got %q, %v; want a blank line", line, blank, err)
	}
	if ev.data["type"] != ev.typ {
		t.Errorf("event %s carries type %v", ev.typ, ev.data["type"])
	}
	return ev, true
}

func TestResponsesStreamWireFormat(t *testing.T) {
	const answer = "  The answer is\tforty two.\n"
	ts := start(t, Config{Tasks: []Task{{Name: "t", Examples: []Example{{"q", answer}}}}})
	resp, raw := ts.do(t, "POST", "/v1/responses", `{"model":"m","input":"q","stream":true,"metadata":{"a":"b"}}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
	if strings.Contains(string(raw), "[DONE]") {
		t.Error("stream has data: [DONE]; the Responses API sends none")
	}
	br := bufio.NewReader(strings.NewReader(string(raw)))
	var events []sseTypedEvent
	for {
		ev, ok := nextTypedEvent(t, br)
		if !ok {
			break
		}
		events = append(events, ev)
	}
	var types []string
	var text strings.Builder
	for i, ev := range events {
		types = append(types, ev.typ)
		if got := ev.data["sequence_number"]; got != json.Number(strconv.Itoa(i)) {
			t.Errorf("event %d %s: sequence_number %v", i, ev.typ, got)
		}
		// Events on the output item name it and its place.
		if strings.Contains(ev.typ, "content_part") || strings.Contains(ev.typ, "output_text") {
			if !strings.HasPrefix(ev.data["item_id"].(string), "msg_") || ev.data["output_index"] != json.Number("0") || ev.data["content_index"] != json.Number("0") {
				t.Errorf("event %s: item_id, output_index, content_index %v", ev.typ, ev.data)
			}
		}
		switch ev.typ {
		case "response.created", "response.in_progress":
			r := ev.data["response"].(map[string]any)
			if r["status"] != "in_progress" || len(r["output"].([]any)) != 0 || r["usage"] != nil || r["completed_at"] != nil ||
				!equalJSON(r["metadata"].(map[string]any), map[string]any{"a": "b"}) {
				t.Errorf("%s: response %v, want in progress, no output, null usage", ev.typ, r)
			}
		case "response.output_item.added":
			item := ev.data["item"].(map[string]any)
			if item["status"] != "in_progress" || len(item["content"].([]any)) != 0 || item["role"] != "assistant" || item["type"] != "message" {
				t.Errorf("%s: item %v", ev.typ, item)
			}
		case "response.content_part.added":
			if part := ev.data["part"].(map[string]any); part["type"] != "output_text" || part["text"] != "" {
				t.Errorf("%s: part %v", ev.typ, part)
			}
		case "response.output_text.delta":
			text.WriteString(ev.data["delta"].(string))
		case "response.output_text.done":
			if ev.data["text"] != answer {
				t.Errorf("%s: text %q", ev.typ, ev.data["text"])
			}
		case "response.content_part.done":
			if part := ev.data["part"].(map[string]any); part["text"] != answer {
				t.Errorf("%s: part %v", ev.typ, part)
			}
		case "response.output_item.done":
			item := ev.data["item"].(map[string]any)
			if item["status"] != "completed" || len(item["content"].([]any)) != 1 {
				t.Errorf("%s: item %v", ev.typ, item)
			}
		case "response.completed":
			r := ev.data["response"].(map[string]any)
			if r["status"] != "completed" || len(r["output"].([]any)) != 1 || r["usage"] == nil || r["completed_at"] == nil {
				t.Errorf("%s: response %v", ev.typ, r)
			}
		}
	}
	if got := slices.Compact(slices.Clone(types)); !slices.Equal(got, streamEventOrder) {
		t.Errorf("events %v, want %v with deltas repeated", types, streamEventOrder)
	}
	if text.String() != answer {
		t.Errorf("deltas concatenate to %q, want %q", text.String(), answer)
	}
	// The stored response is the completed one.
	id := events[0].data["response"].(map[string]any)["id"].(string)
	_, stored := ts.do(t, "GET", "/v1/responses/"+id, "")
	if !equalJSON(decode(t, stored), events[len(events)-1].data["response"].(map[string]any)) {
		t.Errorf("GET %s = %s, want the completed response", id, stored)
	}
}

func TestResponsesStreamFlushesEachEvent(t *testing.T) {
	// With an hour between deltas, reading the first delta proves each
	// event was flushed on its own; shutting down must then cut the
	// delays short and finish the stream.
	ts := start(t, Config{Tasks: responsesTasks(t), ChunkDelay: time.Hour})
	resp, err := ts.client.Post(ts.base+"/v1/responses", "application/json",
		strings.NewReader(`{"model":"m","instructions":"Tell a story.","input":"story please","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for {
		ev, ok := nextTypedEvent(t, br)
		if !ok {
			t.Fatal("stream ended before the first delta")
		}
		if ev.typ == "response.output_text.delta" {
			break
		}
	}
	stopped := make(chan struct{})
	go func() {
		ts.stop()
		close(stopped)
	}()
	var last sseTypedEvent
	for ev, ok := nextTypedEvent(t, br); ok; ev, ok = nextTypedEvent(t, br) {
		last = ev
	}
	if last.typ != "response.completed" {
		t.Errorf("stream ended with %s, want response.completed", last.typ)
	}
	<-stopped
}

func TestResponsesStore(t *testing.T) {
	ts := start(t, Config{Tasks: responsesTasks(t)})
	client := ts.sdk("none")
	create := func(t *testing.T, body string) map[string]any {
		t.Helper()
		resp, raw := ts.do(t, "POST", "/v1/responses", body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, raw)
		}
		return decode(t, raw)
	}
	text := func(r map[string]any) string {
		return r["output"].([]any)[0].(map[string]any)["content"].([]any)[0].(map[string]any)["text"].(string)
	}
	inputTokens := func(r map[string]any) int64 {
		n, _ := r["usage"].(map[string]any)["input_tokens"].(json.Number).Int64()
		return n
	}

	t.Run("get and delete round-trip", func(t *testing.T) {
		created, err := client.Responses.New(t.Context(), responses.ResponseNewParams{
			Model: "teacher-sim", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Terrible service, never again.")},
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := client.Responses.Get(t.Context(), created.ID, responses.ResponseGetParams{})
		if err != nil {
			t.Fatal(err)
		}
		if got.RawJSON() != created.RawJSON() {
			t.Errorf("GET gave\n%s\nwant the created response\n%s", got.RawJSON(), created.RawJSON())
		}
		resp, raw := ts.do(t, "DELETE", "/v1/responses/"+created.ID, "")
		if resp.StatusCode != http.StatusOK || !equalJSON(decode(t, raw), map[string]any{"id": created.ID, "object": "response", "deleted": true}) {
			t.Errorf("DELETE: %d %s", resp.StatusCode, raw)
		}
		for _, method := range []string{"GET", "DELETE"} {
			resp, raw := ts.do(t, method, "/v1/responses/"+created.ID, "")
			e := decodeErr(t, raw)
			if resp.StatusCode != http.StatusNotFound || e.Error.Message != "Response with id '"+created.ID+"' not found." ||
				e.Error.Type != "invalid_request_error" || e.Error.Param != nil || e.Error.Code != nil {
				t.Errorf("%s after DELETE: %d %s", method, resp.StatusCode, raw)
			}
		}
		_, err = client.Responses.Get(t.Context(), created.ID, responses.ResponseGetParams{})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
			t.Errorf("SDK Get after delete: %v, want a 404 *openai.Error", err)
		}
		if err := client.Responses.Delete(t.Context(), created.ID); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
			t.Errorf("SDK Delete after delete: %v, want a 404 *openai.Error", err)
		}
	})

	t.Run("store false keeps nothing", func(t *testing.T) {
		r := create(t, `{"model":"m","input":"x","store":false}`)
		if r["store"] != false {
			t.Errorf("store %v, want false", r["store"])
		}
		if resp, raw := ts.do(t, "GET", "/v1/responses/"+r["id"].(string), ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET: %d %s, want 404", resp.StatusCode, raw)
		}
	})

	t.Run("previous_response_id", func(t *testing.T) {
		first := create(t, mustJSON(t, map[string]any{"model": "m", "input": []map[string]any{
			{"role": "system", "content": sentimentSystem}, {"role": "user", "content": "I loved every minute of it."}}}))
		withInstructions := create(t, mustJSON(t, map[string]any{"model": "m", "instructions": sentimentSystem, "input": "I loved every minute of it."}))
		if text(first) != "positive" || text(withInstructions) != "positive" {
			t.Fatalf("first turns answered %q, %q", text(first), text(withInstructions))
		}
		tests := []struct {
			name, previous, input, want string
		}{
			// Without a previous response the topic task answers.
			{"no previous", "", "The striker scored twice in the final.", "sports"},
			// The previous turn's system item carries over: only the
			// sentiment task is searched.
			{"system item carries over", first["id"].(string), "The striker scored twice in the final.", "unknown"},
			{"answer from the new input", first["id"].(string), "Terrible service, never again.", "negative"},
			// Instructions do not carry over, as in OpenAI.
			{"instructions do not", withInstructions["id"].(string), "The striker scored twice in the final.", "sports"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				body := map[string]any{"model": "m", "input": tt.input}
				if tt.previous != "" {
					body["previous_response_id"] = tt.previous
				}
				r := create(t, mustJSON(t, body))
				if text(r) != tt.want {
					t.Errorf("answer %q, want %q", text(r), tt.want)
				}
				if tt.previous == "" {
					if r["previous_response_id"] != nil {
						t.Errorf("previous_response_id %v, want null", r["previous_response_id"])
					}
					return
				}
				if r["previous_response_id"] != tt.previous {
					t.Errorf("previous_response_id %v, want %s", r["previous_response_id"], tt.previous)
				}
				if alone := create(t, mustJSON(t, map[string]any{"model": "m", "input": tt.input})); inputTokens(r) <= inputTokens(alone) {
					t.Errorf("input tokens %d with the earlier turn, %d without: want more", inputTokens(r), inputTokens(alone))
				}
			})
		}
	})

	t.Run("unknown previous_response_id", func(t *testing.T) {
		resp, raw := ts.do(t, "POST", "/v1/responses", `{"model":"m","input":"x","previous_response_id":"resp_nope"}`)
		e := decodeErr(t, raw)
		if resp.StatusCode != http.StatusBadRequest || e.Error.Message != "Previous response with id 'resp_nope' not found." ||
			deref(e.Error.Param) != "previous_response_id" || deref(e.Error.Code) != "previous_response_not_found" {
			t.Errorf("%d %s", resp.StatusCode, raw)
		}
	})
}

func TestResponseStoreKeepsTheNewest(t *testing.T) {
	st := newResponseStore(2)
	for _, id := range []string{"a", "b", "c"} {
		st.put(id, storedResponse{body: []byte(id)})
	}
	st.delete("b")
	st.put("d", storedResponse{body: []byte("d")})
	for id, want := range map[string]bool{"a": false, "b": false, "c": true, "d": true} {
		if _, ok := st.get(id); ok != want {
			t.Errorf("get(%q) found %v, want %v", id, ok, want)
		}
	}
}

func TestResponsesErrors(t *testing.T) {
	ts := start(t, Config{Tasks: loadTasks(t)})
	const in = `"input":"hi"`
	tests := []struct {
		name, method, path, body string
		status                   int
		param, code              string // "<null>" for null
	}{
		{"bad JSON", "POST", "/v1/responses", `{"model":`, 400, "<null>", "<null>"},
		{"missing model", "POST", "/v1/responses", `{` + in + `}`, 400, "model", "missing_required_parameter"},
		{"missing input", "POST", "/v1/responses", `{"model":"m"}`, 400, "input", "missing_required_parameter"},
		{"empty input", "POST", "/v1/responses", `{"model":"m","input":[]}`, 400, "input", "missing_required_parameter"},
		{"number input", "POST", "/v1/responses", `{"model":"m","input":42}`, 400, "input", "invalid_type"},
		{"item not an object", "POST", "/v1/responses", `{"model":"m","input":["hi"]}`, 400, "input[0]", "invalid_type"},
		{"null item", "POST", "/v1/responses", `{"model":"m","input":[null]}`, 400, "input[0]", "invalid_type"},
		{"item of another type", "POST", "/v1/responses", `{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":"x"}]}`, 400, "input[0].type", "invalid_value"},
		{"missing role", "POST", "/v1/responses", `{"model":"m","input":[{"content":"hi"}]}`, 400, "input[0].role", "missing_required_parameter"},
		{"bad role", "POST", "/v1/responses", `{"model":"m","input":[{"role":"tool","content":"hi"}]}`, 400, "input[0].role", "invalid_value"},
		{"role of wrong type", "POST", "/v1/responses", `{"model":"m","input":[{"role":1,"content":"hi"}]}`, 400, "input[0].role", "invalid_type"},
		{"missing content", "POST", "/v1/responses", `{"model":"m","input":[{"role":"user"}]}`, 400, "input[0].content", "missing_required_parameter"},
		{"number content", "POST", "/v1/responses", `{"model":"m","input":[{"role":"user","content":42}]}`, 400, "input[0].content", "invalid_type"},
		{"part not an object", "POST", "/v1/responses", `{"model":"m","input":[{"role":"user","content":["hi"]}]}`, 400, "input[0].content[0]", "invalid_type"},
		{"chat part type", "POST", "/v1/responses", `{"model":"m","input":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, 400, "input[0].content[0].type", "invalid_value"},
		{"output part in user message", "POST", "/v1/responses", `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"output_text","text":"hi"}]}]}`, 400, "input[0].content[1].type", "invalid_value"},
		{"input part in assistant message", "POST", "/v1/responses", `{"model":"m","input":[{"role":"assistant","content":[{"type":"input_text","text":"hi"}]}]}`, 400, "input[0].content[0].type", "invalid_value"},
		{"instructions not a string", "POST", "/v1/responses", `{"model":"m",` + in + `,"instructions":["a"]}`, 400, "instructions", "invalid_type"},
		{"stream not a boolean", "POST", "/v1/responses", `{"model":"m",` + in + `,"stream":"yes"}`, 400, "stream", "invalid_type"},
		{"bad format type", "POST", "/v1/responses", `{"model":"m",` + in + `,"text":{"format":{"type":"xml"}}}`, 400, "text.format.type", "invalid_value"},
		{"format without type", "POST", "/v1/responses", `{"model":"m",` + in + `,"text":{"format":{}}}`, 400, "text.format.type", "missing_required_parameter"},
		{"json_schema without name", "POST", "/v1/responses", `{"model":"m",` + in + `,"text":{"format":{"type":"json_schema","schema":{}}}}`, 400, "text.format.name", "missing_required_parameter"},
		{"json_schema without schema", "POST", "/v1/responses", `{"model":"m",` + in + `,"text":{"format":{"type":"json_schema","name":"n"}}}`, 400, "text.format.schema", "missing_required_parameter"},
		{"metadata not strings", "POST", "/v1/responses", `{"model":"m",` + in + `,"metadata":{"a":1}}`, 400, "metadata", "invalid_type"},
		{"create wrong method", "GET", "/v1/responses", "", 405, "<null>", "method_not_allowed"},
		{"by id wrong method", "POST", "/v1/responses/resp_x", `{}`, 405, "<null>", "method_not_allowed"},
		{"unknown id", "GET", "/v1/responses/resp_x", "", 404, "<null>", "<null>"},
		{"delete unknown id", "DELETE", "/v1/responses/resp_x", "", 404, "<null>", "<null>"},
		{"input items not served", "GET", "/v1/responses/resp_x/input_items", "", 404, "<null>", "unknown_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, tt.method, tt.path, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			e := decodeErr(t, body)
			if e.Error.Type != "invalid_request_error" || deref(e.Error.Param) != tt.param || deref(e.Error.Code) != tt.code {
				t.Errorf("error %s: want type invalid_request_error, param %s, code %s", body, tt.param, tt.code)
			}
			if tt.param != "<null>" && !strings.Contains(e.Error.Message, tt.param) && !strings.HasSuffix(tt.code, "invalid_value") {
				t.Errorf("message %q does not name %s", e.Error.Message, tt.param)
			}
		})
	}
	t.Run("405 names the allowed methods", func(t *testing.T) {
		resp, _ := ts.do(t, "PUT", "/v1/responses/resp_x", "")
		if got := resp.Header.Get("Allow"); got != "GET, DELETE" {
			t.Errorf("Allow %q, want GET, DELETE", got)
		}
	})
	t.Run("type error message", func(t *testing.T) {
		_, body := ts.do(t, "POST", "/v1/responses", `{"model":"m",`+in+`,"stream":"yes"}`)
		if got := decodeErr(t, body).Error.Message; got != "Invalid type for 'stream': expected a boolean, but got a string instead." {
			t.Errorf("message %q", got)
		}
	})
}

func TestResponsesFollowSettings(t *testing.T) {
	tasks := loadTasks(t)
	ts := start(t, Config{Tasks: tasks})
	client := ts.sdk("none")
	answer := func(t *testing.T, system, user string) string {
		t.Helper()
		resp, err := client.Responses.New(t.Context(), responses.ResponseNewParams{
			Model: "teacher-sim", Instructions: openai.String(system),
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(user)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp.OutputText()
	}
	patch := func(t *testing.T, body string) {
		t.Helper()
		if resp, b := ts.do(t, "POST", "/sim/config", body); resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /sim/config: %d %s", resp.StatusCode, b)
		}
	}

	t.Run("swap_labels and unknown_answer", func(t *testing.T) {
		patch(t, `{"swap_labels":true,"unknown_answer":"no idea"}`)
		defer patch(t, `{"swap_labels":false,"unknown_answer":"unknown"}`)
		for _, task := range tasks {
			for _, e := range append(task.Examples, Example{Text: "never seen"}) {
				chat := chatAnswer(t, ts, task.System, e.Text)
				if got := answer(t, task.System, e.Text); got != chat || got == e.Label {
					t.Errorf("%q: responses %q, chat %q; want the same swapped label", e.Text, got, chat)
				}
			}
		}
	})

	t.Run("injected errors", func(t *testing.T) {
		patch(t, `{"error_rate":1,"error_status":503}`)
		defer patch(t, `{"error_rate":0}`)
		before := ts.Stats()
		_, err := client.Responses.New(t.Context(), responses.ResponseNewParams{
			Model: "teacher-sim", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Code != "injected_error" || apiErr.Type != "server_error" {
			t.Fatalf("error %v, want an injected 503", err)
		}
		stream := client.Responses.NewStreaming(t.Context(), responses.ResponseNewParams{
			Model: "teacher-sim", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		})
		for stream.Next() {
			t.Errorf("event %s from an injected error", stream.Current().RawJSON())
		}
		if !errors.As(stream.Err(), &apiErr) || apiErr.StatusCode != 503 {
			t.Errorf("stream error %v, want an injected 503", stream.Err())
		}
		stream.Close()
		for _, method := range []string{"GET", "DELETE"} {
			if resp, raw := ts.do(t, method, "/v1/responses/resp_x", ""); resp.StatusCode != 503 {
				t.Errorf("%s /v1/responses/resp_x: %d %s, want the injected 503", method, resp.StatusCode, raw)
			}
		}
		if got := ts.Stats(); got.Requests-before.Requests != 4 || got.Errors-before.Errors != 4 {
			t.Errorf("stats went from %+v to %+v, want 4 more requests and errors", before, got)
		}
	})

	t.Run("latency", func(t *testing.T) {
		patch(t, `{"latency":"30ms"}`)
		defer patch(t, `{"latency":"0s"}`)
		began := time.Now()
		answer(t, "", "hi")
		if took := time.Since(began); took < 30*time.Millisecond {
			t.Errorf("answered after %v, want at least the 30ms latency", took)
		}
	})
}

// FuzzReadInput checks that no input panics the Responses input parser and
// that a string input is read as encoding/json reads it.
func FuzzReadInput(f *testing.F) {
	for _, s := range []string{`"plain"`, `"esc\n\u00e9"`, `[{"role":"user","content":"a"}]`, `[{"role":"assistant","content":[{"type":"output_text","text":"b"}]}]`,
		`[{"type":"message","role":"system","content":[{"type":"input_text","text":"s"},{"type":"input_image"}]}]`, `[null]`, `[[]]`, `[{"role":"user","content":[1]}]`, `42`, `null`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		var c conversation
		e := readInput(&c, raw)
		var s string
		isString := strings.HasPrefix(strings.TrimSpace(string(raw)), `"`)
		if isString && json.Unmarshal(raw, &s) == nil && (e != nil || string(c.text) != s || c.haveSystem) {
			t.Errorf("readInput(%s) = %v, text %q; want no error and text %q", raw, e, c.text, s)
		}
	})
}
