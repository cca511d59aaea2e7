package gateway

// A student answers with what its teacher once said. When a request asks
// for a JSON answer (response_format or text.format: json_object or
// json_schema), the gateway checks the student's answer before it sends
// it: an answer that is not what the request asked for goes to the
// teacher instead, as an unconfident one does.
//
//   - json_object: the answer is one JSON object.
//   - json_schema: the answer is one JSON value that the request's schema
//     accepts (JSON Schema draft 2020-12 unless the schema names another
//     with $schema; format keywords are asserted); a json_schema format
//     without a schema is taken as json_object.
//
// In both, an answer that holds a key twice in an object is refused: JSON
// readers disagree on which copy counts.
//
// Schemas come from clients, so compiling and applying them is bounded:
//
//   - Nothing is loaded: the compiler's loader refuses every URL (http,
//     file, anything), and only the JSON Schema meta-schemas, which the
//     library embeds, are known. A $ref is followed only as a JSON pointer
//     into the request's own schema ("#", "#/$defs/x"); a schema with any
//     other reference, or with an $id below its root, is not used.
//   - A schema larger than maxSchemaBytes is not used, and one whose
//     subschemas, with every $ref expanded, number more than
//     maxSchemaCost is not either (schemaCost): a few kilobytes of $refs
//     that each refer twice to the next would otherwise take exponential
//     time on every validation. A $ref that loops back is counted once:
//     it can only repeat as deep as the answer nests, and a loop that
//     does not descend into the answer is an error the validator reports.
//   - A schema compiles once while it is cached (schemaCache): an LRU of at
//     most schemaCacheEntries schemas and schemaCacheBytes bytes of their
//     JSON, keyed by the SHA-256 of that JSON (the domain's shape carries
//     only its first six bytes). A compiled schema takes about 12 times
//     the bytes of its JSON (measured from 450 B to 100 kB), so the cache
//     holds about 24 MB at most; compiling takes from 0.1 ms (450 B) to
//     40 ms (100 kB) on one core. A schema that failed to compile is
//     cached with its error, so it is not compiled again either.
//   - Only a request a student is about to answer looks a schema up: every
//     other request's schema is hashed for its domain and passed on. A
//     domain's name carries its schema's hash, so endless new schemas make
//     endless new domains, which have no student; the schemas that reach
//     the compiler are, short of a crafted hash collision, those students
//     were trained under.
//
// An unusable schema costs a teacher answer, never a wrong one.

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/valyala/fastjson"

	"github.com/understudy-dev/understudy/internal/openai"
)

// Reasons a student's answer is not sent, as the reason label of
// understudy_student_invalid_answers_total counts them.
const (
	// invalidNotJSON: the answer is not one JSON value, or not an object
	// where one was asked for.
	invalidNotJSON = "not_json"
	// invalidDuplicateKey: an object of the answer holds a key twice.
	invalidDuplicateKey = "duplicate_key"
	// invalidSchemaMismatch: the schema refuses the answer.
	invalidSchemaMismatch = "schema_mismatch"
	// invalidBadSchema: the request's schema is not usable: it does not
	// compile, or is too large or too complex, or refers outside itself.
	invalidBadSchema = "bad_schema"
)

// The bounds on schemas; see the top of this file.
const (
	maxSchemaBytes     = 256 << 10
	maxSchemaCost      = 10_000
	schemaCacheEntries = 256
	schemaCacheBytes   = 2 << 20
)

// answerInvalid is why a student's answer may not be sent.
type answerInvalid struct {
	reason string // one of the reasons above
	err    error
}

func (e *answerInvalid) Error() string { return e.reason + ": " + e.err.Error() }

// checkAnswer returns nil when a student's answer may be sent for r's
// answer shape, else an *answerInvalid.
func (c *schemaCache) checkAnswer(r *openai.Request, answer string) error {
	shape, _ := strings.CutSuffix(r.Shape, "+tools")
	var object bool
	switch {
	case shape == "json_object", strings.HasPrefix(shape, "json_schema:") && len(r.Schema) == 0:
		object = true
	case strings.HasPrefix(shape, "json_schema:"):
	default:
		return nil // text, or a format this gateway does not know
	}
	v, err := decodeAnswer(answer, !object)
	if err != nil {
		return err
	}
	if object {
		return nil
	}
	sch, err := c.schema(r.Schema)
	if err != nil {
		return &answerInvalid{invalidBadSchema, err}
	}
	if err := sch.Validate(v); err != nil {
		return &answerInvalid{invalidSchemaMismatch, err}
	}
	return nil
}

// answerParsers are reused across answers: a fastjson parser keeps its
// memory.
var answerParsers fastjson.ParserPool

// decodeAnswer reads an answer as one JSON value and refuses an object
// that holds a key twice. With build it returns the value as the
// validator takes it (objects as map[string]any, numbers as json.Number);
// without, the answer must be an object, and nothing is built.
func decodeAnswer(answer string, build bool) (any, error) {
	// fastjson's parser is lenient (it reads "+1" as a number): the
	// standard library's validator decides what is JSON.
	if !json.Valid([]byte(answer)) {
		return nil, &answerInvalid{invalidNotJSON, errors.New("the answer is not one JSON value")}
	}
	p := answerParsers.Get()
	defer answerParsers.Put(p)
	fv, err := p.Parse(answer)
	if err != nil {
		return nil, &answerInvalid{invalidNotJSON, err}
	}
	if !build && fv.Type() != fastjson.TypeObject {
		return nil, &answerInvalid{invalidNotJSON, errors.New("the answer is not a JSON object")}
	}
	// fastjson keeps a \u escape it cannot decode (a lone surrogate) as
	// written, where encoding/json reads U+FFFD: an answer with \u escapes
	// is built by encoding/json (the validator's own reader).
	slow := build && strings.Contains(answer, `\u`)
	v, key, dup := convert(fv, build && !slow)
	if dup {
		return nil, &answerInvalid{invalidDuplicateKey, fmt.Errorf("the key %q occurs twice in one object", key)}
	}
	if slow {
		if v, err = jsonschema.UnmarshalJSON(strings.NewReader(answer)); err != nil {
			return nil, &answerInvalid{invalidNotJSON, err}
		}
	}
	return v, nil
}

// convert walks a parsed value for a key held twice by one object and,
// with build, returns it as encoding/json would decode it with UseNumber.
// fastjson bounds the nesting it parses (fastjson.MaxDepth), which bounds
// the recursion.
func convert(v *fastjson.Value, build bool) (out any, key string, dup bool) {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		m := make(map[string]any, o.Len())
		o.Visit(func(k []byte, e *fastjson.Value) {
			if dup {
				return
			}
			if _, ok := m[string(k)]; ok {
				key, dup = string(k), true
				return
			}
			var ev any
			ev, key, dup = convert(e, build)
			m[string(k)] = ev
		})
		if build {
			out = m
		}
	case fastjson.TypeArray:
		elems := v.GetArray()
		var a []any
		if build {
			a = make([]any, 0, len(elems))
		}
		for _, e := range elems {
			var ev any
			if ev, key, dup = convert(e, build); dup {
				return nil, key, dup
			}
			if build {
				a = append(a, ev)
			}
		}
		if build {
			out = a
		}
	case fastjson.TypeString:
		if build {
			out = string(v.GetStringBytes())
		}
	case fastjson.TypeNumber:
		if build {
			out = json.Number(v.MarshalTo(nil))
		}
	case fastjson.TypeTrue:
		out = true
	case fastjson.TypeFalse:
		out = false
	}
	return out, key, dup
}

// schemaCache holds compiled schemas, least recently used first out. It
// is safe for concurrent use; a schema two requests need at once is
// compiled once.
type schemaCache struct {
	maxEntries, maxBytes int

	mu    sync.Mutex
	bytes int
	lru   *list.List // of *schemaEntry, most recently used first
	by    map[[sha256.Size]byte]*list.Element
}

// schemaEntry is one schema: compiled once, by the first request that
// needs it.
type schemaEntry struct {
	key  [sha256.Size]byte
	size int
	once sync.Once
	sch  *jsonschema.Schema
	err  error
}

func newSchemaCache(maxEntries, maxBytes int) *schemaCache {
	return &schemaCache{maxEntries: maxEntries, maxBytes: maxBytes, lru: list.New(), by: map[[sha256.Size]byte]*list.Element{}}
}

// schema returns src compiled, from the cache when it can.
func (c *schemaCache) schema(src []byte) (*jsonschema.Schema, error) {
	key := sha256.Sum256(src)
	c.mu.Lock()
	el, ok := c.by[key]
	if ok {
		c.lru.MoveToFront(el)
	} else {
		el = c.lru.PushFront(&schemaEntry{key: key, size: len(src)})
		c.by[key] = el
		c.bytes += len(src)
		// The newest entry stays, even alone over maxBytes: the request
		// that brought it is using it.
		for c.lru.Len() > 1 && (c.lru.Len() > c.maxEntries || c.bytes > c.maxBytes) {
			old := c.lru.Remove(c.lru.Back()).(*schemaEntry)
			delete(c.by, old.key)
			c.bytes -= old.size
		}
	}
	e := el.Value.(*schemaEntry)
	c.mu.Unlock()
	e.once.Do(func() { e.sch, e.err = compileSchema(src) })
	return e.sch, e.err
}

// len returns how many schemas the cache holds and their bytes.
func (c *schemaCache) len() (entries, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.bytes
}

// schemaURL names the request's schema inside the compiler. Nothing is
// ever loaded from it (noLoader); a relative reference resolved against
// it could not reach anything either.
const schemaURL = "https://understudy.invalid/answer-schema.json"

// noLoader is the compiler's URL loader: it loads nothing.
type noLoader struct{}

func (noLoader) Load(u string) (any, error) {
	return nil, fmt.Errorf("not loading %s: a schema may only refer to itself", u)
}

// compileSchema compiles a request's schema, within the bounds at the top
// of this file.
func compileSchema(src []byte) (*jsonschema.Schema, error) {
	if len(src) > maxSchemaBytes {
		return nil, fmt.Errorf("the schema has %d bytes, more than the %d the gateway compiles", len(src), maxSchemaBytes)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("reading the schema: %w", err)
	}
	cost, err := schemaCost(doc)
	if err != nil {
		return nil, err
	}
	if cost > maxSchemaCost {
		return nil, fmt.Errorf("the schema expands to more than %d subschemas", maxSchemaCost)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("compiling the schema: %w", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("compiling the schema: %w", err)
	}
	return sch, nil
}

// Keywords whose values are schemas (the rest are data: not walked for
// references, though their nodes count).
var (
	schemaOne = map[string]bool{"additionalProperties": true, "propertyNames": true, "items": true, "additionalItems": true,
		"contains": true, "not": true, "if": true, "then": true, "else": true, "unevaluatedItems": true,
		"unevaluatedProperties": true, "contentSchema": true}
	schemaMap   = map[string]bool{"properties": true, "patternProperties": true, "dependentSchemas": true, "dependencies": true}
	schemaArray = map[string]bool{"allOf": true, "anyOf": true, "oneOf": true, "prefixItems": true, "items": true}
	// schemaDefs hold schemas that count only where a $ref uses them.
	schemaDefs = map[string]bool{"$defs": true, "definitions": true}
)

// errUnsupportedSchema: a schema the gateway does not apply.
var errUnsupportedSchema = errors.New("unsupported schema")

// schemaCost returns how many schema objects (and data objects and arrays
// inside them) validating against doc may visit per value of the answer:
// its tree with every $ref expanded, capped just above maxSchemaCost. A
// $ref that is not a JSON pointer into doc, and an $id below the root,
// are errUnsupportedSchema.
func schemaCost(doc any) (int, error) {
	w := costWalk{root: doc, memo: map[string]int{}, active: map[string]bool{}, budget: maxSchemaBytes}
	return w.ref("#")
}

// costWalk is schemaCost's state.
type costWalk struct {
	root   any
	memo   map[string]int  // a $ref's fragment → its expanded size
	active map[string]bool // the $refs being expanded
	budget int             // nodes the walk may still visit
}

// ref returns the expanded size of the schema a $ref names.
func (w *costWalk) ref(ref string) (int, error) {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok || frag != "" && !strings.HasPrefix(frag, "/") {
		return 0, fmt.Errorf("%w: $ref %q is not a JSON pointer into the schema", errUnsupportedSchema, ref)
	}
	if w.active[frag] {
		return 1, nil // a loop: see the top of this file
	}
	if n, ok := w.memo[frag]; ok {
		return n, nil
	}
	target, err := pointer(w.root, frag)
	if err != nil {
		return 0, fmt.Errorf("%w: $ref %q: %w", errUnsupportedSchema, ref, err)
	}
	w.active[frag] = true
	n, err := w.schema(target, frag == "")
	delete(w.active, frag)
	w.memo[frag] = n
	return n, err
}

// schema returns the expanded size of one schema.
func (w *costWalk) schema(v any, root bool) (int, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return w.data(v)
	}
	if w.budget--; w.budget < 0 {
		return 0, fmt.Errorf("%w: too large to walk", errUnsupportedSchema)
	}
	n := 1
	add := func(m int, err error) error {
		n = min(n+m, maxSchemaCost+1)
		return err
	}
	for k, e := range obj {
		var err error
		switch {
		case k == "$ref" || k == "$dynamicRef" || k == "$recursiveRef":
			s, ok := e.(string)
			if !ok {
				return 0, fmt.Errorf("%w: %s is not a string", errUnsupportedSchema, k)
			}
			err = add(w.ref(s))
		case (k == "$id" || k == "id") && !root:
			if _, ok := e.(string); ok {
				return 0, fmt.Errorf("%w: %s below the schema's root", errUnsupportedSchema, k)
			}
			err = add(w.data(e))
		case schemaDefs[k]:
			// Counted where a $ref uses them.
		case schemaArray[k] && isArray(e):
			for _, s := range e.([]any) {
				if err = add(w.schema(s, false)); err != nil {
					break
				}
			}
		case schemaOne[k]:
			err = add(w.schema(e, false))
		case schemaMap[k]:
			m, ok := e.(map[string]any)
			if !ok {
				err = add(w.data(e))
				break
			}
			for _, s := range m {
				if err = add(w.schema(s, false)); err != nil {
					break
				}
			}
		default:
			err = add(w.data(e))
		}
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// data returns the number of objects and arrays in a value no schema is
// read from.
func (w *costWalk) data(v any) (int, error) {
	var kids []any
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			kids = append(kids, e)
		}
	case []any:
		kids = v
	default:
		return 0, nil
	}
	if w.budget--; w.budget < 0 {
		return 0, fmt.Errorf("%w: too large to walk", errUnsupportedSchema)
	}
	n := 1
	for _, e := range kids {
		m, err := w.data(e)
		if err != nil {
			return 0, err
		}
		n = min(n+m, maxSchemaCost+1)
	}
	return n, nil
}

func isArray(v any) bool { _, ok := v.([]any); return ok }

// pointer resolves a URI fragment holding a JSON pointer (RFC 6901) in
// doc: "" is doc itself, "/$defs/a" its member.
func pointer(doc any, frag string) (any, error) {
	p, err := url.PathUnescape(frag)
	if err != nil {
		return nil, err
	}
	if p == "" {
		return doc, nil
	}
	v := doc
	for _, tok := range strings.Split(p[1:], "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch c := v.(type) {
		case map[string]any:
			e, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("no member %q", tok)
			}
			v = e
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("no element %q", tok)
			}
			v = c[i]
		default:
			return nil, fmt.Errorf("nothing at %q", tok)
		}
	}
	return v, nil
}
