// Package jetstream is Understudy's storage backend on NATS JetStream, for
// several stateless gateway replicas sharing one store: the pair log, the
// domain records, the routing records (watched by every replica), the
// student artifacts and the kept responses. Store implements the storage
// package's interfaces (PairLog, DomainRecords, StudentArtifacts,
// RoutingRecords, Responses, RoutingWatch, Lease, SampleBus, ReplicaSet)
// and the few methods the gateway
// asks of storage.DB besides (DomainNames, DomainsPage); no NATS type
// leaves the package. storage/storagetest is the suite it passes beside
// the Badger DB.
//
// # Layout
//
// From Options.Prefix (default "understudy"):
//
//	stream   understudy_pairs      pairs, subject understudy.pairs.<domain token>
//	KV       understudy_domains    one record per domain: counts, labels, settings
//	KV       understudy_routes     one routing record per domain (the router's bytes),
//	                               and learner.term, the fence of the lease's terms (lease.go)
//	KV       understudy_students   a student version's metadata, key <token>.<version>
//	objects  understudy_artifacts  a student version's artifact, <domain>/<version>
//	KV       understudy_responses  kept responses, with the pair log's TTL
//	KV       understudy_lease      the learner lease (lease.go), with LeaseTTL
//	stream   understudy_samples    shadow samples for the learner's gate (memory, 1 min)
//	KV       understudy_replicas   each live replica and its counters (replicas.go), with a TTL
//
// A domain's token is its name with '.' written '=' (names.go): reversible,
// since no domain name holds '=', and never an empty subject token. A
// pair is its Badger record (storage.AppendPairRecord) with its ID as
// Nats-Msg-Id and the replica that logged it as Understudy-Replica. The stream's limits are the retention: MaxAge is the TTL
// and MaxMsgsPerSubject the cap per domain, applied by the servers as
// pairs arrive; a pair logged with an old Time gets a message TTL of what
// is left of it, so pairs age by their Time as on Badger.
//
// # Writing
//
// Log, QueueLen, Flush and the pair log's common metrics are a
// storage.Queue, as in the Badger DB: Log never blocks, puts the pair on a
// queue bounded in pairs and bytes, or drops it and counts the drop
// (understudy_storage_pairs_dropped_total, same reasons, plus rejected and
// too_large). One publisher goroutine publishes batches asynchronously
// and counts a pair as logged only once the stream acknowledged it; a
// pair without an answer (connection lost, AckTimeout) is published again
// until it is, the stream dropping a repeat within its duplicate window
// by the ID. While the servers are away pairs wait in the queue, and Log
// drops what does not fit. Acknowledged pairs are added to their domains'
// records by compare-and-set (publisher.go), so counts of several
// replicas add up. Flush waits for both; Close publishes what is queued
// for at most CloseTimeout.
//
// # Reading
//
// Pairs reads one domain oldest first through an ordered consumer on its
// subject. Domain reads the record and counts the subject's pairs in the
// stream; Summaries and ChangedSince answer from memory, from a watch of
// the domain records and the stored counts read every RefreshInterval
// (see record for what is exact and what is approximate).
package jetstream
