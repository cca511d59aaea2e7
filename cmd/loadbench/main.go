// Command loadbench measures the latency the Understudy gateway adds in front
// of a teacher, at fixed request rates on loopback.
//
// It starts two child processes from the understudy binary, teacher-sim (zero
// latency, answering from a generated data set) and the gateway proxying to
// it, then sends open-loop load at each rate to teacher-sim directly and to
// the gateway, alternating the two. Requests are scheduled at fixed intervals
// whatever the servers do; a request sent late because every connection was
// busy is timed from its scheduled send time, so a server that stalls cannot
// hide the queue it builds (no coordinated omission). Every response must be
// 200 and carry the expected label; anything else counts as an error.
//
// For each rate it reports the achieved throughput, latency p50/p99/p99.9 and
// errors of both targets; the added latency (gateway minus direct, per
// percentile); the gateway's own overhead histogram,
// understudy_gateway_overhead_seconds (total time minus teacher time), as
// quantiles of the bucket deltas over the phase; and the gateway's peak RSS
// (VmHWM). Each phase runs -repeat times and medians are reported. The load
// generator shares the machine with both servers, which the report states
// together with the CPU count and Go version.
//
// The gateway of those phases runs with its defaults, so it logs every
// answer to its pair log. Then, unless -logging-compare=false, a comparison
// measures what pair logging costs: the gateway at 2,000 req/s
// non-streaming with logging on and with UNDERSTUDY_STORAGE_ENABLED=false,
// each run on a fresh gateway process with a fresh data directory, the two
// modes interleaved over -repeat. Per mode it reports the client latency,
// the overhead histogram's quantiles, peak RSS, errors, and the pairs logged
// and dropped (deltas of understudy_storage_pairs_logged_total and
// understudy_storage_pairs_dropped_total once the writer's queue has
// drained), and states whether the overhead p99 with logging stays within
// 10% of the p99 without (medians over the repeats; noisy on a small
// machine).
//
// Then, unless -retention-compare=false, a comparison measures retention
// with a full pair log (retention.go): at 5,000 req/s (-retention-rate),
// fresh gateways on a data directory pre-filled 475,000 pairs
// (-retention-excess) over the default cap, with retention deleting that
// excess during the measured requests and, interleaved, with a cap above
// the log so that it deletes nothing. Per mode it reports the client
// latency, the worst p99 of its 5 s windows, peak RSS, the pairs deleted
// and their rate.
//
// Last, unless -student-compare=false, the student comparison (student.go)
// trains a student on a learnable data set and measures, at 1,000 req/s,
// the gateway's CPU with and without shadow scoring and the latency of the
// requests the promoted student answers.
//
// Run it with
//
//	make loadbench
//
// or, after make build,
//
//	go run ./cmd/loadbench -bin bin/understudy [-rates 1000,2000,5000] [-duration 10s] [-json results.json] [-logging-compare=false] [-retention-compare=false] [-student-compare=false]
//
// With -cost it runs only the cost comparison (cost.go): CPU per request
// of the gateway and of teacher-sim, relayed, answered by a student and
// direct, and the gateway's peak RSS, also while a student trains;
// -pprof DIR adds CPU and heap profiles of a relayed and a student phase.
//
// With -backend-compare it runs only the backend comparison (backend.go):
// fresh gateways logging pairs to Badger and to NATS JetStream (nats-server
// in a child process) at -backend-rate, interleaved over -repeat, then a
// short -backend-flatout-rate phase per backend.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command-line settings.
type options struct {
	bin       string
	rates     []int
	duration  time.Duration
	warmup    time.Duration
	repeat    int
	stream    bool
	jsonPath  string
	bodyBytes int
	conns     int
	examples  int
	// loggingCompare runs the pair-logging comparison after the phases.
	loggingCompare bool
	// studentCompare runs the student comparison last.
	studentCompare bool
	// retentionCompare runs the retention comparison (retention.go) after
	// the pair-logging one.
	retentionCompare  bool
	retentionRate     int
	retentionExcess   int
	retentionDuration time.Duration
	// soak runs only the soak (soak.go) instead of the benchmark.
	soak         bool
	soakDuration time.Duration
	soakRate     int
	soakJSON     string
	// cost runs only the cost comparison (cost.go).
	cost          bool
	costRate      int
	costTrainRate int
	pprofDir      string
	// backendCompare runs only the backend comparison (backend.go).
	backendCompare bool
	backendRate    int
	backendFlatout int
}

// streamRate is the rate of the streaming phase.
const streamRate = 1000

func main() {
	if spec := os.Getenv(natsServerEnv); spec != "" {
		// The backend comparison's nats-server child (backend.go).
		if err := runNATSServer(spec); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench nats-server:", err)
			os.Exit(1)
		}
		return
	}
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	job := run
	switch {
	case opts.soak:
		job = runSoak
	case opts.cost:
		job = runCost
	case opts.backendCompare:
		job = runBackendCompare
	}
	if err := job(ctx, opts, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		stop()
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("loadbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	rates := fs.String("rates", "1000,2000,5000", "comma-separated request `rates` (req/s) of the non-streaming phases")
	fs.StringVar(&o.bin, "bin", "bin/understudy", "`path` of the understudy binary")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured `time` of each phase")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each phase, at its rate")
	fs.IntVar(&o.repeat, "repeat", 3, "runs of each (rate, target) phase; medians are reported")
	fs.BoolVar(&o.stream, "stream", true, fmt.Sprintf("also run a streaming phase at %d req/s", streamRate))
	fs.StringVar(&o.jsonPath, "json", "", "write every phase's results to this `file` as JSON")
	fs.IntVar(&o.bodyBytes, "body-bytes", 1000, "approximate size of the user message in `bytes`")
	fs.IntVar(&o.conns, "conns", 512, "client connections (and workers) per target")
	fs.IntVar(&o.examples, "examples", 500, "texts in the generated data set, sent round-robin")
	fs.BoolVar(&o.loggingCompare, "logging-compare", true,
		fmt.Sprintf("also compare fresh gateways with pair logging on and off at %d req/s non-streaming", goalRate))
	fs.BoolVar(&o.studentCompare, "student-compare", true,
		fmt.Sprintf("also measure a trained student at %d req/s: shadow scoring's CPU against teacher-only, and student-served latency", studentRate))
	fs.BoolVar(&o.retentionCompare, "retention-compare", true,
		"also compare fresh gateways on a full pair log with retention deleting its excess and without")
	fs.IntVar(&o.retentionRate, "retention-rate", 5000, "request `rate` (req/s) of the retention comparison")
	fs.IntVar(&o.retentionExcess, "retention-excess", 475000, "`pairs` the retention comparison stores over the default cap of 200,000")
	fs.DurationVar(&o.retentionDuration, "retention-duration", 45*time.Second, "measured `time` of each retention comparison run")
	fs.BoolVar(&o.soak, "soak", false, "run the soak instead: a long steady load with training on and faults injected (see soak.go)")
	fs.DurationVar(&o.soakDuration, "soak-duration", 10*time.Minute, "length of the soak")
	fs.IntVar(&o.soakRate, "soak-rate", 1000, "request rate (req/s) of the soak")
	fs.StringVar(&o.soakJSON, "soak-json", "", "write the soak's results to this `file` as JSON")
	fs.BoolVar(&o.cost, "cost", false, "run the cost comparison instead: CPU per request and peak RSS of the gateway and teacher-sim, relayed, student-answered, direct and while training (see cost.go)")
	fs.IntVar(&o.costRate, "cost-rate", 2000, "request rate (req/s) of the cost comparison's relayed, student and direct phases")
	fs.IntVar(&o.costTrainRate, "cost-train-rate", 1000, "request rate (req/s) of the cost comparison's training phase")
	fs.StringVar(&o.pprofDir, "pprof", "", "with -cost: also profile one relayed and one student phase from the admin listener, into this `directory`")
	fs.BoolVar(&o.backendCompare, "backend-compare", false, "run the backend comparison instead: fresh gateways logging pairs to Badger and to NATS JetStream (a nats-server child), interleaved (see backend.go)")
	fs.IntVar(&o.backendRate, "backend-rate", goalRate, "request rate (req/s) of the backend comparison")
	fs.IntVar(&o.backendFlatout, "backend-flatout-rate", 20000, "with -backend-compare: also a 5 s phase per backend offered this rate (req/s), more than the gateway serves here, for the pairs/s the log takes; 0 skips it")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.rates, err = parseRates(*rates); err != nil {
		return options{}, err
	}
	switch {
	case o.duration <= 0:
		return options{}, fmt.Errorf("-duration: must be positive, got %s", o.duration)
	case o.warmup < 0:
		return options{}, fmt.Errorf("-warmup: must not be negative, got %s", o.warmup)
	case o.repeat < 1:
		return options{}, fmt.Errorf("-repeat: must be at least 1, got %d", o.repeat)
	case o.bodyBytes < 1:
		return options{}, fmt.Errorf("-body-bytes: must be positive, got %d", o.bodyBytes)
	case o.conns < 1:
		return options{}, fmt.Errorf("-conns: must be positive, got %d", o.conns)
	case o.examples < 1:
		return options{}, fmt.Errorf("-examples: must be positive, got %d", o.examples)
	case o.retentionRate < 1:
		return options{}, fmt.Errorf("-retention-rate: must be positive, got %d", o.retentionRate)
	case o.retentionExcess < 1:
		return options{}, fmt.Errorf("-retention-excess: must be positive, got %d", o.retentionExcess)
	case o.retentionDuration < retentionWindow:
		return options{}, fmt.Errorf("-retention-duration: must be at least %s, got %s", retentionWindow, o.retentionDuration)
	case o.soakDuration < 20*time.Second:
		return options{}, fmt.Errorf("-soak-duration: must be at least 20s, got %s", o.soakDuration)
	case o.costRate < 1 || o.costTrainRate < 1:
		return options{}, fmt.Errorf("-cost-rate, -cost-train-rate: must be positive, got %d and %d", o.costRate, o.costTrainRate)
	case o.backendRate < 1 || o.backendFlatout < 0:
		return options{}, fmt.Errorf("-backend-rate must be positive and -backend-flatout-rate not negative, got %d and %d", o.backendRate, o.backendFlatout)
	case o.soakRate < 1:
		return options{}, fmt.Errorf("-soak-rate: must be positive, got %d", o.soakRate)
	}
	return o, nil
}

func parseRates(s string) ([]int, error) {
	var rates []int
	for f := range strings.SplitSeq(s, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("-rates: %q is not a positive integer", f)
		}
		rates = append(rates, r)
	}
	return rates, nil
}

// phase is one kind of measured load: a rate, streaming or not.
type phase struct {
	Rate   int  `json:"rate"`
	Stream bool `json:"stream"`
}

func (p phase) mode() string {
	if p.Stream {
		return "stream"
	}
	return "chat"
}

// phases lists the measured phases in the order they run within a repeat.
func (o options) phases() []phase {
	ps := make([]phase, 0, len(o.rates)+1)
	for _, r := range o.rates {
		ps = append(ps, phase{Rate: r})
	}
	if o.stream {
		ps = append(ps, phase{Rate: streamRate, Stream: true})
	}
	return ps
}

// workDir checks that the understudy binary is there and makes a
// temporary directory named by prefix for a run; the caller removes it.
func workDir(o options, prefix string) (string, error) {
	if _, err := os.Stat(o.bin); err != nil {
		return "", fmt.Errorf("finding the understudy binary (run make build or pass -bin): %w", err)
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", fmt.Errorf("creating a temporary directory: %w", err)
	}
	return dir, nil
}

// run prepares the data set, starts both servers, runs every phase and
// writes the report.
func run(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	dir, err := workDir(o, "loadbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	ds, err := writeDataset(dir, o.examples, o.bodyBytes)
	if err != nil {
		return err
	}
	sim, gw, err := startServers(ctx, o.bin, dir, ds.path)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, gw.stop(), sim.stop())
	}()

	b := newBench(o, ds, dir, sim, gw, stderr)
	defer b.close()
	if err := b.preflight(); err != nil {
		return err
	}
	res, err := b.runAll(ctx)
	if err != nil {
		return err
	}
	if o.loggingCompare {
		// Its gateways are its own: the phases' one would only compete.
		if err := gw.stop(); err != nil {
			return err
		}
		if err := b.runLoggingCompare(ctx); err != nil {
			return err
		}
	}
	if o.retentionCompare {
		if err := gw.stop(); err != nil {
			return err
		}
		if err := b.runRetentionCompare(ctx); err != nil {
			return err
		}
	}
	if o.studentCompare {
		if err := gw.stop(); err != nil {
			return err
		}
		if err := b.runStudentCompare(ctx); err != nil {
			return err
		}
	}
	if o.jsonPath != "" {
		if err := writeJSON(o.jsonPath, res); err != nil {
			return err
		}
	}
	writeReport(stdout, res)
	return nil
}
