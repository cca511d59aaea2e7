package main

import (
	"context"
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

func teacherSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("teacher-sim", stdout)
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
	fs.Float64Var(&cfg.RecordVariation, "record-variation", 0, "share of JSON-record answers written with another key order or spacing, as an LLM's vary")
	fs.StringVar(&cfg.APIKey, "api-key", "", "require this API key (default: none)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed for latency and errors")
	if err := fs.parse(args); err != nil {
		return err
	}
	prompts := map[string]string{}
	for _, s := range systems {
		name, prompt, ok := strings.Cut(s, "=")
		if !ok {
			return fs.usageError(fmt.Sprintf("--system %q: want NAME=PROMPT", s))
		}
		prompts[name] = prompt
	}
	for _, t := range tasks {
		name, path, ok := strings.Cut(t, "=")
		if !ok {
			return fs.usageError(fmt.Sprintf("--task %q: want NAME=FILE.jsonl", t))
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
