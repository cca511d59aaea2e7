package openai

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/openai/openai-go/v3/responses"
)

func TestAppendString(t *testing.T) {
	tests := []string{"", "plain", `quote " backslash \`, "ctl \x00\x01\x1f\n\r\t", "ünïcode ✓", "bad \xff utf8", "sep \u2028\u2029", "<html>&"}
	for _, s := range tests {
		t.Run(s, func(t *testing.T) {
			checkAppendString(t, s)
		})
	}
}

func checkAppendString(t *testing.T, s string) {
	t.Helper()
	b := AppendString(nil, s)
	if !json.Valid(b) {
		t.Fatalf("AppendString(%q) = %s, not valid JSON", s, b)
	}
	var got, want string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	std, _ := json.Marshal(s)
	if err := json.Unmarshal(std, &want); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("AppendString(%q) decodes to %q, encoding/json's to %q", s, got, want)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "\x00\xff\u2028é"} {
		f.Add(s)
	}
	f.Fuzz(checkAppendString)
}

// TestCompletion decodes every object a Completion writes and checks the
// fields OpenAI's SDKs read.
func TestCompletion(t *testing.T) {
	for _, chat := range []bool{true, false} {
		c := Completion{ID: "id-1", Chat: chat, Created: 7, Model: `m"1`, Fingerprint: "fp", PromptTokens: 3, CompletionTokens: 2, IncludeUsage: true}
		var resp struct {
			ID, Object, Model, SystemFingerprint string `json:",omitempty"`
			Created                              int64
			Choices                              []struct {
				Text         *string
				Message      *struct{ Role, Content string }
				FinishReason *string `json:"finish_reason"`
			}
			Usage *struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
				TotalTokens      int `json:"total_tokens"`
			}
		}
		b := c.AppendJSON(nil, "an \"answer\"")
		if err := json.Unmarshal(b, &resp); err != nil {
			t.Fatalf("chat %v: %s: %v", chat, b, err)
		}
		text := ""
		if chat && resp.Choices[0].Message != nil {
			text = resp.Choices[0].Message.Content
		} else if !chat && resp.Choices[0].Text != nil {
			text = *resp.Choices[0].Text
		}
		if resp.ID != "id-1" || resp.Model != `m"1` || resp.Created != 7 || text != `an "answer"` ||
			resp.Usage == nil || resp.Usage.TotalTokens != 5 || *resp.Choices[0].FinishReason != "stop" {
			t.Errorf("chat %v: %s", chat, b)
		}
		for kind := ChunkRole; kind <= ChunkUsage; kind++ {
			ev := c.AppendChunk(nil, kind, "piece")
			if len(ev) < 8 || string(ev[:6]) != "data: " || string(ev[len(ev)-2:]) != "\n\n" || !json.Valid(ev[6:len(ev)-2]) {
				t.Errorf("chat %v, chunk %d: %q is not one server-sent JSON event", chat, kind, ev)
			}
		}
	}
}

// TestPieces: how a student's streamed answer is cut.
func TestPieces(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"", []string{""}},
		{"spam", []string{"spam"}},
		{"exactly sixteen!", []string{"exactly sixteen!"}},
		{`{"kind":"spam","spam":true}`, []string{`{"kind":"spam",`, `"spam":true}`}},
		{`{"a":1,"b":{"c":2,"d":3}}`, []string{`{"a":1,`, `"b":{"c":2,`, `"d":3}}`}},
		{`{"summary":"a long free-text value without commas"}`, []string{`{"summary":"a lo`, `ng free-text val`, `ue without comma`, `s"}`}},
		{"ünïcödé ünïcödé ✓✓✓", []string{"ünïcödé ün", "ïcödé ✓✓", "✓"}},
	} {
		var got []string
		for p := range Pieces(tc.text) {
			got = append(got, p)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Pieces(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

func checkPieces(t *testing.T, text string) {
	t.Helper()
	var all strings.Builder
	n := 0
	for p := range Pieces(text) {
		n++
		if len(p) > PieceSize || p == "" && text != "" {
			t.Fatalf("Pieces(%q): piece %q", text, p)
		}
		if i := strings.IndexByte(p, ','); i >= 0 && i != len(p)-1 {
			t.Fatalf("Pieces(%q): piece %q goes on after a comma", text, p)
		}
		if utf8.ValidString(text) && !utf8.ValidString(p) {
			t.Fatalf("Pieces(%q): piece %q cuts a rune", text, p)
		}
		all.WriteString(p)
	}
	if all.String() != text || n == 0 {
		t.Fatalf("Pieces(%q) join to %q in %d pieces", text, all.String(), n)
	}
}

func FuzzPieces(f *testing.F) {
	for _, s := range []string{"", "spam", `{"a":1,"b":[1,2,3]}`, "ünïcödé ünïcödé ✓✓✓", "\xff\x80\x80,\xe2\x82"} {
		f.Add(s)
	}
	f.Fuzz(checkPieces)
}

// TestStreamedRecordInPieces: a structured answer's Responses stream
// carries it in several deltas that the SDK's events put back together.
func TestStreamedRecordInPieces(t *testing.T) {
	r := Response{ID: "resp_1", MessageID: "msg_1", Model: "m"}
	const text = `{"kind":"phish","spam":true,"meta":{"lang":"en"}}`
	var deltas []string
	var done string
	sc := bufio.NewScanner(bytes.NewReader(r.AppendEvents(nil, text)))
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		if !ok {
			continue
		}
		var ev responses.ResponseStreamEventUnion
		if err := json.Unmarshal(data, &ev); err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		switch ev.Type {
		case "response.output_text.delta":
			deltas = append(deltas, ev.Delta)
		case "response.output_text.done":
			done = ev.Text
		}
	}
	if len(deltas) < 3 || strings.Join(deltas, "") != text || done != text {
		t.Errorf("deltas %q (done %q), want %s in several pieces", deltas, done, text)
	}
}
