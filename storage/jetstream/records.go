package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/understudy-dev/understudy/storage"
)

// PutRoutingRecord stores domain's routing record in the routes bucket,
// replacing the last; every replica's watch sees it. The domain need not
// have pairs yet. The write is fenced (see termKey): once another replica
// took the lease and claimed the records, it fails with storage.ErrFenced
// and ends this replica's term.
func (s *Store) PutRoutingRecord(domain string, rec []byte) error {
	if !storage.ValidDomain(domain) {
		return fmt.Errorf("storing the routing record of %q: %w", domain, storage.ErrNotFound)
	}
	ctx, cancel, err := s.call(1)
	if err != nil {
		return fmt.Errorf("storing the routing record of %s: %w", domain, err)
	}
	defer cancel()
	fence := s.lease.fence.Load()
	_, err = s.js.Publish(ctx, s.routeSubject(token(domain)), rec,
		njs.WithExpectLastSequenceForSubject(fence, s.routeSubject(termKey)))
	if wrongLastSeq(err) {
		if !s.depose(fence) {
			// Refused as a write of this replica's earlier term: the
			// router leads on in the current one and writes it again.
			return fmt.Errorf("storing the routing record of %s: written in an earlier term of this replica", domain)
		}
		return fmt.Errorf("storing the routing record of %s: another replica took the lease: %w", domain, storage.ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("storing the routing record of %s: %w", domain, s.closedErr(err))
	}
	return nil
}

// routeSubject is the subject of a key of the routes bucket, where a
// KeyValue's Put would publish it (the store uses no JetStream domain).
func (s *Store) routeSubject(key string) string { return "$KV." + s.names.routes + "." + key }

// wrongLastSeq reports whether err is the server's refusal of a
// conditioned write (code 10071, or 10164 on a replicated stream).
func wrongLastSeq(err error) bool {
	var api *njs.APIError
	return errors.As(err, &api) &&
		(api.ErrorCode == njs.JSErrCodeStreamWrongLastSequence || api.ErrorCode == njs.JSErrCodeStreamWrongLastSequenceConstant)
}

// isDomainKey reports whether a key of the routes bucket is a domain's
// (termKey is not).
func isDomainKey(key string) bool { return !strings.Contains(key, ".") }

// RoutingRecords returns every stored routing record by domain.
func (s *Store) RoutingRecords() (map[string][]byte, error) {
	ctx, cancel, err := s.call(1)
	if err != nil {
		return nil, fmt.Errorf("reading routing records: %w", err)
	}
	defer cancel()
	out := map[string][]byte{}
	err = readAll(ctx, s.kvRt, nil, func(e njs.KeyValueEntry) {
		if isDomainKey(e.Key()) {
			out[domainOf(e.Key())] = e.Value()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reading routing records: %w", s.closedErr(err))
	}
	return out, nil
}

// readAll calls fn with every value in a bucket (of the keys matching
// filters, every key when nil): one consumer reads them all, instead of a
// request per key.
func readAll(ctx context.Context, kv njs.KeyValue, filters []string, fn func(njs.KeyValueEntry)) error {
	var w njs.KeyWatcher
	var err error
	if filters == nil {
		w, err = kv.WatchAll(ctx, njs.IgnoreDeletes())
	} else {
		w, err = kv.WatchFiltered(ctx, filters, njs.IgnoreDeletes())
	}
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch stopped")
			}
			if e == nil {
				return nil
			}
			fn(e)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WatchRoutingRecords sends every routing record stored now, then each
// one any replica stores (this one included), in the order stored, until
// ctx ends or the store closes; then it closes the channel. The bucket
// keeps one revision per domain, so a record stored again before the
// watch delivered it comes in its latest version only. A deleted record
// comes with a nil Record. The reader must keep reading: the watch waits
// for it (a slow reader delays only its own watch).
func (s *Store) WatchRoutingRecords(ctx context.Context) (<-chan storage.RoutingChange, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("watching routing records: %w", storage.ErrClosed)
	}
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	w, err := s.kvRt.WatchAll(wctx)
	if err != nil {
		stop()
		cancel()
		return nil, fmt.Errorf("watching routing records: %w", s.closedErr(err))
	}
	out := make(chan storage.RoutingChange, 64)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		defer stop()
		s.follow(wctx, s.kvRt, w, nil, func(e njs.KeyValueEntry) bool {
			if !isDomainKey(e.Key()) {
				return true
			}
			c := storage.RoutingChange{Domain: domainOf(e.Key())}
			if e.Operation() == njs.KeyValuePut {
				c.Record = e.Value()
			}
			select {
			case out <- c:
				return true
			case <-wctx.Done():
				return false
			}
		})
	}()
	return out, nil
}

// PutStudent stores version of domain's student once: it creates the
// version's metadata in the students bucket, which fails with
// storage.ErrFenced when the version exists (another learner stored it,
// or is storing it), then writes its artifact in the object store. The
// create reserves the version before the artifact is written, so two
// learners — a deposed one woken from a pause among them — never write
// the same version's artifact; and a version is listed from then on, so
// the next version a trainer numbers is a free one even when a writer
// died between the two writes. A version is named in a routing record
// only once PutStudent returned, so every version a router loads has its
// artifact. When the artifact cannot be written the metadata is removed
// again, if no one wrote it since.
func (s *Store) PutStudent(domain string, version int, meta, artifact []byte) error {
	if !storage.ValidDomain(domain) || version < 1 {
		return fmt.Errorf("storing student %q v%d: invalid domain or version", domain, version)
	}
	ctx, cancel, err := s.call(6)
	if err != nil {
		return fmt.Errorf("storing student %s v%d: %w", domain, version, err)
	}
	defer cancel()
	rev, err := s.kvStu.Create(ctx, studentKey(domain, version), meta)
	if errors.Is(err, njs.ErrKeyExists) {
		return fmt.Errorf("storing student %s v%d: the version exists: %w", domain, version, storage.ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("storing student %s v%d: %w", domain, version, s.closedErr(err))
	}
	if _, err := s.obs.PutBytes(ctx, artifactName(domain, version), artifact); err != nil {
		if perr := s.unreserve(domain, version, rev); perr != nil {
			s.log.Warn("student version listed without its artifact", "domain", domain, "version", version, "err", perr)
		}
		return fmt.Errorf("storing student %s v%d: %w", domain, version, s.closedErr(err))
	}
	return nil
}

// unreserve removes the metadata PutStudent created at rev, unless it
// was written since, with a call of its own: the failed write may have
// used up PutStudent's time.
func (s *Store) unreserve(domain string, version int, rev uint64) error {
	ctx, cancel, err := s.call(1)
	if err != nil {
		return err
	}
	defer cancel()
	return s.kvStu.Purge(ctx, studentKey(domain, version), njs.LastRevision(rev))
}

// StudentVersions lists a domain's student versions, oldest first.
func (s *Store) StudentVersions(domain string) ([]storage.StudentVersion, error) {
	if !storage.ValidDomain(domain) {
		return nil, nil
	}
	ctx, cancel, err := s.call(1)
	if err != nil {
		return nil, fmt.Errorf("listing students of %s: %w", domain, err)
	}
	defer cancel()
	var out []storage.StudentVersion
	tok := token(domain)
	err = readAll(ctx, s.kvStu, []string{tok + ".*"}, func(e njs.KeyValueEntry) {
		v, err := strconv.Atoi(strings.TrimPrefix(e.Key(), tok+"."))
		if err == nil {
			out = append(out, storage.StudentVersion{Domain: domain, Version: v, Meta: e.Value()})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("listing students of %s: %w", domain, s.closedErr(err))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// StudentArtifact returns the artifact bytes of a version; ErrNotFound
// when there is none.
func (s *Store) StudentArtifact(domain string, version int) ([]byte, error) {
	if !storage.ValidDomain(domain) {
		return nil, fmt.Errorf("reading student %q v%d: %w", domain, version, storage.ErrNotFound)
	}
	ctx, cancel, err := s.call(6)
	if err != nil {
		return nil, fmt.Errorf("reading student %s v%d: %w", domain, version, err)
	}
	defer cancel()
	b, err := s.obs.GetBytes(ctx, artifactName(domain, version))
	if errors.Is(err, njs.ErrObjectNotFound) {
		return nil, fmt.Errorf("reading student %s v%d: %w", domain, version, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading student %s v%d: %w", domain, version, s.closedErr(err))
	}
	return b, nil
}

// DeleteStudent removes a version's metadata, then its artifact.
func (s *Store) DeleteStudent(domain string, version int) error {
	ctx, cancel, err := s.call(1)
	if err != nil {
		return fmt.Errorf("deleting student %s v%d: %w", domain, version, err)
	}
	defer cancel()
	if err := s.kvStu.Purge(ctx, studentKey(domain, version)); err != nil {
		return fmt.Errorf("deleting student %s v%d: %w", domain, version, s.closedErr(err))
	}
	if err := s.obs.Delete(ctx, artifactName(domain, version)); err != nil && !errors.Is(err, njs.ErrObjectNotFound) {
		return fmt.Errorf("deleting student %s v%d: %w", domain, version, s.closedErr(err))
	}
	return nil
}

// maxResponseID bounds the ids kept, as the Badger DB does.
const maxResponseID = 128

// PutResponse keeps a response record under id in the responses bucket,
// whose TTL is the pair log's (forever when it is negative).
func (s *Store) PutResponse(id string, rec []byte) error {
	if id == "" || len(id) > maxResponseID {
		return fmt.Errorf("storing response %.128q: invalid id", id)
	}
	ctx, cancel, err := s.call(1)
	if err != nil {
		return fmt.Errorf("storing response %s: %w", id, err)
	}
	defer cancel()
	if _, err := s.kvResp.Put(ctx, responseKey(id), rec); err != nil {
		return fmt.Errorf("storing response %s: %w", id, s.closedErr(err))
	}
	return nil
}

// Response returns the record kept under id, or ErrNotFound.
func (s *Store) Response(id string) ([]byte, error) {
	if id == "" || len(id) > maxResponseID {
		return nil, storage.ErrNotFound
	}
	ctx, cancel, err := s.call(1)
	if err != nil {
		return nil, fmt.Errorf("reading response %s: %w", id, err)
	}
	defer cancel()
	e, err := s.kvResp.Get(ctx, responseKey(id))
	if errors.Is(err, njs.ErrKeyNotFound) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading response %s: %w", id, s.closedErr(err))
	}
	return e.Value(), nil
}

// DeleteResponse deletes the record kept under id; ErrNotFound when there
// is none.
func (s *Store) DeleteResponse(id string) error {
	if _, err := s.Response(id); err != nil {
		return err
	}
	ctx, cancel, err := s.call(1)
	if err != nil {
		return fmt.Errorf("deleting response %s: %w", id, err)
	}
	defer cancel()
	if err := s.kvResp.Purge(ctx, responseKey(id)); err != nil {
		return fmt.Errorf("deleting response %s: %w", id, s.closedErr(err))
	}
	return nil
}
