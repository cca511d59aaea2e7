package gateway_test

// The routes a student takes part in (student, deferred, fallback), driven
// through the gateway with the official SDK against a fake router and a
// fake student model: what the client gets, and what the router is told.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/internal/teachersim"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/student"
)

// fakeModel is a student that makes the same prediction for every input.
type fakeModel struct {
	pred  student.Prediction
	calls atomic.Int32
}

func (m *fakeModel) Predict(string) (student.Prediction, error) {
	m.calls.Add(1)
	return m.pred, nil
}

var _ router.Model = (*fakeModel)(nil)

// fakeRouter makes one decision for every request and records what it is
// told.
type fakeRouter struct {
	dec router.Decision

	mu       sync.Mutex
	decided  int
	outcomes []router.Outcome
}

var _ gateway.Router = (*fakeRouter)(nil)

func (r *fakeRouter) Decide(string) router.Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.decided++
	return r.dec
}

func (r *fakeRouter) Answered(o router.Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes = append(r.outcomes, o)
}

// told waits for n outcomes (a stream's comes after its last byte) and
// returns them.
func (r *fakeRouter) told(t *testing.T, n int) []router.Outcome {
	t.Helper()
	waitFor(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.outcomes) >= n
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]router.Outcome(nil), r.outcomes...)
}

const spamText = "WIN a FREE cruise, click now!!!" // teacher-sim answers "spam"

var (
	confidentSpam = student.Prediction{Label: "spam", Answer: "Spam", Confidence: 0.99, Confident: true}
	unsureHam     = student.Prediction{Label: "ham", Answer: "Ham", Confidence: 0.41, Confident: false}
	inDomain      = option.WithHeader("X-Understudy-Domain", "mail")
)

// reply is what a client read of one answer.
type reply struct {
	text         string
	usage        int64 // total tokens, 0 when no usage came
	route, model string
	err          error
	header       http.Header
}

// ask sends spamText as one of the four request shapes the student renders
// (chat or completions, JSON or stream, streams asking for usage) and
// parses the answer with openai-go.
func ask(client openai.Client, shape string, opts ...option.RequestOption) reply {
	var resp *http.Response
	opts = append(opts, inDomain, option.WithResponseInto(&resp))
	ctx := context.Background()
	chat := openai.ChatCompletionNewParams{Model: "teacher-sim",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(spamSystem), openai.UserMessage(spamText)}}
	legacy := openai.CompletionNewParams{Model: "teacher-sim", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(spamText)}}
	usage := openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	var r reply
	switch shape {
	case "chat":
		var c *openai.ChatCompletion
		if c, r.err = client.Chat.Completions.New(ctx, chat, opts...); r.err == nil {
			r.text, r.usage, r.model = c.Choices[0].Message.Content, c.Usage.TotalTokens, c.Model
		}
	case "chat stream":
		chat.StreamOptions = usage
		s := client.Chat.Completions.NewStreaming(ctx, chat, opts...)
		for s.Next() {
			ch := s.Current()
			if len(ch.Choices) > 0 {
				r.text += ch.Choices[0].Delta.Content
			}
			r.usage = max(r.usage, ch.Usage.TotalTokens)
			r.model = ch.Model
		}
		r.err = s.Err()
	case "completion":
		var cp *openai.Completion
		if cp, r.err = client.Completions.New(ctx, legacy, opts...); r.err == nil {
			r.text, r.usage, r.model = cp.Choices[0].Text, cp.Usage.TotalTokens, cp.Model
		}
	case "completion stream":
		legacy.StreamOptions = usage
		s := client.Completions.NewStreaming(ctx, legacy, opts...)
		for s.Next() {
			cp := s.Current()
			if len(cp.Choices) > 0 {
				r.text += cp.Choices[0].Text
			}
			r.usage = max(r.usage, cp.Usage.TotalTokens)
			r.model = cp.Model
		}
		r.err = s.Err()
	case "responses":
		var rs *responses.Response
		if rs, r.err = client.Responses.New(ctx, respParams, opts...); r.err == nil {
			r.text, r.usage, r.model = rs.OutputText(), rs.Usage.TotalTokens, string(rs.Model)
		}
	case "responses stream":
		s := client.Responses.NewStreaming(ctx, respParams, opts...)
		for s.Next() {
			ev := s.Current()
			r.text += ev.Delta
			if ev.Type == "response.completed" {
				r.usage, r.model = ev.Response.Usage.TotalTokens, string(ev.Response.Model)
			}
		}
		r.err = s.Err()
	default:
		panic(shape)
	}
	if resp != nil {
		r.header = resp.Header
		r.route = resp.Header.Get("X-Understudy-Route")
	}
	return r
}

// respParams asks what the chat request asks, on the Responses API.
var respParams = responses.ResponseNewParams{Model: "teacher-sim", Instructions: openai.String(spamSystem),
	Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(spamText)}}

var shapes = []string{"chat", "chat stream", "completion", "completion stream", "responses", "responses stream"}

// deadTeacher points the gateway at an address nothing listens on.
func deadTeacher(t *testing.T) func(*config.Config) {
	t.Helper()
	ln := listen(t)
	url := "http://" + ln.Addr().String() + "/v1"
	ln.Close()
	return func(c *config.Config) {
		c.Teacher.URL = url
		c.Teacher.Retries = 0
	}
}

// TestStudentRoute: a serving student that is confident, or pinned, answers
// every shape of request itself, as the SDK expects it; the teacher is not
// asked (it is unreachable here); the router is told the route.
func TestStudentRoute(t *testing.T) {
	for _, tc := range []struct {
		name string
		dec  router.Decision
		want string
	}{
		{"confident", router.Decision{State: router.Serving, Version: 3, Tau: 0.9, Student: &fakeModel{pred: confidentSpam}}, "Spam"},
		{"pinned and unsure", router.Decision{State: router.PinnedStudent, Version: 3, Tau: 0.9, Pinned: true, Student: &fakeModel{pred: unsureHam}}, "Ham"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &fakeRouter{dec: tc.dec}
			h := startRouted(t, teachersim.Config{}, deadTeacher(t), nil, rt)
			for _, shape := range shapes {
				r := ask(h.gw, shape)
				if r.err != nil || r.text != tc.want || r.route != "student" || r.model != "teacher-sim" {
					t.Errorf("%s: %q by %q (model %q), %v; want %q by the student", shape, r.text, r.route, r.model, r.err, tc.want)
					continue
				}
				if r.usage == 0 {
					t.Errorf("%s: no usage", shape)
				}
				if got := r.header.Get("X-Understudy-Student"); got != "mail@v3" {
					t.Errorf("%s: X-Understudy-Student %q, want mail@v3", shape, got)
				}
			}
			for i, o := range rt.told(t, len(shapes)) {
				if o.Domain != "mail" || o.Route != router.RouteStudent || o.Teacher != "" || o.Version != 0 {
					t.Errorf("outcome %d: %+v, want the student route of mail, nothing to score", i, o)
				}
			}
			if n := h.metric("understudy_gateway_requests_total", map[string]string{"route": "student", "code": "200"}); n != float64(len(shapes)) {
				t.Errorf("%v student requests counted, want %d", n, len(shapes))
			}
		})
	}
}

// TestDeferredRoute: a serving student unsure at the router's τ defers to
// the teacher (whatever the threshold its training chose), and a confident
// one sampled for scoring asks it too; the client gets the teacher's
// answer, the pair is logged, and the router gets the student's prediction
// beside the teacher's label to score, told whether it was sampled.
func TestDeferredRoute(t *testing.T) {
	// Confident by its training's τ, not by the router's.
	belowTau := student.Prediction{Label: "spam", Answer: "Spam", Confidence: 0.95, Confident: true}
	for _, tc := range []struct {
		name      string
		dec       router.Decision
		route     router.Route
		predicted string
		sampled   bool
	}{
		{"unsure", router.Decision{State: router.Serving, Version: 2, Tau: 0.9, Student: &fakeModel{pred: unsureHam}}, router.RouteDeferred, "ham", false},
		{"below the router's τ", router.Decision{State: router.Serving, Version: 2, Tau: 0.97, Student: &fakeModel{pred: belowTau}}, router.RouteDeferred, "spam", false},
		{"sampled", router.Decision{State: router.Serving, Version: 2, Tau: 0.9, ShadowRate: 1, Student: &fakeModel{pred: confidentSpam}}, router.RouteTeacher, "spam", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &fakeRouter{dec: tc.dec}
			h := startRouted(t, teachersim.Config{}, nil, &storage.Options{}, rt)
			for _, shape := range shapes {
				if r := ask(h.gw, shape); r.err != nil || r.text != "spam" || r.route != string(tc.route) {
					t.Errorf("%s: %q by %q, %v; want the teacher's spam by %s", shape, r.text, r.route, r.err, tc.route)
				}
			}
			for i, o := range rt.told(t, len(shapes)) {
				if o.Domain != "mail" || o.Route != tc.route || o.Teacher != "spam" || o.Input != spamText ||
					o.Version != 2 || o.Student.Label != tc.predicted || o.Sampled != tc.sampled {
					t.Errorf("outcome %d: %+v; want route %s, teacher spam, v2's prediction %s, the input", i, o, tc.route, tc.predicted)
				}
			}
			// The router is told before the pair is logged: wait for the
			// last one.
			var labels []string
			waitFor(t, func() bool {
				labels = nil
				for _, p := range h.pairsOf("mail") {
					labels = append(labels, p.Label)
				}
				return len(labels) >= len(shapes)
			})
			if fmt.Sprint(labels) != "[spam spam spam spam spam spam]" {
				t.Errorf("logged labels %v, want the teacher's spam for each request", labels)
			}
		})
	}
}

// TestFallbackRoute: when the teacher fails before answering (a server
// error, no connection, its breaker open), a domain's promoted student
// answers instead, in every shape. Without a fallback student the client
// gets the failure; an ineligible request never gets a student's answer.
func TestFallbackRoute(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sim    teachersim.Config
		dead   bool // nothing listens at the teacher's address
		trip   bool // the first failure opens the breaker
		status int  // what the client gets without a fallback
	}{
		{name: "server error", sim: teachersim.Config{ErrorRate: 1}, status: 500},
		{name: "no connection", dead: true, status: 502},
		{name: "breaker open", sim: teachersim.Config{ErrorRate: 1}, trip: true, status: 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edit := func(c *config.Config) {
				c.Teacher.Breaker.ConsecutiveFailures, c.Teacher.Breaker.MinRequests = 1000, 1000
				if tc.trip {
					c.Teacher.Breaker.ConsecutiveFailures = 1
				}
			}
			if tc.dead {
				dead := deadTeacher(t)
				edit = func(c *config.Config) {
					c.Teacher.Breaker.ConsecutiveFailures, c.Teacher.Breaker.MinRequests = 1000, 1000
					dead(c)
				}
			}
			m := &fakeModel{pred: confidentSpam}
			rt := &fakeRouter{dec: router.Decision{State: router.Serving, Fallback: m, FallbackVersion: 4}}
			h := startRouted(t, tc.sim, edit, nil, rt)
			if tc.trip {
				ask(h.gw, "chat") // trips it (and falls back)
				if s := h.metric("understudy_teacher_breaker_state", nil); s != 2 {
					t.Fatalf("breaker state %v, want 2 (open)", s)
				}
			}
			for _, shape := range shapes {
				r := ask(h.gw, shape)
				if r.err != nil || r.text != "Spam" || r.route != "student-fallback" || r.header.Get("X-Understudy-Student") != "mail@v4" {
					t.Errorf("%s: %q by %q, %v; want the fallback student's Spam", shape, r.text, r.route, r.err)
				}
			}
			for i, o := range rt.told(t, len(shapes)) {
				if o.Route != router.RouteFallback || o.Teacher != "" {
					t.Errorf("outcome %d: %+v, want the fallback route", i, o)
				}
			}

			// Ineligible (n=2): the teacher's failure reaches the client.
			calls, decided := m.calls.Load(), rt.decided
			var apiErr *openai.Error
			p := openai.ChatCompletionNewParams{Model: "teacher-sim", N: openai.Int(2),
				Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(spamSystem), openai.UserMessage(spamText)}}
			if _, err := h.gw.Chat.Completions.New(context.Background(), p, inDomain); !errors.As(err, &apiErr) || apiErr.StatusCode != tc.status {
				t.Errorf("ineligible request: %v, want the teacher's failure (%d)", err, tc.status)
			}
			if m.calls.Load() != calls || rt.decided != decided {
				t.Errorf("an ineligible request reached the router or the student")
			}

			// No fallback student: the failure reaches the client.
			rt.mu.Lock()
			rt.dec = router.Decision{State: router.Shadowing}
			n := len(rt.outcomes)
			rt.mu.Unlock()
			for _, shape := range shapes {
				r := ask(h.gw, shape)
				if !errors.As(r.err, &apiErr) || apiErr.StatusCode != tc.status {
					t.Errorf("%s without a fallback: %q, %v; want the teacher's failure (%d)", shape, r.text, r.err, tc.status)
				}
			}
			if got := rt.told(t, n); len(got) != n {
				t.Errorf("failed requests told the router: %+v", got[n:])
			}
		})
	}
}
