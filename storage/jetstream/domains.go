package jetstream

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/understudy-dev/understudy/storage"
)

// Domain records. Each domain has one record in the <prefix>_domains
// bucket, shared by the replicas: when it was first and last logged, how
// many pairs were ever logged, its label counts and its settings. The
// publisher adds each acknowledged batch to the records of its domains
// by compare-and-set on the record's revision, so that replicas logging
// into one domain add up exactly; a watch keeps every replica's copy of
// all records (the index) current, for Summaries and ChangedSince.
//
// What the stream holds now is not in the records: the servers remove
// pairs by the stream's limits without a word. Pairs (stored now) is the
// stream's count of the domain's subject: exact in Domain (read then),
// and in Summaries and ChangedSince as read every RefreshInterval plus
// the pairs logged since, at most the cap (a pair expired by TTL shows at
// the next refresh, as a Badger pair does at the next retention pass).
//
// Label counts are of the pairs logged, kept for up to maxLabels labels
// of up to maxLabelLen bytes (pairs of the others count in Unlisted only):
// once the stream removed some of a domain's pairs they are scaled down
// to the pairs stored, in proportion. So they are exact until retention
// removes pairs, then approximate: exact for a domain of one label, off
// where the labels' shares changed over time.
type record struct {
	FirstSeen time.Time         `json:"first_seen"`
	LastSeen  time.Time         `json:"last_seen"`
	Logged    int64             `json:"logged"`
	Labels    map[string]int64  `json:"labels,omitempty"`
	Unlisted  int64             `json:"unlisted,omitempty"`
	Settings  map[string]string `json:"settings,omitempty"`
}

const (
	// maxLabels is the trainer's limit of a closed label space: every
	// label of a domain a student can learn is counted.
	maxLabels = 512
	// maxLabelLen keeps a record (and its KV message) small: an
	// open-ended domain's answers are counted, not listed.
	maxLabelLen = 128
)

func (r *record) clone() record {
	c := *r
	c.Labels = cloneMap(r.Labels)
	c.Settings = cloneMap(r.Settings)
	return c
}

func cloneMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return nil
	}
	c := make(map[string]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// delta is what one replica acknowledged of a domain and has not yet
// added to its record.
type delta struct {
	n           int64
	first, last time.Time
	labels      map[string]int64
}

func (d *delta) add(p *storage.Pair) {
	if d.n == 0 || p.Time.Before(d.first) {
		d.first = p.Time
	}
	if d.n == 0 || p.Time.After(d.last) {
		d.last = p.Time
	}
	d.n++
	if d.labels == nil {
		d.labels = make(map[string]int64)
	}
	d.labels[p.Label]++
}

// add adds d to the record, which must be a clone.
func (r *record) add(d *delta) {
	if r.FirstSeen.IsZero() || d.first.Before(r.FirstSeen) {
		r.FirstSeen = d.first
	}
	if d.last.After(r.LastSeen) {
		r.LastSeen = d.last
	}
	r.Logged += d.n
	for l, c := range d.labels {
		switch _, ok := r.Labels[l]; {
		case ok:
			r.Labels[l] += c
		case len(l) > maxLabelLen || len(r.Labels) >= maxLabels:
			r.Unlisted += c
		default:
			if r.Labels == nil {
				r.Labels = make(map[string]int64)
			}
			r.Labels[l] = c
		}
	}
}

// index is this replica's copy of every domain record, with the stored
// counts last read from the stream and the order of the last changes.
type index struct {
	mu      sync.Mutex
	domains map[string]*entry
	order   list.List // of *entry, by mark, oldest first
	seq     uint64    // the last mark
}

type entry struct {
	name     string
	rec      record
	rev      uint64 // the record's KV revision
	stored   int64  // the subject's pairs at the last refresh
	loggedAt int64  // rec.Logged at the last refresh
	mark     uint64
	elem     *list.Element
}

func (ix *index) init() {
	ix.domains = make(map[string]*entry)
	ix.order.Init()
}

// apply takes a record at revision rev, unless a newer one is known; a
// taken record marks the domain changed. Caller holds ix.mu.
func (ix *index) apply(name string, rec record, rev uint64) {
	e := ix.domains[name]
	if e == nil {
		e = &entry{name: name}
		ix.domains[name] = e
	} else if e.rev >= rev {
		return
	}
	e.rec, e.rev = rec, rev
	ix.seq++
	e.mark = ix.seq
	if e.elem == nil {
		e.elem = ix.order.PushBack(e)
	} else {
		ix.order.MoveToBack(e.elem)
	}
}

func (ix *index) remove(name string) {
	if e := ix.domains[name]; e != nil {
		ix.order.Remove(e.elem)
		delete(ix.domains, name)
	}
}

// get returns a clone of a domain's record and its revision (0: none).
func (ix *index) get(name string) (record, uint64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.domains[name]; e != nil {
		return e.rec.clone(), e.rev
	}
	return record{}, 0
}

// pairs is the domain's stored pairs: as last read from the stream,
// plus those logged since, at most the cap.
func (e *entry) pairs(maxPerDomain int) int64 {
	n := e.stored + max(e.rec.Logged-e.loggedAt, 0)
	if maxPerDomain > 0 {
		n = min(n, int64(maxPerDomain))
	}
	return n
}

func (e *entry) summary(maxPerDomain int) storage.Domain {
	d := storage.Domain{Name: e.name, FirstSeen: e.rec.FirstSeen, LastSeen: e.rec.LastSeen,
		Pairs: e.pairs(maxPerDomain), Logged: e.rec.Logged, Settings: cloneMap(e.rec.Settings)}
	if d.Settings == nil {
		d.Settings = map[string]string{}
	}
	return d
}

// withLabels is summary with the label counts, scaled to the pairs stored.
func (e *entry) withLabels(maxPerDomain int) storage.Domain {
	d := e.summary(maxPerDomain)
	d.Labels = scaledLabels(e.rec, d.Pairs)
	return d
}

// scaledLabels returns the record's label counts, scaled down in
// proportion when fewer pairs are stored than were counted.
func scaledLabels(rec record, stored int64) map[string]int64 {
	total := rec.Unlisted
	for _, c := range rec.Labels {
		total += c
	}
	out := make(map[string]int64, len(rec.Labels))
	for l, c := range rec.Labels {
		if total > stored {
			c = (c*stored + total/2) / total
		}
		if c > 0 {
			out[l] = c
		}
	}
	return out
}

// decodeEntry applies a watched or read KV entry of the domains bucket.
// Caller holds ix.mu.
func (ix *index) decodeEntry(e njs.KeyValueEntry) error {
	name := domainOf(e.Key())
	if e.Operation() != njs.KeyValuePut {
		ix.remove(name)
		return nil
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return fmt.Errorf("decoding the record of domain %s: %w", name, err)
	}
	ix.apply(name, rec, e.Revision())
	return nil
}

// startDomainWatch reads every domain record (until ctx ends) and keeps
// following the bucket in a goroutine that Close stops.
func (s *Store) startDomainWatch(ctx context.Context) error {
	w, err := s.kvDom.WatchAll(s.ctx)
	if err != nil {
		return err
	}
	ready := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.follow(s.ctx, s.kvDom, w, ready, func(e njs.KeyValueEntry) bool {
			s.idx.mu.Lock()
			err := s.idx.decodeEntry(e)
			s.idx.mu.Unlock()
			if err != nil {
				s.log.Warn("pair log: skipping a domain record", "err", err)
			}
			return true
		})
	}()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RefreshCounts reads from the stream how many pairs each domain holds
// now (the servers remove them by TTL and cap without telling), for
// Summaries and ChangedSince. It runs every RefreshInterval, in Domains,
// and is exported for whoever must see an expiry at once (tests, tools).
func (s *Store) RefreshCounts(ctx context.Context) error {
	if s.isClosed() {
		return fmt.Errorf("reading the stored pair counts: %w", storage.ErrClosed)
	}
	info, err := s.stream.Info(ctx, njs.WithSubjectFilter(s.names.pairSubject+">"))
	if err != nil {
		return fmt.Errorf("reading the stored pair counts: %w", s.closedErr(err))
	}
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	for name, e := range s.idx.domains {
		e.stored = int64(info.State.Subjects[s.names.subject(name)])
		e.loggedAt = e.rec.Logged
	}
	return nil
}

func (s *Store) runRefresh() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.RefreshInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(s.ctx, s.opts.Timeout)
			err := s.RefreshCounts(ctx)
			cancel()
			switch {
			case err != nil && !failing && !s.isClosed():
				s.log.Warn("pair log: could not read the stored pair counts; they may show expired pairs until it can", "err", err)
				failing = true
			case err == nil:
				failing = false
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// Summaries returns every domain, sorted by name, without its label
// counts (Labels is nil), from memory: the records as last watched and
// the stored counts as estimated (see record).
func (s *Store) Summaries() ([]storage.Domain, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("listing domains: %w", storage.ErrClosed)
	}
	return s.listDomains((*entry).summary), nil
}

// listDomains returns every domain of the index as view makes it, sorted
// by name.
func (s *Store) listDomains(view func(e *entry, maxPerDomain int) storage.Domain) []storage.Domain {
	s.idx.mu.Lock()
	out := make([]storage.Domain, 0, len(s.idx.domains))
	for _, e := range s.idx.domains {
		out = append(out, view(e, s.opts.MaxPairsPerDomain))
	}
	s.idx.mu.Unlock()
	sortDomains(out)
	return out
}

func sortDomains(ds []storage.Domain) {
	sort.Slice(ds, func(i, j int) bool { return ds[i].Name < ds[j].Name })
}

// Domains returns every domain with its label counts, sorted by name,
// after reading the stored counts from the stream.
func (s *Store) Domains() ([]storage.Domain, error) {
	ctx, cancel, err := s.call(1)
	if err != nil {
		return nil, fmt.Errorf("listing domains: %w", err)
	}
	defer cancel()
	if err := s.RefreshCounts(ctx); err != nil {
		return nil, fmt.Errorf("listing domains: %w", err)
	}
	return s.listDomains((*entry).withLabels), nil
}

// Domain returns one domain, its record read from the bucket and its
// stored pairs counted by the stream now; ErrNotFound when it was never
// logged.
func (s *Store) Domain(name string) (storage.Domain, error) {
	if !storage.ValidDomain(name) {
		return storage.Domain{}, fmt.Errorf("reading domain %q: %w", name, storage.ErrNotFound)
	}
	ctx, cancel, err := s.call(1)
	if err != nil {
		return storage.Domain{}, fmt.Errorf("reading domain %s: %w", name, err)
	}
	defer cancel()
	kve, err := s.kvDom.Get(ctx, token(name))
	if errors.Is(err, njs.ErrKeyNotFound) {
		return storage.Domain{}, fmt.Errorf("reading domain %s: %w", name, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Domain{}, fmt.Errorf("reading domain %s: %w", name, s.closedErr(err))
	}
	subject := s.names.subject(name)
	info, err := s.stream.Info(ctx, njs.WithSubjectFilter(subject))
	if err != nil {
		return storage.Domain{}, fmt.Errorf("reading domain %s: counting its pairs: %w", name, s.closedErr(err))
	}
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	if err := s.idx.decodeEntry(kve); err != nil {
		return storage.Domain{}, fmt.Errorf("reading domain %s: %w", name, err)
	}
	// The watch may hold a newer record than the one just read: it is
	// kept, and the count is the stream's now either way.
	e := s.idx.domains[name]
	if e == nil {
		return storage.Domain{}, fmt.Errorf("reading domain %s: %w", name, storage.ErrNotFound)
	}
	e.stored, e.loggedAt = int64(info.State.Subjects[subject]), e.rec.Logged
	return e.withLabels(s.opts.MaxPairsPerDomain), nil
}

// ChangedSince returns, as Summaries does, the domains whose counts or
// settings changed since the call that returned cursor, and the cursor to
// pass next time; cursor 0 returns every domain. A change is a new record
// of the domain: pairs of any replica counted, or a setting stored. Its
// cost is in proportion to the domains returned. Stored counts lowered by
// the stream's limits are not a change, as retention is not for Badger.
func (s *Store) ChangedSince(cursor uint64) ([]storage.Domain, uint64, error) {
	if s.isClosed() {
		return nil, cursor, fmt.Errorf("listing changed domains: %w", storage.ErrClosed)
	}
	s.idx.mu.Lock()
	next := s.idx.seq + 1
	var out []storage.Domain
	if cursor == 0 {
		out = make([]storage.Domain, 0, len(s.idx.domains))
		for _, e := range s.idx.domains {
			out = append(out, e.summary(s.opts.MaxPairsPerDomain))
		}
	} else {
		for el := s.idx.order.Back(); el != nil; el = el.Prev() {
			e := el.Value.(*entry)
			if e.mark < cursor {
				break
			}
			out = append(out, e.summary(s.opts.MaxPairsPerDomain))
		}
	}
	s.idx.mu.Unlock()
	sortDomains(out)
	return out, next, nil
}

// maxCAS bounds the compare-and-set attempts of one record update.
const maxCAS = 50

// SetDomainSetting sets one free-form setting of a domain; an empty value
// removes it. ErrNotFound when the domain was never logged.
func (s *Store) SetDomainSetting(name, key, value string) error {
	if !storage.ValidDomain(name) {
		return fmt.Errorf("updating domain %q: %w", name, storage.ErrNotFound)
	}
	if key == "" {
		return fmt.Errorf("setting a setting of domain %s: empty key", name)
	}
	ctx, cancel, err := s.call(1)
	if err != nil {
		return fmt.Errorf("updating domain %s: %w", name, err)
	}
	defer cancel()
	for range maxCAS {
		kve, err := s.kvDom.Get(ctx, token(name))
		if errors.Is(err, njs.ErrKeyNotFound) {
			return fmt.Errorf("updating domain %s: %w", name, storage.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("updating domain %s: %w", name, s.closedErr(err))
		}
		var rec record
		if err := json.Unmarshal(kve.Value(), &rec); err != nil {
			return fmt.Errorf("updating domain %s: decoding its record: %w", name, err)
		}
		if value == "" {
			delete(rec.Settings, key)
		} else {
			if rec.Settings == nil {
				rec.Settings = make(map[string]string)
			}
			rec.Settings[key] = value
		}
		v, err := json.Marshal(&rec)
		if err != nil {
			return fmt.Errorf("updating domain %s: %w", name, err)
		}
		rev, err := s.kvDom.Update(ctx, token(name), v, kve.Revision())
		if errors.Is(err, njs.ErrKeyRevisionMismatch) {
			continue // a replica counted pairs meanwhile: again, on its record
		}
		if err != nil {
			return fmt.Errorf("updating domain %s: %w", name, s.closedErr(err))
		}
		s.idx.mu.Lock()
		s.idx.apply(name, rec, rev)
		s.idx.mu.Unlock()
		return nil
	}
	return fmt.Errorf("updating domain %s: the record changed %d times while being updated", name, maxCAS)
}

// DomainsPage returns up to limit domains whose names sort after after
// ("" for the first page), sorted by name, with their label counts, as
// storage.DB's DomainsPage does, from memory.
func (s *Store) DomainsPage(after string, limit int) (storage.DomainPage, error) {
	if limit <= 0 {
		return storage.DomainPage{}, fmt.Errorf("listing domains: limit %d, want at least 1", limit)
	}
	if s.isClosed() {
		return storage.DomainPage{}, fmt.Errorf("listing domains: %w", storage.ErrClosed)
	}
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	names := make([]string, 0, len(s.idx.domains))
	for name := range s.idx.domains {
		if name > after {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	page := storage.DomainPage{Total: len(s.idx.domains)}
	if len(names) > limit {
		names, page.More = names[:limit], true
	}
	page.Domains = make([]storage.Domain, 0, len(names))
	for _, name := range names {
		page.Domains = append(page.Domains, s.idx.domains[name].withLabels(s.opts.MaxPairsPerDomain))
	}
	return page, nil
}

// DomainNames returns, from memory, the names of the domains whose names
// begin with prefix, in no order: every domain with a record, whichever
// replica logged it.
func (s *Store) DomainNames(prefix string) []string {
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	var out []string
	for name := range s.idx.domains {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out
}
