package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Domain is a task domain as stored.
type Domain struct {
	Name      string
	FirstSeen time.Time
	LastSeen  time.Time
	Pairs     int64             // pairs stored now (after retention)
	Logged    int64             // pairs ever logged; retention does not lower it
	Labels    map[string]int64  // stored pairs per label
	Settings  map[string]string // free-form per-domain settings
}

// LabelCount is one label and how many stored pairs carry it.
type LabelCount struct {
	Label string
	Count int64
}

// TopLabels returns the n most frequent labels, most frequent first, ties by
// label. n <= 0 returns them all.
func (d Domain) TopLabels(n int) []LabelCount {
	out := make([]LabelCount, 0, len(d.Labels))
	for l, c := range d.Labels {
		out = append(out, LabelCount{Label: l, Count: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Label < out[j].Label
	})
	if n > 0 && n < len(out) {
		out = out[:n]
	}
	return out
}

// Domains returns every domain ever logged, sorted by name, as of one
// consistent snapshot.
func (db *DB) Domains() ([]Domain, error) {
	if err := db.acquire(); err != nil {
		return nil, fmt.Errorf("listing domains: %w", err)
	}
	defer db.release()
	var out []Domain
	err := db.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixDomain)})
		var names []string
		var recs []domainRecord
		for it.Rewind(); it.Valid(); it.Next() {
			name, rec, err := domainItem(it.Item())
			if err != nil {
				it.Close()
				return err
			}
			names = append(names, name)
			recs = append(recs, rec)
		}
		it.Close()
		for i, name := range names {
			d, err := readDomain(txn, name, recs[i])
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing domains: %w", err)
	}
	return out, nil
}

// domainItem decodes the domain/<name> item it is at.
func domainItem(item *badger.Item) (string, domainRecord, error) {
	name := string(item.Key()[len(prefixDomain):])
	var rec domainRecord
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
		return "", rec, fmt.Errorf("decoding domain %s: %w", name, err)
	}
	return name, rec, nil
}

// summary is the domain's record without its label counts; db.mu is held.
func (e *domainEntry) summary(name string) Domain {
	rec := e.rec.clone()
	d := Domain{Name: name, FirstSeen: rec.FirstSeen, LastSeen: rec.LastSeen,
		Pairs: rec.Pairs, Logged: rec.Logged, Settings: rec.Settings}
	if d.Settings == nil {
		d.Settings = map[string]string{}
	}
	return d
}

// sortSummaries orders summaries by name.
func sortSummaries(out []Domain) {
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
}

// Summaries returns every domain as Domains does but without its label
// counts (Labels is nil), from memory: cheap enough to call every second
// whatever the number of domains and labels.
func (db *DB) Summaries() ([]Domain, error) {
	if err := db.acquire(); err != nil {
		return nil, fmt.Errorf("listing domains: %w", err)
	}
	defer db.release()
	db.mu.Lock()
	out := make([]Domain, 0, len(db.domains))
	for name, e := range db.domains {
		out = append(out, e.summary(name))
	}
	db.mu.Unlock()
	sortSummaries(out)
	return out, nil
}

// Domain returns one domain; ErrNotFound when it was never logged.
func (db *DB) Domain(name string) (Domain, error) {
	if !ValidDomain(name) {
		return Domain{}, fmt.Errorf("reading domain %q: %w", name, ErrNotFound)
	}
	if err := db.acquire(); err != nil {
		return Domain{}, fmt.Errorf("reading domain %s: %w", name, err)
	}
	defer db.release()
	var d Domain
	err := db.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(domainKey(name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		var rec domainRecord
		if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
			return err
		}
		d, err = readDomain(txn, name, rec)
		return err
	})
	if err != nil {
		return Domain{}, fmt.Errorf("reading domain %s: %w", name, err)
	}
	return d, nil
}

func readDomain(txn *badger.Txn, name string, rec domainRecord) (Domain, error) {
	d := Domain{
		Name:      name,
		FirstSeen: rec.FirstSeen,
		LastSeen:  rec.LastSeen,
		Pairs:     rec.Pairs,
		Logged:    rec.Logged,
		Labels:    make(map[string]int64),
		Settings:  rec.Settings,
	}
	if d.Settings == nil {
		d.Settings = map[string]string{}
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: labelPrefix(name), PrefetchValues: false})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := it.Item().Value(func(v []byte) error {
			l, n, err := decodeLabelCount(v)
			if err == nil && n > 0 {
				d.Labels[l] = n
			}
			return err
		}); err != nil {
			return Domain{}, fmt.Errorf("decoding label counts of %s: %w", name, err)
		}
	}
	return d, nil
}

// SetDomainSetting sets one free-form setting of a domain; an empty value
// removes it. ErrNotFound when the domain was never logged.
func (db *DB) SetDomainSetting(name, key, value string) error {
	if key == "" {
		return fmt.Errorf("setting a setting of domain %s: empty key", name)
	}
	return db.updateDomain(name, func(r *domainRecord) {
		if value == "" {
			delete(r.Settings, key)
			return
		}
		if r.Settings == nil {
			r.Settings = make(map[string]string)
		}
		r.Settings[key] = value
	})
}

func (db *DB) updateDomain(name string, fn func(*domainRecord)) error {
	if !ValidDomain(name) {
		return fmt.Errorf("updating domain %q: %w", name, ErrNotFound)
	}
	if err := db.acquire(); err != nil {
		return fmt.Errorf("updating domain %s: %w", name, err)
	}
	defer db.release()
	db.mu.Lock()
	defer db.mu.Unlock()
	e := db.domains[name]
	if e == nil {
		return fmt.Errorf("updating domain %s: %w", name, ErrNotFound)
	}
	rec := e.rec.clone()
	fn(&rec)
	v, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("updating domain %s: %w", name, err)
	}
	if err := db.roomFor(int64(len(v)), db.space.floor); err != nil {
		db.pause(err)
		return fmt.Errorf("updating domain %s: %w", name, err)
	}
	if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(domainKey(name), v) }); err != nil {
		return fmt.Errorf("updating domain %s: %w", name, err)
	}
	e.rec = rec
	db.markUpdated(name)
	return nil
}

// DomainPage is one page of the domains, by name.
type DomainPage struct {
	Domains []Domain
	// More: domains follow the last of this page.
	More bool
	// Total is how many domains there are, on every page.
	Total int
}

// DomainsPage returns up to limit domains whose names sort after after
// ("" for the first page), sorted by name, as Domains does, with their
// label counts. Its cost is in proportion to limit, not to the domains
// stored: Badger seeks to the first name.
func (db *DB) DomainsPage(after string, limit int) (DomainPage, error) {
	if limit <= 0 {
		return DomainPage{}, fmt.Errorf("listing domains: limit %d, want at least 1", limit)
	}
	if err := db.acquire(); err != nil {
		return DomainPage{}, fmt.Errorf("listing domains: %w", err)
	}
	defer db.release()
	var page DomainPage
	db.mu.Lock()
	page.Total = len(db.domains)
	db.mu.Unlock()
	err := db.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixDomain), PrefetchValues: true, PrefetchSize: min(limit+1, 100)})
		var names []string
		var recs []domainRecord
		if after == "" {
			it.Rewind()
		} else {
			it.Seek(append(domainKey(after), 0))
		}
		for ; it.Valid(); it.Next() {
			if len(names) == limit {
				page.More = true
				break
			}
			name, rec, err := domainItem(it.Item())
			if err != nil {
				it.Close()
				return err
			}
			names = append(names, name)
			recs = append(recs, rec)
		}
		it.Close()
		page.Domains = make([]Domain, 0, len(names))
		for i, name := range names {
			d, err := readDomain(txn, name, recs[i])
			if err != nil {
				return err
			}
			page.Domains = append(page.Domains, d)
		}
		return nil
	})
	if err != nil {
		return DomainPage{}, fmt.Errorf("listing domains: %w", err)
	}
	return page, nil
}

// DomainNames returns, from memory, the names of the domains whose names
// begin with prefix, in no order: every domain with pairs logged (or that
// had: retention keeps the record of a domain whose pairs it deleted).
// Pairs still in the writer's queue do not count yet.
func (db *DB) DomainNames(prefix string) []string {
	db.mu.Lock()
	defer db.mu.Unlock()
	var out []string
	for name := range db.domains {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out
}
