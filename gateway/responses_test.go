package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/understudy-dev/understudy/config"
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
