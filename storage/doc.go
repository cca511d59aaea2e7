// Package storage owns Understudy's Badger database: the pair log (teacher
// answers logged per task domain, read back oldest first by Pairs for
// export and training), domain records with their label counts and
// settings, routing records (routes.go; the router's, stored as its
// bytes), student versions (students.go); retention. Only domain methods
// are exported: *badger.DB never leaves the package. backend.go names what
// components need of a store in small interfaces (PairLog, DomainRecords,
// StudentArtifacts, RoutingRecords, Responses), so that a second backend,
// NATS JetStream for gateway replicas (storage/jetstream), can stand in for
// DB; storage/storagetest is the suite both pass. The pair record format
// (codec.go) is shared by both, and so is Queue, the request path's
// bounded pair queue with its metrics (queue.go). The fine-tuning JSONL
// an export writes is internal/openai's.
//
// # Writing
//
// Log never blocks: it puts the pair on a queue bounded in pairs and in
// bytes, or drops it and counts the drop. That queue, with the progress
// Flush and QueueLen read and the pair log's common metrics, is a Queue
// (queue.go), which the JetStream backend embeds too. One writer
// goroutine, owned by DB, takes pairs off the queue and writes them every
// BatchSize pairs or FlushInterval, whichever comes first. Each write is a
// Badger WriteBatch sized to be a single Badger transaction and carries,
// besides the pairs, the updated records of the domains and labels they
// count: after a crash (kill -9) a pair is either stored and counted or
// neither. Close stops Log, drains the queue, writes it and closes Badger.
//
// # Memory
//
// Badger maps its files and writes the value log through the mapping; a
// releaser goroutine keeps those pages out of the process's resident set
// (resident.go), so RSS does not grow with the pairs stored.
//
// # Full disk
//
// Every file Badger writes through a memory map is reserved (fallocate)
// before the writer writes, and no write starts under
// Options.MinFreeBytes free: below it logging pauses (pairs dropped as
// disk_full, one warning, a gauge) and resumes by itself when space
// returns, instead of Badger faulting (SIGBUS) on a page the disk cannot
// hold. Open on a full disk opens read-only, or read-write with the room of
// a spare file the log keeps (space.go).
//
// # Damage
//
// Open refuses, changing nothing, a directory whose MANIFEST or tables
// Badger would open only by deleting data or panicking (damage.go). Values
// are read with Badger's checksum: a pair that cannot be read back is
// skipped and reported as ErrDamaged after the readable ones.
//
// # Layout
//
// Keys start with their kind and domain so that one domain iterates alone
// (see keys.go): pair/<domain>/<ulid>, domain/<domain>, label/<domain>/<label>,
// route/<domain>, student/<domain>/<version>, studentmeta/<domain>/<version>,
// meta/format. Pairs are a compact binary record (codec.go), domain records
// JSON. A ULID orders pairs oldest first and dates them for TTL.
//
// # Retention
//
// Every RetentionInterval a pass deletes pairs older than TTL and, per
// domain, the oldest beyond MaxPairsPerDomain, decrementing the counts in
// the same transaction, then runs value-log GC. It deletes 1,000 pairs per
// transaction with a pause after each, at most RetentionRate pairs per
// second (or twice the write rate, when higher), so that a large excess is
// spread over seconds instead of stalling the process. Badger's entry TTL
// is set a grace period later, as a backstop only (see retention.go).
package storage
