package student

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/understudy-dev/understudy/internal/openai"
)

// A structured answer is a JSON object. Read as a record it is flattened:
// a nested object's fields get dotted paths ("meta.lang"), every other value
// is one field. A field's value is normalized like a plain answer when it is
// a string; numbers are written in their shortest form, booleans and null as
// they are; an array of scalars is a set of tags (order and repeats do not
// count); an array holding objects or arrays is one opaque value.
//
// The record's label is its fields' normalized values as one compact JSON
// object, keys sorted: `{"kind":"spam","spam":true}`. Two answers have the
// same label when every field is equal, whatever their key order, spacing or
// case, so the shadow's agreement on labels is agreement on whole records.
//
// An answer is not a record (and is labelled as plain text) when it is not
// one JSON object, when it is empty, when a key repeats or holds a '.', or
// when the JSON nests deeper than maxRecordDepth.

// maxRecordDepth bounds how deep a record's objects nest.
const maxRecordDepth = 16

// Record is an answer read as a JSON object.
type Record struct {
	// Fields are in the answer's key order (depth first).
	Fields []Field
}

// Field is one flattened field of a record.
type Field struct {
	// Path is the field's keys joined with '.'.
	Path string
	// Value is the normalized value as compact JSON; for tags, the JSON
	// array of Tags.
	Value string
	// Raw is the value as the teacher wrote it, as compact JSON.
	Raw string
	// IsTags is set for an array of scalars.
	IsTags bool
	// Tags are the array's distinct normalized elements as JSON, sorted;
	// RawTags[i] is the first raw form of Tags[i].
	Tags, RawTags []string
}

// Record reads answer as a record; ok is false when it is not one (see
// above). A fenced answer ("```json … ```") is read inside its fence.
func (n Normalizer) Record(answer string) (rec Record, ok bool) {
	s := unfence(strings.TrimSpace(answer))
	// fastjson is lenient with numbers ("." reads as one): what is not
	// strict JSON is not a record.
	if !strings.HasPrefix(s, "{") || !json.Valid([]byte(s)) {
		return Record{}, false
	}
	var p fastjson.Parser
	v, err := p.Parse(s)
	if err != nil || v.Type() != fastjson.TypeObject {
		return Record{}, false
	}
	if !n.flatten(&rec, "", v, 0) || len(rec.Fields) == 0 {
		return Record{}, false
	}
	return rec, true
}

// unfence returns the inside of a Markdown code fence, or s.
func unfence(s string) string {
	if !strings.HasPrefix(s, "```") || !strings.HasSuffix(s, "```") || len(s) < 6 {
		return s
	}
	s = s[3 : len(s)-3]
	if i := strings.IndexByte(s, '\n'); i >= 0 && !strings.Contains(s[:i], "{") {
		s = s[i+1:] // the info string: "json"
	}
	return strings.TrimSpace(s)
}

func (n Normalizer) flatten(rec *Record, prefix string, obj *fastjson.Value, depth int) bool {
	if depth >= maxRecordDepth {
		return false
	}
	o, _ := obj.Object()
	ok := true
	seen := make(map[string]bool, o.Len())
	o.Visit(func(k []byte, v *fastjson.Value) {
		key := validUTF8(k)
		if !ok || key == "" || strings.Contains(key, ".") || seen[key] {
			ok = false
			return
		}
		seen[key] = true
		path := key
		if prefix != "" {
			path = prefix + "." + key
		}
		switch v.Type() {
		case fastjson.TypeObject:
			if sub, _ := v.Object(); sub.Len() > 0 {
				ok = n.flatten(rec, path, v, depth+1)
				return
			}
			rec.Fields = append(rec.Fields, Field{Path: path, Value: "{}", Raw: "{}"})
		case fastjson.TypeArray:
			rec.Fields = append(rec.Fields, n.arrayField(path, v))
		default:
			rec.Fields = append(rec.Fields, Field{Path: path, Value: n.scalar(v), Raw: compact(v)})
		}
	})
	return ok
}

// arrayField reads an array: tags when every element is a scalar, else one
// opaque value.
func (n Normalizer) arrayField(path string, v *fastjson.Value) Field {
	raw := compact(v)
	elems, _ := v.Array()
	f := Field{Path: path, Raw: raw, IsTags: true}
	for _, e := range elems {
		if t := e.Type(); t == fastjson.TypeObject || t == fastjson.TypeArray {
			return Field{Path: path, Value: raw, Raw: raw}
		}
		tag := n.scalar(e)
		if i, found := slices.BinarySearch(f.Tags, tag); !found {
			f.Tags = slices.Insert(f.Tags, i, tag)
			f.RawTags = slices.Insert(f.RawTags, i, compact(e))
		}
	}
	f.Value = "[" + strings.Join(f.Tags, ",") + "]"
	return f
}

// scalar returns a scalar's normalized JSON.
func (n Normalizer) scalar(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeString:
		return quote(n.text(validUTF8(v.GetStringBytes())))
	case fastjson.TypeNumber:
		return number(compact(v))
	}
	return compact(v)
}

// number returns a JSON number's canonical form: an integer that fits in
// 64 bits as written (ids above 2^53 stay distinct), any other number in
// its shortest float form, and -0 as 0.
func number(raw string) string {
	if i, err := strconv.ParseInt(raw, 10, 64); err == nil {
		return strconv.FormatInt(i, 10)
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		return raw // out of float64's range: as written
	}
	if f == 0 {
		return "0"
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// compact returns v as compact JSON. (fastjson's own MarshalTo writes
// control characters in strings Go's way, which is not JSON.)
func compact(v *fastjson.Value) string { return string(appendCompact(nil, v)) }

func appendCompact(dst []byte, v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeString:
		return openai.AppendString(dst, validUTF8(v.GetStringBytes()))
	case fastjson.TypeArray:
		dst = append(dst, '[')
		for i, e := range v.GetArray() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCompact(dst, e)
		}
		return append(dst, ']')
	case fastjson.TypeObject:
		dst = append(dst, '{')
		o, _ := v.Object()
		i := 0
		o.Visit(func(k []byte, e *fastjson.Value) {
			if i > 0 {
				dst = append(dst, ',')
			}
			i++
			dst = openai.AppendString(dst, validUTF8(k))
			dst = append(dst, ':')
			dst = appendCompact(dst, e)
		})
		return append(dst, '}')
	}
	return v.MarshalTo(dst)
}

// Label is the record's label: its normalized fields as one JSON object,
// keys sorted.
func (r Record) Label() string {
	fs := slices.Clone(r.Fields)
	slices.SortFunc(fs, func(a, b Field) int { return strings.Compare(a.Path, b.Path) })
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(quote(f.Path))
		b.WriteByte(':')
		b.WriteString(f.Value)
	}
	b.WriteByte('}')
	return b.String()
}

// Paths are the record's field paths in the answer's order.
func (r Record) Paths() []string {
	out := make([]string, len(r.Fields))
	for i, f := range r.Fields {
		out[i] = f.Path
	}
	return out
}

// LabelFields reads a record label (Record.Label) back into its fields'
// normalized values by path; ok is false for a plain label, even one that
// looks like JSON: only a label in a record label's canonical form (keys
// sorted, unique and free of '.', canonical numbers, sorted tags, no nested
// object but {}) is one.
func LabelFields(label string) (fields map[string]string, ok bool) {
	if !strings.HasPrefix(label, "{") || !json.Valid([]byte(label)) {
		return nil, false
	}
	var p fastjson.Parser
	v, err := p.Parse(label)
	if err != nil {
		return nil, false
	}
	o, err := v.Object()
	if err != nil || o.Len() == 0 {
		return nil, false
	}
	fields = make(map[string]string, o.Len())
	rec := Record{Fields: make([]Field, 0, o.Len())}
	ok = true
	o.Visit(func(k []byte, v *fastjson.Value) {
		path, value := string(k), compact(v)
		if !ok || !validPath(path) || !canonicalValue(v, value) {
			ok = false
			return
		}
		fields[path] = value
		rec.Fields = append(rec.Fields, Field{Path: path, Value: value})
	})
	if !ok || len(fields) != len(rec.Fields) || rec.Label() != label {
		return nil, false
	}
	return fields, true
}

// validPath reports whether p is a flattened path: keys joined by '.',
// none empty.
func validPath(p string) bool {
	return p != "" && !strings.HasPrefix(p, ".") && !strings.HasSuffix(p, ".") && !strings.Contains(p, "..")
}

// canonicalValue reports whether v, written as raw, is a field value as a
// record label holds it.
func canonicalValue(v *fastjson.Value, raw string) bool {
	switch v.Type() {
	case fastjson.TypeNumber:
		return number(raw) == raw
	case fastjson.TypeObject:
		return raw == "{}"
	case fastjson.TypeArray:
		elems := v.GetArray()
		for i, e := range elems {
			if t := e.Type(); t == fastjson.TypeObject || t == fastjson.TypeArray {
				return true // an opaque value, kept as written
			}
			if !canonicalValue(e, compact(e)) || i > 0 && compact(elems[i-1]) >= compact(e) {
				return false
			}
		}
	}
	return true
}

// RenderRecord writes fields as one JSON object: paths[i] holds the raw JSON
// values[i]; dotted paths nest back into objects. Paths sharing a prefix
// must be adjacent, as Record.Paths gives them.
func RenderRecord(paths, values []string) string {
	var b strings.Builder
	var open []string // the keys of the objects open below the top one
	first := []bool{true}
	for i, p := range paths {
		segs := strings.Split(p, ".")
		parents := segs[:len(segs)-1]
		common := 0
		for common < len(open) && common < len(parents) && open[common] == parents[common] {
			common++
		}
		for len(open) > common {
			b.WriteByte('}')
			open, first = open[:len(open)-1], first[:len(first)-1]
		}
		if len(open) == 0 && i == 0 {
			b.WriteByte('{')
		}
		for _, k := range parents[common:] {
			writeKey(&b, first, k)
			b.WriteByte('{')
			open, first = append(open, k), append(first, true)
		}
		writeKey(&b, first, segs[len(segs)-1])
		b.WriteString(values[i])
	}
	if len(paths) == 0 {
		b.WriteByte('{')
	}
	for range open {
		b.WriteByte('}')
	}
	b.WriteByte('}')
	return b.String()
}

// writeKey writes an object member's key, after a comma unless it is the
// innermost open object's first.
func writeKey(b *strings.Builder, first []bool, k string) {
	if top := len(first) - 1; first[top] {
		first[top] = false
	} else {
		b.WriteByte(',')
	}
	b.WriteString(quote(k))
	b.WriteByte(':')
}

// quote returns s as a JSON string literal.
func quote(s string) string { return string(openai.AppendString(nil, s)) }

// validUTF8 returns b as a string with each run of invalid UTF-8 replaced by
// U+FFFD, so a value reads the same after a round trip through JSON.
func validUTF8(b []byte) string { return strings.ToValidUTF8(string(b), "\uFFFD") }
