// Command understudy is the Understudy gateway and its tools. It only wires:
// it builds each component from config and runs it.
//
//	understudy serve [--config FILE] [--listen ADDR] [--admin-listen ADDR] [--data-dir DIR] [--teacher-url URL]
//	understudy status [--watch]
//	understudy domains
//	understudy export --domain NAME [--out FILE]
//	understudy train --data FILE.jsonl [--json] [--curve N,N,... [--seeds K]]
//	understudy config check FILE
//	understudy teacher-sim --task NAME=FILE.jsonl [...]
//	understudy demo [--requests N] [--report FILE.json] [--chart FILE.png] [...]
//	understudy version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/student"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Understudy: an OpenAI-compatible gateway that distills its teacher model.

Usage:
  understudy serve [--config FILE] [flags]   run the gateway (the main job)
  understudy status [--watch]                summary of every domain: state, agreement, offload, savings
  understudy domains                         list the task domains of a running server
  understudy export --domain NAME [--out F]  export a domain's pairs as OpenAI fine-tuning JSONL
  understudy train --data FILE.jsonl [--json] train a student offline and print its holdout metrics
  understudy config check FILE               validate a config file and print the effective config
  understudy teacher-sim [flags]             run an OpenAI-compatible teacher simulator
  understudy demo [flags]                    watch a student take over replayed traffic (data: make deps)
  understudy version                         print the version

Run "understudy COMMAND -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "understudy:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, rest, stderr)
	case "config":
		return configCmd(rest, stdout, stderr)
	case "teacher-sim":
		return teacherSim(ctx, rest, stderr)
	case "domains":
		return domainsCmd(ctx, rest, stdout, stderr)
	case "status":
		return statusCmd(ctx, rest, stdout, stderr)
	case "export":
		return exportCmd(ctx, rest, stdout, stderr)
	case "train":
		return trainCmd(ctx, rest, stdout, stderr)
	case "demo":
		return demoCmd(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "understudy", version)
		// Where the students' runtime comes from, or where it was
		// looked for: what an operator checks first.
		if err := student.InitRuntime(""); err != nil {
			fmt.Fprintln(stdout, "onnxruntime: not found:", err)
		} else {
			fmt.Fprintf(stdout, "onnxruntime %s (%s)\n", student.RuntimeVersion(), student.RuntimeLibrary())
		}
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}

// loadConfig reads the config file (if any) and the environment, applies
// the flags that were set on the command line, and validates the result.
func loadConfig(path string, flags *flag.FlagSet, apply map[string]func(*config.Config, string)) (*config.Config, error) {
	cfg, err := config.Load(path, nil)
	if err != nil {
		return nil, err
	}
	flags.Visit(func(f *flag.Flag) {
		if set, ok := apply[f.Name]; ok {
			set(cfg, f.Value.String())
		}
	})
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func configCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: understudy config check FILE")
		return usageError{"config needs: check FILE"}
	}
	cfg, err := config.Load(args[1], nil)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s is invalid:\n%w", args[1], err)
	}
	out, err := cfg.MarshalRedacted()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# %s is valid; effective configuration (file, then environment; secrets masked):\n%s", args[1], out)
	return nil
}
