package jetstream

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/understudy-dev/understudy/storage"
)

// queued is a pair accepted by Log, until it is acknowledged or dropped.
type queued struct {
	p     storage.Pair
	given bool  // the caller set the ID: it may repeat one already stored
	size  int64 // its share of Options.QueueBytes
	sent  int   // times published without an acknowledgement
	msg   *nats.Msg
}

// Log enqueues p for the publisher without blocking, exactly as the
// Badger DB's Log does (both are storage.Queue.Log): it returns false when
// the pair is dropped (the queue is full in pairs or bytes, the store is
// closed, the domain name or ID is invalid), each counted in
// understudy_storage_pairs_dropped_total. A pair counts as logged once the
// stream acknowledged it. While the servers cannot be reached, pairs wait
// in the queue and are published when the connection returns; what does
// not fit is dropped (queue_full).
func (s *Store) Log(p storage.Pair) bool { return s.q.Log(p) }

// newQueued is the queue's storage.QueueOptions.Item.
func newQueued(p storage.Pair, _ ulid.ULID, given bool) (*queued, int64) {
	q := &queued{p: p, given: given}
	q.size = pairSize(&q.p)
	return q, q.size
}

// pairSize estimates a queued pair's memory: its text, the record and
// message it becomes, and the structs around them.
func pairSize(p *storage.Pair) int64 {
	return int64(2*(len(p.Label)+len(p.Model)+len(p.Input)+len(p.System)+len(p.Messages)+len(p.Answer)) + 512)
}

// message builds q's message once: the pair's record (the Badger DB's
// binary format) on its domain's subject, its ID as Nats-Msg-Id, so the
// stream stores a pair sent again only once, the replica that logged it
// as Understudy-Replica (see Store.Replica), and, for a pair logged with
// a Time already older than some of the TTL, a message TTL of what is
// left of it: the stream then ages pairs by their Time, as Badger does.
func (s *Store) message(q *queued) *nats.Msg {
	if q.msg != nil {
		return q.msg
	}
	m := nats.NewMsg(s.names.subject(q.p.Domain))
	m.Data = storage.AppendPairRecord(make([]byte, 0, q.size/2), &q.p)
	m.Header.Set(njs.MsgIDHeader, q.p.ID)
	m.Header.Set(ReplicaHeader, s.lease.holder)
	if ttl := s.opts.TTL; ttl > 0 {
		if age := s.now().Sub(q.p.Time); age > agedPair {
			m.Header.Set(njs.MsgTTLHeader, max(ttl-age, time.Second).String())
		}
	}
	q.msg = m
	return m
}

// ReplicaHeader names, on each pair in the stream, the replica that
// logged it: for an operator tracing a pair, and for tests that hold each
// replica to its own answers.
const ReplicaHeader = "Understudy-Replica"

// agedPair: a pair whose Time is older than this gets a message TTL.
// Pairs from the request path are milliseconds old; the stream's MaxAge
// ages them the same to within this.
const agedPair = time.Minute

// Flush waits until every pair enqueued before the call has been
// acknowledged by the stream (or dropped) and counted in its domain's
// record. It returns the error of a refused pair among them, if any.
// While the servers cannot be reached it waits, until ctx ends.
func (s *Store) Flush(ctx context.Context) error { return s.q.Flush(ctx) }
