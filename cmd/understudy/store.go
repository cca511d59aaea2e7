package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/storage/jetstream"
	"github.com/understudy-dev/understudy/trainer"
)

// store is what serve needs of a storage backend: what the gateway, the
// admin API, the trainer and the router each ask of it.
type store interface {
	storage.PairLog
	storage.Responses
	gateway.KnownDomains
	gateway.AdminStore
	trainer.Store
	router.Store
	storage.Lease
	storage.ReplicaSet
	Close() error
}

var (
	_ store           = (*storage.DB)(nil)
	_ store           = (*jetstream.Store)(nil)
	_ router.Replicas = (*jetstream.Store)(nil)
)

// openStore opens the backend storage.backend names: Badger under
// data_dir (the default), or NATS JetStream.
func openStore(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (store, error) {
	if cfg.Storage.Backend == config.BackendNATS {
		return jetstream.Open(natsOptions(cfg, log, reg))
	}
	return storage.Open(storageOptions(cfg, log, reg))
}

// natsOptions are the JetStream backend's options the config describes.
// The limits Badger applies itself (ttl, max_pairs_per_domain) become the
// stream's; retention_interval is how often stored counts are read back.
func natsOptions(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) jetstream.Options {
	s, n := cfg.Storage, cfg.Storage.NATS
	return jetstream.Options{
		URL: n.URL, CredsFile: n.CredsFile, User: n.User, Password: n.Password, Token: n.Token,
		CAFile: n.CAFile, CertFile: n.CertFile, KeyFile: n.KeyFile,
		Replicas: n.Replicas, Prefix: n.Prefix, ConnectTimeout: n.ConnectTimeout, LeaseTTL: n.LeaseTTL,
		LogOptions:      logOptions(cfg),
		RefreshInterval: s.RetentionInterval,
		Logger:          log, Registry: reg,
	}
}

// leaderTrainer is the trainer the admin API asks for a run: only the
// replica holding the learner lease trains, so another refuses with
// router.ErrNotLeader instead of queueing a run its idle scheduler would
// never start.
type leaderTrainer struct {
	*trainer.Scheduler
	lease storage.Lease
}

func (t leaderTrainer) Trigger(domain string) error {
	if !t.lease.Held() {
		return fmt.Errorf("training %s: %w", domain, router.ErrNotLeader)
	}
	return t.Scheduler.Trigger(domain)
}
