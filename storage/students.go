package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Student versions are kept under two kinds of key, so listing versions
// reads only their small metadata:
//
//	studentmeta/<domain>/<version:8 BE>  JSON metadata (StudentVersion.Meta)
//	student/<domain>/<version:8 BE>      the artifact's bytes
//
// storage does not interpret either: the student package owns the format.
const (
	prefixStudent     = "student/"
	prefixStudentMeta = "studentmeta/"
)

// StudentVersion is one stored version of a domain's student.
type StudentVersion struct {
	Domain  string
	Version int
	// Meta is the caller's metadata for the version (metrics, τ, ...).
	Meta []byte
}

func studentKey(prefix, domain string, version int) []byte {
	k := make([]byte, 0, len(prefix)+len(domain)+9)
	k = append(k, prefix...)
	k = append(k, domain...)
	k = append(k, '/')
	return binary.BigEndian.AppendUint64(k, uint64(version))
}

// PutStudent stores version of domain's student: its metadata and artifact
// bytes, in one transaction.
func (db *DB) PutStudent(domain string, version int, meta, artifact []byte) error {
	if !ValidDomain(domain) || version < 1 {
		return fmt.Errorf("storing student %q v%d: invalid domain or version", domain, version)
	}
	if err := db.acquire(); err != nil {
		return fmt.Errorf("storing student %s v%d: %w", domain, version, err)
	}
	defer db.release()
	if err := db.roomFor(int64(len(meta)+len(artifact)), db.space.floor); err != nil {
		db.pause(err)
		return fmt.Errorf("storing student %s v%d: %w", domain, version, err)
	}
	err := db.bdb.Update(func(txn *badger.Txn) error {
		if err := txn.Set(studentKey(prefixStudentMeta, domain, version), meta); err != nil {
			return err
		}
		return txn.Set(studentKey(prefixStudent, domain, version), artifact)
	})
	if err != nil {
		return fmt.Errorf("storing student %s v%d: %w", domain, version, err)
	}
	return nil
}

// StudentVersions lists a domain's student versions, oldest first.
func (db *DB) StudentVersions(domain string) ([]StudentVersion, error) {
	if !ValidDomain(domain) {
		return nil, nil
	}
	if err := db.acquire(); err != nil {
		return nil, fmt.Errorf("listing students of %s: %w", domain, err)
	}
	defer db.release()
	prefix := []byte(prefixStudentMeta + domain + "/")
	var out []StudentVersion
	err := db.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := it.Item().Key()
			if len(key) != len(prefix)+8 {
				continue
			}
			meta, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, StudentVersion{Domain: domain, Version: int(binary.BigEndian.Uint64(key[len(prefix):])), Meta: meta})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing students of %s: %w", domain, err)
	}
	return out, nil
}

// StudentArtifact returns the artifact bytes of a version; ErrNotFound when
// there is none.
func (db *DB) StudentArtifact(domain string, version int) ([]byte, error) {
	if err := db.acquire(); err != nil {
		return nil, fmt.Errorf("reading student %s v%d: %w", domain, version, err)
	}
	defer db.release()
	var out []byte
	err := db.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(studentKey(prefixStudent, domain, version))
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("reading student %s v%d: %w", domain, version, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading student %s v%d: %w", domain, version, err)
	}
	return out, nil
}

// DeleteStudent removes a version's metadata and artifact.
func (db *DB) DeleteStudent(domain string, version int) error {
	if err := db.acquire(); err != nil {
		return fmt.Errorf("deleting student %s v%d: %w", domain, version, err)
	}
	defer db.release()
	if err := db.roomFor(0, db.space.floor/2); err != nil {
		return fmt.Errorf("deleting student %s v%d: %w", domain, version, err)
	}
	err := db.bdb.Update(func(txn *badger.Txn) error {
		if err := txn.Delete(studentKey(prefixStudentMeta, domain, version)); err != nil {
			return err
		}
		return txn.Delete(studentKey(prefixStudent, domain, version))
	})
	if err != nil {
		return fmt.Errorf("deleting student %s v%d: %w", domain, version, err)
	}
	return nil
}
