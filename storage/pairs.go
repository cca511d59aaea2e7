package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// pairsPage is how many pairs Pairs decodes per read transaction. fn runs
// outside the transaction, so a slow consumer (an export to a slow client)
// neither pins old versions in Badger nor holds up Close.
const pairsPage = 256

// Pairs calls fn for each stored pair of domain, oldest first. It stops at
// fn's first error and returns it. A domain never logged has no pairs; a
// name that cannot be a domain is ErrNotFound. Pairs logged during the
// iteration may or may not be seen.
//
// A pair whose value cannot be read back (a damaged value log) is skipped:
// fn sees every readable pair, and Pairs then returns an error wrapping
// ErrDamaged that counts the skipped pairs and names the first.
func (db *DB) Pairs(ctx context.Context, domain string, fn func(Pair) error) error {
	if !ValidDomain(domain) {
		return fmt.Errorf("reading pairs of %q: %w", domain, ErrNotFound)
	}
	prefix := pairPrefix(domain)
	seek := prefix
	page := make([]Pair, 0, pairsPage)
	var bad unreadable
	for {
		page = page[:0]
		next, err := db.readPairs(ctx, domain, prefix, seek, &page, &bad)
		if err != nil {
			return fmt.Errorf("reading pairs of %s: %w", domain, err)
		}
		for _, p := range page {
			if err := fn(p); err != nil {
				return err
			}
		}
		if next == nil {
			break
		}
		seek = next
	}
	if bad.n > 0 {
		return fmt.Errorf("reading pairs of %s: %w: %d pairs could not be read back and were skipped, the first %s (%v); "+
			"Badger's log names their value-log files", domain, ErrDamaged, bad.n, bad.first, bad.err)
	}
	return nil
}

var errUnreadableValue = errors.New("its value could not be read from the value log")

// unreadable counts the pairs Pairs skipped.
type unreadable struct {
	n     int
	first string
	err   error
}

// readPairs decodes up to pairsPage pairs from seek on. It returns the key to
// continue from, or nil at the end of the domain.
func (db *DB) readPairs(ctx context.Context, domain string, prefix, seek []byte, page *[]Pair, bad *unreadable) ([]byte, error) {
	if err := db.acquire(); err != nil {
		return nil, err
	}
	defer db.release()
	var next []byte
	err := db.bdb.View(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.Prefix = prefix
		opt.PrefetchSize = 64
		it := txn.NewIterator(opt)
		defer it.Close()
		for it.Seek(seek); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := db.ctx.Err(); err != nil {
				return ErrClosed
			}
			item := it.Item()
			if len(*page) == pairsPage {
				next = item.KeyCopy(nil)
				return nil
			}
			id, _ := pairKeyID(item.Key())
			var p Pair
			// Badger logs a value it cannot read and hands over an empty
			// one (iterator.go, yieldItemValue); no pair encodes to that.
			if err := item.Value(func(v []byte) error {
				if len(v) == 0 {
					return errUnreadableValue
				}
				// The value's pages are now resident: count them toward
				// the releaser's next run, as written ones are, so a
				// training run's read of every pair does not keep the
				// whole value log in RSS until the next 10 s tick.
				db.noteMapped(len(v))
				return decodePair(v, &p)
			}); err != nil {
				if bad.n == 0 {
					bad.first, bad.err = id.String(), err
				}
				bad.n++
				continue
			}
			p.ID = id.String()
			p.Domain = domain
			*page = append(*page, p)
		}
		return nil
	})
	return next, err
}
