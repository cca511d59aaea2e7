package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"
)

// answerSchema is the shape a structured task's answers are asked for: a
// flat JSON object whose fields are all required and nothing else, sent as
// a strict JSON schema (response_format on chat, text.format on the
// Responses API). The demo checks every answer against it.
type answerSchema struct {
	name   string
	fields []schemaField // in the order the teacher writes them
}

// schemaField is one field of an answerSchema: a boolean, or a string from
// enum.
type schemaField struct {
	name string
	typ  string // "boolean" or "string"
	enum []string
}

// jsonSchema is the schema as JSON Schema, in the subset OpenAI's strict
// mode takes: every property required, no others.
func (s *answerSchema) jsonSchema() map[string]any {
	props := map[string]any{}
	required := make([]string, len(s.fields))
	for i, f := range s.fields {
		p := map[string]any{"type": f.typ}
		if len(f.enum) > 0 {
			p["enum"] = f.enum
		}
		props[f.name] = p
		required[i] = f.name
	}
	return map[string]any{"type": "object", "properties": props, "required": required, "additionalProperties": false}
}

// chatFormat is the schema as a chat request's response_format.
func (s *answerSchema) chatFormat() openai.ChatCompletionNewParamsResponseFormatUnion {
	return openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
		JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: s.name, Schema: s.jsonSchema(), Strict: openai.Bool(true)}}}
}

// textFormat is the schema as a Responses request's text.format.
func (s *answerSchema) textFormat() responses.ResponseTextConfigParam {
	return responses.ResponseTextConfigParam{Format: responses.ResponseFormatTextConfigUnionParam{
		OfJSONSchema: &responses.ResponseFormatTextJSONSchemaConfigParam{Name: s.name, Schema: s.jsonSchema(), Strict: openai.Bool(true)}}}
}

// check reads answer as the schema demands: one JSON object, each field
// once with a value of its type (and from its enum), no other field, no
// field missing. It returns the fields' values.
func (s *answerSchema) check(answer string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(answer))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	got := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("not JSON: an object key that is not a string")
		}
		i := slices.IndexFunc(s.fields, func(f schemaField) bool { return f.name == key })
		if i < 0 {
			return nil, fmt.Errorf("field %q is not in the schema", key)
		}
		if _, dup := got[key]; dup {
			return nil, fmt.Errorf("field %q appears twice", key)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		if err := s.fields[i].check(v); err != nil {
			return nil, err
		}
		got[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the object")
	}
	for _, f := range s.fields {
		if _, ok := got[f.name]; !ok {
			return nil, fmt.Errorf("required field %q is missing", f.name)
		}
	}
	return got, nil
}

// check checks one field's value.
func (f schemaField) check(v any) error {
	switch f.typ {
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("field %q: %v is not a boolean", f.name, v)
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("field %q: %v is not a string", f.name, v)
		}
		if len(f.enum) > 0 && !slices.Contains(f.enum, s) {
			return fmt.Errorf("field %q: %q is not one of %s", f.name, s, strings.Join(f.enum, ", "))
		}
	}
	return nil
}

// fieldsEqual lists which of want's fields answer has equal; answer need
// not be valid of the schema (a field it lacks is unequal).
func fieldsEqual(answer, want string) map[string]bool {
	var a, w map[string]any
	_ = json.Unmarshal([]byte(answer), &a)
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return nil
	}
	out := make(map[string]bool, len(w))
	for k, v := range w {
		av, ok := a[k]
		out[k] = ok && reflect.DeepEqual(av, v)
	}
	return out
}

// allTrue reports whether m has entries and every one is true.
func allTrue(m map[string]bool) bool {
	for _, v := range m {
		if !v {
			return false
		}
	}
	return len(m) > 0
}
