package openai

import (
	"encoding/json"
	"testing"
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
