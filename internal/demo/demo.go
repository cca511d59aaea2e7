package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/understudy-dev/understudy/internal/teachersim"
)

// ErrInterrupted is returned when the run's context ends before the replay
// is over.
var ErrInterrupted = errors.New("demo interrupted")

// Run runs the demo: teacher-sim in-process, the gateway as a child
// process, the replay through it with live progress, then the summary on
// cfg.Out and the report and chart files when asked for. It stops the
// gateway (SIGTERM, then waits) and removes its temporary directory on
// every path, Ctrl-C included.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	rep, err := run(ctx, cfg)
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", ErrInterrupted, ctx.Err())
	}
	return rep, err
}

// run is Run but for telling an interruption.
func run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid demo settings:\n%w", err)
	}
	ds, err := findDataset(cfg.Dataset)
	if err != nil {
		return nil, err
	}
	loaded, err := ds.load()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "understudy-demo-")
	if err != nil {
		return nil, fmt.Errorf("creating the demo's directory: %w", err)
	}
	defer os.RemoveAll(dir)

	simCtx, stopSim := context.WithCancel(context.Background())
	simURL, simDone, err := startTeacher(simCtx, cfg, loaded)
	if err != nil {
		stopSim()
		return nil, err
	}
	defer func() { stopSim(); <-simDone }()

	fmt.Fprintf(cfg.Out, "teacher-sim on %s: %d tasks, latency %v ± %v\n", simURL, len(loaded), cfg.TeacherLatency, cfg.TeacherJitter)
	gw, err := startGateway(ctx, cfg.Executable, dir, simURL, prices{cfg.InputPrice, cfg.OutputPrice}, cfg.GatewayConfig)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Out, "gateway on %s (admin %s), data in %s\n", gw.addr, gw.adminAddr, dir)
	fmt.Fprintf(cfg.Out, "replaying %d requests of %s, %d at a time\n\n", cfg.Requests, ds.name, cfg.Concurrency)

	rep, err := replayAll(ctx, cfg, gw, ds.tasks, schedule(ds.tasks, loaded, cfg.Requests, cfg.Seed))
	if stopErr := gw.stop(); stopErr != nil && err == nil {
		err = stopErr
	}
	if err != nil {
		return nil, err
	}
	return rep, finish(cfg, rep)
}

// recordVariation is the share of a structured task's answers that the
// teacher writes in another layout than the data set's (keys in another
// order, spaced or indented), as an LLM's answers vary.
const recordVariation = 0.2

// startTeacher serves teacher-sim on a loopback port until ctx ends; done
// is closed once it has stopped.
func startTeacher(ctx context.Context, cfg Config, loaded []teachersim.Task) (string, <-chan struct{}, error) {
	sim, err := teachersim.New(teachersim.Config{Tasks: loaded, Latency: cfg.TeacherLatency,
		Jitter: cfg.TeacherJitter, Seed: cfg.Seed, RecordVariation: recordVariation})
	if err != nil {
		return "", nil, fmt.Errorf("starting teacher-sim: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("starting teacher-sim: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sim.Serve(ctx, ln)
	}()
	return "http://" + ln.Addr().String() + "/v1", done, nil
}

// replayAll replays the jobs through the gateway while the monitor polls
// its admin API and the progress lines are drawn. It fails when ctx ends
// or the gateway exits during the replay.
func replayAll(ctx context.Context, cfg Config, gw *gateway, tasks []taskSpec, jobs []job) (*Report, error) {
	t := newTally(tasks)
	names := &domainNames{}
	r := newReplayer("http://"+gw.addr+"/v1/", jobs, cfg.Concurrency, prices{cfg.InputPrice, cfg.OutputPrice}, t, names)
	mon := newMonitor(gw.adminAddr, names)
	started := time.Now()
	prog := &progress{tasks: tasks, out: cfg.Out, live: cfg.Live, every: cfg.ProgressEvery, total: len(jobs), start: started, tally: t, mon: mon}

	g, gctx := errgroup.WithContext(ctx)
	watchCtx, stopWatching := context.WithCancel(gctx)
	g.Go(func() error {
		defer stopWatching()
		return r.run(gctx, cfg.Concurrency)
	})
	g.Go(func() error { return mon.run(watchCtx) })
	g.Go(func() error { return prog.run(watchCtx) })
	g.Go(func() error {
		select {
		case <-gw.exited():
			return gw.exitError()
		case <-watchCtx.Done():
			return nil
		}
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	elapsed := time.Since(started)
	mon.poll(ctx) // the state at the end
	return buildReport(cfg, tasks, started, elapsed, r, mon), nil
}

// buildReport summarises each domain from the trace and the gateway's
// view.
func buildReport(cfg Config, tasks []taskSpec, started time.Time, elapsed time.Duration, r *replayer, mon *monitor) *Report {
	rep := &Report{
		Settings: Settings{Dataset: cfg.Dataset, Requests: cfg.Requests, Concurrency: cfg.Concurrency,
			TeacherLatencyMS: ms(cfg.TeacherLatency), TeacherJitterMS: ms(cfg.TeacherJitter), Seed: cfg.Seed,
			InputPrice: cfg.InputPrice, OutputPrice: cfg.OutputPrice},
		Started: started, DurationS: elapsed.Seconds(), Trace: r.trace,
	}
	for _, spec := range tasks {
		v, p, promoted := mon.view(spec.domain)
		var at *float64
		if promoted {
			t := ms(p.at.Sub(r.start))
			at = &t
		}
		s := summarize(spec.domain, r.trace, at)
		s.State, s.GatewaySpentUSD, s.GatewaySavedUSD, s.Routing = v.State, v.SpentDollars, v.SavedDollars, v.Routing
		if name := mon.names.get(spec.domain); name != spec.domain {
			s.GatewayDomain = name
		}
		if promoted {
			s.PromotedVersion = p.version
		}
		if spec.schema != nil {
			s.Structured = summarizeStructured(spec.domain, spec.schema, r.trace)
		}
		rep.Domains = append(rep.Domains, s)
	}
	return rep
}

// finish prints the summary and writes the report and chart files asked
// for.
func finish(cfg Config, rep *Report) error {
	printSummary(cfg.Out, rep)
	if cfg.ReportPath != "" {
		if err := writeReport(cfg.ReportPath, rep); err != nil {
			return err
		}
		fmt.Fprintf(cfg.Out, "report: %s\n", cfg.ReportPath)
	}
	if cfg.ChartPath != "" {
		if err := writeChart(cfg.ChartPath, rep); err != nil {
			return err
		}
		fmt.Fprintf(cfg.Out, "chart: %s\n", cfg.ChartPath)
	}
	return nil
}
