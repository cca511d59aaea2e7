package gateway

import (
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/understudy-dev/understudy/internal/openai"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/student"
)

// Router is what the gateway asks of the router: who answers a request,
// and, once it is answered, how.
type Router interface {
	Decide(domain string) router.Decision
	// Answered counts the route and hands the teacher's label to the
	// router, which scores its students with it. It must not block.
	Answered(o router.Outcome)
}

var _ Router = (*router.Router)(nil)

// chatCompletions handles POST /v1/chat/completions.
func (s *Server) chatCompletions(ctx *fasthttp.RequestCtx) error {
	r, err := openai.ParseChatRequest(ctx.PostBody())
	if err != nil {
		return err
	}
	return s.completion(ctx, r)
}

// completions handles POST /v1/completions.
func (s *Server) completions(ctx *fasthttp.RequestCtx) error {
	r, err := openai.ParseCompletionRequest(ctx.PostBody())
	if err != nil {
		return err
	}
	return s.completion(ctx, r)
}

// completion finds the request's domain and sends it on its route: the
// student when it serves the domain and is confident (but for a sampled
// share, still scored against the teacher), else the teacher; when the
// teacher fails before answering, the domain's promoted student if it may
// fall back. Ineligible requests go to the teacher alone. A student's
// answer is sent only if it is the answer the request asked for
// (answerFits): else the teacher answers, or, when the teacher failed,
// the client gets its failure.
func (s *Server) completion(ctx *fasthttp.RequestCtx, r *openai.Request) error {
	info := infoOf(ctx)
	domain, err := s.domains.Resolve(string(ctx.Request.Header.Peek("X-Understudy-Domain")), r)
	if err != nil {
		return err
	}
	info.domain = domain
	info.route = string(router.RouteTeacher)
	if r.Ineligible != "" {
		if reason, ok := strings.CutPrefix(r.Ineligible, "domain_refused:"); ok {
			// Past the bound on new automatic domains: say so, since
			// the request has no domain to show.
			ctx.Response.Header.Set("X-Understudy-Domain-Refused", reason)
		}
		return s.askTeacher(ctx, info, teacherCall{stream: r.Stream, body: r.Forward})
	}
	var dec router.Decision
	if s.router != nil {
		dec = s.router.Decide(domain)
	}
	o := router.Outcome{Domain: domain, Input: r.Input}
	if dec.Student != nil {
		began := time.Now()
		p, err := dec.Student.Predict(r.Input)
		s.m.studentTime.Observe(time.Since(began).Seconds())
		if err != nil {
			s.log.Error("student prediction failed", "request_id", info.id, "domain", domain, "err", err)
		} else {
			// The shadow sample is drawn whatever the confidence, so
			// that the gate's evidence about the serving version is
			// unbiased (router.Decision.Sampled).
			sampled, confident := dec.Sampled(), p.Confidence >= dec.Tau
			switch {
			case dec.Pinned || (confident && !sampled):
				if s.studentAnswers(ctx, info, r, p, dec.Version, router.RouteStudent) {
					return nil
				}
				// Not the answer asked for: the teacher answers, as for
				// an unconfident student, and not as a uniform sample.
				sampled = false
				info.route = string(router.RouteDeferred)
			case !confident:
				info.route = string(router.RouteDeferred)
			}
			o.Student, o.Version, o.Sampled = p, dec.Version, sampled
		}
	}
	err = s.askTeacher(ctx, info, teacherCall{stream: r.Stream, api: r.Endpoint, body: r.Forward, spare: dec.Fallback != nil,
		answered: func(a openai.Answer, stream bool) { s.teacherAnswered(info, r, a, stream, o) }})
	if err == nil || dec.Fallback == nil {
		return err
	}
	p, perr := dec.Fallback.Predict(r.Input)
	if perr != nil {
		s.log.Error("fallback student prediction failed", "request_id", info.id, "domain", domain, "err", perr)
		return err
	}
	if !s.studentAnswers(ctx, info, r, p, dec.FallbackVersion, router.RouteFallback) {
		return err
	}
	return nil
}

// answerFits reports whether a student's answer follows the answer shape
// the request asked for (checkAnswer, schema.go). When it does not, it
// counts the answer and logs why, at most once a second per reason.
func (s *Server) answerFits(info *reqInfo, r *openai.Request, answer string) bool {
	err := s.schemas.checkAnswer(r, answer)
	if err == nil {
		return true
	}
	reason := invalidNotJSON
	var inv *answerInvalid
	if errors.As(err, &inv) {
		reason = inv.reason
	}
	s.m.studentInvalid.WithLabelValues(s.metricDomains.Name(info.domain), reason).Inc()
	msg := err.Error()
	if len(msg) > 300 {
		msg = strings.ToValidUTF8(msg[:300], "") + "…"
	}
	s.invalids.warn(reason, "student answer not sent: it is not the answer the request asked for",
		"request_id", info.id, "domain", info.domain, "err", msg)
	return false
}

// teacherAnswered counts what a teacher's answer to an eligible request
// cost, tells the router, and logs the pair.
func (s *Server) teacherAnswered(info *reqInfo, r *openai.Request, a openai.Answer, stream bool, o router.Outcome) {
	label := s.normalizer.Label(a.Text)
	s.costs.teacher(info.domain, r.Model, info.route, a.PromptTokens, a.CompletionTokens)
	if s.router != nil {
		o.Route, o.Teacher = router.Route(info.route), label
		s.router.Answered(o)
	}
	s.logPair(info, r, a, label, stream, o.Version != 0 && !o.Sampled)
}

// studentAnswers answers with a student and tells the router, if the
// student's answer is the answer the request asked for (answerFits): every
// route on which a student answers goes through it. It reports whether the
// student answered; when it did not, nothing reached the client.
func (s *Server) studentAnswers(ctx *fasthttp.RequestCtx, info *reqInfo, r *openai.Request, p student.Prediction, version int, route router.Route) bool {
	if !s.answerFits(info, r, p.Answer) {
		return false
	}
	s.answerWithStudent(ctx, info, r, p, version, route)
	s.router.Answered(router.Outcome{Domain: info.domain, Route: route})
	return true
}

// answerWithStudent renders a student's answer as the OpenAI response the
// client asked for: a chat completion, a completion or a Response, JSON or
// a stream. A stream carries the answer in pieces (openai.Pieces), one a
// chunk, as a teacher streams its tokens: a client that shows or parses
// the answer as it arrives (a partial JSON reader, say) sees what it would
// see from the teacher. The whole stream is written at once: the answer
// is there before the first byte goes out.
func (s *Server) answerWithStudent(ctx *fasthttp.RequestCtx, info *reqInfo, r *openai.Request, p student.Prediction, version int, route router.Route) {
	info.route = string(route)
	domain := info.domain
	h := &ctx.Response.Header
	h.Set("X-Understudy-Student", domain+"@v"+strconv.Itoa(version))
	h.Set("X-Understudy-Confidence", strconv.FormatFloat(p.Confidence, 'f', 4, 64))
	promptTokens, completionTokens := estimateTokens(r.System)+estimateTokens(r.Input), estimateTokens(p.Answer)
	s.costs.student(domain, r.Model, string(route), promptTokens, completionTokens)
	if r.Endpoint == openai.ResponsesAPI {
		s.studentResponse(ctx, info, r, p.Answer, promptTokens, completionTokens)
		return
	}
	c := openai.Completion{ID: "chatcmpl-" + info.id, Chat: r.Endpoint == openai.Chat, Created: time.Now().Unix(), Model: r.Model,
		Fingerprint:  "understudy-" + domain + "-v" + strconv.Itoa(version),
		PromptTokens: promptTokens, CompletionTokens: completionTokens,
		IncludeUsage: r.Stream && r.IncludeUsage}
	if !c.Chat {
		c.ID = "cmpl-" + info.id
	}
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
	if c.Chat {
		b = c.AppendChunk(b, openai.ChunkRole, "")
	}
	for piece := range openai.Pieces(p.Answer) {
		b = c.AppendChunk(b, openai.ChunkContent, piece)
	}
	b = c.AppendChunk(b, openai.ChunkStop, "")
	if c.IncludeUsage {
		b = c.AppendChunk(b, openai.ChunkUsage, "")
	}
	b = append(b, openai.Done...)
}

// estimateTokens approximates a tokenizer: about four characters a token.
func estimateTokens(s string) int {
	if s == "" {
		return 0
	}
	return max(1, (utf8.RuneCountInString(s)+3)/4)
}
