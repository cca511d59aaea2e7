package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/internal/teachersim"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/storage"
)

// responsesTeacher is a teacher that answers every Responses API request
// "ok" and hands the body it got to the test; it knows no stored
// response, as a teacher would not know one a student made.
func responsesTeacher(t *testing.T) (edit func(*config.Config), bodies chan map[string]any) {
	t.Helper()
	bodies = make(chan map[string]any, 16)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"message":"Response with id 'x' not found.","type":"invalid_request_error","param":null,"code":null}}`))
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("teacher got a body that is not JSON: %v", err)
		}
		bodies <- body
		w.Write([]byte(`{"id":"resp_teacher","object":"response","created_at":1,"status":"completed","model":"m","output":[{"type":"message","id":"msg_t","status":"completed","role":"assistant","content":[{"type":"output_text","text":"ok","annotations":[]}]}],"usage":{"input_tokens":5,"output_tokens":1,"total_tokens":6}}`))
	})}
	ln := listen(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return func(c *config.Config) { c.Teacher.URL = "http://" + ln.Addr().String() + "/v1" }, bodies
}

// TestStudentResponsesContinue: a Response a student made can be read back
// and deleted, and a follow-up naming it reaches the teacher with the
// conversation inlined, since the teacher never saw it.
func TestStudentResponsesContinue(t *testing.T) {
	edit, bodies := responsesTeacher(t)
	rt := &fakeRouter{dec: router.Decision{State: router.Serving, Version: 3, Tau: 0.9, Student: &fakeModel{pred: confidentSpam}}}
	h := startRouted(t, teachersim.Config{}, edit, &storage.Options{}, rt)
	ctx := context.Background()

	first, err := h.gw.Responses.New(ctx, respParams, inDomain)
	if err != nil || first.OutputText() != "Spam" || !strings.HasPrefix(first.ID, "resp_") {
		t.Fatalf("student's response: %+v, %v", first, err)
	}
	got, err := h.gw.Responses.Get(ctx, first.ID, responses.ResponseGetParams{})
	if err != nil || got.ID != first.ID || got.OutputText() != "Spam" || got.Instructions.OfString != spamSystem {
		t.Fatalf("GET of the student's response: %+v, %v", got, err)
	}

	// The student no longer serves: the follow-up goes to the teacher.
	rt.mu.Lock()
	rt.dec = router.Decision{State: router.Shadowing}
	rt.mu.Unlock()
	follow := respParams
	follow.Input = responses.ResponseNewParamsInputUnion{OfString: openai.String("And this one?")}
	follow.PreviousResponseID = openai.String(first.ID)
	answer, err := h.gw.Responses.New(ctx, follow, inDomain)
	if err != nil || answer.OutputText() != "ok" {
		t.Fatalf("follow-up: %+v, %v", answer, err)
	}
	body := <-bodies
	if _, ok := body["previous_response_id"]; ok {
		t.Errorf("the teacher got previous_response_id %v, which it cannot know", body["previous_response_id"])
	}
	input, _ := json.Marshal(body["input"])
	want := `[{"content":"` + spamText + `","role":"user"},{"content":[{"text":"Spam","type":"output_text"}],"role":"assistant"},{"content":"And this one?","role":"user"}]`
	if string(input) != want {
		t.Errorf("the teacher got input %s\nwant %s", input, want)
	}
	// The follow-up was eligible: its pair is logged with the whole
	// conversation as input.
	waitFor(t, func() bool { return len(h.pairsOf("mail")) == 1 })
	if p := h.pairsOf("mail")[0]; p.Input != spamText+"\nSpam\nAnd this one?" || p.Label != "ok" {
		t.Errorf("logged pair %q → %q", p.Input, p.Label)
	}

	if err := h.gw.Responses.Delete(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	var apiErr *openai.Error
	if _, err := h.gw.Responses.Get(ctx, first.ID, responses.ResponseGetParams{}); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Errorf("GET after DELETE: %v, want the teacher's 404", err)
	}

	// store: false is not kept.
	rt.mu.Lock()
	rt.dec = router.Decision{State: router.Serving, Version: 3, Tau: 0.9, Student: &fakeModel{pred: confidentSpam}}
	rt.mu.Unlock()
	unstored := respParams
	unstored.Store = openai.Bool(false)
	r, err := h.gw.Responses.New(ctx, unstored, inDomain)
	if err != nil || r.OutputText() != "Spam" {
		t.Fatalf("store false: %+v, %v", r, err)
	}
	if _, err := h.gw.Responses.Get(ctx, r.ID, responses.ResponseGetParams{}); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Errorf("GET of an unstored response: %v, want 404", err)
	}
}

// TestTaskTagNotForwarded: the metadata.task the gateway reads names the
// domain and goes no further; the rest of metadata reaches the teacher.
func TestTaskTagNotForwarded(t *testing.T) {
	edit, bodies := responsesTeacher(t)
	h := startWith(t, teachersim.Config{}, edit, &storage.Options{})
	ctx := context.Background()
	var resp *http.Response
	for _, tc := range []struct {
		meta map[string]string
		want any
	}{
		{map[string]string{"task": "mail"}, nil},
		{map[string]string{"task": "mail", "user": "u1"}, map[string]any{"user": "u1"}},
	} {
		p := respParams
		p.Metadata = shared.Metadata(tc.meta)
		if _, err := h.gw.Responses.New(ctx, p, option.WithResponseInto(&resp)); err != nil {
			t.Fatal(err)
		}
		if d := resp.Header.Get("X-Understudy-Domain"); d != "mail" {
			t.Errorf("domain %q, want mail", d)
		}
		body := <-bodies
		if got, _ := json.Marshal(body["metadata"]); string(got) != mustJSON(tc.want) {
			t.Errorf("metadata %v: the teacher got %s, want %s", tc.meta, got, mustJSON(tc.want))
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// simIDs matches what differs between two answers of teacher-sim to one
// request: its numbered ids and the times.
var simIDs = regexp.MustCompile(`(resp|msg)_sim-\d+|"(created_at|completed_at)":\d+|sim-\d+`)

// TestResponsesRelayed: before any student serves, the Responses API through
// the gateway is the teacher's, byte for byte but for ids and times, plain
// and streamed; the answers are logged in the chat domain of the same
// prompt; a teacher's response is read back through the gateway.
func TestResponsesRelayed(t *testing.T) {
	h := startWith(t, teachersim.Config{}, nil, &storage.Options{})
	for _, stream := range []bool{false, true} {
		body := fmt.Sprintf(`{"model":"teacher-sim","instructions":%q,"input":%q,"stream":%v}`, spamSystem, spamText, stream)
		status, hdr, got := h.raw("POST", "/v1/responses", []byte(body), nil)
		resp, err := http.Post(h.simURL+"/responses", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		want := readAll(t, resp)
		if status != 200 || simIDs.ReplaceAllString(string(got), "") != simIDs.ReplaceAllString(string(want), "") {
			t.Errorf("stream=%v: %d via the gateway:\n%s\ndirect:\n%s", stream, status, got, want)
		}
		if ct := hdr.Get("Content-Type"); stream != strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("stream=%v: Content-Type %q", stream, ct)
		}
	}
	chat, err := h.gw.Chat.Completions.New(context.Background(), chatParams(spamText))
	if err != nil {
		t.Fatal(err)
	}
	domain := gateway.Fingerprint("teacher-sim", spamSystem)
	waitFor(t, func() bool { return len(h.pairsOf(domain)) == 3 })
	for _, p := range h.pairsOf(domain) {
		if p.Input != spamText || p.Label != chat.Choices[0].Message.Content {
			t.Errorf("pair %q → %q, want %q → %q", p.Input, p.Label, spamText, chat.Choices[0].Message.Content)
		}
	}

	r, err := h.gw.Responses.New(context.Background(), respParams)
	if err != nil {
		t.Fatal(err)
	}
	back, err := h.gw.Responses.Get(context.Background(), r.ID, responses.ResponseGetParams{})
	if err != nil || back.ID != r.ID || back.OutputText() != r.OutputText() {
		t.Errorf("GET of the teacher's response through the gateway: %+v, %v", back, err)
	}
}

// TestTornResponsesStream: a teacher whose Responses stream ends before
// response.completed leaves the client an error, as a torn chat stream
// does, and nothing is logged.
func TestTornResponsesStream(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[]}}\n\n" +
			"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"sp\"}\n\n"))
	})}
	ln := listen(t)
	go srv.Serve(ln)
	defer srv.Close()
	h := startWith(t, teachersim.Config{}, func(c *config.Config) { c.Teacher.URL = "http://" + ln.Addr().String() + "/v1" }, &storage.Options{})
	s := h.gw.Responses.NewStreaming(context.Background(), respParams)
	var text string
	for s.Next() {
		text += s.Current().Delta
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "teacher_stream_incomplete") && !strings.Contains(err.Error(), "broke off") {
		t.Errorf("after %q: stream error %v, want the torn-stream error", text, err)
	}
	// The relay counts the torn stream before it would hand the answer on.
	waitFor(t, func() bool {
		return h.metric("understudy_teacher_errors_total", map[string]string{"reason": "incomplete_stream"}) == 1
	})
	if n := len(h.pairsOf(gateway.Fingerprint("teacher-sim", spamSystem))); n != 0 {
		t.Errorf("%d pairs logged from a torn stream", n)
	}
}

// TestStudentResponsesContinueAtTeacherSim: the same follow-up in front of
// teacher-sim, which never saw the student's response: it answers the
// inlined conversation, through the official SDK, plain and streamed.
func TestStudentResponsesContinueAtTeacherSim(t *testing.T) {
	rt := &fakeRouter{dec: router.Decision{State: router.Serving, Version: 3, Tau: 0.9, Student: &fakeModel{pred: confidentSpam}}}
	h := startRouted(t, teachersim.Config{}, nil, &storage.Options{}, rt)
	ctx := context.Background()
	first, err := h.gw.Responses.New(ctx, respParams, inDomain)
	if err != nil || first.OutputText() != "Spam" {
		t.Fatalf("student's response: %+v, %v", first, err)
	}
	rt.mu.Lock()
	rt.dec = router.Decision{State: router.Shadowing}
	rt.mu.Unlock()
	follow := respParams
	follow.Input = responses.ResponseNewParamsInputUnion{OfString: openai.String(spamTask.Examples[1].Text)}
	follow.PreviousResponseID = openai.String(first.ID)
	got, err := h.gw.Responses.New(ctx, follow, inDomain)
	if err != nil || got.OutputText() == "" || got.Status != "completed" {
		t.Fatalf("follow-up at teacher-sim: %+v, %v", got, err)
	}
	s := h.gw.Responses.NewStreaming(ctx, follow, inDomain)
	var text string
	for s.Next() {
		text += s.Current().Delta
	}
	if err := s.Err(); err != nil || text != got.OutputText() {
		t.Errorf("streamed follow-up: %q, %v; want %q", text, err, got.OutputText())
	}
}

// TestStudentResponseInputItems: the input items of a response a student
// made are listed as OpenAI lists them (newest first, by default), the
// conversation before it included.
func TestStudentResponseInputItems(t *testing.T) {
	rt := &fakeRouter{dec: router.Decision{State: router.Serving, Version: 3, Tau: 0.9, Student: &fakeModel{pred: confidentSpam}}}
	h := startRouted(t, teachersim.Config{}, nil, &storage.Options{}, rt)
	ctx := context.Background()
	first, err := h.gw.Responses.New(ctx, respParams, inDomain)
	if err != nil {
		t.Fatal(err)
	}
	follow := respParams
	follow.Input = responses.ResponseNewParamsInputUnion{OfString: openai.String("And this one?")}
	follow.PreviousResponseID = openai.String(first.ID)
	second, err := h.gw.Responses.New(ctx, follow, inDomain)
	if err != nil || second.OutputText() != "Spam" {
		t.Fatalf("follow-up by the student: %+v, %v", second, err)
	}
	texts := func(id string, p responses.InputItemListParams) []string {
		t.Helper()
		page, err := h.gw.Responses.InputItems.List(ctx, id, p)
		if err != nil {
			t.Fatalf("input items of %s: %v", id, err)
		}
		var out []string
		for _, it := range page.Data {
			var m struct {
				Role    string `json:"role"`
				Content []struct {
					Text string `json:"text"`
				} `json:"content"`
			}
			if err := json.Unmarshal([]byte(it.RawJSON()), &m); err != nil || it.ID == "" || it.Type != "message" || len(m.Content) != 1 {
				t.Fatalf("item %s: %v", it.RawJSON(), err)
			}
			out = append(out, m.Role+": "+m.Content[0].Text)
		}
		return out
	}
	if got := texts(first.ID, responses.InputItemListParams{}); fmt.Sprint(got) != "[user: "+spamText+"]" {
		t.Errorf("first response's input items %q", got)
	}
	want := "[user: And this one? assistant: Spam user: " + spamText + "]"
	if got := texts(second.ID, responses.InputItemListParams{}); fmt.Sprint(got) != want {
		t.Errorf("second response's input items %q, want %s", got, want)
	}
	asc := texts(second.ID, responses.InputItemListParams{Order: responses.InputItemListParamsOrderAsc, Limit: openai.Int(2)})
	if fmt.Sprint(asc) != "[user: "+spamText+" assistant: Spam]" {
		t.Errorf("ascending, two: %q", asc)
	}
}
