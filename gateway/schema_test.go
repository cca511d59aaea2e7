package gateway

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/understudy-dev/understudy/internal/openai"
)

// verdictSchema is a strict schema as the OpenAI SDKs send one: every
// property required, no others allowed.
const verdictSchema = `{"type":"object","properties":{"spam":{"type":"boolean"},"kind":{"type":"string","enum":["phish","promo","none"]},"meta":{"type":"object","properties":{"lang":{"type":"string"}},"required":["lang"],"additionalProperties":false},"tags":{"type":"array","items":{"type":"string"}}},"required":["spam","kind","meta","tags"],"additionalProperties":false}`

// schemaRequest is a request asking for an answer that follows schema.
func schemaRequest(schema string) *openai.Request {
	return &openai.Request{Shape: "json_schema:x", Schema: []byte(schema)}
}

// reasonOf is the reason checkAnswer refused an answer, "" when it did not.
func reasonOf(err error) string {
	var inv *answerInvalid
	if errors.As(err, &inv) {
		return inv.reason
	}
	if err != nil {
		return "not an *answerInvalid: " + err.Error()
	}
	return ""
}

// TestCheckAnswer: what may be sent for each answer shape.
func TestCheckAnswer(t *testing.T) {
	good := `{"spam":true,"kind":"phish","meta":{"lang":"en"},"tags":["a","b"]}`
	for _, tc := range []struct {
		name   string
		r      *openai.Request
		answer string
		reason string
	}{
		{"text: anything", &openai.Request{}, "Spam.", ""},
		{"unknown format: anything", &openai.Request{Shape: "format:0123456789ab"}, "Spam.", ""},
		{"json_object", &openai.Request{Shape: "json_object"}, `{"a":1}`, ""},
		{"json_object: not JSON", &openai.Request{Shape: "json_object"}, "Spam.", invalidNotJSON},
		{"json_object: fenced", &openai.Request{Shape: "json_object"}, "```json\n{\"a\":1}\n```", invalidNotJSON},
		{"json_object: an array", &openai.Request{Shape: "json_object"}, `[1]`, invalidNotJSON},
		{"json_object: two values", &openai.Request{Shape: "json_object"}, `{"a":1} {"a":2}`, invalidNotJSON},
		{"json_object: duplicate key", &openai.Request{Shape: "json_object"}, `{"a":1,"a":2}`, invalidDuplicateKey},
		{"json_object: duplicate key inside", &openai.Request{Shape: "json_object"}, `{"a":[{"b":1,"b":1}]}`, invalidDuplicateKey},
		{"json_object: duplicate key, escaped", &openai.Request{Shape: "json_object"}, `{"a":1,"\u0061":2}`, invalidDuplicateKey},
		{"json_object: lenient number", &openai.Request{Shape: "json_object"}, `{"a":+1}`, invalidNotJSON},
		{"json_object: raw control character", &openai.Request{Shape: "json_object"}, "{\"a\":\"x\ty\"}", invalidNotJSON},
		{"json_schema without a schema is json_object", &openai.Request{Shape: "json_schema:x"}, `"spam"`, invalidNotJSON},
		{"strict schema: valid", schemaRequest(verdictSchema), good, ""},
		{"strict schema: keys in another order, spaced", schemaRequest(verdictSchema), ` { "tags": [], "meta": {"lang": "fr"}, "kind": "none", "spam": false } `, ""},
		{"strict schema: a field missing", schemaRequest(verdictSchema), `{"spam":true,"kind":"phish","meta":{"lang":"en"}}`, invalidSchemaMismatch},
		{"strict schema: a field more", schemaRequest(verdictSchema), `{"spam":true,"kind":"phish","meta":{"lang":"en"},"tags":[],"x":1}`, invalidSchemaMismatch},
		{"strict schema: a value outside the enum", schemaRequest(verdictSchema), `{"spam":true,"kind":"ham","meta":{"lang":"en"},"tags":[]}`, invalidSchemaMismatch},
		{"strict schema: a nested field missing", schemaRequest(verdictSchema), `{"spam":true,"kind":"phish","meta":{},"tags":[]}`, invalidSchemaMismatch},
		{"strict schema: wrong type", schemaRequest(verdictSchema), `{"spam":"yes","kind":"phish","meta":{"lang":"en"},"tags":[]}`, invalidSchemaMismatch},
		{"strict schema: duplicate key", schemaRequest(verdictSchema), `{"spam":true,"spam":true,"kind":"phish","meta":{"lang":"en"},"tags":[]}`, invalidDuplicateKey},
		{"strict schema: plain text", schemaRequest(verdictSchema), "spam", invalidNotJSON},
		{"numbers and nulls", schemaRequest(`{"type":"object","properties":{"n":{"type":"integer","maximum":10},"x":{"type":"null"},"f":{"type":"number","multipleOf":0.5}}}`), `{"n":10,"x":null,"f":1.5}`, ""},
		{"numbers: a big integer", schemaRequest(`{"type":"object","properties":{"n":{"type":"integer","maximum":10}}}`), `{"n":12345678901234567890}`, invalidSchemaMismatch},
		{"numbers: 1.0 is an integer", schemaRequest(`{"type":"integer"}`), `1.0`, ""},
		{"empty array and object", schemaRequest(`{"type":"object","properties":{"a":{"type":"array","maxItems":0},"o":{"type":"object","maxProperties":0}}}`), `{"a":[],"o":{}}`, ""},
		{"format asserted", schemaRequest(`{"type":"string","format":"date"}`), `"yesterday"`, invalidSchemaMismatch},
		{"format asserted: valid", schemaRequest(`{"type":"string","format":"date"}`), `"2026-12-03"`, ""},
		{"draft-07 schema", schemaRequest(`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","required":["a"]}`), `{"b":1}`, invalidSchemaMismatch},
		{"recursive schema: valid", schemaRequest(`{"type":"object","properties":{"kids":{"type":"array","items":{"$ref":"#"}}},"additionalProperties":false}`), `{"kids":[{"kids":[]},{}]}`, ""},
		{"recursive schema: invalid deep down", schemaRequest(`{"type":"object","properties":{"kids":{"type":"array","items":{"$ref":"#"}}},"additionalProperties":false}`), `{"kids":[{"kids":[{"x":1}]}]}`, invalidSchemaMismatch},
		{"$defs", schemaRequest(`{"$defs":{"k":{"enum":["a","b"]}},"type":"object","properties":{"k":{"$ref":"#/$defs/k"}}}`), `{"k":"c"}`, invalidSchemaMismatch},
		{"not a schema", schemaRequest(`{"type":12}`), `{}`, invalidBadSchema},
		{"not JSON", schemaRequest(`{"type":`), `{}`, invalidBadSchema},
		{"a pattern RE2 cannot compile", schemaRequest(`{"type":"string","pattern":"(?<=a)b"}`), `"b"`, invalidBadSchema},
		{"a $ref to nothing", schemaRequest(`{"$ref":"#/$defs/none"}`), `{}`, invalidBadSchema},
		{"an anchor $ref", schemaRequest(`{"$defs":{"a":{"$anchor":"x"}},"$ref":"#x"}`), `{}`, invalidBadSchema},
		{"an $id below the root", schemaRequest(`{"properties":{"a":{"$id":"https://example.com/a","type":"string"}}}`), `{"a":"x"}`, invalidBadSchema},
		{"a $ref loop that never descends", schemaRequest(`{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`), `{}`, invalidSchemaMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSchemaCache(schemaCacheEntries, schemaCacheBytes)
			if got := reasonOf(c.checkAnswer(tc.r, tc.answer)); got != tc.reason {
				t.Errorf("checkAnswer(%s) = %q, want %q (err %v)", tc.answer, got, tc.reason, c.checkAnswer(tc.r, tc.answer))
			}
		})
	}
}

// TestHostileSchemas: a schema is the client's, so nothing it says makes
// the gateway fetch a URL, read a file, or spend more than a bounded time.
// Each is refused as bad_schema, and the answer goes to the teacher.
func TestHostileSchemas(t *testing.T) {
	var fetched atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		fmt.Fprint(w, `{"type":"object"}`)
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "schema.json")
	if err := os.WriteFile(file, []byte(`{"type":"object"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	// fanOut refers twice to the next of n definitions: 2^n subschemas
	// once expanded, in a few kilobytes.
	fanOut := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"$defs":{`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"d%d":{"allOf":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d"}]}`, i, i+1, i+1)
		}
		fmt.Fprintf(&b, `,"d%d":{"type":"object"}},"$ref":"#/$defs/d0"}`, n)
		return b.String()
	}
	nested := func(n int) string {
		return strings.Repeat(`{"type":"object","properties":{"a":`, n) + `{"type":"string"}` + strings.Repeat(`}}`, n)
	}
	huge := `{"type":"object","properties":{` + strings.Repeat(`"p":{"type":"string","description":"`+strings.Repeat("x", 1000)+`"},`, 300) + `"q":{}}}`

	for _, tc := range []struct {
		name, schema string
	}{
		{"remote $ref", `{"$ref":"` + srv.URL + `/schema.json"}`},
		{"remote $ref inside", `{"type":"object","properties":{"a":{"$ref":"` + srv.URL + `/a.json#/x"}}}`},
		{"remote $schema", `{"$schema":"` + srv.URL + `/meta.json","type":"object"}`},
		{"remote $dynamicRef", `{"$dynamicRef":"` + srv.URL + `/d.json#meta"}`},
		{"relative $ref", `{"$ref":"other.json"}`},
		{"file $ref", `{"$ref":"file://` + file + `"}`},
		{"file $schema", `{"$schema":"file://` + file + `"}`},
		{"root $id remote, $ref relative", `{"$id":"` + srv.URL + `/base.json","$ref":"other.json"}`},
		{"exponential $refs", fanOut(40)},
		{"too large", huge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSchemaCache(schemaCacheEntries, schemaCacheBytes)
			if got := reasonOf(c.checkAnswer(schemaRequest(tc.schema), `{}`)); got != invalidBadSchema {
				t.Errorf("got %q, want %q", got, invalidBadSchema)
			}
		})
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("the gateway fetched %d URLs a schema named", n)
	}

	// Bounded, not refused: 120 levels of nesting (the body allows 128),
	// and a fan-out that stays under the bound.
	c := newSchemaCache(schemaCacheEntries, schemaCacheBytes)
	deep := strings.Repeat(`{"a":`, 120) + `"x"` + strings.Repeat(`}`, 120)
	if got := reasonOf(c.checkAnswer(schemaRequest(nested(120)), deep)); got != "" {
		t.Errorf("a schema nested 120 deep: %q, want the answer sent", got)
	}
	if got := reasonOf(c.checkAnswer(schemaRequest(fanOut(8)), `{}`)); got != "" {
		t.Errorf("a fan-out of 2^8: %q, want the answer sent", got)
	}
}

// TestSchemaCacheBounded: endless new schemas keep at most
// schemaCacheEntries compiled, within schemaCacheBytes; a schema in use
// is compiled once, however many requests need it at once.
func TestSchemaCacheBounded(t *testing.T) {
	c := newSchemaCache(schemaCacheEntries, schemaCacheBytes)
	for i := range 3 * schemaCacheEntries {
		s := fmt.Sprintf(`{"type":"object","properties":{"n":{"const":%d}}}`, i)
		if err := c.checkAnswer(schemaRequest(s), fmt.Sprintf(`{"n":%d}`, i)); err != nil {
			t.Fatalf("schema %d: %v", i, err)
		}
		if n, b := c.len(); n > schemaCacheEntries || b > schemaCacheBytes {
			t.Fatalf("after %d schemas the cache holds %d of %d bytes, bound %d of %d", i+1, n, b, schemaCacheEntries, schemaCacheBytes)
		}
	}
	if n, _ := c.len(); n != schemaCacheEntries {
		t.Errorf("cache holds %d schemas, want it full at %d", n, schemaCacheEntries)
	}

	// The byte bound: large schemas push the oldest out before the count does.
	small := newSchemaCache(schemaCacheEntries, 64<<10)
	big := func(i int) []byte {
		return []byte(fmt.Sprintf(`{"description":"%s","const":%d}`, strings.Repeat("x", 20<<10), i))
	}
	for i := range 10 {
		if _, err := small.schema(big(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n, b := small.len(); n != 3 || b > 64<<10 {
		t.Errorf("%d schemas of 20 KiB held in %d bytes, want 3 within 64 KiB", n, b)
	}

	// Once, concurrently: every caller gets the same compiled schema.
	s := []byte(verdictSchema)
	var wg sync.WaitGroup
	got := make([]any, 16)
	for i := range got {
		wg.Go(func() {
			sch, err := c.schema(s)
			if err != nil {
				t.Error(err)
			}
			got[i] = sch
		})
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] {
			t.Fatalf("caller %d got another compiled schema: compiled more than once", i)
		}
	}
	// A failure is cached too.
	bad := []byte(`{"type":12}`)
	_, err1 := c.schema(bad)
	_, err2 := c.schema(bad)
	if err1 == nil || err1 != err2 {
		t.Errorf("a schema that does not compile: %v, then %v; want one cached error", err1, err2)
	}
	key := sha256.Sum256(bad)
	if _, ok := c.by[key]; !ok {
		t.Error("the failed schema is not in the cache")
	}
}

// BenchmarkCheckAnswer is what the check adds to a student's answer on
// the request path, its schema compiled and cached.
func BenchmarkCheckAnswer(b *testing.B) {
	answer := `{"spam":true,"kind":"phish","meta":{"lang":"en"},"tags":["urgent","link"]}`
	for _, bc := range []struct {
		name string
		r    *openai.Request
	}{
		{"text", &openai.Request{}},
		{"json_object", &openai.Request{Shape: "json_object"}},
		{"strict schema", schemaRequest(verdictSchema)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newSchemaCache(schemaCacheEntries, schemaCacheBytes)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.checkAnswer(bc.r, answer); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzDecodeAnswer: what decodeAnswer builds is what the validator's own
// reader (encoding/json, numbers as json.Number) would read, and it
// refuses exactly what is not JSON.
func FuzzDecodeAnswer(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[1,2.5e3,-0,"x",null,true,false,{}]}`, `"\u00e9\ud83d\ude00"`, `{"a":1,"a":2}`, `[1,]`, `+1`, "{\"a\":\"\xff\"}", `{"\u0061":1,"a":2}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := decodeAnswer(s, true)
		want, werr := jsonschema.UnmarshalJSON(strings.NewReader(s))
		switch reason := reasonOf(err); {
		case werr != nil:
			if reason != invalidNotJSON {
				t.Fatalf("%q: encoding/json refuses it (%v), decodeAnswer says %q", s, werr, reason)
			}
		case reason == invalidDuplicateKey:
		case err != nil:
			t.Fatalf("%q: encoding/json reads it, decodeAnswer refuses it: %v", s, err)
		case !utf8.ValidString(s):
			// encoding/json writes invalid UTF-8 as U+FFFD; the validator
			// counts a string's runes either way.
		case !reflect.DeepEqual(got, want):
			t.Fatalf("%q: decodeAnswer %#v, encoding/json %#v", s, got, want)
		}
	})
}
