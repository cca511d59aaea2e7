package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/understudy-dev/understudy/storage"
)

const (
	// pairsPage is how many pairs Pairs asks the server for at a time.
	pairsPage = 256
	// idleCheck: when no pair came for this long, Pairs asks whether any
	// is left (the last one may have expired meanwhile).
	idleCheck = 2 * time.Second
	// maxIdle idle checks in a row with pairs pending end Pairs with an
	// error rather than wait for ever.
	maxIdle = 5
)

// Pairs calls fn for each stored pair of domain, oldest first: in the
// order the stream stored them, which is the order they were logged (for
// pairs of several replicas, their order of arrival). It reads through
// an ordered consumer filtered on the domain's subject, up to the last
// pair stored when it began, so pairs logged meanwhile may or may not be
// seen. It stops at fn's first error and returns it. A domain never
// logged has no pairs; a name that cannot be a domain is ErrNotFound. A
// pair that cannot be decoded is skipped, and Pairs then returns an
// error wrapping storage.ErrDamaged, as the Badger DB does.
func (s *Store) Pairs(ctx context.Context, domain string, fn func(storage.Pair) error) error {
	if !storage.ValidDomain(domain) {
		return fmt.Errorf("reading pairs of %q: %w", domain, storage.ErrNotFound)
	}
	if s.isClosed() {
		return fmt.Errorf("reading pairs of %s: %w", domain, storage.ErrClosed)
	}
	subject := s.names.subject(domain)
	cctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	last, err := s.stream.GetLastMsgForSubject(cctx, subject)
	cancel()
	if errors.Is(err, njs.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading pairs of %s: %w", domain, s.closedErr(err))
	}
	cons, err := s.js.OrderedConsumer(ctx, s.names.pairs, njs.OrderedConsumerConfig{
		FilterSubjects:    []string{subject},
		DeliverPolicy:     njs.DeliverAllPolicy,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("reading pairs of %s: %w", domain, s.closedErr(err))
	}
	it, err := cons.Messages(njs.PullMaxMessages(pairsPage))
	if err != nil {
		return fmt.Errorf("reading pairs of %s: %w", domain, s.closedErr(err))
	}
	defer func() {
		it.Stop()
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = s.js.DeleteConsumer(dctx, s.names.pairs, info.Name)
			cancel()
		}
	}()

	var bad unreadable
	idle := 0
	for {
		nctx, cancel := context.WithTimeout(ctx, idleCheck)
		msg, err := it.Next(njs.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if s.isClosed() {
				return fmt.Errorf("reading pairs of %s: %w", domain, storage.ErrClosed)
			}
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, njs.ErrNoHeartbeat) {
				return fmt.Errorf("reading pairs of %s: %w", domain, err)
			}
			cctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
			info, ierr := cons.Info(cctx)
			cancel()
			if ierr != nil {
				return fmt.Errorf("reading pairs of %s: %w", domain, s.closedErr(ierr))
			}
			if info.NumPending == 0 {
				break // nothing left: the newest expired meanwhile
			}
			if idle++; idle == maxIdle {
				return fmt.Errorf("reading pairs of %s: %d pairs pending and none delivered for %s", domain, info.NumPending, maxIdle*idleCheck)
			}
			continue
		}
		idle = 0
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("reading pairs of %s: %w", domain, err)
		}
		var p storage.Pair
		if err := decode(msg, &p); err != nil {
			if bad.n == 0 {
				bad.seq, bad.err = md.Sequence.Stream, err
			}
			bad.n++
		} else {
			p.Domain = domain
			if err := fn(p); err != nil {
				return err
			}
		}
		if md.Sequence.Stream >= last.Sequence || md.NumPending == 0 {
			break
		}
	}
	if bad.n > 0 {
		return fmt.Errorf("reading pairs of %s: %w: %d pairs could not be decoded and were skipped, the first at stream sequence %d (%v)",
			domain, storage.ErrDamaged, bad.n, bad.seq, bad.err)
	}
	return nil
}

// unreadable counts the pairs Pairs skipped.
type unreadable struct {
	n   int
	seq uint64
	err error
}

// decode decodes a pair's message: its ID from Nats-Msg-Id, the rest
// from the record.
func decode(msg njs.Msg, p *storage.Pair) error {
	id, err := ulid.ParseStrict(msg.Headers().Get(njs.MsgIDHeader))
	if err != nil {
		return fmt.Errorf("its ID: %w", err)
	}
	if err := storage.DecodePairRecord(msg.Data(), p); err != nil {
		return err
	}
	p.ID = id.String()
	return nil
}
