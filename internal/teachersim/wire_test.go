package teachersim

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func pieces(s string) []string {
	var out []string
	for s != "" {
		n := nextPiece(s)
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

func TestNextPiece(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"positive", []string{"positive"}},
		{"hello big world", []string{"hello", " big", " world"}},
		{"  leading", []string{"  leading"}},
		{"trailing  ", []string{"trailing", "  "}},
		{"tab\tand\nnewline", []string{"tab", "\tand", "\nnewline"}},
		{"héllo\u00a0wörld", []string{"héllo", "\u00a0wörld"}},
		{" ", []string{" "}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := pieces(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("pieces(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzAppendContent checks that message content decoding agrees with
// encoding/json on every string literal.
func FuzzAppendContent(f *testing.F) {
	for _, s := range []string{`"plain"`, `"esc\n\u00e9"`, `[{"type":"text","text":"a"}]`, `null`, `42`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		got, ok := appendContent(nil, raw, "text")
		var s string
		if json.Unmarshal(raw, &s) == nil && ok && string(got) != s && strings.TrimSpace(string(raw))[0] == '"' {
			t.Errorf("appendContent(%s) = %q, encoding/json gives %q", raw, got, s)
		}
	})
}

// BenchmarkChat measures the handler alone on a known chat request, the
// path a gateway benchmark exercises.
func BenchmarkChat(b *testing.B) {
	tasks := []Task{{Name: "t", System: "Classify.", Examples: []Example{{"I loved every minute of it.", "positive"}}}}
	s, err := New(Config{Tasks: tasks})
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1/chat/completions")
	req.SetBodyString(`{"model":"teacher-sim","messages":[{"role":"system","content":"Classify."},{"role":"user","content":"I loved every minute of it."}]}`)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h(&ctx)
	}
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}
