package storage

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// The responses a student made on the Responses API are kept, so that a
// client can read one back (GET /v1/responses/{id}) or continue its
// conversation (previous_response_id), under
//
//	response/<id>   the gateway's record of one response (its bytes)
//
// with Badger's entry TTL set to the pair log's TTL: they expire with the
// pairs they were answered beside. storage does not interpret them.
const prefixResponse = "response/"

// maxResponseID bounds the ids kept: OpenAI's are about 50 bytes.
const maxResponseID = 128

func responseKey(id string) []byte { return []byte(prefixResponse + id) }

// PutResponse keeps a response record under id until the pair log's TTL
// has passed (forever when the TTL is negative).
func (db *DB) PutResponse(id string, rec []byte) error {
	if id == "" || len(id) > maxResponseID {
		return fmt.Errorf("storing response %.128q: invalid id", id)
	}
	if err := db.acquire(); err != nil {
		return fmt.Errorf("storing response %s: %w", id, err)
	}
	defer db.release()
	if err := db.roomFor(int64(len(rec)), db.space.floor); err != nil {
		db.pause(err)
		return fmt.Errorf("storing response %s: %w", id, err)
	}
	e := badger.NewEntry(responseKey(id), rec)
	if db.opts.TTL > 0 {
		e = e.WithTTL(db.opts.TTL)
	}
	if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.SetEntry(e) }); err != nil {
		return fmt.Errorf("storing response %s: %w", id, err)
	}
	return nil
}

// Response returns the record kept under id, or ErrNotFound.
func (db *DB) Response(id string) ([]byte, error) {
	if id == "" || len(id) > maxResponseID {
		return nil, ErrNotFound
	}
	if err := db.acquire(); err != nil {
		return nil, fmt.Errorf("reading response %s: %w", id, err)
	}
	defer db.release()
	var rec []byte
	err := db.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(responseKey(id))
		if err != nil {
			return err
		}
		rec, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading response %s: %w", id, err)
	}
	return rec, nil
}

// DeleteResponse deletes the record kept under id; ErrNotFound when there
// is none.
func (db *DB) DeleteResponse(id string) error {
	if _, err := db.Response(id); err != nil {
		return err
	}
	if err := db.acquire(); err != nil {
		return fmt.Errorf("deleting response %s: %w", id, err)
	}
	defer db.release()
	if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Delete(responseKey(id)) }); err != nil {
		return fmt.Errorf("deleting response %s: %w", id, err)
	}
	return nil
}
