package gateway

import (
	"strconv"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/internal/openai"
)

func TestFingerprint(t *testing.T) {
	a := Fingerprint("gpt", "Classify  this\n e-mail.")
	if a != Fingerprint("gpt", "classify this e-mail.") {
		t.Error("fingerprint should fold case and whitespace")
	}
	if a == Fingerprint("gpt-4", "classify this e-mail.") || a == Fingerprint("gpt", "classify that e-mail.") {
		t.Error("fingerprint should depend on model and prompt")
	}
	if !strings.HasPrefix(a, "auto-") || len(a) != len("auto-")+12 {
		t.Errorf("fingerprint %q: want auto- and 12 hex digits", a)
	}
}

// TestResolveAutomaticNames resolves more distinct prompts than the
// resolver caches, twice: every name, cached or not, is the fingerprint.
func TestResolveAutomaticNames(t *testing.T) {
	d, err := NewDomainResolver(nil)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		for i := range maxAutos + 100 {
			r := &openai.Request{Model: "m" + strconv.Itoa(i%3), System: "Task  number " + strconv.Itoa(i)}
			got, err := d.Resolve("", r)
			if want := Fingerprint(r.Model, r.System); err != nil || got != want {
				t.Fatalf("round %d, prompt %d: Resolve = %q, %v; want %q", round, i, got, err, want)
			}
		}
	}
}

// TestResolveShapes: requests of one prompt that ask for different shapes
// of answer are different domains, named or automatic; chat and the
// Responses API asking for the same shape share one.
func TestResolveShapes(t *testing.T) {
	d, err := NewDomainResolver(nil)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(chat bool, body string) *openai.Request {
		t.Helper()
		var r *openai.Request
		var err error
		if chat {
			r, err = openai.ParseChatRequest([]byte(body))
		} else {
			r, err = openai.ParseResponsesRequest([]byte(body))
		}
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	const schema = `{"type":"object","properties":{"spam":{"type":"boolean"}}}`
	plain := parse(true, `{"model":"m","messages":[{"role":"system","content":"Sort."},{"role":"user","content":"x"}]}`)
	plainResp := parse(false, `{"model":"m","instructions":"Sort.","input":"x"}`)
	chatSchema := parse(true, `{"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"v","strict":true,"schema":`+schema+`}},"messages":[{"role":"system","content":"Sort."},{"role":"user","content":"x"}]}`)
	respSchema := parse(false, `{"model":"m","instructions":"Sort.","text":{"format":{"type":"json_schema","name":"v","strict":true,"schema":`+schema+`}},"input":"x"}`)
	jsonObject := parse(true, `{"model":"m","response_format":{"type":"json_object"},"messages":[{"role":"system","content":"Sort."},{"role":"user","content":"x"}]}`)
	tools := parse(false, `{"model":"m","instructions":"Sort.","tools":[{"type":"web_search"}],"input":"x"}`)
	name := func(header string, r *openai.Request) string {
		t.Helper()
		n, err := d.Resolve(header, r)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, header := range []string{"", "sort"} {
		p, s := name(header, plain), name(header, chatSchema)
		if name(header, plainResp) != p || name(header, respSchema) != s {
			t.Errorf("header %q: chat and Responses of one shape in different domains", header)
		}
		seen := map[string]bool{}
		for _, n := range []string{p, s, name(header, jsonObject), name(header, tools)} {
			if seen[n] || !config.ValidDomainName(n) {
				t.Errorf("header %q: domain %q repeated or invalid", header, n)
			}
			seen[n] = true
		}
	}
	if got := name("sort", plain); got != "sort" {
		t.Errorf("a named plain domain is %q", got)
	}
	if got := name("sort", tools); got != "sort.tools" {
		t.Errorf("a named domain offered tools is %q", got)
	}
	if got := name(strings.Repeat("a", 64), chatSchema); len(got) != 64 || !strings.Contains(got, ".schema-") {
		t.Errorf("a 64-character name with a schema is %q", got)
	}
}

// TestResolveRefusesDotNames: "." and ".." cannot be managed through the
// admin API's paths, so no request may create them.
func TestResolveRefusesDotNames(t *testing.T) {
	d, err := NewDomainResolver(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".", ".."} {
		if _, err := d.Resolve(name, &openai.Request{Model: "m"}); err == nil {
			t.Errorf("header %q accepted", name)
		}
		if _, err := d.Resolve("", &openai.Request{Model: "m", Task: name}); err == nil {
			t.Errorf("metadata.task %q accepted", name)
		}
	}
}
