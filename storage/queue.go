package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons every backend counts in understudy_storage_pairs_dropped_total.
const (
	reasonQueueFull = "queue_full"
	reasonClosed    = "closed"
	reasonInvalid   = "invalid"
	reasonDuplicate = "duplicate"
)

// Reason is a backend's own drop reason: a label value of
// understudy_storage_pairs_dropped_total and what it means, for the help
// text.
type Reason struct {
	Name    string
	Meaning string
}

// QueueOptions configure a Queue.
type QueueOptions[T any] struct {
	Size      int   // pairs the queue holds
	Bytes     int64 // bytes of pairs the queue holds (a pair larger than this alone is taken when the queue is empty)
	BatchSize int   // Log wakes the consumer when this many pairs wait
	// Item builds what is queued for an accepted pair (its ID and Time
	// set, id its parsed ID, given whether the caller set it) and its
	// share of Bytes.
	Item func(p Pair, id ulid.ULID, given bool) (T, int64)
	// Accepted, if set, is called with each queued item and its sequence
	// number (1, 2, …), in that order.
	Accepted func(item T, seq uint64)
	// Reasons are the backend's drop reasons besides queue_full, closed,
	// invalid and duplicate.
	Reasons []Reason
	// Settles: the backend calls Settle, and Flush waits for it as well
	// as for Done.
	Settles bool
}

// Queue takes pairs off the request path and reports what became of them.
// A backend embeds one: its Log is Queue.Log (non-blocking, bounded in
// pairs and bytes, each drop counted by reason); its writer goroutine
// takes items from Items when Wake fires, reports each batch with Done,
// and calls Stopped when it exits; its Flush and QueueLen are the
// Queue's. The Queue owns the pair log's common metrics:
// understudy_storage_pairs_logged_total, _pairs_dropped_total,
// _queue_length, _write_batches_total and _write_errors_total.
type Queue[T any] struct {
	opts QueueOptions[T]

	// mu orders sends with the enqueued count and the closed flag, so that
	// Flush knows exactly which pairs came before it.
	mu       sync.Mutex
	closed   bool
	items    chan T
	enqueued atomic.Uint64
	bytes    atomic.Int64 // accepted and not yet done, see QueueOptions.Bytes
	wake     chan struct{}
	stopped  chan struct{}

	// The consumer's progress, for Flush. done counts pairs taken off the
	// queue for good (written or dropped); settled is done as of the last
	// time the backend had nothing more to do for them (see Settle).
	progMu    sync.Mutex
	done      uint64
	settled   uint64
	progress  chan struct{}
	lastErr   error
	lastErrAt uint64
	doneA     atomic.Uint64 // mirror of done for Len

	logged      prometheus.Counter
	dropped     *prometheus.CounterVec
	queueLength prometheus.GaugeFunc
	batches     prometheus.Counter
	writeErrors prometheus.Counter
}

// NewQueue returns an empty, open Queue.
func NewQueue[T any](o QueueOptions[T]) *Queue[T] {
	q := &Queue[T]{
		opts:     o,
		items:    make(chan T, o.Size),
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
		progress: make(chan struct{}),
	}
	reasons := []string{reasonQueueFull, reasonClosed, reasonInvalid, reasonDuplicate}
	help := []string{"queue_full", "closed", "invalid (bad domain name or ID)", "duplicate (ID already stored)"}
	for _, r := range o.Reasons {
		reasons = append(reasons, r.Name)
		help = append(help, r.Name+" ("+r.Meaning+")")
	}
	q.logged = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "understudy_storage_pairs_logged_total",
		Help: "Pairs written to the pair log (NATS: acknowledged by the stream).",
	})
	q.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "understudy_storage_pairs_dropped_total",
		Help: "Pairs not logged, by reason: " + strings.Join(help, ", ") + ".",
	}, []string{"reason"})
	q.queueLength = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "understudy_storage_queue_length",
		Help: "Pairs accepted and not yet written (NATS: acknowledged).",
	}, func() float64 { return float64(q.Len()) })
	q.batches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "understudy_storage_write_batches_total",
		Help: "Batches of pairs written (Badger: transactions; NATS: published and acknowledged).",
	})
	q.writeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "understudy_storage_write_errors_total",
		Help: "Batches of pairs that failed to write; their pairs are lost (NATS: batches with a pair the server refused).",
	})
	for _, r := range reasons {
		q.dropped.WithLabelValues(r)
	}
	return q
}

// Log queues p without blocking. It returns false when the pair is
// dropped: its domain name or ID is invalid, the queue is closed, or it is
// full in pairs or bytes; each is counted in
// understudy_storage_pairs_dropped_total. An empty ID is set to a new
// ULID of p.Time (now, if zero); a zero Time with a given ID is set to the
// ID's time.
func (q *Queue[T]) Log(p Pair) bool {
	if !ValidDomain(p.Domain) {
		q.Dropped(reasonInvalid).Inc()
		return false
	}
	var id ulid.ULID
	var err error
	given := p.ID != ""
	if !given {
		if p.Time.IsZero() {
			p.Time = time.Now()
		}
		id, err = ulid.New(ulid.Timestamp(p.Time), ulid.DefaultEntropy())
		p.ID = id.String()
	} else {
		id, err = ulid.ParseStrict(p.ID)
		if err == nil && p.Time.IsZero() {
			p.Time = ulid.Time(id.Time())
		}
	}
	if err != nil {
		q.Dropped(reasonInvalid).Inc()
		return false
	}
	item, size := q.opts.Item(p, id, given)

	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.Dropped(reasonClosed).Inc()
		return false
	}
	// Size bounds the pairs accepted and not yet done, not only those in
	// the channel: a consumer holding a batch it cannot write (NATS away,
	// retrying) has taken them off the channel but not done them.
	if used := q.bytes.Load(); used > 0 && used+size > q.opts.Bytes || q.Len() >= q.opts.Size {
		q.mu.Unlock()
		q.Dropped(reasonQueueFull).Inc()
		return false
	}
	select {
	case q.items <- item:
		seq := q.enqueued.Add(1)
		if q.opts.Accepted != nil {
			q.opts.Accepted(item, seq)
		}
		q.bytes.Add(size)
		if len(q.items) >= q.opts.BatchSize {
			q.signal()
		}
		q.mu.Unlock()
		return true
	default:
		q.mu.Unlock()
		q.Dropped(reasonQueueFull).Inc()
		return false
	}
}

func (q *Queue[T]) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Items is the queue, for the consumer.
func (q *Queue[T]) Items() <-chan T { return q.items }

// Wake fires when BatchSize pairs wait, and on Flush.
func (q *Queue[T]) Wake() <-chan struct{} { return q.wake }

// Close refuses pairs from now on (dropped as closed). After it the queue
// only empties. It is safe to call more than once.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// Stopped tells the queue that its consumer has stopped: a Flush waiting
// for pairs it will not take returns ErrClosed. Call it once.
func (q *Queue[T]) Stopped() { close(q.stopped) }

// Done records that n pairs of size bytes left the queue for good,
// written or dropped; err, if not nil, is what failed among them, for
// Flush.
func (q *Queue[T]) Done(n int, size int64, err error) {
	// Free the bytes before Flush can see them done.
	q.bytes.Add(-size)
	q.progMu.Lock()
	q.done += uint64(n)
	q.doneA.Store(q.done)
	if !q.opts.Settles {
		q.settled = q.done
	}
	if err != nil {
		q.lastErr, q.lastErrAt = err, q.done
	}
	close(q.progress)
	q.progress = make(chan struct{})
	q.progMu.Unlock()
}

// Settle records that the backend finished with every pair done so far
// (with QueueOptions.Settles: the NATS store, once their counts are in
// their domains' records).
func (q *Queue[T]) Settle() {
	q.progMu.Lock()
	if q.settled != q.done {
		q.settled = q.done
		close(q.progress)
		q.progress = make(chan struct{})
	}
	q.progMu.Unlock()
}

// Len returns the number of pairs queued and not yet done.
func (q *Queue[T]) Len() int {
	// Read done first: the consumer may take a pair off the queue before
	// Log has counted it, never the other way round.
	d := q.doneA.Load()
	return int(max(int64(q.enqueued.Load())-int64(d), 0))
}

// Flush waits until every pair queued before the call is done (and
// settled). It returns the error of a failed batch among them, if any;
// ErrClosed when the consumer stopped first.
func (q *Queue[T]) Flush(ctx context.Context) error {
	target := q.enqueued.Load()
	q.progMu.Lock()
	start := q.done
	q.progMu.Unlock()
	q.signal()
	for {
		q.progMu.Lock()
		settled, ch, lastErr, lastErrAt := q.settled, q.progress, q.lastErr, q.lastErrAt
		q.progMu.Unlock()
		if settled >= target {
			if lastErr != nil && lastErrAt > start {
				return fmt.Errorf("flushing pair log: %w", lastErr)
			}
			return nil
		}
		select {
		case <-ch:
		case <-q.stopped:
			q.progMu.Lock()
			done := q.settled >= target
			q.progMu.Unlock()
			if !done {
				return fmt.Errorf("flushing pair log: %w", ErrClosed)
			}
		case <-ctx.Done():
			return fmt.Errorf("flushing pair log: %w", ctx.Err())
		}
	}
}

// Dropped returns the drop counter of reason.
func (q *Queue[T]) Dropped(reason string) prometheus.Counter {
	return q.dropped.WithLabelValues(reason)
}

// Wrote counts n pairs written in one batch (none: nothing counted).
func (q *Queue[T]) Wrote(n int) {
	if n > 0 {
		q.logged.Add(float64(n))
		q.batches.Inc()
	}
}

// WriteFailed counts a batch that failed to write.
func (q *Queue[T]) WriteFailed() { q.writeErrors.Inc() }

// Register registers the queue's metrics and the backend's own, all or
// none.
func (q *Queue[T]) Register(reg prometheus.Registerer, own ...prometheus.Collector) error {
	var done []prometheus.Collector
	for _, c := range q.collectors(own) {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("registering storage metrics: already registered (is another pair log open on this registry?): %w", err)
			}
			return fmt.Errorf("registering storage metrics: %w", err)
		}
		done = append(done, c)
	}
	return nil
}

// Unregister undoes Register.
func (q *Queue[T]) Unregister(reg prometheus.Registerer, own ...prometheus.Collector) {
	for _, c := range q.collectors(own) {
		reg.Unregister(c)
	}
}

func (q *Queue[T]) collectors(own []prometheus.Collector) []prometheus.Collector {
	return append([]prometheus.Collector{q.logged, q.dropped, q.queueLength, q.batches, q.writeErrors}, own...)
}
