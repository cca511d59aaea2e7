package storage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

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

// chatMessage is a message in the OpenAI fine-tuning format.
type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ExportJSONL writes domain's pairs to w in the OpenAI chat fine-tuning
// format, oldest first, one line per pair:
//
//	{"messages":[{"role":"system","content":S},{"role":"user","content":I},{"role":"assistant","content":A}]}
//
// The system message is left out when System is empty. When the request's
// messages were kept, they are used as they were sent, followed by the
// assistant's answer. It returns the number of lines written. Pairs that
// cannot be read back are left out, and the error (ErrDamaged) says how many.
func (db *DB) ExportJSONL(ctx context.Context, domain string, w io.Writer) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var line struct {
		Messages []json.RawMessage `json:"messages"`
	}
	var msgBuf bytes.Buffer
	msgEnc := json.NewEncoder(&msgBuf)
	msgEnc.SetEscapeHTML(false)
	raw := func(m chatMessage) (json.RawMessage, error) {
		msgBuf.Reset()
		if err := msgEnc.Encode(m); err != nil {
			return nil, err
		}
		return bytes.TrimSuffix(bytes.Clone(msgBuf.Bytes()), []byte("\n")), nil
	}
	n := 0
	err := db.Pairs(ctx, domain, func(p Pair) error {
		line.Messages = line.Messages[:0]
		if len(p.Messages) > 0 {
			if err := json.Unmarshal(p.Messages, &line.Messages); err != nil {
				db.log.Warn("exporting pair: kept messages are not a JSON array, using system and input", "domain", domain, "id", p.ID, "err", err)
				line.Messages = line.Messages[:0]
			}
		}
		if len(line.Messages) == 0 {
			if p.System != "" {
				m, err := raw(chatMessage{Role: "system", Content: p.System})
				if err != nil {
					return err
				}
				line.Messages = append(line.Messages, m)
			}
			m, err := raw(chatMessage{Role: "user", Content: p.Input})
			if err != nil {
				return err
			}
			line.Messages = append(line.Messages, m)
		}
		m, err := raw(chatMessage{Role: "assistant", Content: p.Answer})
		if err != nil {
			return err
		}
		line.Messages = append(line.Messages, m)
		if err := enc.Encode(&line); err != nil {
			return err
		}
		n++
		return nil
	})
	// The lines encoded so far go out whatever happened: after a damaged
	// pair, Pairs goes on, and the caller reports the error after them.
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return n, fmt.Errorf("exporting %s: %w", domain, err)
	}
	return n, nil
}
