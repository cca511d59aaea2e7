package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/internal/teachersim"
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
