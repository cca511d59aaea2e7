package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/understudy-dev/understudy/internal/teachersim"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func teacherSim(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("teacher-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: understudy teacher-sim --task NAME=FILE.jsonl [--system NAME=PROMPT] [flags]

An OpenAI-compatible server that answers from labelled JSONL files
({"text": ..., "label": ...} per line; a {"system": ...} line sets the task's
system prompt). Chat and Responses requests are matched to a task by system
prompt (Responses: instructions) and answered with the label of the example
whose text equals the user message.`)
		fs.PrintDefaults()
	}
	var tasks, systems, models listFlag
	listen := fs.String("listen", "127.0.0.1:9090", "listen `address`")
	fs.Var(&tasks, "task", "a task as `NAME=FILE.jsonl` (repeatable)")
	fs.Var(&systems, "system", "a task's system prompt as `NAME=PROMPT` (repeatable; beats the file's)")
	fs.Var(&models, "model", "a model `id` to list (repeatable; default teacher-sim)")
	var cfg teachersim.Config
	fs.DurationVar(&cfg.Latency, "latency", 0, "answer latency")
	fs.DurationVar(&cfg.Jitter, "jitter", 0, "uniform latency jitter (±)")
	fs.DurationVar(&cfg.ChunkDelay, "chunk-delay", 0, "delay between streamed chunks")
	fs.Float64Var(&cfg.ErrorRate, "error-rate", 0, "share of requests answered with an injected error")
	fs.IntVar(&cfg.ErrorStatus, "error-status", 500, "HTTP status of injected errors")
	fs.StringVar(&cfg.APIKey, "api-key", "", "require this API key (default: none)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed for latency and errors")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prompts := map[string]string{}
	for _, s := range systems {
		name, prompt, ok := strings.Cut(s, "=")
		if !ok {
			return usageError{fmt.Sprintf("--system %q: want NAME=PROMPT", s)}
		}
		prompts[name] = prompt
	}
	for _, t := range tasks {
		name, path, ok := strings.Cut(t, "=")
		if !ok {
			return usageError{fmt.Sprintf("--task %q: want NAME=FILE.jsonl", t)}
		}
		task, err := teachersim.LoadTask(name, path, prompts[name])
		if err != nil {
			return err
		}
		cfg.Tasks = append(cfg.Tasks, task)
	}
	cfg.Models = models
	log := slog.New(slog.NewTextHandler(stderr, nil))
	sim, err := teachersim.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	log.Info("teacher-sim listening", "addr", ln.Addr().String(), "tasks", len(cfg.Tasks),
		"latency", cfg.Latency, "jitter", cfg.Jitter, "error_rate", cfg.ErrorRate,
		"base_url", "http://"+ln.Addr().String()+"/v1")
	start := time.Now()
	err = sim.Serve(ctx, ln)
	st := sim.Stats()
	log.Info("teacher-sim stopped", "requests", st.Requests, "errors", st.Errors, "uptime", time.Since(start).Round(time.Second))
	return err
}
