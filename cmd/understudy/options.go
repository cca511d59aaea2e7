package main

import (
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/student"
	"github.com/understudy-dev/understudy/trainer"
)

// The options each component is built with, one function per config
// section. Each passes every value its section sets, so in a process built
// from a config the packages' own defaults never apply; options_test.go
// still holds them equal to config's (see package config), since tests and
// tools use them.

// storageOptions are the pair log's options: the storage section, with the
// database under data_dir/db.
func storageOptions(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) storage.Options {
	s := cfg.Storage
	return storage.Options{
		Dir:               filepath.Join(cfg.DataDir, "db"),
		EncryptionKeyFile: s.EncryptionKeyFile,
		SyncWrites:        s.SyncWrites,
		LogOptions:        logOptions(cfg),
		MinFreeBytes:      int64(s.MinFree),
		RetentionInterval: s.RetentionInterval,
		RetentionRate:     s.RetentionRate,
		Logger:            log,
		Registry:          reg,
	}
}

// logOptions are the pair log's settings both backends share.
func logOptions(cfg *config.Config) storage.LogOptions {
	s := cfg.Storage
	return storage.LogOptions{TTL: s.TTL, MaxPairsPerDomain: s.MaxPairsPerDomain,
		QueueSize: s.QueueSize, QueueBytes: int64(s.QueueBytes), BatchSize: s.BatchSize, FlushInterval: s.FlushInterval}
}

// trainerOptions are the training options the config describes, the same
// for the background trainer and `understudy train`: the trainer section,
// τ's target from router.agreement_threshold, the labels section's
// normalizer (which labelled the pairs, and reads a structured answer's
// fields), and the package's defaults for what the config does not set.
func trainerOptions(cfg *config.Config) trainer.Options {
	o := trainer.DefaultOptions()
	o.Normalizer = &student.Normalizer{FoldCase: cfg.Labels.FoldCase, StripTrailingPeriod: cfg.Labels.StripTrailingPeriod}
	o.Dim, o.Hidden, o.MaxEpochs = cfg.Trainer.Dim, cfg.Trainer.Hidden, cfg.Trainer.MaxEpochs
	o.Threads = cfg.Trainer.Threads
	o.Target = cfg.Router.AgreementThreshold
	o.UseCUDA = cfg.ONNXRuntime.CUDA
	return o
}

// schedulerConfig configures background training: the trainer section.
func schedulerConfig(cfg *config.Config) trainer.SchedulerConfig {
	t := cfg.Trainer
	return trainer.SchedulerConfig{
		MinPairs:      t.MinPairs,
		RetrainEvery:  t.RetrainEvery,
		MaxTrainPairs: t.MaxTrainPairs,
		BacktestPairs: t.BacktestPairs,
		Interval:      t.Interval,
		Cooldown:      t.Cooldown,
		Options:       trainerOptions(cfg),
	}
}

// routerConfig configures routing and its gate: the router section.
func routerConfig(cfg *config.Config) router.Config {
	r := cfg.Router
	return router.Config{
		Gate: shadow.Gate{
			Threshold:          r.AgreementThreshold,
			Confidence:         r.Confidence,
			DemotionConfidence: r.DemotionConfidence,
			MinSamples:         r.MinSamples,
		},
		ShadowRate:        r.ShadowRate,
		ExploreRate:       r.ExploreRate,
		ShadowMaxRate:     r.ShadowMaxRate,
		FallbackToStudent: r.FallbackToStudent,
	}
}

// poolConfig sizes the shadow scoring pool: router.shadow_queue_size and
// shadow_workers, and the package's defaults for the rest.
func poolConfig(cfg *config.Config) shadow.PoolConfig {
	p := shadow.DefaultPoolConfig()
	p.QueueSize, p.Workers = cfg.Router.ShadowQueueSize, cfg.Router.ShadowWorkers
	return p
}
