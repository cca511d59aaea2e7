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
	labels  *router.DomainLabels

	tokens *prometheus.CounterVec
	spend  *prometheus.CounterVec
	saved  *prometheus.CounterVec

	mu    sync.Mutex
	means map[string]*tokenMean
}

type tokenMean struct {
	n                  float64
	prompt, completion float64
	spent, saved       float64 // dollars since the start
}

func newCosts(reg prometheus.Registerer, pricing config.Pricing, labels *router.DomainLabels) *costs {
	c := &costs{pricing: pricing, labels: labels, means: map[string]*tokenMean{},
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
	d := c.labels.Label(domain)
	c.tokens.WithLabelValues(d, route, "prompt").Add(float64(prompt))
	c.tokens.WithLabelValues(d, route, "completion").Add(float64(completion))
	spent := c.price(model, float64(prompt), float64(completion))
	c.spend.WithLabelValues(d, model).Add(spent)
	c.mu.Lock()
	m := c.mean(domain)
	m.spent += spent
	m.n++
	m.prompt += (float64(prompt) - m.prompt) / m.n
	m.completion += (float64(completion) - m.completion) / m.n
	c.mu.Unlock()
}

// student counts a student answer's estimated tokens and the teacher spend
// it avoided.
func (c *costs) student(domain, model, route string, prompt, completion int) {
	d := c.labels.Label(domain)
	c.tokens.WithLabelValues(d, route, "prompt").Add(float64(prompt))
	c.tokens.WithLabelValues(d, route, "completion").Add(float64(completion))
	p, q := float64(prompt), float64(completion)
	c.mu.Lock()
	m := c.mean(domain)
	if m.n > 0 {
		p, q = m.prompt, m.completion
	}
	saved := c.price(model, p, q)
	m.saved += saved
	c.mu.Unlock()
	c.saved.WithLabelValues(d, model).Add(saved)
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
