package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/understudy-dev/understudy/storage"
)

var _ storage.SampleBus = (*Store)(nil)

// Shadow samples travel on the stream <prefix>_samples (subject
// <prefix>.samples), in memory and bounded: a minute, 16 MiB, oldest
// dropped first. They are worth something only to the gate of the
// current lease holder, which reads them as they come; a sample lost on
// the way is one the gate does not count, which leaves its tests valid.
const (
	samplesMaxAge   = time.Minute
	samplesMaxBytes = 16 << 20
	// samplesQueue bounds the samples waiting to be published.
	samplesQueue = 4096
)

// ensureSamples creates or updates the samples' stream.
func (s *Store) ensureSamples(ctx context.Context) error {
	_, err := s.js.CreateOrUpdateStream(ctx, njs.StreamConfig{
		Name:        s.names.samples,
		Description: "Understudy: shadow samples of every replica, for the gate of the learner lease's holder",
		Subjects:    []string{s.names.sampleSubject},
		Retention:   njs.LimitsPolicy,
		Discard:     njs.DiscardOld,
		MaxAge:      samplesMaxAge,
		MaxBytes:    samplesMaxBytes,
		Storage:     njs.MemoryStorage,
		Replicas:    s.opts.Replicas,
	})
	if err != nil {
		return fmt.Errorf("creating stream %s: %w", s.names.samples, err)
	}
	return nil
}

// PublishSample queues a sample for the stream; false when it dropped it
// (the queue full, the store closed). It never blocks.
func (s *Store) PublishSample(b []byte) bool {
	if s.isClosed() {
		s.m.samplesDropped.Inc()
		return false
	}
	select {
	case s.samplesQ <- b:
		return true
	default:
		s.m.samplesDropped.Inc()
		return false
	}
}

// runSamplePublisher publishes the queued samples until the store
// closes. A core publish does not wait for the stream's acknowledgement:
// a sample the connection could not take is dropped and counted.
func (s *Store) runSamplePublisher() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case b := <-s.samplesQ:
			if err := s.nc.Publish(s.names.sampleSubject, b); err != nil {
				s.m.samplesDropped.Inc()
				continue
			}
			s.m.samplesPublished.Inc()
		}
	}
}

// Samples delivers the samples published from now on, by every replica,
// until ctx ends or the store closes; then it closes the channel. An
// ordered consumer reads them, and recovers from a lost connection where
// it left off while the stream still holds them.
func (s *Store) Samples(ctx context.Context) (<-chan []byte, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("reading samples: %w", storage.ErrClosed)
	}
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	cctx, ccancel := context.WithTimeout(wctx, s.opts.Timeout)
	cons, err := s.js.OrderedConsumer(cctx, s.names.samples, njs.OrderedConsumerConfig{DeliverPolicy: njs.DeliverNewPolicy})
	ccancel()
	var it njs.MessagesContext
	if err == nil {
		it, err = cons.Messages()
	}
	if err != nil {
		stop()
		cancel()
		return nil, fmt.Errorf("reading samples: %w", s.closedErr(err))
	}
	out := make(chan []byte, 256)
	s.wg.Add(2)
	go func() { // stops the iterator, so Next returns, when ctx ends
		defer s.wg.Done()
		<-wctx.Done()
		it.Stop()
	}()
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		defer stop()
		for {
			msg, err := it.Next()
			if errors.Is(err, njs.ErrMsgIteratorClosed) || wctx.Err() != nil {
				return
			}
			if err != nil { // the ordered consumer recreates itself
				t := time.NewTimer(100 * time.Millisecond)
				select {
				case <-t.C:
				case <-wctx.Done():
				}
				t.Stop()
				continue
			}
			select {
			case out <- msg.Data():
			case <-wctx.Done():
				return
			}
		}
	}()
	return out, nil
}
