package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/understudy-dev/understudy/internal/demo"
)

// demoCmd runs `understudy demo`: the flags, then internal/demo.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: understudy demo [flags]

Shows a student model taking over real traffic: runs a simulated teacher LLM
and the gateway on loopback, replays the SpamAssassin e-mails of three tasks
through it with the OpenAI SDK, and reports per task when the student was
promoted, how much it answered, how often it matched the data, latency and
cost saved. The data comes from "make deps".`)
		fs.PrintDefaults()
	}
	var cfg demo.Config
	fs.StringVar(&cfg.Dataset, "dataset", demo.DefaultDataset, "data `set`: spamassassin or wordnet (make deps fetches both), or a directory of one's task files")
	fs.IntVar(&cfg.Requests, "requests", demo.DefaultRequests, "requests to send in all")
	fs.IntVar(&cfg.Concurrency, "concurrency", demo.DefaultConcurrency, "requests in flight at once")
	fs.DurationVar(&cfg.TeacherLatency, "teacher-latency", demo.DefaultTeacherLatency, "the teacher's answer latency")
	fs.DurationVar(&cfg.TeacherJitter, "teacher-jitter", demo.DefaultTeacherJitter, "uniform jitter (±) of the teacher's latency")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed: data order, task mix, streamed requests, jitter")
	fs.Float64Var(&cfg.InputPrice, "input-price", demo.DefaultInputPrice, "the teacher's price, `USD` per million prompt tokens")
	fs.Float64Var(&cfg.OutputPrice, "output-price", demo.DefaultOutputPrice, "the teacher's price, `USD` per million completion tokens")
	fs.StringVar(&cfg.ReportPath, "report", "", "write the JSON report, with the per-request trace, to `FILE`")
	fs.StringVar(&cfg.ChartPath, "chart", "", "write a PNG chart of offload and agreement to `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"demo takes no arguments; got " + fs.Arg(0)}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the understudy binary: %w", err)
	}
	cfg.Executable, cfg.Out, cfg.Live = exe, stdout, isTerminal(stdout)
	_, err = demo.Run(ctx, cfg)
	return err
}

// isTerminal reports whether w is a character device (a terminal), where
// progress lines can be redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
