package gateway

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/student"
)

// Router is what the gateway asks of the router: who answers, and what the
// teacher's answers say about the students.
type Router interface {
	Decide(domain string) router.Decision
	Observe(domain string, version int, s shadow.Sample)
	Count(domain string, route router.Route)
	Fallback(domain string) (*student.Model, int)
}

// Shadow scores candidate students off the request path.
type Shadow interface {
	Submit(j shadow.Job) bool
}

var (
	_ Router = (*router.Router)(nil)
	_ Shadow = (*shadow.Pool)(nil)
)

// scoring is what to score once the teacher has answered a request.
type scoring struct {
	// pred is the serving student's prediction, made before deferring.
	pred    *student.Prediction
	version int
	// candidate is scored in the shadow pool.
	candidate        *student.Model
	candidateVersion int
}

// routeRequest finds the request's domain and sends it on its route: the
// student when it serves the domain and is confident (but for a sampled
// share, still scored against the teacher), else the teacher.
func (s *Server) routeRequest(ctx *fasthttp.RequestCtx, r *Request) {
	info := infoOf(ctx)
	domain, err := s.domains.Resolve(string(ctx.Request.Header.Peek("X-Understudy-Domain")), r)
	if err != nil {
		writeError(ctx, err.(*apiError))
		return
	}
	info.domain = domain
	info.route = string(router.RouteTeacher)
	if r.Ineligible != "" || s.router == nil {
		s.proxy(ctx, info, r, nil)
		return
	}
	dec := s.router.Decide(domain)
	sc := &scoring{version: dec.Version, candidate: dec.Candidate, candidateVersion: dec.CandidateVersion}
	if dec.Student != nil {
		began := time.Now()
		p, err := dec.Student.Predict(r.Input)
		s.m.studentTime.Observe(time.Since(began).Seconds())
		if err != nil {
			s.log.Error("student prediction failed", "request_id", info.id, "domain", domain, "err", err)
		} else {
			switch {
			case dec.Pinned || (p.Confident && !dec.Sampled()):
				s.answerWithStudent(ctx, info, r, p, domain, dec.Version, router.RouteStudent)
				return
			case !p.Confident:
				info.route = string(router.RouteDeferred)
			}
			sc.pred = &p
		}
	}
	s.proxy(ctx, info, r, sc)
}

// teacherAnswered scores the students against a teacher's answer and logs
// the pair. It runs once per eligible answered request.
func (s *Server) teacherAnswered(info *reqInfo, r *Request, a answer, stream bool, sc *scoring) {
	label := s.normalizer.Label(a.text)
	if s.router != nil {
		s.router.Count(info.domain, router.Route(info.route))
	}
	s.costs.teacher(info.domain, r.Model, info.route, a.promptTokens, a.completionTokens)
	if sc != nil && label != "" {
		if sc.pred != nil {
			sample := shadow.Sample{Confident: sc.pred.Confident, Agree: sc.pred.Label == label, Teacher: label, Student: sc.pred.Label}
			s.router.Observe(info.domain, sc.version, sample)
		}
		if sc.candidate != nil && s.shadow != nil {
			s.shadow.Submit(shadow.Job{Domain: info.domain, Version: sc.candidateVersion, Model: sc.candidate, Input: r.Input, Label: label})
		}
	}
	s.logPair(info, r, a, label, stream)
}

// fallback answers with a promoted student when the teacher is down.
// It returns false when no student may answer.
func (s *Server) fallback(ctx *fasthttp.RequestCtx, info *reqInfo, r *Request) bool {
	if s.router == nil || r == nil || r.Ineligible != "" {
		return false
	}
	m, v := s.router.Fallback(info.domain)
	if m == nil {
		return false
	}
	p, err := m.Predict(r.Input)
	if err != nil {
		return false
	}
	s.answerWithStudent(ctx, info, r, p, info.domain, v, router.RouteFallback)
	return true
}

// answerWithStudent renders a student's answer as the OpenAI response the
// client asked for: a chat completion or a completion, JSON or a stream.
func (s *Server) answerWithStudent(ctx *fasthttp.RequestCtx, info *reqInfo, r *Request, p student.Prediction, domain string, version int, route router.Route) {
	info.route = string(route)
	if s.router != nil {
		s.router.Count(domain, route)
	}
	h := &ctx.Response.Header
	h.Set("X-Understudy-Student", domain+"@v"+strconv.Itoa(version))
	h.Set("X-Understudy-Confidence", strconv.FormatFloat(p.Confidence, 'f', 4, 64))
	id := "chatcmpl-" + info.id
	object := "chat.completion"
	if !r.Chat {
		id, object = "cmpl-"+info.id, "text_completion"
	}
	created := time.Now().Unix()
	usage := usageOut{PromptTokens: estimateTokens(r.System) + estimateTokens(r.Input), CompletionTokens: estimateTokens(p.Answer)}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	s.costs.student(domain, r.Model, string(route), usage.PromptTokens, usage.CompletionTokens)
	fingerprint := "understudy-" + domain + "-v" + strconv.Itoa(version)
	if !r.Stream {
		body := answerOut{ID: id, Object: object, Created: created, Model: r.Model, Usage: &usage, SystemFingerprint: fingerprint}
		c := choiceOut{Index: 0, FinishReason: ptr("stop")}
		if r.Chat {
			c.Message = &messageOut{Role: "assistant", Content: p.Answer}
		} else {
			c.Text = ptr(p.Answer)
		}
		body.Choices = []choiceOut{c}
		b, _ := json.Marshal(body)
		ctx.SetContentType("application/json")
		ctx.SetBody(b)
		return
	}
	object += ".chunk"
	if !r.Chat {
		object = "text_completion"
	}
	chunk := func(c choiceOut, u *usageOut, choices bool) []byte {
		w := answerOut{ID: id, Object: object, Created: created, Model: r.Model, SystemFingerprint: fingerprint, Usage: u}
		if choices {
			w.Choices = []choiceOut{c}
		} else {
			w.Choices = []choiceOut{}
		}
		b, _ := json.Marshal(w)
		return b
	}
	var events [][]byte
	if r.Chat {
		events = append(events,
			chunk(choiceOut{Delta: &messageOut{Role: "assistant", Content: ""}}, nil, true),
			chunk(choiceOut{Delta: &messageOut{Content: p.Answer}}, nil, true),
			chunk(choiceOut{Delta: &messageOut{}, FinishReason: ptr("stop")}, nil, true))
	} else {
		events = append(events, chunk(choiceOut{Text: ptr(p.Answer), FinishReason: ptr("stop")}, nil, true))
	}
	if r.IncludeUsage {
		events = append(events, chunk(choiceOut{}, &usage, false))
	}
	ctx.SetContentType("text/event-stream")
	h.Set("Cache-Control", "no-cache")
	for _, e := range events {
		ctx.Response.AppendBodyString("data: ")
		ctx.Response.AppendBody(e)
		ctx.Response.AppendBodyString("\n\n")
	}
	ctx.Response.AppendBodyString("data: [DONE]\n\n")
}

// The wire shapes of student answers, the fields OpenAI's SDKs read.
type answerOut struct {
	ID                string      `json:"id"`
	Object            string      `json:"object"`
	Created           int64       `json:"created"`
	Model             string      `json:"model"`
	Choices           []choiceOut `json:"choices"`
	Usage             *usageOut   `json:"usage"`
	SystemFingerprint string      `json:"system_fingerprint"`
}

type choiceOut struct {
	Index        int         `json:"index"`
	Message      *messageOut `json:"message,omitempty"`
	Delta        *messageOut `json:"delta,omitempty"`
	Text         *string     `json:"text,omitempty"`
	Logprobs     *struct{}   `json:"logprobs"`
	FinishReason *string     `json:"finish_reason"`
}

type messageOut struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content"`
}

type usageOut struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func ptr[T any](v T) *T { return &v }

// estimateTokens approximates a tokenizer: about four characters a token.
func estimateTokens(s string) int {
	if s == "" {
		return 0
	}
	return max(1, (utf8.RuneCountInString(s)+3)/4)
}
