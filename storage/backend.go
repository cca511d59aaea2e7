package storage

import (
	"context"
	"errors"
	"time"
)

// ErrFenced is returned for a write that a newer learner fenced off:
// another replica took the learner lease since this one last wrote (a
// routing record), or another learner already stored the student version.
// The writer no longer leads, or lost the race for the version: it must
// not retry the write as it is.
var ErrFenced = errors.New("fenced off: another replica leads the learning")

// The interfaces below are what Understudy's components need of a store,
// each named for what it holds. DB, the embedded Badger store, implements
// them all; a second backend implements them too, and each component asks
// for only the ones it uses.

// PairLog is the log of teacher answers: Log appends without blocking,
// Pairs reads one domain's oldest first.
type PairLog interface {
	Log(p Pair) bool
	Pairs(ctx context.Context, domain string, fn func(Pair) error) error
}

// DomainRecords is what is known of each domain: its counts, its labels,
// and settings its users keep (the trainer's bookkeeping). Routing state
// is not among them: that is RoutingRecords, the router's alone.
type DomainRecords interface {
	Domains() ([]Domain, error)
	Summaries() ([]Domain, error)
	ChangedSince(cursor uint64) ([]Domain, uint64, error)
	Domain(name string) (Domain, error)
	SetDomainSetting(name, key, value string) error
}

// StudentArtifacts holds the trained student versions of each domain:
// their metadata and their artifacts, whose format the student package
// owns. PutStudent on a store shared by replicas (NATS JetStream) stores a
// version once: it refuses one already stored, or being stored by another
// learner, with ErrFenced, so two learners never write the same version;
// the embedded Badger DB, one process, replaces it.
type StudentArtifacts interface {
	PutStudent(domain string, version int, meta, artifact []byte) error
	StudentVersions(domain string) ([]StudentVersion, error)
	StudentArtifact(domain string, version int) ([]byte, error)
}

// RoutingRecords holds each domain's routing record, whose format the
// router owns; the router of the Lease's holder is its one writer. On a
// store shared by replicas, PutRoutingRecord is fenced by the lease's
// terms: once another replica took the lease, every write of this one
// fails with ErrFenced, whatever its clock says, and its router stops
// leading. Badger, one process, is never fenced.
type RoutingRecords interface {
	RoutingRecords() (map[string][]byte, error)
	PutRoutingRecord(domain string, rec []byte) error
}

// RoutingWatch follows the routing records that every replica stores: a
// backend shared by several gateway replicas (NATS JetStream) implements
// it, so that a promotion decided by one replica reaches the others.
// WatchRoutingRecords sends every record stored when it is called, then
// each change as it is stored, in the order stored, until ctx ends or the
// store closes; then it closes the channel. A record stored again before
// the watch delivered it may come in its latest version only: a watcher
// learns each domain's latest record, not every step.
type RoutingWatch interface {
	WatchRoutingRecords(ctx context.Context) (<-chan RoutingChange, error)
}

// RoutingChange is one domain's routing record as stored by a replica
// (this one included). Record is nil when the record was deleted.
type RoutingChange struct {
	Domain string
	Record []byte
}

// Lease elects the one replica at a time that learns: it trains and runs
// the gate, and so is the one writer of the routing records. The Badger
// DB, one process, always holds it; the NATS JetStream store keeps it in
// a key-value entry with a TTL that its holder renews.
type Lease interface {
	// Lead runs until ctx ends. Each time this replica takes the lease
	// it calls term with a context that ends when the lease is lost or
	// ctx ends, and waits for term to return; when ctx ended, the lease
	// is released then (another replica takes it at once), else it tries
	// again to take it.
	Lead(ctx context.Context, term func(ctx context.Context)) error
	// Held reports whether this replica holds the lease now: a holder
	// that could not renew it stops reporting it held before any other
	// replica can take it. It is a cheap first guard that relies on the
	// holder's clock and on no pause between the check and a write; the
	// fence is the store's (see RoutingRecords): a write made after
	// another replica took the lease fails with ErrFenced, and that ends
	// this replica's term.
	Held() bool
}

// SampleBus carries scored shadow samples from every replica to the one
// that holds the Lease, whose gate counts them. The router owns their
// format. PublishSample never blocks: it returns false when it dropped
// the sample (a full queue, no connection). Samples delivers the samples
// any replica publishes from now on, until ctx ends or the store closes;
// then it closes the channel.
type SampleBus interface {
	PublishSample(b []byte) bool
	Samples(ctx context.Context) (<-chan []byte, error)
}

// Responses keeps the responses a student made on the Responses API, for
// as long as the pair log keeps pairs; the gateway owns their format.
type Responses interface {
	PutResponse(id string, rec []byte) error
	Response(id string) ([]byte, error)
	DeleteResponse(id string) error
}

var (
	_ Responses        = (*DB)(nil)
	_ PairLog          = (*DB)(nil)
	_ DomainRecords    = (*DB)(nil)
	_ StudentArtifacts = (*DB)(nil)
	_ RoutingRecords   = (*DB)(nil)
	_ Lease            = (*DB)(nil)
)

// ReplicaSet lists the gateway replicas that share the store, for the
// operators' views: each replica announces itself with its counters, and
// the admin API of any replica sums them. The NATS JetStream store keeps
// an entry per replica in a key-value bucket with a TTL, written every few
// seconds, so a replica that dies drops out by itself; the Badger DB is
// one process, so its set is itself.
type ReplicaSet interface {
	// Replica is this replica's ID.
	Replica() string
	// Announce makes this replica known, with version (the binary's; ""
	// when unknown) and the counters report returns, refreshed every few
	// seconds, until ctx ends or the store closes. When ctx ends it
	// withdraws the replica; when the store closed first the entry is
	// left to expire.
	Announce(ctx context.Context, version string, report func() ReplicaCounters) error
	// Replicas returns the live replicas, as last announced, oldest first.
	Replicas(ctx context.Context) ([]Replica, error)
}

// Replica is one live gateway replica as it announced itself.
type Replica struct {
	ID       string    `json:"id"` // "host/pid/random"
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Version  string    `json:"version,omitempty"`
	Started  time.Time `json:"started"`
	LastSeen time.Time `json:"last_seen"`
	// Leader: it held the Lease (trains and runs the gate) when it last
	// announced itself.
	Leader bool `json:"leader"`
	// PairsLogged and PairsDropped count the pairs it logged and dropped
	// since it started.
	PairsLogged  uint64 `json:"pairs_logged"`
	PairsDropped uint64 `json:"pairs_dropped"`
	ReplicaCounters
}

// ReplicaCounters are what a replica counted since it started, by domain:
// cumulative, so that the counts of several replicas add up. Domains names
// those the gateway names in its metrics (metrics.max_domains); Other pools
// the rest.
type ReplicaCounters struct {
	Domains map[string]DomainCounters `json:"domains,omitempty"`
	Other   *DomainCounters           `json:"other_domains,omitempty"`
}

// DomainCounters are one domain's counts on one replica since it started.
type DomainCounters struct {
	// Routes counts the answers by route (teacher, student, deferred,
	// student-fallback), as the router names them.
	Routes       map[string]int64 `json:"routes,omitempty"`
	SpentDollars float64          `json:"spent_dollars,omitempty"`
	SavedDollars float64          `json:"saved_dollars,omitempty"`
}
