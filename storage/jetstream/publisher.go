package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
)

// The publisher is one goroutine, owned by the Store. It takes pairs off
// the queue in batches (every BatchSize pairs or FlushInterval, on Flush,
// and on Close), publishes a batch asynchronously, and waits for the
// stream's acknowledgements:
//
//   - an acknowledged pair is logged: it counts, and is added to its
//     domain's record (commit) before the next batch is published;
//   - a pair the server refused (a 4xx API error) or that exceeds the
//     servers' max_payload is dropped and counted (rejected, too_large),
//     and Flush reports it;
//   - any other outcome (the connection lost, no acknowledgement within
//     AckTimeout, no stream answering, a 5xx API error) is not an answer:
//     the pair stays at the head of the batch and is published again
//     after a back-off, for as long as it takes. The stream drops a
//     repeat within its duplicate window (2 minutes) by the pair's ID.
//
// Meanwhile Log goes on queueing, and drops what does not fit: the queue
// is the one bounded buffer while the servers are away (the connection's
// own reconnect buffer is off).
type publisher struct {
	s       *Store
	batch   []*queued
	deltas  map[string]*delta // acknowledged, not yet in the records
	backoff time.Duration
	// probe: the last round left pairs without an answer, so the next
	// sends the first pair alone and the rest once it is acknowledged.
	// After a restart the stream may answer some of a batch and not the
	// pairs before them; sent again, those would be stored after them.
	probe bool
}

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

func (s *Store) runPublisher() {
	defer s.wg.Done()
	defer s.q.Stopped()
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	p := &publisher{s: s, batch: make([]*queued, 0, s.opts.BatchSize), deltas: make(map[string]*delta), backoff: minBackoff}
	for {
		select {
		case <-s.q.Wake():
		case <-t.C:
		case <-s.ctx.Done():
			p.closing()
			return
		}
		p.drain(s.ctx)
	}
}

// drain publishes until the queue is empty, or ctx ends: what it holds
// then waits for the next call.
func (p *publisher) drain(ctx context.Context) {
	for ctx.Err() == nil {
		if len(p.deltas) > 0 {
			if err := p.commit(ctx); err != nil {
				if ctx.Err() == nil {
					p.s.log.Debug("pair log: counting pairs in their domains' records failed; trying again", "err", err)
				}
				p.wait(ctx)
				continue
			}
		}
		p.counted()
		p.fill()
		if len(p.batch) == 0 {
			return
		}
		if !p.publish(ctx) {
			p.wait(ctx) // not all acknowledged
		} else {
			p.backoff = minBackoff
		}
	}
}

// closing publishes what is queued until Close's CloseTimeout runs out,
// then drops what is left.
func (p *publisher) closing() {
	s := p.s
	p.drain(s.hard)
	left := len(p.batch)
	var size int64
	for _, q := range p.batch {
		size += q.size
	}
	p.batch = p.batch[:0]
	for len(s.q.Items()) > 0 { // Log refuses pairs now: the queue only empties
		q := <-s.q.Items()
		left++
		size += q.size
	}
	var errs []error
	if left > 0 {
		s.q.Dropped(reasonClosed).Add(float64(left))
		p.resolve(left, size, nil)
		errs = append(errs, fmt.Errorf("%d pairs not acknowledged within the close timeout (%s) were dropped", left, s.opts.CloseTimeout))
	}
	if len(p.deltas) > 0 {
		var n int64
		for _, d := range p.deltas {
			n += d.n
		}
		errs = append(errs, fmt.Errorf("%d pairs logged are not counted in the records of their %d domains", n, len(p.deltas)))
	}
	if err := errors.Join(errs...); err != nil {
		s.closeErr = fmt.Errorf("closing the NATS pair log: %w", err)
	}
	p.counted()
}

// fill tops the batch up from the queue, after the pairs it retries.
func (p *publisher) fill() {
	for len(p.batch) < p.s.opts.BatchSize {
		select {
		case q := <-p.s.q.Items():
			p.batch = append(p.batch, q)
		default:
			return
		}
	}
}

// wait backs off before trying again: until the connection returns, or
// for a doubling pause (up to 2s), or until ctx ends.
func (p *publisher) wait(ctx context.Context) {
	t := time.NewTimer(p.backoff)
	defer t.Stop()
	p.backoff = min(2*p.backoff, maxBackoff)
	select {
	case <-t.C:
	case <-p.s.reconnect:
		p.backoff = minBackoff
	case <-ctx.Done():
	}
}

// outcomes of one pair's publish.
const (
	again   = iota // no answer: publish it again
	logged         // acknowledged
	dropped        // refused, too large, or a duplicate
)

// publish sends the batch (its first pair only, when probing) and waits
// for the answers (at most AckTimeout, or until ctx ends); it keeps in
// the batch, in order, the pairs to send again, and reports whether every
// pair it sent was answered.
func (p *publisher) publish(ctx context.Context) bool {
	s := p.s
	out := make([]int, len(p.batch))
	futures := make([]njs.PubAckFuture, len(p.batch))
	send := p.batch
	if p.probe {
		send = p.batch[:1]
	}
	var firstErr error
	drop := func(i int, reason string, err error) {
		out[i] = dropped
		s.q.Dropped(reason).Inc()
		if firstErr == nil {
			firstErr = err
		}
	}
	for i, q := range send {
		if !s.nc.IsConnected() {
			break
		}
		f, err := s.js.PublishMsgAsync(s.message(q))
		switch {
		case err == nil:
			futures[i] = f
			q.sent++
		case errors.Is(err, nats.ErrMaxPayload):
			drop(i, reasonTooLarge, fmt.Errorf("pair %s of %s: %d bytes, over the NATS servers' max_payload of %d (raise it, or set storage.keep_requests: false): %w",
				q.p.ID, q.p.Domain, len(q.msg.Data), s.nc.MaxPayload(), err))
		}
		if err != nil && out[i] != dropped {
			break // not connected, or too many pending: the rest later
		}
	}
	noStream := false
	for i, f := range futures {
		if f == nil {
			continue
		}
		q := p.batch[i]
		select {
		case ack := <-f.Ok():
			if ack.Duplicate && q.sent == 1 {
				drop(i, reasonDuplicate, nil)
				continue
			}
			// A duplicate of a pair sent before is that pair, stored
			// when its acknowledgement was lost.
			out[i] = logged
		case err := <-f.Err():
			var apiErr *njs.APIError
			switch {
			case errors.As(err, &apiErr) && apiErr.Code < 500:
				drop(i, reasonRejected, fmt.Errorf("pair %s of %s refused by the stream %s: %w", q.p.ID, q.p.Domain, s.names.pairs, err))
			case errors.Is(err, njs.ErrNoStreamResponse):
				noStream = true
			}
		case <-ctx.Done():
		}
	}

	var n, retried int
	var size int64
	var loggedN int
	answered := true
	kept := p.batch[:0]
	for i, q := range p.batch {
		switch out[i] {
		case again:
			if i < len(send) {
				answered = false
				if q.sent > 0 {
					retried++
				}
			}
			kept = append(kept, q)
			continue
		case logged:
			loggedN++
			d := p.deltas[q.p.Domain]
			if d == nil {
				d = &delta{}
				p.deltas[q.p.Domain] = d
			}
			d.add(&q.p)
		}
		n++
		size += q.size
	}
	clear(p.batch[len(kept):])
	p.batch = kept
	if loggedN > 0 {
		s.q.Wrote(loggedN)
		s.stallSeen.Store(false)
	}
	if retried > 0 {
		s.m.retries.Add(float64(retried))
	}
	if firstErr != nil {
		s.q.WriteFailed()
		s.log.Error("pair log: pairs not logged", "err", firstErr)
	}
	if n > 0 {
		p.resolve(n, size, firstErr)
	}
	if noStream {
		p.noStream(ctx)
	}
	p.probe = !answered
	return answered
}

// noStream handles a publish no stream answered: after a server lost its
// state, or an operator deleted the stream, it is created again (at most
// every 5 seconds); while JetStream is still starting it simply waits.
// The pairs wait meanwhile, counted as neither logged nor dropped.
func (p *publisher) noStream(ctx context.Context) {
	s := p.s
	if !s.stallSeen.Swap(true) {
		s.log.Warn("pair log: no stream answers the pairs' subjects; creating it again if it is gone", "stream", s.names.pairs)
	}
	if time.Since(time.Unix(0, s.ensuredAt.Load())) < s.opts.ensureEvery {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if _, err := s.ensureStream(cctx); err != nil {
		s.log.Debug("pair log: creating the stream again failed", "err", err)
	}
}

// resolve records that n pairs of size bytes left the queue for good.
func (p *publisher) resolve(n int, size int64, err error) { p.s.q.Done(n, size, err) }

// counted records that every resolved pair is counted in its record.
func (p *publisher) counted() {
	if len(p.deltas) > 0 {
		return
	}
	p.s.q.Settle()
}

// commit adds the deltas to their domains' records. Each record is
// published with the revision this replica last saw as the expected one,
// all at once (maxRecordsInFlight at a time); a record another replica
// changed meanwhile is read again and retried alone (settle). A delta is
// removed once its record is stored.
func (p *publisher) commit(ctx context.Context) error {
	for len(p.deltas) > 0 {
		if err := p.commitSome(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (p *publisher) commitSome(ctx context.Context) error {
	s := p.s
	type put struct {
		name string
		rec  record
		f    njs.PubAckFuture
	}
	puts := make([]put, 0, min(len(p.deltas), maxRecordsInFlight))
	for name, d := range p.deltas {
		if len(puts) == maxRecordsInFlight {
			break
		}
		rec, rev := s.idx.get(name)
		rec.add(d)
		v, err := json.Marshal(&rec)
		if err != nil {
			return fmt.Errorf("encoding the record of domain %s: %w", name, err)
		}
		m := nats.NewMsg("$KV." + s.names.domains + "." + token(name))
		m.Data = v
		m.Header.Set(njs.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
		f, err := s.js.PublishMsgAsync(m)
		if err != nil {
			break // the rest later
		}
		puts = append(puts, put{name: name, rec: rec, f: f})
	}
	var firstErr error
	for _, u := range puts {
		select {
		case ack := <-u.f.Ok():
			s.idx.mu.Lock()
			s.idx.apply(u.name, u.rec, ack.Sequence)
			s.idx.mu.Unlock()
			delete(p.deltas, u.name)
		case err := <-u.f.Err():
			if isConflict(err) {
				err = p.settle(ctx, u.name)
			}
			if err == nil {
				delete(p.deltas, u.name)
			} else if firstErr == nil {
				firstErr = fmt.Errorf("storing the record of domain %s: %w", u.name, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if firstErr == nil && len(puts) == 0 {
		firstErr = errors.New("not connected")
	}
	return firstErr
}

// settle adds a domain's delta to its record read afresh, by
// compare-and-set until no other replica gets in between.
func (p *publisher) settle(ctx context.Context, name string) error {
	s := p.s
	key := token(name)
	for range maxCAS {
		var rec record
		var rev uint64
		kve, err := s.kvDom.Get(ctx, key)
		switch {
		case err == nil:
			if err := json.Unmarshal(kve.Value(), &rec); err != nil {
				return fmt.Errorf("decoding the record of domain %s: %w", name, err)
			}
			rev = kve.Revision()
		case errors.Is(err, njs.ErrKeyNotFound):
		default:
			return err
		}
		rec.add(p.deltas[name])
		v, err := json.Marshal(&rec)
		if err != nil {
			return err
		}
		if rev == 0 {
			rev, err = s.kvDom.Create(ctx, key, v)
		} else {
			rev, err = s.kvDom.Update(ctx, key, v, rev)
		}
		if errors.Is(err, njs.ErrKeyExists) || errors.Is(err, njs.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return err
		}
		s.idx.mu.Lock()
		s.idx.apply(name, rec, rev)
		s.idx.mu.Unlock()
		return nil
	}
	return fmt.Errorf("the record changed %d times while being updated", maxCAS)
}

// isConflict reports whether err is a compare-and-set conflict: the
// record's revision was not the one expected.
func isConflict(err error) bool {
	var apiErr *njs.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == njs.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == njs.JSErrCodeStreamWrongLastSequenceConstant)
}
