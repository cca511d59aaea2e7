package gateway_test

// Structured answers (issue 21): a real student trained on a teacher's
// JSON answers serves requests that ask for a JSON schema, through the
// official SDK; answers that are not what the request asked for go to the
// teacher instead.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/internal/teachersim"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/student"
	"github.com/understudy-dev/understudy/trainer"
)

const triageSystem = "Triage this e-mail. Answer with a JSON object."

// triageAnswers are the teacher's answers, by the word their inputs repeat.
// Tags are in sorted order, the order a student writes them in.
var triageAnswers = map[string]string{
	"phish": `{"spam":true,"kind":"phish","meta":{"lang":"en"},"tags":["link","urgent"]}`,
	"promo": `{"spam":true,"kind":"promo","meta":{"lang":"en"},"tags":[]}`,
	"none":  `{"spam":false,"kind":"none","meta":{"lang":"fr"},"tags":["work"]}`,
}

// triageText is the i-th input whose answer is triageAnswers[word].
func triageText(word string, i int) string { return fmt.Sprintf("%s %s %s %d", word, word, word, i) }

// triageTask is what teacher-sim answers: the first 30 inputs of each kind.
var triageTask = func() teachersim.Task {
	t := teachersim.Task{Name: "triage", System: triageSystem}
	for word, answer := range triageAnswers {
		for i := range 30 {
			t.Examples = append(t.Examples, teachersim.Example{Text: triageText(word, i), Label: answer})
		}
	}
	return t
}()

// triageSchema is a strict schema the teacher's answers follow, as the
// SDKs send one: every property required, no other allowed. kinds are the
// kinds it allows.
func triageSchema(kinds ...string) map[string]any {
	return map[string]any{
		"type": "object",
		"properties": map[string]any{
			"spam": map[string]any{"type": "boolean"},
			"kind": map[string]any{"type": "string", "enum": kinds},
			"meta": map[string]any{"type": "object", "properties": map[string]any{"lang": map[string]any{"type": "string"}},
				"required": []string{"lang"}, "additionalProperties": false},
			"tags": map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
		},
		"required":             []string{"spam", "kind", "meta", "tags"},
		"additionalProperties": false,
	}
}

// triage is the record the schema describes, as a client decodes it.
type triage struct {
	Spam bool   `json:"spam"`
	Kind string `json:"kind"`
	Meta struct {
		Lang string `json:"lang"`
	} `json:"meta"`
	Tags []string `json:"tags"`
}

// triageArtifact is a real student trained on the teacher's JSON
// answers, as the trainer trains one on logged pairs: a plain softmax over
// whole records, answering with a record's most frequent raw form.
var triageArtifact = sync.OnceValues(func() (*student.Artifact, error) {
	if err := student.InitRuntime(""); err != nil {
		return nil, err
	}
	norm := student.Normalizer{FoldCase: true, StripTrailingPeriod: true}
	var ex []trainer.Example
	for i := range 120 {
		for word, answer := range triageAnswers {
			ex = append(ex, trainer.Example{Text: triageText(word, i), Answer: answer, Label: norm.Label(answer)})
		}
	}
	opts := trainer.DefaultOptions()
	opts.Featurizer.BucketBits, opts.Dim = 10, 8
	a, err := trainer.Train(context.Background(), ex, opts)
	if err != nil {
		return nil, err
	}
	a.Domain, a.Version = "mail", 1
	return a, nil
})

// triageStudent is triageArtifact loaded for serving.
var triageStudent = sync.OnceValues(func() (*student.Model, error) {
	a, err := triageArtifact()
	if err != nil {
		return nil, err
	}
	return student.Load(a, 1)
})

func loadTriageStudent(t *testing.T) *student.Model {
	t.Helper()
	m, err := triageStudent()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// format is the answer shape a structured request asks for.
type format struct {
	object bool           // json_object
	schema map[string]any // json_schema, when not nil
	raw    string         // json_schema given as raw JSON (a schema the SDK types cannot hold)
}

// structured is what a client read of one structured answer.
type structured struct {
	reply
	pieces int // content deltas of a stream
}

// askStructured sends text with the triage system prompt as one of the
// shapes (chat, chat stream, responses, responses stream, completion
// stream: completions have no response_format) asking for f, and reads the
// answer with openai-go; a chat stream through its accumulator.
func askStructured(client openai.Client, shape, text string, f format, opts ...option.RequestOption) structured {
	var resp *http.Response
	opts = append(opts, inDomain, option.WithResponseInto(&resp))
	ctx := context.Background()
	chat := openai.ChatCompletionNewParams{Model: "teacher-sim",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(triageSystem), openai.UserMessage(text)}}
	resp2 := responses.ResponseNewParams{Model: "teacher-sim", Instructions: openai.String(triageSystem),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(text)}}
	switch {
	case f.object:
		chat.ResponseFormat.OfJSONObject = &shared.ResponseFormatJSONObjectParam{}
		resp2.Text.Format.OfJSONObject = &shared.ResponseFormatJSONObjectParam{}
	case f.schema != nil || f.raw != "":
		var schema any = f.schema
		m := f.schema
		if f.raw != "" {
			schema = json.RawMessage(f.raw)
			if err := json.Unmarshal([]byte(f.raw), &m); err != nil {
				panic(err)
			}
		}
		chat.ResponseFormat.OfJSONSchema = &shared.ResponseFormatJSONSchemaParam{JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{
			Name: "triage", Strict: openai.Bool(true), Schema: schema}}
		resp2.Text.Format.OfJSONSchema = &responses.ResponseFormatTextJSONSchemaConfigParam{Name: "triage", Strict: openai.Bool(true), Schema: m}
	}
	var r structured
	switch shape {
	case "chat":
		var c *openai.ChatCompletion
		if c, r.err = client.Chat.Completions.New(ctx, chat, opts...); r.err == nil {
			r.text = c.Choices[0].Message.Content
		}
	case "chat stream":
		s := client.Chat.Completions.NewStreaming(ctx, chat, opts...)
		var acc openai.ChatCompletionAccumulator
		finished := ""
		for s.Next() {
			ch := s.Current()
			acc.AddChunk(ch)
			if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
				r.pieces++
			}
			if c, ok := acc.JustFinishedContent(); ok {
				finished = c
			}
		}
		if r.err = s.Err(); r.err == nil && len(acc.Choices) > 0 {
			r.text = acc.Choices[0].Message.Content
			if finished != r.text {
				r.err = fmt.Errorf("the accumulator finished the content as %q, holds %q", finished, r.text)
			}
		}
	case "completion stream":
		p := openai.CompletionNewParams{Model: "teacher-sim", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(text)}}
		s := client.Completions.NewStreaming(ctx, p, opts...)
		for s.Next() {
			if cp := s.Current(); len(cp.Choices) > 0 && cp.Choices[0].Text != "" {
				r.text += cp.Choices[0].Text
				r.pieces++
			}
		}
		r.err = s.Err()
	case "responses":
		var rs *responses.Response
		if rs, r.err = client.Responses.New(ctx, resp2, opts...); r.err == nil {
			r.text = rs.OutputText()
		}
	case "responses stream":
		s := client.Responses.NewStreaming(ctx, resp2, opts...)
		done := ""
		for s.Next() {
			switch ev := s.Current(); ev.Type {
			case "response.output_text.delta":
				r.text += ev.Delta
				r.pieces++
			case "response.output_text.done":
				done = ev.Text
			}
		}
		if r.err = s.Err(); r.err == nil && done != r.text {
			r.err = fmt.Errorf("the deltas make %q, the done event says %q", r.text, done)
		}
	default:
		panic(shape)
	}
	if resp != nil {
		r.header = resp.Header
		r.route = resp.Header.Get("X-Understudy-Route")
	}
	return r
}

var structuredShapes = []string{"chat", "chat stream", "responses", "responses stream"}

// TestStudentStructuredAnswers: a student trained on JSON answers answers
// a strict json_schema request with the teacher's record, byte for byte,
// which decodes into the client's type; streamed, it comes in several
// pieces that the SDK puts back together exactly, as a teacher's tokens.
// The teacher is unreachable: every answer is the student's.
func TestStudentStructuredAnswers(t *testing.T) {
	m := loadTriageStudent(t)
	rt := &fakeRouter{dec: router.Decision{State: router.Serving, Version: 1, Student: m}}
	h := startRouted(t, teachersim.Config{Tasks: []teachersim.Task{triageTask}}, deadTeacher(t), nil, rt)
	schema := format{schema: triageSchema("phish", "promo", "none")}
	for word, want := range triageAnswers {
		text := triageText(word, 7)
		for _, shape := range append(structuredShapes, "completion stream") {
			f := schema
			if shape == "completion stream" {
				f = format{}
			}
			r := askStructured(h.gw, shape, text, f)
			if r.err != nil || r.text != want || r.route != "student" {
				t.Errorf("%s, %s: %q by %q, %v; want the student's %s", word, shape, r.text, r.route, r.err, want)
				continue
			}
			var got triage
			if err := json.Unmarshal([]byte(r.text), &got); err != nil || got.Kind != word {
				t.Errorf("%s, %s: decoded %+v, %v", word, shape, got, err)
			}
			if strings.HasSuffix(shape, "stream") && r.pieces < 3 {
				t.Errorf("%s, %s: the answer came in %d pieces, want one a member or so", word, shape, r.pieces)
			}
		}
	}
	if n := h.metric("understudy_student_invalid_answers_total", nil); n != 0 {
		t.Errorf("%v answers counted invalid", n)
	}
}

// TestStudentAnswersThatDoNotFit: a confident student's answer that is not
// what the request asked for is not sent: the teacher answers, the route is
// deferred, the router gets the prediction to score (not as a uniform
// sample), and the refusal is counted by reason and logged. A pinned
// student is held to it too; a fallback student's refusal leaves the
// teacher's failure to the client. A schema naming a URL fetches nothing.
func TestStudentAnswersThatDoNotFit(t *testing.T) {
	var fetched atomic.Int32
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		fmt.Fprint(w, `{"type":"object"}`)
	}))
	defer remote.Close()
	m := loadTriageStudent(t)
	text := triageText("phish", 3)
	for _, tc := range []struct {
		name   string
		model  router.Model
		pinned bool
		f      format
		reason string
	}{
		{"schema refuses the record", m, false, format{schema: triageSchema("promo", "none")}, "schema_mismatch"},
		{"pinned, schema refuses the record", m, true, format{schema: triageSchema("promo", "none")}, "schema_mismatch"},
		{"json_object, a plain answer", &fakeModel{pred: confidentSpam}, false, format{object: true}, "not_json"},
		{"json_object, a key twice", &fakeModel{pred: student.Prediction{Label: "x", Confidence: 1,
			Answer: `{"spam":true,"kind":"phish","spam":false}`}}, false, format{object: true}, "duplicate_key"},
		{"schema that does not compile", m, false, format{raw: `{"type":"object","properties":{"kind":{"type":"string","pattern":"(?<=x)y"}}}`}, "bad_schema"},
		{"schema naming a URL", m, false, format{raw: `{"$ref":"` + remote.URL + `/triage.json"}`}, "bad_schema"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &fakeRouter{dec: router.Decision{State: router.Serving, Version: 1, Tau: 0.5, Pinned: tc.pinned, Student: tc.model}}
			if tc.pinned {
				rt.dec.State = router.PinnedStudent
			}
			h := startRouted(t, teachersim.Config{Tasks: []teachersim.Task{triageTask}}, nil, &storage.Options{}, rt)
			for _, shape := range structuredShapes {
				r := askStructured(h.gw, shape, text, tc.f)
				if r.err != nil || r.text != triageAnswers["phish"] || r.route != string(router.RouteDeferred) {
					t.Errorf("%s: %q by %q, %v; want the teacher's answer, deferred", shape, r.text, r.route, r.err)
				}
			}
			outcomes := rt.told(t, len(structuredShapes))
			for i, o := range outcomes {
				if o.Route != router.RouteDeferred || o.Version != 1 || o.Sampled || o.Student.Answer == "" || o.Teacher == "" {
					t.Errorf("outcome %d: %+v; want deferred with v1's prediction to score, not sampled", i, o)
				}
			}
			if n := h.metric("understudy_student_invalid_answers_total", map[string]string{"reason": tc.reason}); n != float64(len(structuredShapes)) {
				t.Errorf("%v answers counted %s, want %d", n, tc.reason, len(structuredShapes))
			}
			if log := h.log.String(); !strings.Contains(log, "student answer not sent") || !strings.Contains(log, "reason="+tc.reason) {
				t.Errorf("no log line for the refused answers:\n%s", log)
			}
			// The pairs are logged as deferrals: not a uniform sample.
			// (The SDK sends a chat schema given as JSON as it is, a
			// Responses one with its keys sorted: two domains, then.)
			domains := map[string]bool{}
			for _, o := range outcomes {
				domains[o.Domain] = true
			}
			var pairs []storage.Pair
			waitFor(t, func() bool {
				pairs = nil
				for d := range domains {
					pairs = append(pairs, h.pairsOf(d)...)
				}
				return len(pairs) == len(structuredShapes)
			})
			for _, p := range pairs {
				if !p.Deferred || p.Answer != triageAnswers["phish"] {
					t.Errorf("pair %+v: want the teacher's answer, marked deferred", p)
				}
			}
		})
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("the gateway fetched %d URLs a schema named", n)
	}

	t.Run("fallback", func(t *testing.T) {
		rt := &fakeRouter{dec: router.Decision{State: router.Serving, Fallback: m, FallbackVersion: 1}}
		dead := deadTeacher(t)
		edit := func(c *config.Config) {
			dead(c)
			c.Teacher.Breaker.ConsecutiveFailures, c.Teacher.Breaker.MinRequests = 1000, 1000
		}
		h := startRouted(t, teachersim.Config{Tasks: []teachersim.Task{triageTask}}, edit, nil, rt)
		for _, shape := range structuredShapes {
			r := askStructured(h.gw, shape, text, format{schema: triageSchema("promo", "none")})
			var apiErr *openai.Error
			if !errors.As(r.err, &apiErr) || apiErr.StatusCode != http.StatusBadGateway {
				t.Errorf("%s: %q by %q, %v; want the teacher's failure (502)", shape, r.text, r.route, r.err)
			}
			// The record that fits is the fallback's to give.
			if r := askStructured(h.gw, shape, text, format{schema: triageSchema("phish")}); r.err != nil || r.text != triageAnswers["phish"] || r.route != string(router.RouteFallback) {
				t.Errorf("%s, a schema the record fits: %q by %q, %v; want the fallback student's record", shape, r.text, r.route, r.err)
			}
		}
		if n := h.metric("understudy_student_invalid_answers_total", map[string]string{"reason": "schema_mismatch"}); n != float64(len(structuredShapes)) {
			t.Errorf("%v fallback answers counted schema_mismatch, want %d", n, len(structuredShapes))
		}
	})
}
