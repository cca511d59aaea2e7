package jetstream

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-dev/understudy/storage"
)

// Options configures a Store. Zero values mean the documented default.
type Options struct {
	// URL is the NATS server, or several servers of one cluster separated
	// by commas (nats://host:4222, tls://host:4222). Required.
	URL string
	// CredsFile is a credentials file (user JWT and NKey seed). Default "".
	CredsFile string
	// User and Password authenticate by name and password. Default "".
	User, Password string
	// Token authenticates with a token. Default "".
	Token string
	// CAFile holds the PEM CAs that sign the servers' certificates, when
	// not the system's. Default "".
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key
	// (mutual TLS). Default "".
	CertFile, KeyFile string
	// Replicas is how many servers keep each stream and bucket, 1..5.
	// Default 1.
	Replicas int
	// Prefix names the streams, buckets and subjects: prefix_pairs,
	// prefix.pairs.<domain>, KV_prefix_domains ... Default "understudy".
	Prefix string
	// ConnectTimeout bounds Open: connecting, and creating or updating
	// the streams and buckets. Default 10s.
	ConnectTimeout time.Duration
	// Timeout bounds each call to the servers outside the pair log's
	// writes (records, settings, reads); artifacts get six times as long.
	// Default 10s.
	Timeout time.Duration
	// AckTimeout is how long a published pair waits for the server's
	// acknowledgement before it is sent again (the server drops a repeat
	// by its ID). Default 5s.
	AckTimeout time.Duration
	// CloseTimeout bounds how long Close publishes the pairs still queued;
	// what is left then is dropped and counted (reason closed). Default 10s.
	CloseTimeout time.Duration

	// LogOptions mean what they mean for the Badger DB. TTL is the
	// stream's MaxAge (a pair logged with an older Time gets a message TTL
	// of what is left of it, at least 1s; kept responses expire after it
	// too), MaxPairsPerDomain its MaxMsgsPerSubject, both applied by the
	// servers; a pair is stored once the stream acknowledged it.
	storage.LogOptions
	// RefreshInterval is how often the stored pair counts are read back
	// from the stream, so that pairs the servers removed (TTL) show in
	// Summaries and ChangedSince. Default 5m (storage.retention_interval).
	RefreshInterval time.Duration

	// LeaseTTL is how long the learner lease outlives its holder's last
	// renewal: a replica that dies is replaced as the learner within
	// about this long. Its holder renews it every fifth of it and counts
	// it held for half of it after each renewal. Default 10s; at least
	// 1s.
	LeaseTTL time.Duration

	// Name is the connection's name, as the servers show it. Default
	// "understudy".
	Name string
	// Logger receives warnings and errors. Default slog.Default().
	Logger *slog.Logger
	// Registry registers the understudy_storage_* metrics when non-nil.
	Registry prometheus.Registerer

	// reconnectWait overrides the wait between reconnection attempts;
	// tests only.
	reconnectWait time.Duration
	// ensureEvery overrides how often the stream may be created again
	// when none answers; tests only.
	ensureEvery time.Duration
}

// Defaults of the options that storage.DefaultOptions does not share.
const (
	defaultPrefix         = "understudy"
	defaultConnectTimeout = 10 * time.Second
	defaultTimeout        = 10 * time.Second
	defaultAckTimeout     = 5 * time.Second
	defaultCloseTimeout   = 10 * time.Second
	defaultReconnectWait  = time.Second
	defaultEnsureEvery    = 5 * time.Second
	defaultLeaseTTL       = 10 * time.Second
)

var validPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func (o Options) withDefaults() (Options, error) {
	if strings.TrimSpace(o.URL) == "" {
		return o, errors.New("storage.nats.url: must be set")
	}
	var err error
	if o.LogOptions, err = o.LogOptions.WithDefaults(); err != nil {
		return o, err
	}
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&o.ConnectTimeout, defaultConnectTimeout)
	set(&o.Timeout, defaultTimeout)
	set(&o.AckTimeout, defaultAckTimeout)
	set(&o.CloseTimeout, defaultCloseTimeout)
	set(&o.RefreshInterval, storage.DefaultOptions().RetentionInterval)
	set(&o.reconnectWait, defaultReconnectWait)
	set(&o.ensureEvery, defaultEnsureEvery)
	set(&o.LeaseTTL, defaultLeaseTTL)
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Prefix == "" {
		o.Prefix = defaultPrefix
	}
	if o.Name == "" {
		o.Name = "understudy"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.Replicas < 1 || o.Replicas > 5:
		return o, fmt.Errorf("storage.nats.replicas: must be in 1..5, got %d", o.Replicas)
	case !validPrefix.MatchString(o.Prefix):
		return o, fmt.Errorf("storage.nats.prefix: must be 1-32 characters of A-Z a-z 0-9 _ -, got %q", o.Prefix)
	case o.LeaseTTL < time.Second:
		return o, fmt.Errorf("storage.nats.lease_ttl: must be at least 1s, got %s", o.LeaseTTL)
	case o.RefreshInterval < 0 || o.ConnectTimeout < 0 || o.Timeout < 0 || o.AckTimeout < 0 || o.CloseTimeout < 0:
		return o, errors.New("storage: intervals and timeouts must be positive")
	case o.User != "" && o.Password == "", o.User == "" && o.Password != "":
		return o, errors.New("storage.nats: user and password go together")
	case (o.CertFile == "") != (o.KeyFile == ""):
		return o, errors.New("storage.nats: cert_file and key_file go together")
	}
	return o, nil
}

// natsOptions are the connection's options: authentication and TLS as
// configured, reconnection for ever, and no reconnect buffer, since the
// store's own queue is the one bounded buffer of pairs while the
// connection is down.
func (o Options) natsOptions(s *Store) []nats.Option {
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(o.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.reconnectWait),
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(s.disconnected),
		nats.ReconnectHandler(s.reconnected),
		nats.ErrorHandler(s.asyncError),
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	return opts
}

// urls returns the configured server URLs, comma-separated, trimmed.
func (o Options) urls() string {
	var out []string
	for _, u := range strings.Split(o.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return strings.Join(out, ",")
}
