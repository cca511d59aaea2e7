package openai

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseChatRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want Request
	}{
		{"plain", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}`,
			Request{Model: "m", System: "Be brief.", Input: "hi"}},
		{"stream with usage and unknown fields", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"seed":3,"x_vendor":{"a":1},"messages":[{"role":"user","content":"hi"}]}`,
			Request{Model: "m", Stream: true, IncludeUsage: true, Input: "hi"}},
		{"developer role and parts", `{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"Sys"}]},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`,
			Request{Model: "m", System: "Sys", Input: "a\nb"}},
		{"metadata task", `{"model":"m","metadata":{"task":"spam"},"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Task: "spam", Input: "x", Forward: []byte(`{"model":"m","messages":[{"role":"user","content":"x"}]}`)}},
		{"metadata task beside other keys", `{"model":"m","metadata":{"user":"u1","task":"spam"},"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Task: "spam", Input: "x", Forward: []byte(`{"model":"m","metadata":{"user":"u1"},"messages":[{"role":"user","content":"x"}]}`)}},
		{"metadata without task forwarded as sent", `{"model":"m","metadata":{"user":"u1"},"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Input: "x"}},
		{"json schema", `{"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"v","schema":{"type":"object"}}},"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Input: "x", Shape: "json_schema:" + schemaHash(`{"type":"object"}`), Schema: []byte(`{"type":"object"}`)}},
		{"json object", `{"model":"m","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Input: "x", Shape: "json_object"}},
		{"text format", `{"model":"m","response_format":{"type":"text"},"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Input: "x"}},
		{"tools", `{"model":"m","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Input: "x", Ineligible: "tools", Shape: "+tools"}},
		{"empty tools stays eligible", `{"model":"m","tools":[],"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Input: "x"}},
		{"image", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"what"},{"type":"image_url","image_url":{"url":"http://x"}}]}]}`,
			Request{Model: "m", Input: "what", Ineligible: "image_input"}},
		{"audio", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"","format":"wav"}}]}]}`,
			Request{Model: "m", Ineligible: "audio_input"}},
		{"n", `{"model":"m","n":2,"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Input: "x", Ineligible: "n>1"}},
		{"n=1 stays eligible", `{"model":"m","n":1,"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Input: "x"}},
		{"logprobs", `{"model":"m","logprobs":true,"messages":[{"role":"user","content":"x"}]}`,
			Request{Model: "m", Input: "x", Ineligible: "logprobs"}},
		{"null content", `{"model":"m","messages":[{"role":"assistant","content":null},{"role":"user","content":"x"}]}`,
			Request{Model: "m", Input: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseChatRequest([]byte(tc.body))
			if err != nil {
				t.Fatalf("ParseChatRequest: %v", err)
			}
			if got.Endpoint != Chat || !strings.Contains(tc.body, string(got.Messages)) {
				t.Errorf("Endpoint %v, Messages %s: want Chat and the messages as sent", got.Endpoint, got.Messages)
			}
			got.Messages = nil
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

// schemaHash is the hash answerShape gives a schema.
func schemaHash(schema string) string {
	h := sha256.Sum256([]byte(schema))
	return hex.EncodeToString(h[:6])
}

func TestParseChatRequestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body, param, msg string
	}{
		{"malformed", `{"model":`, "", "could not parse the JSON body"},
		{"not an object", `[1,2]`, "", "must be a JSON object"},
		{"missing model", `{"messages":[{"role":"user","content":"x"}]}`, "model", "must provide a model"},
		{"missing messages", `{"model":"m"}`, "model", ""},
		{"model not a string", `{"model":5,"messages":[]}`, "model", "expected a string, but got a number"},
		{"control character in a string", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\tb\"}]}", "", "could not parse the JSON body"},
		{"trailing garbage", `{"model":"m","messages":[{"role":"user","content":"x"}]} x`, "", "could not parse the JSON body"},
		{"n not an integer", `{"model":"m","n":1.5,"messages":[{"role":"user","content":"x"}]}`, "n", "expected an integer"},
		{"task not a string", `{"model":"m","metadata":{"task":3},"messages":[{"role":"user","content":"x"}]}`, "metadata.task", "expected a string"},
		{"part not an object", `{"model":"m","messages":[{"role":"user","content":["x"]}]}`, "messages[0].content", "content parts"},
		{"stream not a bool", `{"model":"m","stream":"yes","messages":[{"role":"user","content":"x"}]}`, "stream", "expected a boolean"},
		{"messages not an array", `{"model":"m","messages":{}}`, "messages", "expected an array"},
		{"message not an object", `{"model":"m","messages":["hi"]}`, "messages[0]", "expected an object"},
		{"role not a string", `{"model":"m","messages":[{"role":1,"content":"x"}]}`, "messages[0].role", "expected a string"},
		{"empty messages", `{"model":"m","messages":[]}`, "messages", "empty array"},
		{"missing role", `{"model":"m","messages":[{"content":"x"}]}`, "messages[0].role", "Missing required parameter"},
		{"content a number", `{"model":"m","messages":[{"role":"user","content":5}]}`, "messages[0].content", "expected a string or an array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseChatRequest([]byte(tc.body))
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if ae.Type != "invalid_request_error" {
				t.Errorf("type %q, want invalid_request_error", ae.Type)
			}
			if tc.name == "missing messages" {
				tc.param = "messages"
			}
			if ae.Param != tc.param || !strings.Contains(ae.Message, tc.msg) {
				t.Errorf("param %q message %q; want param %q and a message containing %q", ae.Param, ae.Message, tc.param, tc.msg)
			}
		})
	}
}

func TestParseCompletionRequest(t *testing.T) {
	r, err := ParseCompletionRequest([]byte(`{"model":"m","prompt":"Say hi","stream":true}`))
	if err != nil || r.Input != "Say hi" || !r.Stream || r.Ineligible != "" {
		t.Errorf("got %+v, %v", r, err)
	}
	r, err = ParseCompletionRequest([]byte(`{"model":"m","prompt":["a","b"]}`))
	if err != nil || r.Ineligible != "prompt_not_string" {
		t.Errorf("array prompt: got %+v, %v", r, err)
	}
	if _, err := ParseCompletionRequest([]byte(`{"prompt":"x"}`)); err == nil {
		t.Error("missing model: no error")
	}
}

// FuzzParseChatRequest checks the parser never panics and that what it
// accepts has a model and, when it is eligible, no media. Invalid JSON gets
// the parse error, or the nesting error when the depth scan, which runs
// first, finds it nested too deep before it finds it broken.
func FuzzParseChatRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":[{"type":"text","text":"s"}]},{"role":"user","content":[{"type":"image_url"}]}]}`,
		`{"model":"m","n":3,"logprobs":true,"tools":[{}],"metadata":{"task":"t"},"messages":[{"role":"user","content":null}]}`,
		`{"model":5}`, `[]`, `null`, `{"messages":[{"role":1}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseChatRequest(body)
		if valid := json.Valid(body); err == nil && !valid {
			t.Fatalf("accepted a body that is not JSON")
		} else if !valid {
			if ae, ok := err.(*Error); !ok || !strings.Contains(ae.Message, "could not parse") && !strings.Contains(ae.Message, "levels deep") {
				t.Fatalf("invalid JSON: error %v, want the parse error or the nesting error", err)
			}
		}
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not an *Error", err)
			}
			return
		}
		if r.Model == "" {
			t.Fatal("accepted a request without a model")
		}
		if r.Forward != nil && !json.Valid(r.Forward) {
			t.Fatalf("Forward %q is not JSON", r.Forward)
		}
	})
}

func FuzzParseCompletionRequest(f *testing.F) {
	for _, s := range []string{`{"model":"m","prompt":"hi"}`, `{"model":"m","prompt":["a"],"logprobs":2}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseCompletionRequest(body)
		if err == nil && r.Model == "" {
			t.Fatal("accepted a request without a model")
		}
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not an *Error", err)
			}
		}
	})
}

// TestParseChatRequestStrings checks strings are read as encoding/json
// reads them: escapes decoded, invalid UTF-8 replaced.
func TestParseChatRequestStrings(t *testing.T) {
	for _, raw := range []string{`"plain"`, `"with \"quotes\" and \\n"`, `"héllo wörld ✓"`, `""`, "\"bad \xff utf8\"", `"tab\tescaped \u00e9 \ud83d\ude00"`} {
		var want string
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatal(err)
		}
		r, err := ParseChatRequest([]byte(`{"model":"m","messages":[{"role":"user","content":` + raw + `}]}`))
		if err != nil || r.Input != want {
			t.Errorf("content %s: read %q, %v; want %q", raw, r.Input, err, want)
		}
	}
}

// BenchmarkParseChatRequest parses a chat request with a system prompt
// and a ~1 KB user message: the gateway benchmarks' request.
func BenchmarkParseChatRequest(b *testing.B) {
	text := strings.Repeat("Quarterly numbers attached, please review before Friday. ", 18)
	body := []byte(`{"model":"teacher-sim","messages":[{"role":"system","content":"Classify this e-mail as spam or ham. Answer with one word."},{"role":"user","content":"` + text + `"}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseChatRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseConversation parses a multi-turn chat request with content
// parts, metadata and stream options: more objects per body than
// BenchmarkParseChatRequest, so per-object checks show.
func BenchmarkParseConversation(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"model":"gpt-4o-mini","temperature":0,"max_tokens":16,"stream":true,"stream_options":{"include_usage":true},"metadata":{"task":"support","team":"billing"},"messages":[{"role":"system","content":"You sort support tickets into one of twelve queues. Answer with the queue name only."}`)
	for i := range 6 {
		sb.WriteString(`,{"role":"user","content":[{"type":"text","text":"Ticket ` + strconv.Itoa(i) + `: my invoice shows a charge twice and I would like a refund for the duplicate, thanks."},{"type":"text","text":"Sent from my phone"}]}`)
		sb.WriteString(`,{"role":"assistant","content":"billing"}`)
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseChatRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

func nest(open, leaf, close string, depth int) string {
	return strings.Repeat(open, depth) + leaf + strings.Repeat(close, depth)
}

// TestScanJSON checks the depth and string scan that runs before any
// recursive parser: brackets count only outside strings, MaxNesting levels
// pass and one more does not.
func TestScanJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want scanResult
	}{
		{"flat", `{"a":[1,2,{"b":"c"}]}`, scanOK},
		{"at the limit, arrays", nest("[", "", "]", MaxNesting), scanOK},
		{"at the limit, objects", nest(`{"a":`, "1", "}", MaxNesting), scanOK},
		{"one past the limit", nest("[", "", "]", MaxNesting+1), scanTooDeep},
		{"one past the limit, mixed", nest(`[{"a":`, "1", "}]", MaxNesting/2) + "", scanOK},
		{"mixed past the limit", "[" + nest(`{"a":[`, "1", "]}", MaxNesting/2), scanTooDeep},
		{"never closed", strings.Repeat("[", 1<<20), scanTooDeep},
		{"brackets in a string", `{"a":"` + strings.Repeat("[{", 1000) + `"}`, scanOK},
		{"escaped quote keeps the string open", `{"a":"\"` + strings.Repeat("[", 1000) + `"}`, scanOK},
		{"escaped backslash closes the string", `["\\"` + strings.Repeat(",[", MaxNesting) + strings.Repeat("]", MaxNesting) + `]`, scanTooDeep},
		{"brackets in a key", `{"` + strings.Repeat("{", 1000) + `":1}`, scanOK},
		{"closed before opened", `]` + nest("[", "", "]", MaxNesting), scanInvalid},
		{"raw control character", "{\"a\":\"x\ny\"}", scanInvalid},
		{"raw control character in a key", "{\"a\x01\":1}", scanInvalid},
		{"escaped control character", `{"a":"x\ny"}`, scanOK},
		// fastjson's validator misses a control character before an escape.
		{"raw control character before an escape", "[\"\x13\\b\"]", scanInvalid},
		{"string never closed", `{"a":"` + strings.Repeat("[", 1000), scanOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := scanJSON([]byte(tc.body)); got != tc.want {
				t.Errorf("scanJSON = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestParseDeepNesting checks what a client sees for a body nested too
// deep, before the validator or the parser recurse into it.
func TestParseDeepNesting(t *testing.T) {
	for _, body := range []string{
		`{"model":"m","messages":` + nest("[", "", "]", 2_000_000) + `}`,
		`{"model":"m","messages":[{"role":"user","content":"hi","x":` + nest("[", "", "]", MaxNesting-2) + `}]}`,
		nest(`{"a":`, "1", "}", 1_000_000),
		strings.Repeat("[", 4_000_000),
	} {
		_, err := ParseChatRequest([]byte(body))
		var ae *Error
		if !errors.As(err, &ae) || ae.Type != "invalid_request_error" || ae.Param != "" || !strings.Contains(ae.Message, "more than 128 levels deep") {
			t.Errorf("body of %d bytes: %v; want an invalid_request_error naming the 128-level limit", len(body), err)
		}
	}
	ok := `{"model":"m","messages":[{"role":"user","content":"hi","x":` + nest("[", "", "]", MaxNesting-3) + `}]}`
	if _, err := ParseChatRequest([]byte(ok)); err != nil {
		t.Errorf("body nested %d levels deep: %v", MaxNesting, err)
	}
}

// TestParseDuplicateKeys checks which duplicate keys are refused, with the
// param and message a client sees; objects the gateway does not read are
// the teacher's to judge.
func TestParseDuplicateKeys(t *testing.T) {
	manyKeys := func(dup bool) string {
		var b strings.Builder
		b.WriteString(`{"model":"m","messages":[{"role":"user","content":"x"}]`)
		for i := range 40 {
			fmt.Fprintf(&b, `,"x_%d":%d`, i, i)
		}
		if dup {
			b.WriteString(`,"x_7":0`)
		}
		return b.String() + "}"
	}
	for _, tc := range []struct {
		name, body, param, msg string
	}{
		{"top level", `{"model":"m","messages":[{"role":"user","content":"a"}],"messages":[{"role":"user","content":"b"}]}`,
			"messages", "Duplicate key 'messages' in the request body."},
		{"top level, a key the gateway does not read", `{"model":"m","seed":1,"messages":[{"role":"user","content":"a"}],"seed":2}`,
			"seed", "Duplicate key 'seed' in the request body."},
		{"top level, spelled with an escape", `{"model":"m","messages":[{"role":"user","content":"a"}],"\u006dodel":"n"}`,
			"model", "Duplicate key 'model' in the request body."},
		{"top level, many keys", manyKeys(true), "x_7", "Duplicate key 'x_7' in the request body."},
		{"message", `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","name":"x","name":"y","content":"b"}]}`,
			"messages[1].name", "Duplicate key 'name' in messages[1]."},
		{"content part", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","type":"image_url","text":"b"}]}]}`,
			"messages[0].content[1].type", "Duplicate key 'type' in messages[0].content[1]."},
		{"metadata", `{"model":"m","metadata":{"task":"a","task":"b"},"messages":[{"role":"user","content":"a"}]}`,
			"metadata.task", "Duplicate key 'task' in metadata."},
		{"stream_options", `{"model":"m","stream_options":{"include_usage":true,"include_usage":false},"messages":[{"role":"user","content":"a"}]}`,
			"stream_options.include_usage", "Duplicate key 'include_usage' in stream_options."},
		{"long key", `{"model":"m","messages":[{"role":"user","content":"a"}],"` + strings.Repeat("k", 1000) + `":1,"` + strings.Repeat("k", 1000) + `":2}`,
			strings.Repeat("k", 64) + "…", "Duplicate key '" + strings.Repeat("k", 64) + "…' in the request body."},
		{"empty key", `{"model":"m","messages":[{"role":"user","content":"a"}],"":1,"":2}`,
			"", "Duplicate key '' in the request body."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseChatRequest([]byte(tc.body))
			var ae *Error
			if !errors.As(err, &ae) || ae.Type != "invalid_request_error" || ae.Param != tc.param || ae.Message != tc.msg {
				t.Errorf("error %#v; want an invalid_request_error with param %q and message %q", err, tc.param, tc.msg)
			}
		})
	}
	var ae *Error
	if _, err := ParseCompletionRequest([]byte(`{"model":"m","prompt":"a","prompt":"b"}`)); !errors.As(err, &ae) || ae.Param != "prompt" {
		t.Errorf("completion with two prompts: %v; want an error for 'prompt'", err)
	}
	for _, body := range []string{
		manyKeys(false),
		`{"model":"m","tools":[{"type":"function","type":"x","function":{"name":"f"}}],"messages":[{"role":"user","content":"a"}]}`,
		`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"a","id":"b"}]},{"role":"user","content":"a"}]}`,
		`{"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"a","name":"b"}},"messages":[{"role":"user","content":"a"}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"a","url":"b"}}]}]}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"text":1,"type":2,"temperature":0,"top_p":1,"tools":null}`,
	} {
		if _, err := ParseChatRequest([]byte(body)); err != nil {
			t.Errorf("%s: %v; want it accepted", body, err)
		}
	}
}

// dupKey is a key that an object holds twice, and the path of that object
// ("" for the body, "messages[1]").
type dupKey struct{ in, key string }

func (d dupKey) param() string {
	if d.in == "" {
		return d.key
	}
	return d.in + "." + d.key
}

// readObjects are the objects whose duplicate keys the gateway refuses: the
// body, stream_options and, in a chat request, metadata, the messages and
// their content parts.
var (
	readObjects       = regexp.MustCompile(`^(|stream_options|metadata|messages\[\d+\]|messages\[\d+\]\.content\[\d+\])$`)
	readObjectsLegacy = regexp.MustCompile(`^(|stream_options)$`)
)

// shapeOf walks a JSON text with encoding/json's decoder, which is not
// recursive: it returns how deep the text nests and the keys some object
// holds twice. ok is false when the text is not JSON.
func shapeOf(b []byte) (depth int, dups []dupKey, ok bool) {
	type frame struct {
		obj     bool
		path    string
		keys    map[string]bool
		key     string // the key whose value comes next (objects)
		wantKey bool   // a key comes next (objects)
		n       int    // values seen (arrays)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var stack []*frame
	top := func() *frame {
		if len(stack) == 0 {
			return nil
		}
		return stack[len(stack)-1]
	}
	// value is called as a value starts and returns its path.
	value := func() string {
		f := top()
		switch {
		case f == nil:
			return ""
		case len(stack) > 5:
			return "\x00" // deeper than any object the gateway reads
		case f.obj:
			f.wantKey = true
			k := f.key
			if k == "" || strings.ContainsAny(k, ".[]") {
				k = "\x00" // a path the gateway never reads
			}
			if f.path == "" {
				return k
			}
			return f.path + "." + k
		default:
			f.n++
			return f.path + "[" + strconv.Itoa(f.n-1) + "]"
		}
	}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return depth, dups, len(stack) == 0
		}
		if err != nil {
			return depth, dups, false
		}
		if f := top(); f != nil && f.wantKey {
			if k, isKey := tok.(string); isKey {
				if f.keys[k] {
					dups = append(dups, dupKey{f.path, k})
				}
				f.keys[k], f.key, f.wantKey = true, k, false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			obj := tok == json.Delim('{')
			stack = append(stack, &frame{obj: obj, path: value(), keys: map[string]bool{}, wantKey: obj})
			depth = max(depth, len(stack))
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		default:
			value()
		}
	}
}

// checkParse is the property both parser fuzz targets share: errors are
// OpenAI error objects; JSON that is not, or nests deeper than MaxNesting,
// is refused with the matching message; a refused duplicate key is one the
// body holds; an accepted body holds no key twice in an object the
// gateway reads (read matches their paths).
func checkParse(t *testing.T, body []byte, err error, read *regexp.Regexp) {
	t.Helper()
	var ae *Error
	if err != nil && !errors.As(err, &ae) {
		t.Fatalf("error %T is not an *Error", err)
	}
	depth, dups, walked := shapeOf(body)
	valid := json.Valid(body)
	switch {
	case valid && !walked:
		t.Fatalf("reference walk failed on valid JSON")
	case !valid:
		// Not JSON, or (encoding/json's own limit) nested past 10000 levels.
		if err == nil {
			t.Fatalf("accepted a body that is not JSON")
		}
		if !strings.Contains(ae.Message, "could not parse") && !strings.Contains(ae.Message, "levels deep") {
			t.Fatalf("invalid JSON: %q, want the parse or depth error", ae.Message)
		}
		return
	case depth > MaxNesting:
		if err == nil || !strings.Contains(ae.Message, "levels deep") {
			t.Fatalf("body nested %d levels deep: %v, want the depth error", depth, err)
		}
		return
	}
	if err != nil && (strings.Contains(ae.Message, "could not parse") || strings.Contains(ae.Message, "levels deep")) {
		t.Fatalf("valid JSON nested %d levels deep refused: %q", depth, ae.Message)
	}
	// encoding/json reads invalid UTF-8 and lone surrogates as U+FFFD, where
	// fastjson keeps them apart (as Python does): compare keys only where
	// both read the same.
	if !utf8.Valid(body) || loneSurrogate.Match(body) {
		return
	}
	if err != nil && strings.HasPrefix(ae.Message, "Duplicate key") {
		found := false
		for _, d := range dups {
			found = found || d.param() == ae.Param
		}
		if !found && len(ae.Param) <= 64 {
			t.Fatalf("refused duplicate %q; the body's duplicates are %q", ae.Param, dups)
		}
	}
	if err == nil {
		for _, d := range dups {
			if read.MatchString(d.in) {
				t.Fatalf("accepted a body with key %q twice", d.param())
			}
		}
	}
}

var loneSurrogate = regexp.MustCompile(`\\u[dD][89a-fA-F]`)

// parserSeeds are the parser fuzz targets' seeds: deep nesting at, past
// and far past the limit; duplicate keys where the gateway reads them and
// where it does not.
func parserSeeds(f *testing.F) {
	for _, s := range []string{
		"", "null", "1 2",
		`{"model":"m","messages":` + nest("[", "", "]", MaxNesting-1) + `}`,
		`{"model":"m","messages":` + nest("[", "", "]", MaxNesting) + `}`,
		`{"model":"m","messages":` + nest("[", "", "]", 10_001) + `}`,
		nest(`{"a":`, "1", "}", 300),
		strings.Repeat("[", 10_001),
		`{"model":"m","prompt":"` + strings.Repeat("[", 500) + `"}`,
		`{"model":"m","messages":[{"role":"user","content":"a"}],"messages":[{"role":"user","content":"b"}]}`,
		`{"model":"m","prompt":"a","prompt":"b"}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a","text":"b"}]}]}`,
		`{"model":"m","metadata":{"task":"a","t\u0061sk":"b"},"messages":[{"role":"user","content":"a"}]}`,
		`{"model":"m","tools":[{"type":"function","type":"x"}],"messages":[{"role":"user","content":"a"}]}`,
		`{"model":"m","prompt":"a","":{"task":"","t\u0061sk":""}}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzParseDepthAndKeys fuzzes the chat parser against a reference walk of
// the body: nesting and duplicate keys (checkParse).
func FuzzParseDepthAndKeys(f *testing.F) {
	parserSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		_, err := ParseChatRequest(body)
		checkParse(t, body, err, readObjects)
		_, err = ParseCompletionRequest(body)
		checkParse(t, body, err, readObjectsLegacy)
	})
}

// FuzzScanJSON checks the scan against encoding/json and the reference
// walk: on JSON it refuses exactly what nests deeper than MaxNesting, and
// what it finds invalid is not JSON.
func FuzzScanJSON(f *testing.F) {
	parserSeeds(f)
	for _, s := range []string{`"\\"`, `["\""]`, "[\"\x01\"]", "\"\x13\\b\"", `]`, `[]]`, `{"a":"[[[["}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := scanJSON(body)
		valid := json.Valid(body)
		if depth, _, walked := shapeOf(body); walked && valid {
			want := scanOK
			if depth > MaxNesting {
				want = scanTooDeep
			}
			if got != want {
				t.Fatalf("scanJSON = %d on JSON nested %d levels deep, want %d", got, depth, want)
			}
		}
		if got == scanInvalid && valid {
			t.Fatalf("scanJSON refused valid JSON")
		}
	})
}
