package gateway

import (
	"strconv"
	"strings"
	"testing"

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
