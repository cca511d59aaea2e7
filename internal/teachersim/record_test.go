package teachersim

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"
)

// decodeObject decodes s as one JSON object, numbers as written.
func decodeObject(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || dec.More() || m == nil {
		t.Fatalf("%q is not one JSON object: %v", s, err)
	}
	return m
}

// keyOrder returns the top-level keys of a JSON object in order.
func keyOrder(t *testing.T, s string) string {
	t.Helper()
	members, ok := readRecord(s)
	if !ok {
		t.Fatalf("%q is not a record", s)
	}
	keys := make([]string, len(members))
	for i, m := range members {
		keys[i] = m.key
	}
	return strings.Join(keys, ",")
}

// TestRestyle: a record comes back as the same JSON object written
// another way, every layout and key order turning up; anything else comes
// back as is.
func TestRestyle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, in := range []string{
		`{"spam":true,"kind":"spam"}`,
		`{"pos":"noun","category":"physical"}`,
		`{"a":1.50,"b":null,"c":[1,"x",{"d":"<&>"}],"e":{"f":"g\u00e9","h":[]},"i":"é"}`,
		`{"only":"one"}`,
	} {
		t.Run(in, func(t *testing.T) {
			want := decodeObject(t, in)
			layouts, orders := map[string]int{}, map[string]int{}
			for range 200 {
				got := restyle(in, r)
				if got == in {
					t.Fatalf("restyle(%s) came back unchanged", in)
				}
				if !json.Valid([]byte(got)) || !reflect.DeepEqual(decodeObject(t, got), want) {
					t.Fatalf("restyle(%s) = %s: not the same JSON object", in, got)
				}
				switch {
				case strings.Contains(got, "\n  \""):
					layouts["indented"]++
				case strings.Contains(got, `": `):
					layouts["spaced"]++
				default:
					layouts["compact"]++
				}
				orders[keyOrder(t, got)]++
			}
			wantOrders := 2
			if len(want) == 1 {
				wantOrders = 1
				delete(layouts, "compact") // one key compact is the file's own
				if layouts["spaced"] == 0 || layouts["indented"] == 0 {
					t.Errorf("layouts %v, want spaced and indented", layouts)
				}
			} else if len(layouts) != 3 {
				t.Errorf("layouts %v, want compact, spaced and indented", layouts)
			}
			if len(orders) < wantOrders {
				t.Errorf("key orders %v, want at least %d", orders, wantOrders)
			}
			t.Logf("layouts %v, key orders %d", layouts, len(orders))
		})
	}
	for _, in := range []string{"spam", "", `["a","b"]`, `{"a":1} trailing`, `{"a":1,"a":2}`, `{}`, `{"a":`, `"{\"a\":1}"`} {
		if got := restyle(in, r); got != in {
			t.Errorf("restyle(%q) = %q, want it as is", in, got)
		}
	}
}

// record is the answer of the structured test task.
type record struct {
	Spam *bool   `json:"spam"`
	Kind *string `json:"kind"`
}

var recordSchema = map[string]any{
	"type": "object",
	"properties": map[string]any{
		"spam": map[string]any{"type": "boolean"},
		"kind": map[string]any{"type": "string", "enum": []string{"easy_ham", "hard_ham", "spam"}},
	},
	"required":             []string{"spam", "kind"},
	"additionalProperties": false,
}

// strictRecord decodes an answer as the schema allows it: one object, no
// other keys, both present, kind from its enum.
func strictRecord(answer string) (record, error) {
	dec := json.NewDecoder(strings.NewReader(answer))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		return r, err
	}
	if dec.More() {
		return r, fmt.Errorf("data after the object")
	}
	if r.Spam == nil || r.Kind == nil {
		return r, fmt.Errorf("a required field is missing")
	}
	switch *r.Kind {
	case "easy_ham", "hard_ham", "spam":
	default:
		return r, fmt.Errorf("kind %q is not in the enum", *r.Kind)
	}
	return r, nil
}

// TestStructuredAnswers asks a structured task with a strict JSON schema,
// as response_format on chat and text.format on the Responses API, plain
// and streamed, through the official SDK: every answer is the example's
// record, valid JSON of the schema, and with record_variation some are
// written another way than the file's.
func TestStructuredAnswers(t *testing.T) {
	const system = "Classify this e-mail. Answer with JSON."
	var examples []Example
	kinds := []string{"easy_ham", "hard_ham", "spam"}
	for i := range 12 {
		k := kinds[i%3]
		examples = append(examples, Example{Text: fmt.Sprintf("e-mail %d", i), Label: fmt.Sprintf(`{"spam":%t,"kind":%q}`, k == "spam", k)})
	}
	ts := start(t, Config{Tasks: []Task{{Name: "kind", System: system, Examples: examples}}, RecordVariation: 0.3})
	client := ts.sdk("k")
	chatFormat := openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
		JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "triage", Schema: recordSchema, Strict: openai.Bool(true)}}}
	textFormat := responses.ResponseTextConfigParam{Format: responses.ResponseFormatTextConfigUnionParam{
		OfJSONSchema: &responses.ResponseFormatTextJSONSchemaConfigParam{Name: "triage", Schema: recordSchema, Strict: openai.Bool(true)}}}

	ask := func(i int, e Example) (string, error) {
		chat := openai.ChatCompletionNewParams{Model: "teacher-sim", ResponseFormat: chatFormat,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(system), openai.UserMessage(e.Text)}}
		resp := responses.ResponseNewParams{Model: "teacher-sim", Instructions: openai.String(system), Text: textFormat,
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(e.Text)}}
		ctx := t.Context()
		switch i % 4 {
		case 0:
			c, err := client.Chat.Completions.New(ctx, chat)
			if err != nil {
				return "", err
			}
			return c.Choices[0].Message.Content, nil
		case 1:
			s := client.Chat.Completions.NewStreaming(ctx, chat)
			defer s.Close()
			var b strings.Builder
			for s.Next() {
				if c := s.Current(); len(c.Choices) > 0 {
					b.WriteString(c.Choices[0].Delta.Content)
				}
			}
			return b.String(), s.Err()
		case 2:
			r, err := client.Responses.New(ctx, resp)
			if err != nil {
				return "", err
			}
			if r.Text.Format.Type != "json_schema" || r.Text.Format.Name != "triage" || !r.Text.Format.Strict {
				return "", fmt.Errorf("text.format echoed as %s", r.Text.Format.RawJSON())
			}
			return r.OutputText(), nil
		default:
			s := client.Responses.NewStreaming(ctx, resp)
			defer s.Close()
			var b strings.Builder
			for s.Next() {
				if ev := s.Current(); ev.Type == "response.output_text.delta" {
					b.WriteString(ev.Delta)
				}
			}
			return b.String(), s.Err()
		}
	}
	const n = 400
	restyled := 0
	for i := range n {
		e := examples[i%len(examples)]
		got, err := ask(i, e)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		r, err := strictRecord(got)
		if err != nil {
			t.Fatalf("request %d: answer %q is not valid JSON of the schema: %v", i, got, err)
		}
		if want, _ := strictRecord(e.Label); *r.Spam != *want.Spam || *r.Kind != *want.Kind {
			t.Fatalf("request %d: answer %s, want the record %s", i, got, e.Label)
		}
		if got != e.Label {
			restyled++
		}
	}
	if restyled < n/5 || restyled > n*2/5 {
		t.Errorf("%d of %d answers written another way than the file's, want about 30%%", restyled, n)
	}

	// Without record_variation every answer is the file's own text.
	if resp, body := ts.do(t, "POST", "/sim/config", `{"record_variation":0}`); resp.StatusCode != 200 {
		t.Fatalf("POST /sim/config: %s", body)
	}
	for i, e := range examples {
		if got, err := ask(i, e); err != nil || got != e.Label {
			t.Errorf("request %d: answer %q (%v), want %q", i, got, err, e.Label)
		}
	}
}

// TestStructuredAnswerSwapped: with swapped labels a record answer is
// another record of the task, still valid JSON.
func TestStructuredAnswerSwapped(t *testing.T) {
	labels := []string{`{"spam":false,"kind":"easy_ham"}`, `{"spam":true,"kind":"spam"}`}
	ts := start(t, Config{Tasks: []Task{{Name: "kind", System: "s", Examples: []Example{{"a", labels[0]}, {"b", labels[1]}}}},
		RecordVariation: 1})
	if resp, body := ts.do(t, "POST", "/sim/config", `{"swap_labels":true}`); resp.StatusCode != 200 {
		t.Fatalf("POST /sim/config: %s", body)
	}
	client := ts.sdk("k")
	c, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "m",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("s"), openai.UserMessage("a")}})
	if err != nil {
		t.Fatal(err)
	}
	got := c.Choices[0].Message.Content
	if r, err := strictRecord(got); err != nil || *r.Kind != "spam" || got == labels[1] {
		t.Errorf("swapped answer %q (%v), want the other record written another way", got, err)
	}
}
