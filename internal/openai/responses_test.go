package openai

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/responses"
)

func TestParseResponsesRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want Request // Messages and Items are checked apart
	}{
		{"string input", `{"model":"m","instructions":"Be brief.","input":"hi"}`,
			Request{Model: "m", System: "Be brief.", Input: "hi"}},
		{"items", `{"model":"m","stream":true,"input":[{"role":"developer","content":"Sys"},{"type":"message","role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]}]}`,
			Request{Model: "m", Stream: true, System: "Sys", Input: "a\nb"}},
		{"earlier turns", `{"model":"m","input":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"output_text","text":"b"}]},{"role":"user","content":"c"}]}`,
			Request{Model: "m", Input: "a\nb\nc"}},
		{"store false", `{"model":"m","store":false,"input":"x"}`,
			Request{Model: "m", Input: "x"}},
		{"task", `{"model":"m","metadata":{"task":"spam"},"input":"x"}`,
			Request{Model: "m", Task: "spam", Input: "x", Forward: []byte(`{"model":"m","input":"x"}`)}},
		{"json schema", `{"model":"m","text":{"format":{"type":"json_schema","name":"v","schema":{"type":"object"}}},"input":"x"}`,
			Request{Model: "m", Input: "x", Shape: "json_schema:" + schemaHash(`{"type":"object"}`), Schema: []byte(`{"type":"object"}`)}},
		{"tools", `{"model":"m","tools":[{"type":"web_search"}],"input":"x"}`,
			Request{Model: "m", Input: "x", Shape: "+tools", Ineligible: "tools"}},
		{"previous response", `{"model":"m","previous_response_id":"resp_1","input":"x"}`,
			Request{Model: "m", Input: "x", Ineligible: "previous_response_id"}},
		{"background", `{"model":"m","background":true,"input":"x"}`,
			Request{Model: "m", Input: "x", Ineligible: "background"}},
		{"image", `{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"http://x"}]}]}`,
			Request{Model: "m", Ineligible: "image_input"}},
		{"function output", `{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":"4"},{"role":"user","content":"x"}]}`,
			Request{Model: "m", Input: "x", Ineligible: "input_function_call_output"}},
		{"logprobs", `{"model":"m","include":["message.output_text.logprobs"],"input":"x"}`,
			Request{Model: "m", Input: "x", Ineligible: "logprobs"}},
		{"prompt template", `{"prompt":{"id":"pmpt_1"},"input":"x"}`,
			Request{Input: "x", Ineligible: "prompt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseResponsesRequest([]byte(tc.body))
			if err != nil {
				t.Fatalf("ParseResponsesRequest: %v", err)
			}
			if got.Endpoint != ResponsesAPI {
				t.Errorf("Endpoint = %v", got.Endpoint)
			}
			var items, msgs []map[string]any
			if err := json.Unmarshal(got.Items, &items); err != nil || len(items) == 0 {
				t.Errorf("Items %s: %v", got.Items, err)
			}
			if err := json.Unmarshal(got.Messages, &msgs); err != nil {
				t.Errorf("Messages %s: %v", got.Messages, err)
			}
			want := tc.want
			want.Endpoint = ResponsesAPI
			want.Store = !strings.Contains(tc.body, `"store":false`)
			want.PreviousResponseID = got.PreviousResponseID
			want.Instructions, want.Text, want.Metadata = got.Instructions, got.Text, got.Metadata
			got.Items, got.Messages = nil, nil
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestParseResponsesRequestErrors(t *testing.T) {
	for _, tc := range []struct{ body, param string }{
		{`{"input":"x"}`, "model"},
		{`{"model":"m"}`, "input"},
		{`{"model":"m","input":3}`, "input"},
		{`{"model":"m","input":[{"content":"x"}]}`, "input[0].role"},
		{`{"model":"m","input":[{"role":"user","content":3}]}`, "input[0].content"},
		{`{"model":"m","input":"x","store":"yes"}`, "store"},
		{`{"model":"m","input":"x","text":{"format":"json"}}`, "text.format"},
		{`{"model":"m","input":"x","metadata":{"task":1}}`, "metadata.task"},
		{`{"model":"m","input":"x","input":"y"}`, "input"},
	} {
		_, err := ParseResponsesRequest([]byte(tc.body))
		e, ok := err.(*Error)
		if !ok || e.Param != tc.param {
			t.Errorf("%s: err %v, want an invalid_request_error on %s", tc.body, err, tc.param)
		}
	}
}

// TestResponseWriter: what the gateway writes for a student parses with
// the official SDK as the Response, or event sequence, OpenAI sends, and
// the gateway reads its own answers back.
func TestResponseWriter(t *testing.T) {
	r := Response{ID: "resp_1", MessageID: "msg_1", Created: 1700000000, Model: "m", Store: true,
		Instructions: []byte(`"Be brief."`), Metadata: []byte(`{"k":"v"}`), InputTokens: 3, OutputTokens: 2}
	const text = "spam \"quoted\"\n"
	body := r.AppendJSON(nil, text)
	var resp responses.Response
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if resp.OutputText() != text || resp.Status != "completed" || resp.Usage.TotalTokens != 5 || resp.Instructions.OfString != "Be brief." || resp.Metadata["k"] != "v" {
		t.Errorf("SDK reads %+v", resp)
	}
	if a, ok := ParseResponse(body); !ok || a.Text != text || a.PromptTokens != 3 || a.CompletionTokens != 2 {
		t.Errorf("ParseResponse = %+v, %v", a, ok)
	}

	events := r.AppendEvents(nil, text)
	var sa ResponseStreamAnswer
	var types []string
	sc := bufio.NewScanner(bytes.NewReader(events))
	seq := int64(-1)
	for sc.Scan() {
		line := sc.Bytes()
		sa.Line(line)
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			continue
		}
		var ev responses.ResponseStreamEventUnion
		if err := json.Unmarshal(data, &ev); err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		if ev.SequenceNumber != seq+1 {
			t.Errorf("%s: sequence_number %d after %d", ev.Type, ev.SequenceNumber, seq)
		}
		seq = ev.SequenceNumber
		types = append(types, ev.Type)
		if ev.Type == "response.completed" && ev.Response.OutputText() != text {
			t.Errorf("completed response's text %q", ev.Response.OutputText())
		}
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}
	if !reflect.DeepEqual(types, want) {
		t.Errorf("events %v\nwant %v", types, want)
	}
	if a, ok := sa.Answer(); !ok || a.Text != text {
		t.Errorf("ResponseStreamAnswer = %+v, %v", a, ok)
	}
}

func TestParseResponseRefuses(t *testing.T) {
	for _, body := range []string{
		`{"status":"incomplete","output":[{"type":"message","content":[{"type":"output_text","text":"pe"}]}]}`,
		`{"status":"completed","output":[{"type":"function_call","name":"f","arguments":"{}"}]}`,
		`{"status":"completed","output":[{"type":"message","content":[{"type":"refusal","refusal":"no"}]}]}`,
		`{"status":"completed","output":[]}`,
		`not json`,
	} {
		if a, ok := ParseResponse([]byte(body)); ok {
			t.Errorf("ParseResponse(%s) = %+v, want no answer", body, a)
		}
	}
	if a, ok := ParseResponse([]byte(`{"status":"completed","output":[{"type":"reasoning","summary":[]},{"type":"message","content":[{"type":"output_text","text":"ham"}]}],"usage":{"input_tokens":4,"output_tokens":1}}`)); !ok || a.Text != "ham" {
		t.Errorf("a reasoning item before the message: %+v, %v", a, ok)
	}
	var sa ResponseStreamAnswer
	sa.Line([]byte(`data: {"type":"response.incomplete","response":{"status":"incomplete"},"sequence_number":3}`))
	if _, ok := sa.Answer(); ok {
		t.Error("an incomplete stream gave an answer")
	}
}

// FuzzParseResponsesRequest checks the parser never panics, that what it
// accepts has a model or a prompt template, and that the JSON it builds
// (the items kept with a student's response, the messages kept with a
// pair, the body forwarded without the task) is JSON.
func FuzzParseResponsesRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","input":"hi"}`,
		`{"model":"m","instructions":"s","stream":true,"store":false,"input":[{"role":"developer","content":"d"},{"type":"message","role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image"}]}]}`,
		`{"model":"m","metadata":{"task":"t","k":"v"},"text":{"format":{"type":"json_schema","schema":{}}},"tools":[{}],"input":[{"type":"function_call_output"}]}`,
		`{"prompt":{"id":"p"}}`, `{"model":"m","previous_response_id":"resp_1"}`, `[]`, `null`, `{"model":"m","input":[{"role":1}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseResponsesRequest(body)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not an *Error", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not JSON")
		}
		if r.Model == "" && !bytes.Contains(body, []byte(`prompt`)) {
			t.Fatal("accepted a request without a model or a prompt")
		}
		for name, b := range map[string][]byte{"Items": r.Items, "Messages": r.Messages, "Forward": r.Forward} {
			if b != nil && !json.Valid(b) {
				t.Fatalf("%s %q is not JSON", name, b)
			}
		}
	})
}
