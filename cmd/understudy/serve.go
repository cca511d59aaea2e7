package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/storage"
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

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config `file` (optional: defaults work without one)")
	def := config.Default()
	fs.String("listen", "", fmt.Sprintf("API listen `address` (default %q; any other needs gateway.api_keys; env UNDERSTUDY_LISTEN)", def.Listen))
	fs.String("admin-listen", "", fmt.Sprintf("admin API listen `address` (default %q; env UNDERSTUDY_ADMIN_LISTEN)", def.Admin.Listen))
	fs.String("data-dir", "", fmt.Sprintf("data `directory` (default %q; env UNDERSTUDY_DATA_DIR)", def.DataDir))
	fs.String("teacher-url", "", fmt.Sprintf("teacher base `URL` (default %q; env UNDERSTUDY_TEACHER_URL or OPENAI_BASE_URL)", def.Teacher.URL))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"serve takes no arguments; got " + fs.Arg(0)}
	}
	cfg, err := loadConfig(*path, fs, serveFlags)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(cfg.Gateway.GCPercent)
	}
	if cfg.Teacher.APIKey == "" && !cfg.Teacher.PassClientAuthorization {
		log.Warn("no teacher API key: set OPENAI_API_KEY or teacher.api_key, or teacher.pass_client_authorization to forward the client's", "teacher", cfg.Teacher.URL)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	db, err := storage.Open(storageOptions(cfg, log, reg))
	if err != nil {
		return err
	}
	metricDomains := router.NewMetricDomains(cfg.Metrics.MaxDomains)
	opts := gateway.Options{Logger: log, Registry: reg, MetricDomains: metricDomains}
	if cfg.Storage.Enabled {
		opts.Pairs = db
	}
	var (
		sched        *trainer.Scheduler
		adminTrainer gateway.Trainer
		rt           *router.Router
		pool         *shadow.Pool
		saver        *router.Saver
	)
	if cfg.Trainer.Enabled {
		if err := student.InitRuntime(cfg.ONNXRuntime.Library); err != nil {
			db.Close()
			return fmt.Errorf("%w\n(or set trainer.enabled: false to run without students)", err)
		}
		saver = router.NewSaver(func(domain string, rec router.Record) error {
			b, err := router.MarshalRecord(rec)
			if err != nil {
				return err
			}
			if err := db.SetDomainState(domain, string(rec.State)); err != nil {
				return err
			}
			return db.SetDomainSetting(domain, routerSetting, string(b))
		}, log)
		pool = shadow.NewPool(poolConfig(cfg), reg)
		if rt, err = newRouter(cfg, db, saver.Save, pool.Submit, metricDomains, log); err != nil {
			db.Close()
			return err
		}
		reg.MustRegister(rt)
		opts.Router = rt
		sched = trainer.NewScheduler(db, schedulerConfig(cfg), log, reg)
		adminTrainer = sched
		sched.OnTrained(func(domain string, a *student.Artifact) {
			if err := rt.AddVersion(domain, a.Version); err != nil {
				log.Error("adding a student version to the router", "domain", domain, "err", err)
			}
		})
		sched.OnOpenEnded(rt.SetOpenEnded)
		rt.SetRetrain(func(domain string) { _ = sched.Trigger(domain) })
	}
	gw, err := gateway.New(cfg, opts)
	if err != nil {
		db.Close()
		return err
	}
	var adminRouter gateway.AdminRouter
	if rt != nil {
		adminRouter = rt
	}
	admin := gateway.NewAdmin(cfg, db, adminTrainer, adminRouter, gw, log)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gw.Run(gctx) })
	g.Go(func() error { return admin.Run(gctx) })
	if sched != nil {
		g.Go(func() error { return sched.Run(gctx) })
		g.Go(func() error { return pool.Run(gctx) })
		g.Go(func() error { return saver.Run(gctx) })
	}
	err = g.Wait()
	if saver != nil {
		saver.Flush() // what the last requests changed
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

// routerSetting is the domain setting that holds a domain's routing record.
const routerSetting = "router"

// newRouter builds the router from the routing records stored with the
// domains, so a restart keeps every domain's state and statistics.
func newRouter(cfg *config.Config, db *storage.DB, persist func(string, router.Record) error, score router.Shadow, metricDomains *router.MetricDomains, log *slog.Logger) (*router.Router, error) {
	ds, err := db.Domains()
	if err != nil {
		return nil, err
	}
	records := map[string]router.Record{}
	for _, d := range ds {
		rec := router.Record{State: router.State(d.State)}
		if b := d.Settings[routerSetting]; b != "" {
			if rec, err = router.UnmarshalRecord([]byte(b)); err != nil {
				return nil, fmt.Errorf("reading the routing record of %s: %w", d.Name, err)
			}
		}
		records[d.Name] = rec
	}
	return router.New(routerConfig(cfg),
		router.Deps{
			Load: func(domain string, version int) (*student.Model, error) {
				b, err := db.StudentArtifact(domain, version)
				if err != nil {
					return nil, err
				}
				a, err := student.UnmarshalArtifact(b)
				if err != nil {
					return nil, err
				}
				return student.Load(a, 1)
			},
			Persist: persist,
			Shadow:  score,
			Domains: metricDomains,
			Logger:  log,
		}, records), nil
}
