package jetstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/understudy-dev/understudy/storage"
)

// Store is the storage backend on NATS JetStream, shared by every gateway
// replica connected to the same servers with the same Prefix. It is safe
// for concurrent use.
type Store struct {
	opts  Options
	names names
	log   *slog.Logger
	m     *metrics
	now   func() time.Time

	nc      *nats.Conn
	js      njs.JetStream
	stream  njs.Stream
	kvDom   njs.KeyValue // domain records
	kvRt    njs.KeyValue // routing records
	kvStu   njs.KeyValue // student metadata
	kvResp  njs.KeyValue // kept responses
	kvLease njs.KeyValue // the learner lease (lease.go)
	kvRep   njs.KeyValue // the live replicas (replicas.go)
	obs     njs.ObjectStore

	// q takes pairs off the request path for the publisher; it is settled
	// (storage.Queue.Settle) once the acknowledged pairs are counted in
	// their domains' records, which Flush waits for too.
	q *storage.Queue[*queued]

	lease    leaseState
	started  time.Time    // when Open began: this replica's start
	seen     atomic.Int64 // live replicas at the last announcement (replicas.go)
	samplesQ chan []byte  // shadow samples waiting to be published

	idx index // the domains' records, kept current by a watch

	reconnect chan struct{} // a reconnection wakes the publisher's back-off
	reconnMu  sync.Mutex
	reconnCh  chan struct{} // closed (and replaced) on each reconnection, for the watches
	stallSeen atomic.Bool   // the no-stream warning was logged since the last success
	ensuredAt atomic.Int64  // when ensureStream last ran (Unix ns)

	ctx        context.Context // cancelled by Close: stops accepting, the loops and watches
	cancel     context.CancelFunc
	hard       context.Context // cancelled when Close's CloseTimeout runs out
	hardCancel context.CancelFunc
	wg         sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error
}

var (
	_ storage.PairLog          = (*Store)(nil)
	_ storage.DomainRecords    = (*Store)(nil)
	_ storage.StudentArtifacts = (*Store)(nil)
	_ storage.RoutingRecords   = (*Store)(nil)
	_ storage.Responses        = (*Store)(nil)
	_ storage.RoutingWatch     = (*Store)(nil)
	_ storage.ReplicaSet       = (*Store)(nil)
)

// Open connects to the servers, creates or updates the stream and the
// buckets (the stream's limits from TTL and MaxPairsPerDomain), reads the
// domain records and starts the publisher. It tries for ConnectTimeout in
// all — servers that refuse connections at first, as a cluster starting
// beside its gateways does, are tried again until then — and then gives
// up. Once open, a lost connection is retried for ever.
func Open(opts Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("opening the NATS pair log: %w", err)
	}
	s := &Store{
		opts:    o,
		names:   newNames(o.Prefix),
		log:     o.Logger,
		now:     time.Now,
		started: time.Now().UTC(),
		q: storage.NewQueue(storage.QueueOptions[*queued]{
			Size:      o.QueueSize,
			Bytes:     o.QueueBytes,
			BatchSize: o.BatchSize,
			Item:      newQueued,
			Reasons:   dropReasons,
			Settles:   true,
		}),
		reconnect: make(chan struct{}, 1),
		reconnCh:  make(chan struct{}),
		samplesQ:  make(chan []byte, samplesQueue),
	}
	s.lease.holder = holderID()
	s.lease.deposed = make(chan struct{}, 1)
	s.idx.init()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.hard, s.hardCancel = context.WithCancel(context.Background())
	fail := func(err error) (*Store, error) {
		s.cancel()
		s.hardCancel()
		s.wg.Wait()
		if s.nc != nil {
			s.nc.Close()
		}
		return nil, fmt.Errorf("opening the NATS pair log at %s: %w", o.urls(), err)
	}

	cctx, ccancel := context.WithTimeout(context.Background(), o.ConnectTimeout)
	err = s.connect(cctx)
	ccancel()
	if err != nil {
		return fail(err)
	}
	s.js, err = njs.New(s.nc,
		njs.WithPublishAsyncMaxPending(2*o.BatchSize+maxRecordsInFlight),
		njs.WithPublishAsyncTimeout(o.AckTimeout),
		njs.WithDefaultTimeout(o.Timeout))
	if err != nil {
		return fail(err)
	}
	// Setting up has a ConnectTimeout of its own: a cluster that just
	// started may still be electing its JetStream leaders.
	ctx, cancel := context.WithTimeout(context.Background(), o.ConnectTimeout)
	defer cancel()
	if err := s.setUp(ctx); err != nil {
		return fail(err)
	}
	if err := s.startDomainWatch(ctx); err != nil {
		return fail(fmt.Errorf("reading the domain records: %w", err))
	}
	if err := s.RefreshCounts(ctx); err != nil {
		return fail(err)
	}
	s.m = newMetrics(s.nc.IsConnected, s.seen.Load)
	if o.Registry != nil {
		if err := s.q.Register(o.Registry, s.m.collectors()...); err != nil {
			return fail(err)
		}
	}
	s.wg.Add(3)
	go s.runPublisher()
	go s.runRefresh()
	go s.runSamplePublisher()
	return s, nil
}

// connect connects to the servers. While none takes the connection (a
// cluster starting beside its gateways, a name not yet in DNS, a restart)
// it tries again every reconnectWait until ctx ends; an error that trying
// again would not mend (authentication, TLS, a missing credentials file)
// ends it at once.
func (s *Store) connect(ctx context.Context) error {
	for {
		nc, err := nats.Connect(s.opts.urls(), s.opts.natsOptions(s)...)
		if err == nil {
			s.nc = nc
			return nil
		}
		if permanent(err) {
			return fmt.Errorf("connecting: %w", err)
		}
		t := time.NewTimer(s.opts.reconnectWait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("connecting: no server took the connection within %s: %w", s.opts.ConnectTimeout, err)
		}
	}
}

// permanent reports whether a connection error is one that trying again
// would not mend: the servers refused the credentials or the TLS
// handshake failed on a certificate, or a file named in the options
// cannot be read.
func permanent(err error) bool {
	var (
		op       *net.OpError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		path     *fs.PathError
	)
	for _, e := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked,
		nats.ErrSecureConnRequired, nats.ErrSecureConnWanted} {
		if errors.Is(err, e) {
			return true
		}
	}
	// crypto/tls reports the server's alert (a certificate refused or
	// required) as a net.OpError whose Op is "remote error".
	return errors.As(err, &op) && op.Op == "remote error" || errors.As(err, &verify) || errors.As(err, &unknown) ||
		errors.As(err, &hostname) || errors.As(err, &path)
}

// maxRecordsInFlight bounds the domain records one commit publishes at
// once (see commit).
const maxRecordsInFlight = 1024

// setUp creates or updates the stream, the buckets and the object store.
// Every replica runs it with the same settings; a change of TTL, cap or
// replicas updates them in place.
func (s *Store) setUp(ctx context.Context) error {
	st, err := s.ensureStream(ctx)
	if err != nil {
		return err
	}
	s.stream = st
	o := s.opts
	kv := func(bucket, what string, ttl time.Duration) (njs.KeyValue, error) {
		b, err := s.js.CreateOrUpdateKeyValue(ctx, njs.KeyValueConfig{
			Bucket: bucket, Description: "Understudy: " + what, History: 1, TTL: ttl,
			Storage: njs.FileStorage, Replicas: o.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("creating key-value bucket %s: %w", bucket, err)
		}
		return b, nil
	}
	if s.kvDom, err = kv(s.names.domains, "domain records (counts, labels, settings)", 0); err != nil {
		return err
	}
	if s.kvRt, err = kv(s.names.routes, "routing records, the router's", 0); err != nil {
		return err
	}
	if s.kvStu, err = kv(s.names.students, "student versions' metadata", 0); err != nil {
		return err
	}
	if s.kvResp, err = kv(s.names.responses, "responses students made, kept for the TTL", max(o.TTL, 0)); err != nil {
		return err
	}
	if s.kvLease, err = kv(s.names.lease, "the learner lease: which replica trains and runs the gate", o.LeaseTTL); err != nil {
		return err
	}
	if s.kvRep, err = kv(s.names.replicas, "the live gateway replicas and their counters", replicaTTL); err != nil {
		return err
	}
	if err := s.ensureSamples(ctx); err != nil {
		return err
	}
	s.obs, err = s.js.CreateOrUpdateObjectStore(ctx, njs.ObjectStoreConfig{
		Bucket: s.names.artifacts, Description: "Understudy: student artifacts",
		Storage: njs.FileStorage, Replicas: o.Replicas,
	})
	if err != nil {
		return fmt.Errorf("creating object store %s: %w", s.names.artifacts, err)
	}
	return nil
}

// ensureStream creates or updates the pairs' stream. The servers apply
// the limits as pairs arrive: MaxAge (TTL) and MaxMsgsPerSubject (the
// cap per domain), discarding the oldest.
func (s *Store) ensureStream(ctx context.Context) (njs.Stream, error) {
	s.ensuredAt.Store(time.Now().UnixNano())
	o := s.opts
	cfg := njs.StreamConfig{
		Name:              s.names.pairs,
		Description:       "Understudy's pair log: teacher answers, a subject per task domain",
		Subjects:          []string{s.names.pairSubject + ">"},
		Retention:         njs.LimitsPolicy,
		Discard:           njs.DiscardOld,
		MaxAge:            max(o.TTL, 0),
		MaxMsgsPerSubject: int64(o.MaxPairsPerDomain),
		Storage:           njs.FileStorage,
		Replicas:          o.Replicas,
		Duplicates:        dupWindow(o.TTL),
		AllowMsgTTL:       true,
		AllowDirect:       true,
	}
	if o.MaxPairsPerDomain < 0 {
		cfg.MaxMsgsPerSubject = -1
	}
	st, err := s.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating stream %s (needs nats-server 2.11 or later): %w", s.names.pairs, err)
	}
	return st, nil
}

// dupWindow is the stream's duplicate window: a pair published again
// within it (after a lost acknowledgement) is stored once. It cannot
// exceed MaxAge.
func dupWindow(ttl time.Duration) time.Duration {
	const w = 2 * time.Minute
	if ttl > 0 && ttl < w {
		return ttl
	}
	return w
}

// QueueLen returns the number of pairs accepted by Log and not yet
// acknowledged or dropped.
func (s *Store) QueueLen() int { return s.q.Len() }

// Close stops accepting pairs, publishes what is queued (for at most
// CloseTimeout; what is left then is dropped, counted as closed, and
// reported in Close's error), counts it in the domain records, stops the
// watches and closes the connection. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.q.Close()
		timer := time.AfterFunc(s.opts.CloseTimeout, s.hardCancel)
		s.cancel()
		s.wg.Wait()
		timer.Stop()
		s.hardCancel()
		s.nc.Close()
		if s.opts.Registry != nil {
			s.q.Unregister(s.opts.Registry, s.m.collectors()...)
		}
	})
	return s.closeErr
}

// isClosed reports whether Close was called.
func (s *Store) isClosed() bool { return s.ctx.Err() != nil }

// call returns a context for one call to the servers, bounded by
// Timeout times scale, or ErrClosed after Close.
func (s *Store) call(scale int) (context.Context, context.CancelFunc, error) {
	if s.isClosed() {
		return nil, nil, storage.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(scale)*s.opts.Timeout)
	return ctx, cancel, nil
}

// closedErr maps the errors of a call made while Close closed the
// connection to storage.ErrClosed.
func (s *Store) closedErr(err error) error {
	if err != nil && (errors.Is(err, nats.ErrConnectionClosed) || s.isClosed()) {
		return storage.ErrClosed
	}
	return err
}

func (s *Store) disconnected(_ *nats.Conn, err error) {
	if s.isClosed() {
		return
	}
	s.log.Warn("pair log: NATS connection lost; pairs wait in the queue until it returns", "err", err, "queued", s.QueueLen())
}

func (s *Store) reconnected(nc *nats.Conn) {
	s.log.Info("pair log: NATS connection back", "server", nc.ConnectedUrlRedacted(), "queued", s.QueueLen())
	select {
	case s.reconnect <- struct{}{}:
	default:
	}
	s.reconnMu.Lock()
	close(s.reconnCh)
	s.reconnCh = make(chan struct{})
	s.reconnMu.Unlock()
}

// reconnections returns a channel closed at the next reconnection.
func (s *Store) reconnections() <-chan struct{} {
	s.reconnMu.Lock()
	defer s.reconnMu.Unlock()
	return s.reconnCh
}

// follow follows a bucket with the watch w (from WatchAll) until ctx
// ends, passing fn each entry stored when w started, then each change, in
// the order stored; fn returning false ends it. ready, when not nil, is
// closed once the entries stored at the start were passed. A server
// restart loses the watch's consumer, which the client would notice only
// after missed heartbeats (about ten seconds), so the watch starts again
// at each reconnection (and whenever it stops), from the revision after
// the last one seen.
func (s *Store) follow(ctx context.Context, kv njs.KeyValue, w njs.KeyWatcher, ready chan<- struct{}, fn func(njs.KeyValueEntry) bool) {
	var last uint64
	backoff := minBackoff
	reconn := s.reconnections()
	for ctx.Err() == nil {
		var err error
		if w == nil {
			reconn = s.reconnections()
			var opts []njs.WatchOpt
			if last > 0 {
				opts = append(opts, njs.ResumeFromRevision(last+1))
			}
			w, err = kv.WatchAll(ctx, opts...)
		}
		if err != nil {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-reconn:
			case <-ctx.Done():
			}
			t.Stop()
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
	watch:
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					break watch
				}
				if e == nil {
					if ready != nil {
						close(ready)
						ready = nil
					}
					continue
				}
				last = max(last, e.Revision())
				if !fn(e) {
					_ = w.Stop()
					return
				}
			case <-reconn:
				break watch
			case <-ctx.Done():
				break watch
			}
		}
		_ = w.Stop()
		w = nil
	}
}

func (s *Store) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	subject := ""
	if sub != nil {
		subject = sub.Subject
	}
	s.log.Warn("pair log: NATS error", "subject", subject, "err", err)
}
