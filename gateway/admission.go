package gateway

import (
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/understudy-dev/understudy/storage"
)

// KnownDomains lists the domains that exist when the gateway starts: the
// automatic ones among them pass the bound on new ones (admission) whatever
// it says. *storage.DB is one: its pair log holds every domain ever logged,
// while the router knows only those it was asked about or has a routing
// record of, and forgets a young domain on restart.
type KnownDomains interface {
	DomainNames(prefix string) []string
}

var _ KnownDomains = (*storage.DB)(nil)

// autoPrefix begins every automatic domain's name (Fingerprint).
const autoPrefix = "auto-"

// Reasons a new automatic domain is refused, as
// understudy_gateway_domains_refused_total labels them.
const (
	refusedRate  = "rate"  // gateway.new_domains_per_minute
	refusedTotal = "total" // gateway.max_auto_domains
)

// admission bounds the automatic domains clients can create: a client
// sending endless distinct system prompts would otherwise create a domain
// each, and every one costs memory in the router, a record and a scan in
// the pair log, and a row in the admin list.
//
// A domain it has seen (known at start, or admitted since) always passes.
// A new one is admitted while fewer than max automatic domains exist and
// the token bucket (perMinute a minute, a burst of as many) has a token;
// otherwise it is refused, and its request is answered by the teacher
// alone (see DomainResolver.Resolve). Named domains never come here: they
// are chosen by the operator or the client and not counted.
//
// It holds one name per automatic domain, at most max plus those known at
// start.
type admission struct {
	max     int
	limiter *rate.Limiter
	refused func(reason string) // counts one refusal
	log     *slog.Logger
	now     func() time.Time

	mu       sync.RWMutex
	admitted map[string]struct{}

	warnMu   sync.Mutex
	lastWarn time.Time
	since    map[string]int // refusals by reason since lastWarn
}

// warnEvery is the least time between two warnings about refusals.
const warnEvery = time.Minute

func newAdmission(max, perMinute int, known KnownDomains, refused func(string), log *slog.Logger) *admission {
	a := &admission{max: max, limiter: rate.NewLimiter(rate.Limit(float64(perMinute)/60), perMinute),
		refused: refused, log: log, now: time.Now, admitted: map[string]struct{}{}, since: map[string]int{}}
	if known != nil {
		for _, name := range known.DomainNames(autoPrefix) {
			a.admitted[name] = struct{}{}
		}
	}
	return a
}

// admit returns "" when the automatic domain name may be used, else the
// reason it is refused (refusedRate or refusedTotal).
func (a *admission) admit(name string) string {
	a.mu.RLock()
	_, ok := a.admitted[name]
	full := len(a.admitted) >= a.max
	a.mu.RUnlock()
	switch {
	case ok:
		return ""
	case full:
		return a.refuse(refusedTotal)
	}
	a.mu.Lock()
	reason := ""
	switch _, ok = a.admitted[name]; {
	case ok:
	case len(a.admitted) >= a.max:
		reason = refusedTotal
	case !a.limiter.Allow():
		reason = refusedRate
	default:
		a.admitted[name] = struct{}{}
	}
	a.mu.Unlock()
	if reason != "" {
		return a.refuse(reason)
	}
	return ""
}

// refuse counts a refusal and warns about those since the last warning,
// at most once every warnEvery.
func (a *admission) refuse(reason string) string {
	a.refused(reason)
	a.warnMu.Lock()
	defer a.warnMu.Unlock()
	a.since[reason]++
	now := a.now()
	if now.Sub(a.lastWarn) < warnEvery {
		return reason
	}
	a.mu.RLock()
	n := len(a.admitted)
	a.mu.RUnlock()
	a.log.Warn("refusing new automatic domains: their requests are answered by the teacher, not logged or learned from",
		"refused_total", a.since[refusedTotal], "refused_rate", a.since[refusedRate], "since", a.sinceText(now),
		"auto_domains", n, "max_auto_domains", a.max, "new_domains_per_minute", int(float64(a.limiter.Limit())*60+0.5),
		"hint", "a client may be putting per-request text in its system prompt; name its domain with X-Understudy-Domain or metadata.task, or raise gateway.max_auto_domains")
	a.lastWarn = now
	clear(a.since)
	return reason
}

// sinceText says since when the warning counts, "start" the first time.
func (a *admission) sinceText(now time.Time) string {
	if a.lastWarn.IsZero() {
		return "start"
	}
	return now.Sub(a.lastWarn).Round(time.Second).String() + " ago"
}
