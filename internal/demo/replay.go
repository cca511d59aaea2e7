package demo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"golang.org/x/sync/errgroup"
)

// model is the model name the replay asks for; teacher-sim answers any.
const model = "teacher-sim"

// Request is one replayed request as its client saw it: a line of the
// report's trace.
type Request struct {
	// Index is the request's place in the replay (they are sent in order).
	Index  int    `json:"index"`
	Domain string `json:"domain"`
	// Route is the gateway's X-Understudy-Route (teacher, student,
	// deferred, student-fallback), or "error" when the request failed.
	Route  string `json:"route"`
	Stream bool   `json:"stream"`
	// API is "chat" (chat completions) or "responses" (the Responses
	// API); both reach the same domain.
	API string `json:"api"`
	// Correct: the answer equals the data set's label for the text (a
	// structured domain's: is valid of its schema with every field equal).
	Correct bool `json:"correct"`
	// Valid, for a structured domain's answer, says whether it is valid
	// JSON of the schema it was asked with, and Invalid what is wrong;
	// Answer is its text and Label the data set's record (a plain answer is
	// summed up by Correct).
	Valid   *bool  `json:"valid,omitempty"`
	Invalid string `json:"invalid,omitempty"`
	Answer  string `json:"answer,omitempty"`
	Label   string `json:"label,omitempty"`
	// StartMS is when the request was sent, in milliseconds since the
	// replay began; LatencyMS is from then to the end of its response.
	StartMS   float64 `json:"start_ms"`
	LatencyMS float64 `json:"latency_ms"`
	// PromptTokens and CompletionTokens are the usage the response
	// reported.
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	// CostUSD is the teacher's price of this answer: charged when the
	// teacher answered, saved when a student did.
	CostUSD float64 `json:"cost_usd"`
	Error   string  `json:"error,omitempty"`
}

// routeError marks a failed request in the trace.
const routeError = "error"

// isStudent reports whether a route is an answer by a student.
func isStudent(route string) bool { return route == "student" || route == "student-fallback" }

// replayer sends the jobs through the gateway with the official SDK.
type replayer struct {
	client    openai.Client
	transport *http.Transport
	jobs      []job
	trace     []Request // trace[i] is written only by the worker that sent jobs[i]
	next      atomic.Int64
	start     time.Time
	prices    prices
	tally     *tally
	names     *domainNames
}

// prices are the teacher's, in dollars per million tokens.
type prices struct{ input, output float64 }

// cost is the teacher's price of a response's usage.
func (p prices) cost(prompt, completion int64) float64 {
	return (float64(prompt)*p.input + float64(completion)*p.output) / 1e6
}

func newReplayer(baseURL string, jobs []job, concurrency int, p prices, t *tally, names *domainNames) *replayer {
	tr := &http.Transport{MaxIdleConnsPerHost: concurrency, IdleConnTimeout: time.Minute}
	return &replayer{
		client: openai.NewClient(option.WithBaseURL(baseURL), option.WithAPIKey("demo"),
			option.WithMaxRetries(0), option.WithHTTPClient(&http.Client{Transport: tr})),
		transport: tr,
		jobs:      jobs,
		trace:     make([]Request, len(jobs)),
		prices:    p,
		tally:     t,
		names:     names,
	}
}

// run sends every job, concurrency at a time, in order. It returns early
// with ctx's error when ctx ends; a failed request is recorded, not fatal.
func (r *replayer) run(ctx context.Context, concurrency int) error {
	defer r.transport.CloseIdleConnections()
	r.start = time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for range concurrency {
		g.Go(func() error { return r.work(gctx) })
	}
	return g.Wait()
}

// work sends the next unsent job until none is left.
func (r *replayer) work(ctx context.Context) error {
	for {
		i := int(r.next.Add(1) - 1)
		if i >= len(r.jobs) {
			return nil
		}
		req := r.send(ctx, r.jobs[i])
		if ctx.Err() != nil {
			return fmt.Errorf("replaying: %w", ctx.Err())
		}
		r.trace[i] = req
		r.tally.add(req)
	}
}

// answer is what one response carried.
type answer struct {
	content            string
	prompt, completion int64
}

// send sends one job and describes the outcome.
func (r *replayer) send(ctx context.Context, j job) Request {
	spec := j.spec
	began := time.Now()
	var resp *http.Response
	opts := []option.RequestOption{option.WithHeader("X-Understudy-Domain", spec.domain), option.WithResponseInto(&resp)}
	params := openai.ChatCompletionNewParams{Model: model, Messages: []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage(spec.system), openai.UserMessage(j.text)}}
	rparams := responses.ResponseNewParams{Model: model, Instructions: openai.String(spec.system),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(j.text)}}
	if spec.schema != nil {
		params.ResponseFormat, rparams.Text = spec.schema.chatFormat(), spec.schema.textFormat()
	}
	var (
		a   answer
		err error
	)
	api := "chat"
	switch {
	case j.responses && j.stream:
		api = "responses"
		a, err = r.responseStream(ctx, rparams, opts)
	case j.responses:
		api = "responses"
		a, err = r.response(ctx, rparams, opts)
	case j.stream:
		a, err = r.stream(ctx, params, opts)
	default:
		a, err = r.plain(ctx, params, opts)
	}
	req := Request{Index: j.index, Domain: spec.domain, Stream: j.stream, API: api,
		StartMS: ms(began.Sub(r.start)), LatencyMS: ms(time.Since(began))}
	if err != nil {
		req.Route, req.Error = routeError, err.Error()
		return req
	}
	req.Route = routeOf(resp)
	if name := domainOf(resp); name != "" && name != spec.domain {
		r.names.set(spec.domain, name)
	}
	req.Correct = strings.EqualFold(strings.TrimSpace(a.content), strings.TrimSpace(j.label))
	if spec.schema != nil {
		_, err := spec.schema.check(a.content)
		valid := err == nil
		req.Valid, req.Answer, req.Label = &valid, a.content, j.label
		req.Correct = valid && allTrue(fieldsEqual(a.content, j.label))
		if err != nil {
			req.Invalid = err.Error()
		}
	}
	req.PromptTokens, req.CompletionTokens = a.prompt, a.completion
	req.CostUSD = r.prices.cost(a.prompt, a.completion)
	return req
}

// routeOf reads the route the gateway took.
func routeOf(resp *http.Response) string {
	if resp == nil {
		return routeError
	}
	if v := resp.Header.Get("X-Understudy-Route"); v != "" {
		return v
	}
	return "unknown"
}

// domainOf reads the gateway's name of the request's domain.
func domainOf(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	return resp.Header.Get("X-Understudy-Domain")
}

// plain sends a non-streamed chat completion.
func (r *replayer) plain(ctx context.Context, p openai.ChatCompletionNewParams, opts []option.RequestOption) (answer, error) {
	c, err := r.client.Chat.Completions.New(ctx, p, opts...)
	if err != nil {
		return answer{}, err
	}
	if len(c.Choices) == 0 {
		return answer{}, errors.New("a response without choices")
	}
	return answer{content: c.Choices[0].Message.Content, prompt: c.Usage.PromptTokens, completion: c.Usage.CompletionTokens}, nil
}

// stream sends a streamed chat completion asking for the usage chunk and
// reads it to the end.
func (r *replayer) stream(ctx context.Context, p openai.ChatCompletionNewParams, opts []option.RequestOption) (answer, error) {
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := r.client.Chat.Completions.NewStreaming(ctx, p, opts...)
	defer s.Close()
	var a answer
	for s.Next() {
		c := s.Current()
		if len(c.Choices) > 0 {
			a.content += c.Choices[0].Delta.Content
		}
		if c.Usage.TotalTokens > 0 {
			a.prompt, a.completion = c.Usage.PromptTokens, c.Usage.CompletionTokens
		}
	}
	return a, s.Err()
}

// response sends a non-streamed Responses API request.
func (r *replayer) response(ctx context.Context, p responses.ResponseNewParams, opts []option.RequestOption) (answer, error) {
	resp, err := r.client.Responses.New(ctx, p, opts...)
	if err != nil {
		return answer{}, err
	}
	return answer{content: resp.OutputText(), prompt: resp.Usage.InputTokens, completion: resp.Usage.OutputTokens}, nil
}

// responseStream sends a streamed Responses API request and reads its
// events to the end: the text from its deltas, the usage from
// response.completed.
func (r *replayer) responseStream(ctx context.Context, p responses.ResponseNewParams, opts []option.RequestOption) (answer, error) {
	s := r.client.Responses.NewStreaming(ctx, p, opts...)
	defer s.Close()
	var a answer
	completed := false
	for s.Next() {
		ev := s.Current()
		switch ev.Type {
		case "response.output_text.delta":
			a.content += ev.Delta
		case "response.completed":
			completed = true
			a.prompt, a.completion = ev.Response.Usage.InputTokens, ev.Response.Usage.OutputTokens
		}
	}
	if err := s.Err(); err != nil {
		return a, err
	}
	if !completed {
		return a, errors.New("the response stream ended without response.completed")
	}
	return a, nil
}

// ms converts a duration to fractional milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// tally is the running count per domain that the progress lines show.
type tally struct {
	mu      sync.Mutex
	done    int
	domains map[string]*domainTally
}

// recentWindow is how many of a domain's last answers the live offload
// covers.
const recentWindow = 200

// domainTally counts one domain's finished requests.
type domainTally struct {
	requests, errors, student, studentCorrect int
	saved, spent                              float64
	// recent[i%recentWindow] says whether the i-th answer was a student's.
	recent [recentWindow]bool
}

// recentOffload is the share of the last recentWindow answers (fewer at
// first) that a student gave.
func (d *domainTally) recentOffload() float64 {
	n, s := min(d.requests, recentWindow), 0
	for _, st := range d.recent[:n] {
		if st {
			s++
		}
	}
	return ratio(s, n)
}

func newTally(tasks []taskSpec) *tally {
	t := &tally{domains: map[string]*domainTally{}}
	for _, spec := range tasks {
		t.domains[spec.domain] = &domainTally{}
	}
	return t
}

// add counts a finished request.
func (t *tally) add(r Request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done++
	d := t.domains[r.Domain]
	d.recent[d.requests%recentWindow] = isStudent(r.Route)
	d.requests++
	switch {
	case r.Route == routeError:
		d.errors++
	case isStudent(r.Route):
		d.student++
		d.saved += r.CostUSD
		if r.Correct {
			d.studentCorrect++
		}
	default:
		d.spent += r.CostUSD
	}
}

// snapshot returns the total done and a copy of each domain's counts.
func (t *tally) snapshot() (int, map[string]domainTally) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]domainTally, len(t.domains))
	for k, v := range t.domains {
		out[k] = *v
	}
	return t.done, out
}
