package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/understudy-dev/understudy/router"
)

// pollEvery is how often the monitor reads the admin API.
const pollEvery = 250 * time.Millisecond

// domainView is what the demo reads of a domain in GET /admin/domains.
type domainView struct {
	Name          string       `json:"name"`
	State         string       `json:"state"`
	Pairs         int64        `json:"pairs"`
	LatestVersion int          `json:"latest_version"`
	Routing       *router.View `json:"routing"`
	SpentDollars  float64      `json:"spent_dollars"`
	SavedDollars  float64      `json:"saved_dollars"`
}

// promotion returns the time and version of the domain's first promotion
// to serving, if it has one.
func (v domainView) promotion() (time.Time, int, bool) {
	if v.Routing == nil {
		return time.Time{}, 0, false
	}
	for _, t := range v.Routing.Transitions {
		if t.To == router.Serving && t.From != router.Serving {
			return t.Time, t.Version, true
		}
	}
	return time.Time{}, 0, false
}

// domainNames maps the demo's domains to the gateway's: a request asking
// for a JSON schema is in the domain its X-Understudy-Domain names with
// the shape appended ("spam-json.schema-1a2b3c4d"), which the gateway
// tells in its answers' X-Understudy-Domain header.
type domainNames struct {
	mu sync.Mutex
	m  map[string]string
}

// set records the gateway's name of a domain.
func (d *domainNames) set(domain, gateway string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]string{}
	}
	d.m[domain] = gateway
}

// get returns the gateway's name of a domain: the domain's own until an
// answer has told another.
func (d *domainNames) get(domain string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if g, ok := d.m[domain]; ok {
		return g
	}
	return domain
}

// monitor polls the gateway's admin API for the domains' routing state.
type monitor struct {
	url    string
	client *http.Client
	names  *domainNames

	mu    sync.Mutex
	views map[string]domainView
	// promoted keeps each domain's first promotion: the admin API lists
	// only a domain's last transitions.
	promoted map[string]promotion
	err      error // the last poll's error, nil once one succeeds
}

// promotion is when a domain's student was first promoted.
type promotion struct {
	at      time.Time
	version int
}

func newMonitor(adminAddr string, names *domainNames) *monitor {
	return &monitor{url: "http://" + adminAddr + "/admin/domains", client: &http.Client{Timeout: 5 * time.Second},
		names: names, views: map[string]domainView{}, promoted: map[string]promotion{}}
}

// run polls until ctx ends. Failed polls are kept for the progress lines,
// not fatal: the replay is what matters.
func (m *monitor) run(ctx context.Context) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		m.poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// poll reads the admin API once.
func (m *monitor) poll(ctx context.Context) {
	views, err := m.fetch(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
	for _, v := range views {
		m.views[v.Name] = v
		if at, version, ok := v.promotion(); ok {
			if _, seen := m.promoted[v.Name]; !seen {
				m.promoted[v.Name] = promotion{at: at, version: version}
			}
		}
	}
}

// fetch GETs /admin/domains.
func (m *monitor) fetch(ctx context.Context) ([]domainView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the admin API: %w", err)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the admin API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading the admin API: %s", resp.Status)
	}
	var body struct {
		Domains []domainView `json:"domains"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decoding the admin API's domains: %w", err)
	}
	return body.Domains, nil
}

// view returns the last view of a domain of the demo's (zero before the
// gateway has seen it) and its first promotion, if any.
func (m *monitor) view(domain string) (domainView, promotion, bool) {
	domain = m.names.get(domain)
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.promoted[domain]
	return m.views[domain], p, ok
}
