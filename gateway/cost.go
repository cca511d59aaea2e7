package gateway

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/router"
)

// costs counts tokens and money: what the teacher's answers cost, and what
// student answers saved, priced at the domain's mean teacher tokens per
// answer (the student's own token estimate until the teacher has answered
// once since the start).
type costs struct {
	pricing config.Pricing
	domains *router.MetricDomains

	tokens *prometheus.CounterVec
	spend  *prometheus.CounterVec
	saved  *prometheus.CounterVec

	mu    sync.Mutex
	means map[string]*tokenMean
	// series caches the counters of each label combination seen:
	// WithLabelValues hashes its labels on every call, three times per
	// answer. It holds what the vectors hold, no more.
	series map[seriesKey]*costSeries
	// models are the model label values admitted so far: the model is
	// whatever the client sent, and a student answers any of them.
	models map[string]bool
}

// maxModelLabels bounds the model label of the cost metrics: the first
// ones seen keep their name, later ones count under otherModel.
const (
	maxModelLabels = 64
	otherModel     = "_other"
)

type seriesKey struct {
	domain, route, model string
	student              bool // dollars are saved, not spent
}

type costSeries struct {
	prompt, completion, dollars prometheus.Counter
}

// seriesOf returns the counters of a domain label, route and model for a
// teacher or a student answer; c.mu must be held.
func (c *costs) seriesOf(d, route, model string, student bool) *costSeries {
	if !c.models[model] {
		if len(c.models) >= maxModelLabels {
			model = otherModel
		} else {
			c.models[model] = true
		}
	}
	k := seriesKey{d, route, model, student}
	cs := c.series[k]
	if cs == nil {
		dollars := c.spend
		if student {
			dollars = c.saved
		}
		cs = &costSeries{
			prompt:     c.tokens.WithLabelValues(d, route, "prompt"),
			completion: c.tokens.WithLabelValues(d, route, "completion"),
			dollars:    dollars.WithLabelValues(d, model),
		}
		c.series[k] = cs
	}
	return cs
}

type tokenMean struct {
	n                  float64
	prompt, completion float64
	spent, saved       float64 // dollars since the start
}

func newCosts(reg prometheus.Registerer, pricing config.Pricing, domains *router.MetricDomains) *costs {
	c := &costs{pricing: pricing, domains: domains, means: map[string]*tokenMean{}, series: map[seriesKey]*costSeries{}, models: map[string]bool{},
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "understudy", Name: "tokens_total",
			Help: "Tokens by domain, route and kind (prompt, completion); the teacher's from its usage, the student's estimated.",
		}, []string{"domain", "route", "kind"}),
		spend: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "teacher", Name: "spend_dollars_total",
			Help: "What the teacher's answers cost, in US dollars, at the configured prices.",
		}, []string{"domain", "model"}),
		saved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "understudy", Name: "saved_dollars_total",
			Help: "Estimated teacher spend avoided by student answers, in US dollars.",
		}, []string{"domain", "model"}),
	}
	reg.MustRegister(c.tokens, c.spend, c.saved)
	return c
}

func (c *costs) price(model string, prompt, completion float64) float64 {
	p := c.pricing.Of(model)
	return (prompt*p.Input + completion*p.Output) / 1e6
}

// teacher counts a teacher answer's tokens and cost.
func (c *costs) teacher(domain, model, route string, prompt, completion int) {
	d := c.domains.Name(domain)
	spent := c.price(model, float64(prompt), float64(completion))
	c.mu.Lock()
	cs := c.seriesOf(d, route, model, false)
	m := c.mean(domain)
	m.spent += spent
	m.n++
	m.prompt += (float64(prompt) - m.prompt) / m.n
	m.completion += (float64(completion) - m.completion) / m.n
	c.mu.Unlock()
	cs.prompt.Add(float64(prompt))
	cs.completion.Add(float64(completion))
	cs.dollars.Add(spent)
}

// student counts a student answer's estimated tokens and the teacher spend
// it avoided.
func (c *costs) student(domain, model, route string, prompt, completion int) {
	d := c.domains.Name(domain)
	p, q := float64(prompt), float64(completion)
	c.mu.Lock()
	cs := c.seriesOf(d, route, model, true)
	m := c.mean(domain)
	if m.n > 0 {
		p, q = m.prompt, m.completion
	}
	saved := c.price(model, p, q)
	m.saved += saved
	c.mu.Unlock()
	cs.prompt.Add(float64(prompt))
	cs.completion.Add(float64(completion))
	cs.dollars.Add(saved)
}

// mean returns a domain's running figures; c.mu must be held.
func (c *costs) mean(domain string) *tokenMean {
	m := c.means[domain]
	if m == nil {
		m = &tokenMean{}
		c.means[domain] = m
	}
	return m
}

// Costs returns what a domain's teacher answers cost and what its student
// answers saved since the process started, in US dollars.
func (s *Server) Costs(domain string) (spent, saved float64) {
	s.costs.mu.Lock()
	defer s.costs.mu.Unlock()
	if m := s.costs.means[domain]; m != nil {
		return m.spent, m.saved
	}
	return 0, 0
}
