package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/understudy-dev/understudy/internal/demo"
)

// demoCmd runs `understudy demo`: the flags, then internal/demo.
func demoCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("demo", stdout)
	var cfg demo.Config
	fs.StringVar(&cfg.Dataset, "dataset", demo.DefaultDataset, "data `set`: spamassassin, wordnet or wordnet-json (WordNet as JSON records; make deps fetches all), or a directory of one's task files")
	fs.IntVar(&cfg.Requests, "requests", demo.DefaultRequests, "requests to send in all")
	fs.IntVar(&cfg.Concurrency, "concurrency", demo.DefaultConcurrency, "requests in flight at once")
	fs.DurationVar(&cfg.TeacherLatency, "teacher-latency", demo.DefaultTeacherLatency, "the teacher's answer latency")
	fs.DurationVar(&cfg.TeacherJitter, "teacher-jitter", demo.DefaultTeacherJitter, "uniform jitter (±) of the teacher's latency")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed: data order, task mix, streamed requests, jitter")
	fs.Float64Var(&cfg.InputPrice, "input-price", demo.DefaultInputPrice, "the teacher's price, `USD` per million prompt tokens")
	fs.Float64Var(&cfg.OutputPrice, "output-price", demo.DefaultOutputPrice, "the teacher's price, `USD` per million completion tokens")
	fs.StringVar(&cfg.ReportPath, "report", "", "write the JSON report, with the per-request trace, to `FILE`")
	fs.StringVar(&cfg.ChartPath, "chart", "", "write a PNG chart of offload and agreement to `FILE`")
	if err := fs.parse(args); err != nil {
		return err
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
