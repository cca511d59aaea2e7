package storage

import (
	"container/list"
	"fmt"
	"sync"
)

// changeLog remembers, for every domain whose record changed since Open,
// the last change's position in the order pairs were enqueued (Log's
// ordinal, the enqueued count after it), newest last. A pair enqueued with
// ordinal n is written (or failed) once db.q.doneA >= n, so a reader that
// saw the counter at w has seen in the cache every change at or below w.
//
// It holds one entry per domain changed since Open, not per pair: marking
// a domain again moves its entry to the back.
type changeLog struct {
	mu    sync.Mutex
	order list.List // of *change, by mark, oldest first
	byDom map[string]*list.Element
}

type change struct {
	domain string
	mark   uint64
}

// mark records a change of domain at ordinal n. Marks never move back:
// a mark lower than the newest (a synchronous update racing Log) is raised
// to it, which only makes the domain show as changed a little longer.
func (c *changeLog) mark(domain string, n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byDom == nil {
		c.byDom = map[string]*list.Element{}
		c.order.Init()
	}
	if back := c.order.Back(); back != nil {
		n = max(n, back.Value.(*change).mark)
	}
	if e := c.byDom[domain]; e != nil {
		e.Value.(*change).mark = n
		c.order.MoveToBack(e)
		return
	}
	c.byDom[domain] = c.order.PushBack(&change{domain: domain, mark: n})
}

// since returns the domains whose last mark is at least n, newest first.
func (c *changeLog) since(n uint64) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for e := c.order.Back(); e != nil; e = e.Prev() {
		ch := e.Value.(*change)
		if ch.mark < n {
			break
		}
		out = append(out, ch.domain)
	}
	return out
}

// markUpdated records a change committed synchronously (updateDomain):
// it is ordered after every pair enqueued so far.
func (db *DB) markUpdated(domain string) {
	db.changes.mark(domain, db.q.enqueued.Load()+1)
}

// ChangedSince returns, as Summaries does, the domains whose pair counts or
// settings may have changed since the call that returned cursor, and the
// cursor to pass next time. Cursor 0 returns every domain. Its cost is in
// proportion to the domains returned, not to those stored: a scheduler
// polling every second with 70,000 idle domains reads none of them.
//
// A domain is marked when one of its pairs is enqueued and is returned by
// every call until that pair is written (so its counts in the result may
// lag by the pairs still queued; a later call returns it again). A change
// of settings is ordered after the pairs enqueued before it: it is returned
// by every call until a pair enqueued after it is written. Retention only
// lowers Pairs and is not marked.
func (db *DB) ChangedSince(cursor uint64) ([]Domain, uint64, error) {
	if cursor == 0 {
		// Read the counter before the cache: what it covers is in it.
		next := db.q.doneA.Load() + 1
		ds, err := db.Summaries()
		return ds, next, err
	}
	if err := db.acquire(); err != nil {
		return nil, cursor, fmt.Errorf("listing changed domains: %w", err)
	}
	defer db.release()
	next := db.q.doneA.Load() + 1
	names := db.changes.since(cursor)
	out := make([]Domain, 0, len(names))
	db.mu.Lock()
	for _, name := range names {
		e := db.domains[name]
		if e == nil {
			continue // its pairs are still queued, or were dropped
		}
		out = append(out, e.summary(name))
	}
	db.mu.Unlock()
	sortSummaries(out)
	return out, next, nil
}
