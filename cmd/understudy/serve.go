package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/student"
	"github.com/understudy-dev/understudy/trainer"
)

// serveFlags are the common settings that also take flags, each named like
// its environment variable (--listen and UNDERSTUDY_LISTEN). Flags beat the
// environment, which beats the file.
var serveFlags = map[string]func(*config.Config, string){
	"listen":       func(c *config.Config, v string) { c.Listen = v },
	"admin-listen": func(c *config.Config, v string) { c.Admin.Listen = v },
	"data-dir":     func(c *config.Config, v string) { c.DataDir = v },
	"teacher-url":  func(c *config.Config, v string) { c.Teacher.URL = v },
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The first SIGINT or SIGTERM cancels ctx (main); listen for the second
	// from the start, so that none is missed.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	fs := newFlags("serve", stdout)
	path := fs.String("config", "", "YAML config `file` (optional: defaults work without one)")
	def := config.Default()
	fs.String("listen", "", fmt.Sprintf("API listen `address` (default %q; any other needs gateway.api_keys; env UNDERSTUDY_LISTEN)", def.Listen))
	fs.String("admin-listen", "", fmt.Sprintf("admin API listen `address` (default %q; env UNDERSTUDY_ADMIN_LISTEN)", def.Admin.Listen))
	fs.String("data-dir", "", fmt.Sprintf("data `directory` (default %q; env UNDERSTUDY_DATA_DIR)", def.DataDir))
	fs.String("teacher-url", "", fmt.Sprintf("teacher base `URL` (default %q; env UNDERSTUDY_TEACHER_URL or OPENAI_BASE_URL)", def.Teacher.URL))
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, fs.FlagSet, serveFlags)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(cfg.Gateway.GCPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && cfg.Gateway.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(cfg.Gateway.MemoryLimit))
	}
	if cfg.Teacher.APIKey == "" && !cfg.Teacher.PassClientAuthorization {
		log.Warn("no teacher API key: set OPENAI_API_KEY or teacher.api_key, or teacher.pass_client_authorization to forward the client's", "teacher", cfg.Teacher.URL)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	db, err := openStore(cfg, log, reg)
	if err != nil {
		return err
	}
	metricDomains := router.NewMetricDomains(cfg.Metrics.MaxDomains)
	deps := gateway.Deps{Logger: log, Registry: reg, MetricDomains: metricDomains, Known: db}
	if cfg.Storage.Enabled {
		deps.Pairs, deps.Responses = db, db
	}
	admin := gateway.AdminDeps{Store: db, Logger: log}
	var (
		sched  *trainer.Scheduler
		rt     *router.Router
		pool   *shadow.Pool
		counts *gateway.RouteCounts // what this replica answered, for the others' views
	)
	if cfg.Trainer.Enabled {
		if err := student.InitRuntime(cfg.ONNXRuntime.Library); err != nil {
			db.Close()
			return fmt.Errorf("%w\n(or set trainer.enabled: false to run without students)", err)
		}
		// The learning loop: the scheduler trains and reports each version
		// (Reports); the router takes it, scores it in the shadow pool and
		// decides; a demotion asks the scheduler for a new one (Trigger).
		sched = trainer.NewScheduler(schedulerConfig(cfg), trainer.SchedulerDeps{Store: db, Logger: log, Registry: reg})
		pool = shadow.NewPool(poolConfig(cfg), shadow.PoolDeps{Registry: reg})
		// On NATS several replicas share the store: the router of each
		// follows the learner's routing records and sends it its samples
		// (router.Replicas); on Badger it is the only one.
		replicas, _ := db.(router.Replicas)
		rt, err = router.New(routerConfig(cfg), router.Deps{
			Store:    db,
			Retrain:  func(domain string) { _ = sched.Trigger(domain) },
			Shadow:   pool.Submit,
			Logger:   log,
			Domains:  metricDomains,
			Replicas: replicas,
		})
		if err != nil {
			db.Close()
			return err
		}
		reg.MustRegister(rt)
		counts = gateway.NewRouteCounts()
		deps.Router = counts.Router(rt)
		admin.Trainer, admin.Router = leaderTrainer{sched, db}, rt
	}
	gw, err := gateway.New(cfg, deps)
	if err != nil {
		db.Close()
		return err
	}
	admin.Costs = gw
	// Every replica announces its counts; any one's admin API sums them
	// (on Badger, the one replica is this process).
	cluster := gateway.NewCluster(gateway.ClusterDeps{Replicas: db, Counts: counts, Costs: gw, Domains: metricDomains, Version: version, Logger: log})
	admin.Cluster = cluster

	g, gctx := errgroup.WithContext(ctx)
	// The rest stops once the gateway has: the requests it still serves
	// during gateway.shutdown_delay are scored, followed and logged as any.
	rest, stopRest := context.WithCancel(context.WithoutCancel(gctx))
	defer stopRest()
	g.Go(func() error {
		defer stopRest()
		return gw.Run(gctx)
	})
	g.Go(func() error { hurryOnSecondSignal(rest, sigs, gw); return nil })
	g.Go(func() error { return gateway.NewAdmin(cfg, admin).Run(rest) })
	g.Go(func() error { return cluster.Run(rest) })
	if sched != nil {
		g.Go(func() error { return rt.Run(rest, sched.Reports()) })
		g.Go(func() error { return pool.Run(rest) })
		g.Go(func() error { return rt.Follow(rest) })
		// The learner trains and runs the gate: one replica at a time,
		// the holder of the storage's lease (on Badger, this process for
		// as long as it runs).
		g.Go(func() error {
			return db.Lead(rest, func(term context.Context) {
				tg, tctx := errgroup.WithContext(term)
				tg.Go(func() error { return sched.Run(tctx) })
				tg.Go(func() error { return rt.Lead(tctx) })
				_ = tg.Wait()
			})
		})
	}
	err = g.Wait()
	if rt != nil {
		rt.Flush() // what the last requests changed
	}
	// The gateway has stopped and finished its requests: every pair it
	// accepted is queued. Close writes them all before closing Badger.
	if cerr := db.Close(); cerr != nil {
		log.Error("closing the pair log", "err", cerr)
		err = errors.Join(err, cerr)
	}
	log.Info("stopped")
	return err
}

// hurryOnSecondSignal cuts the gateway's shutdown delay short on the second
// SIGINT or SIGTERM (the first one began the stop): an operator's Ctrl-C
// twice stops at once. It returns when done is.
func hurryOnSecondSignal(done context.Context, sigs <-chan os.Signal, gw *gateway.Server) {
	for n := 0; ; {
		select {
		case <-sigs:
			if n++; n == 2 {
				gw.Hurry()
				return
			}
		case <-done.Done():
			return
		}
	}
}
