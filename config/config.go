// Package config owns Understudy's configuration: the Config struct and its
// defaults, strict YAML loading (unknown keys are errors), environment
// overrides, and Validate, whose errors name the offending field.
//
// Precedence, lowest to highest: Default(), the YAML file, environment
// variables, command-line flags (applied by cmd/understudy).
//
// # Defaults and ranges, stated once
//
// Each section's defaults are written in one place, its Default<Section>
// variable (DefaultTeacher, DefaultStorage, ...), which Default() assembles;
// each field's doc comment and the README's configuration example repeat
// it for the reader (TestREADMEDefaults holds the README to it). Sections
// whose every default is a zero value (pricing, onnxruntime) have none. The
// variables are read, never written, at run time: Default() copies them.
// Each section checks its own fields in its validate method, naming them by
// their YAML path; Validate joins what they find.
//
// The packages these sections configure (storage, trainer, shadow, router)
// also run without a Config, in their tests and in tools, so they keep
// defaults of their own, under one rule: a package's default options
// (storage.DefaultOptions, trainer.DefaultSchedulerConfig,
// trainer.DefaultOptions, shadow.DefaultGate, shadow.DefaultPoolConfig,
// router.DefaultMaxDomains) equal what cmd/understudy makes of Default(),
// and a zero field means its default, except where zero is itself a value
// this package accepts (trainer.cooldown, trainer.hidden, router.shadow_rate
// and shadow_max_rate, a false switch): there a zero field means that
// value. cmd/understudy passes every configured value explicitly, maps each
// section to its package's options in one function, and its tests fail
// when a package default or a range the package checks itself (the gate's)
// drifts from this package's.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration of an Understudy process.
type Config struct {
	// Listen is the address of the OpenAI-compatible API. Default
	// "127.0.0.1:8080": reachable from this machine only. Any other address
	// needs gateway.api_keys (or gateway.allow_unauthenticated), so that a
	// gateway is never an open relay spending the teacher's key.
	Listen string `yaml:"listen"`
	// DataDir is where Understudy keeps its database. Default "./understudy-data".
	DataDir string `yaml:"data_dir"`

	Admin   Admin   `yaml:"admin"`
	Gateway Gateway `yaml:"gateway"`
	Teacher Teacher `yaml:"teacher"`
	Storage Storage `yaml:"storage"`
	Labels  Labels  `yaml:"labels"`
	Trainer Trainer `yaml:"trainer"`
	Router  Router  `yaml:"router"`
	Metrics Metrics `yaml:"metrics"`
	// Pricing is the teacher's price per model, for the cost metrics.
	Pricing Pricing `yaml:"pricing"`

	ONNXRuntime ONNXRuntime `yaml:"onnxruntime"`
	Log         Log         `yaml:"log"`

	// Domains are explicit task domains with the rules that match requests to
	// them. Requests that match none get an automatic domain. Default none.
	Domains []Domain `yaml:"domains"`
}

// Admin configures the admin API listener.
type Admin struct {
	// Listen is the admin API address. Default "127.0.0.1:8081".
	Listen string `yaml:"listen"`
	// Token is the bearer token the admin API requires. Default "" (allowed
	// only while Listen is a loopback address).
	Token string `yaml:"token" secret:"true"`
}

// DefaultAdmin is the admin section's default.
var DefaultAdmin = Admin{Listen: "127.0.0.1:8081"}

// Gateway configures the client-facing API.
type Gateway struct {
	// APIKeys, when set, are the keys clients must present as
	// "Authorization: Bearer KEY". Default none: no client authentication,
	// which Validate allows only while Listen is a loopback address.
	APIKeys []string `yaml:"api_keys" secret:"true"`
	// AllowUnauthenticated lets a gateway without APIKeys listen on a
	// non-loopback address: for a gateway behind a proxy or mesh that
	// authenticates clients itself. Default false.
	AllowUnauthenticated bool `yaml:"allow_unauthenticated"`
	// ReadHeaderTimeout bounds the time from a connection's first byte of a
	// request (or its opening) to the end of the request's headers. Default
	// 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a request's body, after its headers. A
	// body relayed to the teacher unread (an upload to /v1/files, say) gets
	// teacher.timeout instead when that is longer. Default 60s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// IdleTimeout closes a keep-alive connection with no request for this
	// long. Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// WriteTimeout bounds each write of an answer to a client: a client
	// that stops reading a stream (its socket buffer full) for this long
	// is dropped, and the teacher's stream it held released. Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxConns caps the client connections open at once; past it a new
	// connection is answered 503 (an OpenAI error object, Retry-After) and
	// closed. Default 0: the process's open-file limit less what the teacher
	// connections, the pair log and the admin listener need, at most 65536.
	MaxConns int `yaml:"max_conns"`
	// MaxBodySize is the largest request body accepted on the endpoints the
	// gateway reads (chat completions, completions, responses). Bodies
	// relayed to the teacher unread (files, audio, ...) stream through
	// without a limit. Default 8MiB.
	MaxBodySize Size `yaml:"max_body_size"`
	// ShutdownDelay is how long a stopping gateway keeps accepting and
	// serving requests after /readyz turned 503, so that a load balancer
	// sees it leave before its port closes instead of sending it requests
	// that fail. It then stops accepting and waits up to ShutdownTimeout
	// for the requests in flight. A second SIGINT or SIGTERM skips the rest
	// of it. Behind a load balancer, set it longer than the balancer takes
	// to notice a failed health check (its interval plus its timeout).
	// Default 0: a single gateway stops at once.
	ShutdownDelay time.Duration `yaml:"shutdown_delay"`
	// ShutdownTimeout bounds how long a stopping server waits for requests
	// in flight. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// GCPercent is the Go garbage collector's target, as GOGC sets it (the
	// GOGC environment variable wins when set): the heap may grow this many
	// percent above what is live before a collection. Default 100, Go's
	// own: at 2,000 req/s 200 measured the same overhead p99 (231 against
	// 235 µs) for 35–50 MB more RSS.
	GCPercent int `yaml:"gc_percent"`
	// MaxAutoDomains bounds the automatic domains (auto-…, named by a
	// fingerprint of model, system prompt and answer shape): past it, a
	// request of an automatic domain the gateway does not know yet is
	// answered by the teacher but not logged, scored or answered by a
	// student, and counted in understudy_gateway_domains_refused_total.
	// Domains that exist (in the pair log at start, or admitted since)
	// always pass, and so do named ones (X-Understudy-Domain,
	// metadata.task, domains rules), which do not count toward it. 0 admits
	// no new automatic domain. Default 1000.
	MaxAutoDomains int `yaml:"max_auto_domains"`
	// NewDomainsPerMinute bounds how fast new automatic domains are
	// admitted, with a burst of as many: a token bucket. 0 admits none.
	// Default 60.
	NewDomainsPerMinute int `yaml:"new_domains_per_minute"`
	// MemoryLimit is a soft limit on the Go runtime's memory, as GOMEMLIMIT
	// sets it (GOMEMLIMIT wins when set): past it the collector runs more
	// often whatever gc_percent says, so the headroom gc_percent leaves
	// above a large live heap (a student training on 20,000 pairs) stays
	// bounded. Memory ONNX Runtime and mapped files hold comes on top. 0
	// turns it off. Default 128MiB: a training run on 20,000 pairs peaked
	// at 253–263 MB of RSS under it, 294–303 MB under 160MiB, for a run up
	// to a third longer.
	MemoryLimit Size `yaml:"memory_limit"`
}

// DefaultGateway is the gateway section's default.
var DefaultGateway = Gateway{
	ReadHeaderTimeout:   10 * time.Second,
	ReadTimeout:         60 * time.Second,
	IdleTimeout:         60 * time.Second,
	WriteTimeout:        30 * time.Second,
	MaxBodySize:         8 * MiB,
	ShutdownTimeout:     30 * time.Second,
	GCPercent:           100,
	MaxAutoDomains:      1000,
	NewDomainsPerMinute: 60,
	MemoryLimit:         128 * MiB,
}

// Teacher configures the upstream model server the gateway fronts.
type Teacher struct {
	// URL is the teacher's OpenAI-compatible base URL, the same value an SDK
	// takes as its base URL. Default "https://api.openai.com/v1".
	URL string `yaml:"url"`
	// APIKey is sent to the teacher as "Authorization: Bearer KEY".
	// Default: $OPENAI_API_KEY.
	APIKey string `yaml:"api_key" secret:"true"`
	// PassClientAuthorization forwards the client's own Authorization header
	// to the teacher instead of APIKey. Default false.
	PassClientAuthorization bool `yaml:"pass_client_authorization"`
	// ConnectTimeout bounds dialing (and TLS) to the teacher. Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// FirstByteTimeout bounds the wait for the first response byte after the
	// request was sent. Default 120s.
	FirstByteTimeout time.Duration `yaml:"first_byte_timeout"`
	// Timeout bounds a whole teacher exchange, streams included. Default 600s.
	Timeout time.Duration `yaml:"timeout"`
	// IdleTimeout bounds the silence between two reads of an answer once
	// its first byte came: a teacher that stalls mid-stream this long is
	// cut off, and the client told, instead of holding the connection until
	// Timeout. Long enough for a reasoning model's silence between events.
	// Default 300s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConns caps open connections to the teacher. Default 1024.
	MaxConns int `yaml:"max_conns"`
	// QueueTimeout is how long a request waits for one of the MaxConns
	// connections when all are busy. Waiting is back-pressure, not a
	// teacher failure: past it the client gets 503 with Retry-After and the
	// breaker counts nothing. Default 10s.
	QueueTimeout time.Duration `yaml:"queue_timeout"`
	// MaxIdleConnDuration closes keep-alive connections idle this long. It
	// must stay below the teacher's own keep-alive timeout (uvicorn, and so
	// vLLM, and Node.js close idle connections after 5s; gunicorn after 2s),
	// or the gateway sends requests on connections the teacher is closing.
	// Default 4s.
	MaxIdleConnDuration time.Duration `yaml:"max_idle_conn_duration"`
	// Retries is how many times a request is tried again when it failed
	// before reaching the teacher: a failed connect, or a kept-alive
	// connection the teacher had closed (the first such retry is at once, on
	// a new connection). A request the teacher began to answer is never
	// sent again. Default 2.
	Retries int `yaml:"retries"`
	// RetryWindow bounds the total time spent retrying. Default 3s.
	RetryWindow time.Duration `yaml:"retry_window"`
	// Breaker configures the circuit breaker around the teacher.
	Breaker Breaker `yaml:"breaker"`
}

// DefaultTeacher is the teacher section's default.
var DefaultTeacher = Teacher{
	URL:                 "https://api.openai.com/v1",
	ConnectTimeout:      5 * time.Second,
	FirstByteTimeout:    120 * time.Second,
	Timeout:             600 * time.Second,
	IdleTimeout:         300 * time.Second,
	MaxConns:            1024,
	QueueTimeout:        10 * time.Second,
	MaxIdleConnDuration: 4 * time.Second,
	Retries:             2,
	RetryWindow:         3 * time.Second,
	Breaker:             DefaultBreaker,
}

// Breaker configures the teacher's circuit breaker. It opens when the
// teacher fails a share of the requests of the last Window (FailureRatio,
// once MinRequests were seen), or, while fewer were seen, on
// ConsecutiveFailures in a row. Failures are transport errors, timeouts and
// 5xx answers; 4xx answers, clients that hang up and requests that waited
// for a connection in vain are not. A teacher failing some requests keeps
// serving the others.
type Breaker struct {
	// FailureRatio of the window's requests that opens the breaker, in
	// (0,1]. Default 0.5.
	FailureRatio float64 `yaml:"failure_ratio"`
	// MinRequests is how many requests the window must hold before
	// FailureRatio applies. Default 20.
	MinRequests int `yaml:"min_requests"`
	// Window is the rolling window the ratio is taken over (in 1s buckets).
	// Default 10s.
	Window time.Duration `yaml:"window"`
	// ConsecutiveFailures opens the breaker while the window holds fewer
	// than MinRequests requests (low traffic). Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// OpenTimeout is how long the breaker stays open before it lets probe
	// requests through. Default 30s.
	OpenTimeout time.Duration `yaml:"open_timeout"`
	// HalfOpenRequests is how many probe requests a half-open breaker lets
	// through at once; that many successes close it, one failure opens it
	// again. Default 5.
	HalfOpenRequests int `yaml:"half_open_requests"`
}

// DefaultBreaker is the teacher.breaker section's default.
var DefaultBreaker = Breaker{
	FailureRatio:        0.5,
	MinRequests:         20,
	Window:              10 * time.Second,
	ConsecutiveFailures: 5,
	OpenTimeout:         30 * time.Second,
	HalfOpenRequests:    5,
}

// Storage configures the pair log: every eligible teacher answer, kept per
// task domain in a Badger database under data_dir, or on NATS JetStream
// for several gateway replicas (backend).
type Storage struct {
	// Enabled turns pair logging on. Default true.
	Enabled bool `yaml:"enabled"`
	// Backend is where the pair log and the records (domains, routing,
	// students, kept responses) live: "badger", an embedded database
	// under data_dir for one process, or "nats", NATS JetStream shared by
	// several gateway replicas (see nats). Under nats the servers keep the
	// data, so sync_writes, encryption_key_file, min_free and
	// retention_rate do not apply, and retention_interval is how often the
	// stored pair counts are read back from the stream. Default "badger".
	Backend string `yaml:"backend"`
	// NATS configures the nats backend.
	NATS StorageNATS `yaml:"nats"`
	// KeepRequests stores each request's messages with its pair, so exports
	// carry the full conversation. Default true.
	KeepRequests bool `yaml:"keep_requests"`
	// SyncWrites makes every batch durable before the next (fsync). Default
	// false: a killed process keeps what reached Badger; a power loss may
	// lose the last moments.
	SyncWrites bool `yaml:"sync_writes"`
	// EncryptionKeyFile, when set, encrypts the data at rest with AES-256
	// using the key in this file (32 raw bytes, 64 hex digits, or base64).
	// Default "" (no encryption).
	EncryptionKeyFile string `yaml:"encryption_key_file"`
	// TTL removes pairs older than this. Default 720h (30 days).
	TTL time.Duration `yaml:"ttl"`
	// MaxPairsPerDomain keeps only the newest pairs of each domain.
	// Default 200000.
	MaxPairsPerDomain int `yaml:"max_pairs_per_domain"`
	// QueueSize bounds the pairs waiting to be written; when it is full a
	// pair is dropped and counted rather than delaying a request.
	// Default 65536.
	QueueSize int `yaml:"queue_size"`
	// QueueBytes bounds the memory of the pairs waiting to be written (a
	// pair carries its request when keep_requests is on); beyond it a pair is
	// dropped and counted. Default 32MiB.
	QueueBytes Size `yaml:"queue_bytes"`
	// MinFree is the free space on data_dir's filesystem below which the
	// pair log pauses: pairs are dropped and counted (reason disk_full),
	// serving goes on, and logging resumes by itself when space returns.
	// At least 64MiB. Default 256MiB (twice a value-log file).
	MinFree Size `yaml:"min_free"`
	// BatchSize writes a batch once this many pairs wait. Default 1024.
	BatchSize int `yaml:"batch_size"`
	// FlushInterval writes waiting pairs at least this often. Default 100ms.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// RetentionInterval is how often TTL, the cap and value-log GC run.
	// Default 5m.
	RetentionInterval time.Duration `yaml:"retention_interval"`
	// RetentionRate bounds how fast retention deletes, in pairs per
	// second, so that a large excess is spread out instead of stalling the
	// gateway: a pass deletes no faster than this or twice the rate pairs
	// were written since the last pass, whichever is higher. Default
	// 20000; -1: as fast as Badger goes.
	RetentionRate int `yaml:"retention_rate"`
}

// DefaultStorage is the storage section's default.
var DefaultStorage = Storage{
	Enabled:           true,
	Backend:           BackendBadger,
	NATS:              DefaultStorageNATS,
	KeepRequests:      true,
	TTL:               720 * time.Hour,
	MaxPairsPerDomain: 200000,
	QueueSize:         65536,
	QueueBytes:        32 * MiB,
	MinFree:           256 * MiB,
	BatchSize:         1024,
	FlushInterval:     100 * time.Millisecond,
	RetentionInterval: 5 * time.Minute,
	RetentionRate:     20000,
}

// The storage backends (Storage.Backend).
const (
	BackendBadger = "badger"
	BackendNATS   = "nats"
)

// StorageNATS configures the NATS JetStream backend: the servers, how to
// authenticate to them, and how many copies they keep. Pairs go to a
// stream with a subject per domain, whose limits carry storage.ttl and
// storage.max_pairs_per_domain; records go to key-value buckets, student
// artifacts to an object store. Every replica must use the same settings.
// It is checked only when storage.backend is nats.
type StorageNATS struct {
	// URL is the NATS server, or the servers of one cluster separated by
	// commas: nats://host:4222, or tls://host:4222 to require TLS.
	// Default "" (required when storage.backend is nats).
	URL string `yaml:"url"`
	// CredsFile is a NATS credentials file (a user JWT and its NKey seed),
	// for servers with decentralized (operator) auth. Default "".
	CredsFile string `yaml:"creds_file"`
	// User authenticates with Password. Default "".
	User string `yaml:"user"`
	// Password is User's password. Default "".
	Password string `yaml:"password" secret:"true"`
	// Token authenticates with a token. Set at most one of creds_file,
	// user and password, token. Default "".
	Token string `yaml:"token" secret:"true"`
	// CAFile is a PEM file of the CAs that sign the servers' certificates,
	// when they are not among the system's. Default "".
	CAFile string `yaml:"ca_file"`
	// CertFile is a PEM client certificate, for servers that verify
	// clients (mutual TLS); it needs KeyFile. Default "".
	CertFile string `yaml:"cert_file"`
	// KeyFile is CertFile's private key (PEM). Default "".
	KeyFile string `yaml:"key_file"`
	// Replicas is how many servers keep a copy of each stream and bucket,
	// in 1..5: 1 for a single server, 3 for a cluster (survives the loss
	// of one server). Default 1.
	Replicas int `yaml:"replicas"`
	// Prefix names this deployment's streams, buckets and subjects
	// (prefix_pairs, prefix.pairs.<domain>, ...), so that several
	// deployments can share servers: 1-32 of A-Z a-z 0-9 _ -. Default
	// "understudy".
	Prefix string `yaml:"prefix"`
	// ConnectTimeout bounds connecting (and setting up the streams) at
	// start; past it the gateway does not start. A connection lost later
	// is retried for ever, pairs waiting in the bounded queue meanwhile.
	// Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// LeaseTTL is how long the learner lease (which replica trains and
	// runs the gate) outlives its holder's last renewal: after a leader
	// dies, another takes over within it and a second. At least 1s.
	// Default 10s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// DefaultStorageNATS is the storage.nats section's default.
var DefaultStorageNATS = StorageNATS{Replicas: 1, Prefix: "understudy", ConnectTimeout: 10 * time.Second, LeaseTTL: 10 * time.Second}

// Labels configures how teacher answers are normalized into labels.
type Labels struct {
	// FoldCase compares answers case-insensitively. Default true.
	FoldCase bool `yaml:"fold_case"`
	// StripTrailingPeriod ignores one trailing "." of an answer. Default true.
	StripTrailingPeriod bool `yaml:"strip_trailing_period"`
}

// DefaultLabels is the labels section's default.
var DefaultLabels = Labels{FoldCase: true, StripTrailingPeriod: true}

// Trainer configures background training of students.
type Trainer struct {
	// Enabled turns background training on. Default true.
	Enabled bool `yaml:"enabled"`
	// MinPairs a domain needs before its first student. Default 200.
	MinPairs int `yaml:"min_pairs"`
	// RetrainEvery is how many new pairs since the last version trigger the
	// next. Default 500.
	RetrainEvery int `yaml:"retrain_every"`
	// MaxTrainPairs caps a run's data to a domain's newest pairs.
	// Default 20000.
	MaxTrainPairs int `yaml:"max_train_pairs"`
	// BacktestPairs is the most of a domain's newest pairs (at most a
	// fifth of them) a run holds out of training to back-test the version
	// on: its scores there count toward the gate at once, assuming the
	// recent past looks like the present. 0 turns back-testing off.
	// Default 2000.
	BacktestPairs int `yaml:"backtest_pairs"`
	// Threads ONNX Runtime may use for training, so serving keeps its
	// cores. Default 1.
	Threads int `yaml:"threads"`
	// Interval is how often domains are checked for training (from
	// memory: cheap). Default 1s.
	Interval time.Duration `yaml:"interval"`
	// Cooldown is the least time between two runs of one domain, so a busy
	// domain is not retrained back to back. A domain that has doubled its
	// pairs since its last run is retrained at once, whatever the cooldown
	// and retrain_every (200, 400, 800, ... pairs, up to max_train_pairs).
	// Default 1m.
	Cooldown time.Duration `yaml:"cooldown"`
	// Dim is the students' embedding width. Default 16.
	Dim int `yaml:"dim"`
	// Hidden is the width of an optional hidden layer; 0 is none. Default 0.
	Hidden int `yaml:"hidden"`
	// MaxEpochs bounds a run (early stopping usually ends it first).
	// Default 30. A student's confidence threshold τ is chosen on its
	// holdout set for router.agreement_threshold plus a 0.01 margin.
	MaxEpochs int `yaml:"max_epochs"`
}

// DefaultTrainer is the trainer section's default.
var DefaultTrainer = Trainer{
	Enabled:       true,
	MinPairs:      200,
	RetrainEvery:  500,
	MaxTrainPairs: 20000,
	BacktestPairs: 2000,
	Threads:       1,
	Interval:      time.Second,
	Cooldown:      time.Minute,
	Dim:           16,
	MaxEpochs:     30,
}

// Router configures shadow scoring, the promotion gate and rerouting.
type Router struct {
	// AgreementThreshold is the selective agreement with the teacher a
	// student must be shown to reach (lower confidence bound) to serve, and
	// below which it is demoted. Default 0.95.
	AgreementThreshold float64 `yaml:"agreement_threshold"`
	// Confidence of the promotion test and the bounds (1 - α), in (0.5,1)
	// (see shadow.Gate). Default 0.95.
	Confidence float64 `yaml:"confidence"`
	// DemotionConfidence of the demotion test (1 - α), in (0.5,1). Lower
	// than Confidence by default: a wrong demotion only sends traffic back
	// to the teacher, while a drift noticed late serves wrong answers (see
	// shadow.Gate). Default 0.85.
	DemotionConfidence float64 `yaml:"demotion_confidence"`
	// MinSamples is the fewest confident shadow samples before a promotion.
	// Default 200.
	MinSamples int `yaml:"min_samples"`
	// ShadowRate is the share of a serving domain's requests sent to the
	// teacher and scored whatever the student's confidence, so drift is
	// caught. Default 0.05.
	ShadowRate float64 `yaml:"shadow_rate"`
	// ExploreRate replaces ShadowRate while a serving student could be
	// proven at a lower threshold (its next one agrees above the
	// threshold so far): the samples that prove more coverage cost
	// teacher calls on requests the student could have answered, so it
	// lowers the offload while it lasts. Default 0.1.
	ExploreRate float64 `yaml:"explore_rate"`
	// ShadowMaxRate caps, per domain, the requests per second scored
	// against a shadowing student (each costs a featurization and a
	// prediction); 0 scores every one. The gate needs a few hundred
	// samples, which this still gathers in seconds. Default 200.
	ShadowMaxRate float64 `yaml:"shadow_max_rate"`
	// FallbackToStudent answers with a promoted student when the teacher is
	// down (breaker open, transport failure or 5xx). Default true.
	FallbackToStudent bool `yaml:"fallback_to_student"`
	// ShadowQueueSize bounds the shadow scoring queue; a full queue drops
	// and counts. Default 4096.
	ShadowQueueSize int `yaml:"shadow_queue_size"`
	// ShadowWorkers score candidates in parallel. Default 1.
	ShadowWorkers int `yaml:"shadow_workers"`
}

// DefaultRouter is the router section's default.
var DefaultRouter = Router{
	AgreementThreshold: 0.95,
	Confidence:         0.95,
	DemotionConfidence: 0.85,
	MinSamples:         200,
	ShadowRate:         0.05,
	ExploreRate:        0.1,
	ShadowMaxRate:      200,
	FallbackToStudent:  true,
	ShadowQueueSize:    4096,
	ShadowWorkers:      1,
}

// Metrics configures the Prometheus metrics.
type Metrics struct {
	// MaxDomains is how many domains get their own label value; later
	// ones are counted under "_other". Default 50.
	MaxDomains int `yaml:"max_domains"`
	// RequireAPIKey protects the gateway's /metrics with gateway.api_keys,
	// like /v1 (Prometheus sends one with its scrape config's
	// authorization). Default false: metrics name domains and volumes, so
	// set it when the gateway's port is reachable by others.
	RequireAPIKey bool `yaml:"require_api_key"`
}

// DefaultMetrics is the metrics section's default.
var DefaultMetrics = Metrics{MaxDomains: 50}

// Price is a model's price in US dollars per million tokens.
type Price struct {
	Input  float64 `yaml:"input"`
	Output float64 `yaml:"output"`
}

// Pricing prices the teacher's tokens: understudy_teacher_spend_dollars_total
// counts what teacher answers cost, understudy_saved_dollars_total what
// student answers would have cost (at the domain's mean teacher tokens per
// answer).
type Pricing struct {
	// Models maps a requested model to its price; they take precedence
	// over ListPrices. Default none.
	Models map[string]Price `yaml:"models"`
	// Default prices models neither listed here nor in ListPrices.
	// Default 0 (no cost counted).
	Default Price `yaml:"default"`
}

// ListPricesDate is when ListPrices were OpenAI's list prices.
const ListPricesDate = "2025-08"

// ListPrices are OpenAI's list prices (standard tier, text tokens, US
// dollars per million) as of ListPricesDate, so that spend and savings
// show without configuration for OpenAI's models. Prices change: set
// pricing.models to your own (a negotiated price, another provider, a
// self-hosted teacher).
var ListPrices = map[string]Price{
	"gpt-5":         {Input: 1.25, Output: 10.00},
	"gpt-5-mini":    {Input: 0.25, Output: 2.00},
	"gpt-5-nano":    {Input: 0.05, Output: 0.40},
	"gpt-4.1":       {Input: 2.00, Output: 8.00},
	"gpt-4.1-mini":  {Input: 0.40, Output: 1.60},
	"gpt-4.1-nano":  {Input: 0.10, Output: 0.40},
	"gpt-4o":        {Input: 2.50, Output: 10.00},
	"gpt-4o-mini":   {Input: 0.15, Output: 0.60},
	"o3":            {Input: 2.00, Output: 8.00},
	"o3-mini":       {Input: 1.10, Output: 4.40},
	"o4-mini":       {Input: 1.10, Output: 4.40},
	"gpt-3.5-turbo": {Input: 0.50, Output: 1.50},
}

// Of returns a model's price: pricing.models', then ListPrices', by the
// exact name; else the price of the longest name in either that the model
// extends with "-" (a dated snapshot such as gpt-4o-mini-2024-07-18 is
// priced as gpt-4o-mini; pricing.models wins a tie); else Default.
func (p Pricing) Of(model string) Price {
	for _, table := range []map[string]Price{p.Models, ListPrices} {
		if pr, ok := table[model]; ok {
			return pr
		}
	}
	best, price, found := "", Price{}, false
	for _, table := range []map[string]Price{p.Models, ListPrices} {
		for name, pr := range table {
			if len(name) > len(best) && strings.HasPrefix(model, name+"-") {
				best, price, found = name, pr, true
			}
		}
	}
	if found {
		return price
	}
	return p.Default
}

// ONNXRuntime locates the ONNX Runtime shared library.
type ONNXRuntime struct {
	// Library is the path of libonnxruntime.so. Default "": $UNDERSTUDY_ORT_LIB,
	// else the copy scripts/fetch-onnxruntime.sh puts in .cache/.
	Library string `yaml:"library"`
	// CUDA uses the CUDA execution provider when it is available, else the
	// CPU. Default false.
	CUDA bool `yaml:"cuda"`
}

// Log configures structured logging.
type Log struct {
	// Level is one of debug, info, warn, error. Default "info".
	Level string `yaml:"level"`
	// Format is "text" or "json". Default "text".
	Format string `yaml:"format"`
}

// DefaultLog is the log section's default.
var DefaultLog = Log{Level: "info", Format: "text"}

// Domain names a task domain and the rule that routes requests to it. A rule
// matches when every condition it sets holds.
type Domain struct {
	// Name is the domain's name: 1-64 of [A-Za-z0-9._-]. Required.
	Name string `yaml:"name"`
	// SystemPromptPrefix matches requests whose system prompt starts with it.
	SystemPromptPrefix string `yaml:"system_prompt_prefix"`
	// SystemPromptRegex matches requests whose system prompt matches it (RE2).
	SystemPromptRegex string `yaml:"system_prompt_regex"`
	// Model matches requests for exactly this model.
	Model string `yaml:"model"`
}

// Default returns the configuration used when nothing is set: the
// top-level defaults below and each section's Default<Section>.
func Default() *Config {
	return &Config{
		Listen:  "127.0.0.1:8080",
		DataDir: "./understudy-data",
		Admin:   DefaultAdmin,
		Gateway: DefaultGateway,
		Teacher: DefaultTeacher,
		Storage: DefaultStorage,
		Labels:  DefaultLabels,
		Trainer: DefaultTrainer,
		Router:  DefaultRouter,
		Metrics: DefaultMetrics,
		Log:     DefaultLog,
	}
}

// Load builds a Config from Default(), the YAML file at path (skipped when
// path is ""), and the environment as read by getenv (os.LookupEnv when nil).
// It does not validate; call Validate.
func Load(path string, getenv func(string) (string, bool)) (*Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
		if err := cfg.parseYAML(data); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				return nil, fmt.Errorf("%s is invalid:\n%w", path, err)
			}
			return nil, fmt.Errorf("parsing %s: %w", path, err)
		}
	}
	if getenv == nil {
		getenv = os.LookupEnv
	}
	if err := cfg.applyEnv(getenv); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseYAML decodes a file strictly: every key must name a setting and
// every value fit it. Its errors are *FieldErrors with the line, joined.
func (c *Config) parseYAML(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if err := checkYAML(&doc); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, errEOF) {
		return err
	}
	return nil
}
