package teachersim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
)

// A task whose labels are JSON objects is a structured task: the teacher
// answers with the record as JSON text. An LLM asked for a record does not
// write it the same way every time, so with Config.RecordVariation a share
// of those answers is written in another layout than the task file's: the
// keys in another order, spaced ({"a": 1, "b": 2}) or indented over lines
// — the same record, still one valid JSON object with the same members,
// which a structured answer's label reads as equal.

// recordLayouts are the ways restyle writes a record.
const (
	layoutCompact  = iota // {"a":1,"b":2}
	layoutSpaced          // {"a": 1, "b": 2}
	layoutIndented        // {\n  "a": 1,\n  "b": 2\n}
	numLayouts
)

// member is one key and its value, as compact JSON, of a record.
type member struct {
	key   string
	value json.RawMessage
}

// readRecord reads s as one JSON object, its members in order; ok is false
// for anything else (plain text, an array, trailing data, a repeated key).
func readRecord(s string) (members []member, ok bool) {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "{") {
		return nil, false
	}
	dec := json.NewDecoder(strings.NewReader(t))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		key, isKey := tok.(string)
		if err != nil || !isKey || seen[key] {
			return nil, false
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			return nil, false
		}
		members = append(members, member{key: key, value: b.Bytes()})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false
	}
	return members, len(members) > 0
}

// restyle returns answer, when it is a JSON object, written in a layout
// drawn by r other than the file's own (compact, keys in the file's order):
// its keys shuffled into another order and/or spaced or indented. Any other
// answer, and an object with one key written compact, comes back as is.
func restyle(answer string, r *rand.Rand) string {
	members, ok := readRecord(answer)
	if !ok {
		return answer
	}
	reorder := len(members) > 1 && r.IntN(2) == 0
	layout := layoutCompact + r.IntN(numLayouts)
	if !reorder && layout == layoutCompact {
		layout = layoutSpaced + r.IntN(numLayouts-1) // something must change
	}
	if reorder {
		shuffled := make([]member, len(members))
		for {
			for i, j := range r.Perm(len(members)) {
				shuffled[i] = members[j]
			}
			if !sameOrder(shuffled, members) {
				break
			}
		}
		members = shuffled
	}
	return writeRecord(members, layout)
}

func sameOrder(a, b []member) bool {
	for i := range a {
		if a[i].key != b[i].key {
			return false
		}
	}
	return true
}

// writeRecord writes members as one JSON object in layout.
func writeRecord(members []member, layout int) string {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
			if layout == layoutSpaced {
				b.WriteByte(' ')
			}
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		if layout == layoutSpaced {
			b.WriteByte(' ')
		}
		b.Write(m.value)
	}
	b.WriteByte('}')
	if layout != layoutIndented {
		return b.String()
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		panic(fmt.Sprintf("teachersim: indenting a record it wrote: %v", err)) // members are valid JSON
	}
	return out.String()
}
