package gateway

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/understudy-dev/understudy/internal/wire"
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
func (s *Server) routeRequest(ctx *fasthttp.RequestCtx, r *Request) error {
	info := infoOf(ctx)
	domain, err := s.domains.Resolve(string(ctx.Request.Header.Peek("X-Understudy-Domain")), r)
	if err != nil {
		return err
	}
	info.domain = domain
	info.route = string(router.RouteTeacher)
	if r.Ineligible != "" || s.router == nil {
		return s.proxy(ctx, info, r, nil)
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
				return nil
			case !p.Confident:
				info.route = string(router.RouteDeferred)
			}
			sc.pred = &p
		}
	}
	return s.proxy(ctx, info, r, sc)
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
	c := wire.Completion{ID: "chatcmpl-" + info.id, Chat: r.Chat, Created: time.Now().Unix(), Model: r.Model,
		Fingerprint:  "understudy-" + domain + "-v" + strconv.Itoa(version),
		PromptTokens: estimateTokens(r.System) + estimateTokens(r.Input), CompletionTokens: estimateTokens(p.Answer),
		IncludeUsage: r.Stream && r.IncludeUsage}
	if !r.Chat {
		c.ID = "cmpl-" + info.id
	}
	s.costs.student(domain, r.Model, string(route), c.PromptTokens, c.CompletionTokens)
	// The body is written straight into the response's own buffer.
	b := ctx.Response.SwapBody(nil)[:0]
	defer func() { ctx.Response.SwapBody(b) }()
	if !r.Stream {
		ctx.SetContentType("application/json")
		b = c.AppendJSON(b, p.Answer)
		return
	}
	ctx.SetContentType("text/event-stream")
	h.Set("Cache-Control", "no-cache")
	if r.Chat {
		b = c.AppendChunk(b, wire.ChunkRole, "")
	}
	b = c.AppendChunk(b, wire.ChunkContent, p.Answer)
	b = c.AppendChunk(b, wire.ChunkStop, "")
	if c.IncludeUsage {
		b = c.AppendChunk(b, wire.ChunkUsage, "")
	}
	b = append(b, wire.Done...)
}

// estimateTokens approximates a tokenizer: about four characters a token.
func estimateTokens(s string) int {
	if s == "" {
		return 0
	}
	return max(1, (utf8.RuneCountInString(s)+3)/4)
}
