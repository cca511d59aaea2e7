package student

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestRecordLabel(t *testing.T) {
	n := Normalizer{FoldCase: true, StripTrailingPeriod: true}
	for _, tc := range []struct{ in, want string }{
		{`{"spam": true, "kind": "Spam"}`, `{"kind":"spam","spam":true}`},
		{"  {\"kind\":\"SPAM.\",\n \"spam\":true}  ", `{"kind":"spam","spam":true}`},
		{"```json\n{\"spam\": false, \"kind\": \"easy_ham\"}\n```", `{"kind":"easy_ham","spam":false}`},
		{`{"meta": {"lang": "EN", "n": 2.0}, "ok": null}`, `{"meta.lang":"en","meta.n":2,"ok":null}`},
		{`{"tags": ["b", "A", "b"], "x": []}`, `{"tags":["a","b"],"x":[]}`},
		{`{"rows": [{"a": 1}], "e": {}}`, `{"e":{},"rows":[{"a":1}]}`},
		{`{"q": "say \"hi\"\u0001"}`, `{"q":"say \"hi\"\u0001"}`},
		{`{"id": 9007199254740993, "n": -0, "f": 1e2, "g": -2.50}`, `{"f":100,"g":-2.5,"id":9007199254740993,"n":0}`},
		{`{"big": 1e400}`, `{"big":1e400}`},
		// Not records: plain text labels.
		{`Spam.`, `spam`},
		{`{"a": 1, "a": 2}`, `{"a": 1, "a": 2}`},
		{`{"a.b": 1}`, `{"a.b": 1}`},
		{`{}`, `{}`},
		{`{"a": 1`, `{"a": 1`},
		{`[1, 2]`, `[1, 2]`},
	} {
		got := n.Label(tc.in)
		if got != tc.want {
			t.Errorf("Label(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if _, isRecord := LabelFields(got); isRecord && !json.Valid([]byte(got)) {
			t.Errorf("Label(%q) = %s: not valid JSON", tc.in, got)
		}
	}
}

func TestRecordDepthBound(t *testing.T) {
	deep := strings.Repeat(`{"a":`, maxRecordDepth+1) + "1" + strings.Repeat("}", maxRecordDepth+1)
	if _, ok := (Normalizer{}).Record(deep); ok {
		t.Fatalf("a record %d objects deep was read", maxRecordDepth+1)
	}
	ok16 := strings.Repeat(`{"a":`, maxRecordDepth) + "1" + strings.Repeat("}", maxRecordDepth)
	if _, ok := (Normalizer{}).Record(ok16); !ok {
		t.Fatalf("a record %d objects deep was refused", maxRecordDepth)
	}
}

func TestRecordFields(t *testing.T) {
	rec, ok := Normalizer{FoldCase: true}.Record(`{"spam": true, "meta": {"lang": "EN"}, "tags": ["X", "y", "x"]}`)
	if !ok {
		t.Fatal("not a record")
	}
	if got, want := rec.Paths(), []string{"spam", "meta.lang", "tags"}; !reflect.DeepEqual(got, want) {
		t.Errorf("paths %q, want %q", got, want)
	}
	tags := rec.Fields[2]
	if !tags.IsTags || !reflect.DeepEqual(tags.Tags, []string{`"x"`, `"y"`}) || !reflect.DeepEqual(tags.RawTags, []string{`"X"`, `"y"`}) {
		t.Errorf("tags field %+v", tags)
	}
	if rec.Fields[1].Raw != `"EN"` || rec.Fields[1].Value != `"en"` {
		t.Errorf("meta.lang field %+v", rec.Fields[1])
	}
	fields, ok := LabelFields(rec.Label())
	if !ok || !reflect.DeepEqual(fields, map[string]string{"spam": "true", "meta.lang": `"en"`, "tags": `["x","y"]`}) {
		t.Errorf("LabelFields = %v, %v", fields, ok)
	}
	n := Normalizer{}
	for _, plain := range []string{"spam", `{"a": 1, "a": 2}`, `{"a.b": 1}`, `{"x": 1.}`} {
		if fields, ok := LabelFields(n.Label(plain)); ok {
			t.Errorf("the plain label of %s read as a record: %v", plain, fields)
		}
	}
	for _, notCanonical := range []string{`{"b":1,"a":2}`, `{"a":1.0}`, `{"a": 1}`} {
		if fields, ok := LabelFields(notCanonical); ok {
			t.Errorf("%s, not a canonical label, read as a record: %v", notCanonical, fields)
		}
	}
}

func TestRenderRecord(t *testing.T) {
	for _, tc := range []struct {
		paths, values []string
		want          string
	}{
		{[]string{"spam", "kind"}, []string{"true", `"spam"`}, `{"spam":true,"kind":"spam"}`},
		{[]string{"a", "m.x", "m.y", "b"}, []string{"1", "2", "3", "4"}, `{"a":1,"m":{"x":2,"y":3},"b":4}`},
		{[]string{"m.n.x", "m.y", "z.q"}, []string{"1", "2", "3"}, `{"m":{"n":{"x":1},"y":2},"z":{"q":3}}`},
		{[]string{"m.x", "n.x"}, []string{"1", "2"}, `{"m":{"x":1},"n":{"x":2}}`},
		{nil, nil, `{}`},
	} {
		got := RenderRecord(tc.paths, tc.values)
		if got != tc.want {
			t.Errorf("RenderRecord(%q) = %s, want %s", tc.paths, got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("RenderRecord(%q) = %s: not valid JSON", tc.paths, got)
		}
	}
	// A record read and rendered back from its raw values is the same JSON.
	in := `{"spam":false,"kind":"Hard_Ham","meta":{"lang":"en","score":0.5},"tags":["a","b"]}`
	rec, _ := Normalizer{}.Record(in)
	raws := make([]string, len(rec.Fields))
	for i, f := range rec.Fields {
		raws[i] = f.Raw
	}
	if got := RenderRecord(rec.Paths(), raws); got != in {
		t.Errorf("round trip = %s, want %s", got, in)
	}
}

func FuzzRecord(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":[1,"x"]},"c":"D."}`, "```json\n{\"k\":true}\n```", `{"a":"\xf8"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n := Normalizer{FoldCase: true, StripTrailingPeriod: true}
		rec, ok := n.Record(in)
		if !ok {
			return
		}
		label := rec.Label()
		if !json.Valid([]byte(label)) {
			t.Fatalf("label %q of %q is not JSON", label, in)
		}
		if fields, ok := LabelFields(label); !ok || len(fields) != len(rec.Fields) {
			t.Fatalf("label %q of %q reads back as %v, %v", label, in, fields, ok)
		}
		raws := make([]string, len(rec.Fields))
		for i, f := range rec.Fields {
			raws[i] = f.Raw
		}
		out := RenderRecord(rec.Paths(), raws)
		if !json.Valid([]byte(out)) {
			t.Fatalf("rendered %q of %q is not JSON", out, in)
		}
		if again := n.Label(out); again != label {
			t.Fatalf("rendered %q labels as %q, the answer %q as %q", out, again, in, label)
		}
	})
}
