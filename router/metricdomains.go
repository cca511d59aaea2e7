package router

import "sync"

// Names of the domains that metrics do not name one by one.
const (
	OtherDomain = "_other" // domains past the limit
	NoDomain    = "_none"  // requests without a domain (models, embeddings)
)

// MetricDomains bounds the domains that metrics name: the first Max domains
// seen keep their name, later ones fold into "_other", so an application
// sending endless distinct system prompts cannot grow the series without
// bound. It is safe for concurrent use.
type MetricDomains struct {
	max  int
	mu   sync.RWMutex
	seen map[string]struct{}
}

// DefaultMaxDomains is how many domains a Router built without Deps.Domains names
// in its metrics: the default of config's metrics.max_domains.
const DefaultMaxDomains = 50

// NewMetricDomains admits up to max domains.
func NewMetricDomains(max int) *MetricDomains {
	return &MetricDomains{max: max, seen: map[string]struct{}{}}
}

// Name returns the name a domain carries in metrics: its own, OtherDomain
// past the limit, or NoDomain for none.
func (l *MetricDomains) Name(domain string) string {
	if domain == "" {
		return NoDomain
	}
	l.mu.RLock()
	_, ok := l.seen[domain]
	n := len(l.seen)
	l.mu.RUnlock()
	if ok {
		return domain
	}
	if n >= l.max {
		return OtherDomain
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) < l.max {
		l.seen[domain] = struct{}{}
		return domain
	}
	if _, ok := l.seen[domain]; ok {
		return domain
	}
	return OtherDomain
}

// Named reports whether a domain has its own label.
func (l *MetricDomains) Named(domain string) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.seen[domain]
	return ok
}
