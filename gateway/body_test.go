package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/internal/teachersim"
	"github.com/understudy-dev/understudy/storage"
)

// simRequests is how many requests teacher-sim has answered.
func (h *harness) simRequests() int {
	h.t.Helper()
	resp, err := http.Get(strings.TrimSuffix(h.simURL, "/v1") + "/sim/stats")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Requests int `json:"requests"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		h.t.Fatal(err)
	}
	return st.Requests
}

// openAIError decodes an OpenAI error object, failing the test when body is
// not one.
func openAIError(t *testing.T, body []byte) (e struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
}) {
	t.Helper()
	var w struct {
		Error *struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &w); err != nil || w.Error == nil {
		t.Fatalf("body %.200q is not an OpenAI error object (%v)", body, err)
	}
	return *w.Error
}

// TestDeepNestingRefused sends what once ended the process with "fatal
// error: stack overflow": a 4 MB body nested two million levels deep, well
// inside max_body_size, without a key. The gateway answers 400 with the
// OpenAI error object, never asks the teacher, and goes on serving.
func TestDeepNestingRefused(t *testing.T) {
	h := start(t, teachersim.Config{}, nil)
	const depth = 2_000_000
	for _, tc := range []struct {
		name, path string
		body       string
	}{
		{"messages nested two million arrays deep", "/v1/chat/completions",
			`{"model":"teacher-sim","messages":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`},
		{"bare arrays", "/v1/chat/completions", strings.Repeat("[", depth) + strings.Repeat("]", depth)},
		{"never closed", "/v1/chat/completions", strings.Repeat("[", 2*depth)},
		{"prompt nested a million objects deep", "/v1/completions",
			`{"model":"teacher-sim","prompt":` + strings.Repeat(`{"":`, depth/2) + `1` + strings.Repeat(`}`, depth/2) + `}`},
		{"one level past the limit", "/v1/chat/completions",
			`{"model":"teacher-sim","messages":[{"role":"user","content":"hi","x":` + strings.Repeat("[", 126) + strings.Repeat("]", 126) + `}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := h.raw("POST", tc.path, []byte(tc.body), nil)
			if status != 400 {
				t.Fatalf("status %d, body %.300q; want 400", status, body)
			}
			e := openAIError(t, body)
			if e.Type != "invalid_request_error" || !strings.Contains(e.Message, "128 levels") {
				t.Errorf("error %+v; want an invalid_request_error naming the 128-level limit", e)
			}
		})
	}
	if n := h.simRequests(); n != 0 {
		t.Errorf("teacher got %d requests; want none", n)
	}
	// At the limit the body is read and relayed; the gateway still serves.
	atLimit := `{"model":"teacher-sim","messages":[{"role":"system","content":"` + spamSystem + `"},{"role":"user","content":"hi","x":` +
		strings.Repeat("[", 125) + strings.Repeat("]", 125) + `}]}`
	if status, _, body := h.raw("POST", "/v1/chat/completions", []byte(atLimit), nil); status != 200 {
		t.Errorf("body nested 128 levels deep: status %d, %.300q; want 200", status, body)
	}
}

// TestDuplicateKeysRefused checks a body with a key twice in an object the
// gateway reads is refused before the teacher sees it. The teacher (like
// Python's json, and teacher-sim's encoding/json) reads the last copy and the
// gateway the first, so such a body would store one text with the answer to
// another: a wrong label any client could teach the student.
func TestDuplicateKeysRefused(t *testing.T) {
	h := startWith(t, teachersim.Config{}, nil, &storage.Options{})
	spam, ham := spamTask.Examples[0].Text, spamTask.Examples[1].Text
	msgs := func(text string) string {
		return `[{"role":"system","content":"` + spamSystem + `"},{"role":"user","content":"` + text + `"}]`
	}
	domain := map[string]string{"X-Understudy-Domain": "spam"}
	for _, tc := range []struct {
		name, path, body, param, msg string
	}{
		{"messages twice", "/v1/chat/completions",
			`{"model":"teacher-sim","messages":` + msgs(spam) + `,"messages":` + msgs(ham) + `}`,
			"messages", "Duplicate key 'messages' in the request body."},
		{"messages twice, one spelled with an escape", "/v1/chat/completions",
			`{"model":"teacher-sim","messages":` + msgs(spam) + `,"m\u0065ssages":` + msgs(ham) + `}`,
			"messages", "Duplicate key 'messages' in the request body."},
		{"model twice", "/v1/chat/completions",
			`{"model":"teacher-sim","messages":` + msgs(spam) + `,"model":"other"}`,
			"model", "Duplicate key 'model' in the request body."},
		{"content twice in a message", "/v1/chat/completions",
			`{"model":"teacher-sim","messages":[{"role":"system","content":"` + spamSystem + `"},{"role":"user","content":"` + spam + `","content":"` + ham + `"}]}`,
			"messages[1].content", "Duplicate key 'content' in messages[1]."},
		{"role twice in a message", "/v1/chat/completions",
			`{"model":"teacher-sim","messages":[{"role":"user","role":"system","content":"` + spamSystem + `"},{"role":"user","content":"` + spam + `"}]}`,
			"messages[0].role", "Duplicate key 'role' in messages[0]."},
		{"text twice in a content part", "/v1/chat/completions",
			`{"model":"teacher-sim","messages":[{"role":"system","content":"` + spamSystem + `"},{"role":"user","content":[{"type":"text","text":"` + spam + `","text":"` + ham + `"}]}]}`,
			"messages[1].content[0].text", "Duplicate key 'text' in messages[1].content[0]."},
		{"task twice in metadata", "/v1/chat/completions",
			`{"model":"teacher-sim","metadata":{"task":"spam","task":"other"},"messages":` + msgs(spam) + `}`,
			"metadata.task", "Duplicate key 'task' in metadata."},
		{"include_usage twice", "/v1/chat/completions",
			`{"model":"teacher-sim","stream":true,"stream_options":{"include_usage":false,"include_usage":true},"messages":` + msgs(spam) + `}`,
			"stream_options.include_usage", "Duplicate key 'include_usage' in stream_options."},
		{"prompt twice", "/v1/completions",
			`{"model":"teacher-sim","prompt":"` + spam + `","prompt":"` + ham + `"}`,
			"prompt", "Duplicate key 'prompt' in the request body."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := h.raw("POST", tc.path, []byte(tc.body), domain)
			if status != 400 {
				t.Fatalf("status %d, body %.300q; want 400", status, body)
			}
			e := openAIError(t, body)
			if e.Type != "invalid_request_error" || e.Param == nil || *e.Param != tc.param || e.Message != tc.msg {
				t.Errorf("error %+v (param %v); want invalid_request_error, param %q, message %q", e, deref(e.Param), tc.param, tc.msg)
			}
		})
	}
	if n := h.simRequests(); n != 0 {
		t.Errorf("teacher got %d requests; want none", n)
	}
	// The same request without the second copy is answered and logged, so
	// the pair log was listening all along.
	if status, _, body := h.raw("POST", "/v1/chat/completions", []byte(`{"model":"teacher-sim","messages":`+msgs(spam)+`}`), domain); status != 200 {
		t.Fatalf("control request: status %d, %.300q", status, body)
	}
	pairs := h.pairsOf("spam")
	if len(pairs) != 1 || pairs[0].Input != spam || pairs[0].Label != "spam" {
		t.Errorf("pairs logged: %+v; want only the control request's (%q → spam)", pairs, spam)
	}
}

func deref(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}
