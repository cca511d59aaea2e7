package storage

import (
	"encoding/json"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// A domain's routing record is kept under a key of its own,
//
//	route/<domain>   the router's record (its bytes; the router owns the format)
//
// written by the router alone: it is the one owner of a domain's routing
// state. storage does not interpret it.
const prefixRoute = "route/"

func routeKey(domain string) []byte { return []byte(prefixRoute + domain) }

// PutRoutingRecord stores domain's routing record, replacing the last. The
// domain need not have pairs stored yet: the router counts a request
// before the writer has stored its pair.
func (db *DB) PutRoutingRecord(domain string, rec []byte) error {
	if !ValidDomain(domain) {
		return fmt.Errorf("storing the routing record of %q: %w", domain, ErrNotFound)
	}
	if err := db.acquire(); err != nil {
		return fmt.Errorf("storing the routing record of %s: %w", domain, err)
	}
	defer db.release()
	if err := db.roomFor(int64(len(rec)), db.space.floor); err != nil {
		db.pause(err)
		return fmt.Errorf("storing the routing record of %s: %w", domain, err)
	}
	if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(routeKey(domain), rec) }); err != nil {
		return fmt.Errorf("storing the routing record of %s: %w", domain, err)
	}
	return nil
}

// RoutingRecords returns every stored routing record by domain. A store
// opened read-only (a full disk) could not move an earlier release's
// records to their keys: those are read where that release kept them.
func (db *DB) RoutingRecords() (map[string][]byte, error) {
	if err := db.acquire(); err != nil {
		return nil, fmt.Errorf("reading routing records: %w", err)
	}
	defer db.release()
	out := map[string][]byte{}
	err := db.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixRoute), PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key()[len(prefixRoute):])] = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading routing records: %w", err)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	for name, e := range db.domains {
		if legacy, ok := e.rec.Settings[legacyRouterSetting]; ok && out[name] == nil {
			out[name] = []byte(legacy)
		}
	}
	return out, nil
}

// Settings that releases before the routing record had a key of its own
// kept in the domain record; migrateRoutes moves the record and drops the
// rest.
const (
	legacyRouterSetting    = "router"
	legacyOpenEndedSetting = "open_ended_reason"
)

// migrateRoutes moves routing records that an earlier release kept in a
// domain's settings (beside a copy of the state in the domain record) to
// their own keys, in one transaction per domain, so an upgrade keeps every
// domain's state, versions and statistics. It runs at Open, before the
// writer starts.
func (db *DB) migrateRoutes() error {
	for name, e := range db.domains {
		rec := e.rec
		legacy, ok := rec.Settings[legacyRouterSetting]
		if !ok && rec.LegacyState == "" && rec.Settings[legacyOpenEndedSetting] == "" {
			continue
		}
		rec = rec.clone()
		delete(rec.Settings, legacyRouterSetting)
		delete(rec.Settings, legacyOpenEndedSetting)
		rec.LegacyState = ""
		v, err := json.Marshal(&rec)
		if err != nil {
			return err
		}
		err = db.bdb.Update(func(txn *badger.Txn) error {
			if ok {
				if err := txn.Set(routeKey(name), []byte(legacy)); err != nil {
					return err
				}
			}
			return txn.Set(domainKey(name), v)
		})
		if err != nil {
			return fmt.Errorf("moving the routing record of %s to its own key: %w", name, err)
		}
		e.rec = rec
	}
	return nil
}
