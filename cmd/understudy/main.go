// Command understudy is the Understudy gateway and its tools. It only wires:
// it builds each component from config and runs it.
//
//	understudy serve [--config FILE] [--listen ADDR] [--admin-listen ADDR] [--data-dir DIR] [--teacher-url URL]
//	understudy status [--watch]
//	understudy domains [NAME] [--json]
//	understudy export --domain NAME [--out FILE]
//	understudy train --data FILE.jsonl [--json] [--curve N,N,... [--seeds K]]
//	understudy config check FILE
//	understudy teacher-sim --task NAME=FILE.jsonl [...]
//	understudy demo [--requests N] [--report FILE.json] [--chart FILE.png] [...]
//	understudy version
//	understudy help [COMMAND]
//
// What each does is in commandDocs, which -h prints. Exit status: 0 on
// success and for -h, 2 for a mistake on the command line (its error once,
// then the usage), 1 for any other failure.
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
	"strings"
	"syscall"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/student"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain runs the command line and reports how it ended: nothing and 0 on
// success (-h included); the error once and 1 for a failure; the error,
// then the usage, and 2 for a mistake on the command line.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "understudy:", err)
	var ue usageError
	if errors.As(err, &ue) && ue.usage != "" {
		fmt.Fprint(stderr, "\n"+ue.usage)
	}
	return exitCode(err)
}

// run runs the sub-command args[0]. A request for help (flag.ErrHelp from
// the command's parse) is a success.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{msg: "no command given", usage: topUsage()}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr)
	case "config":
		return configCmd(rest, stdout)
	case "teacher-sim":
		return teacherSim(ctx, rest, stdout, stderr)
	case "domains":
		return domainsCmd(ctx, rest, stdout)
	case "status":
		return statusCmd(ctx, rest, stdout)
	case "export":
		return exportCmd(ctx, rest, stdout, stderr)
	case "train":
		return trainCmd(ctx, rest, stdout, stderr)
	case "demo":
		return demoCmd(ctx, rest, stdout)
	case "version", "--version":
		return versionCmd(rest, stdout)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" && !strings.HasPrefix(rest[0], "-") {
			return dispatch(ctx, []string{rest[0], "-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, topUsage())
		return nil
	default:
		return usageError{msg: fmt.Sprintf("unknown command %q", cmd), usage: topUsage()}
	}
}

func versionCmd(args []string, stdout io.Writer) error {
	if err := newFlags("version", stdout).parse(args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "understudy", version)
	// Where the students' runtime comes from, or where it was looked for:
	// what an operator checks first.
	if err := student.InitRuntime(""); err != nil {
		fmt.Fprintln(stdout, "onnxruntime: not found:", err)
	} else {
		fmt.Fprintf(stdout, "onnxruntime %s (%s)\n", student.RuntimeVersion(), student.RuntimeLibrary())
	}
	return nil
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

// configCmd is `understudy config check FILE`.
func configCmd(args []string, stdout io.Writer) error {
	fs := newFlags("config check", stdout)
	switch {
	case len(args) > 0 && args[0] == "check":
		args = args[1:]
	case !wantsHelp(args):
		return fs.usageError("want: config check FILE")
	}
	if err := fs.parse(args); err != nil {
		return err
	}
	path := fs.Arg(0)
	cfg, err := config.Load(path, nil)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s is invalid:\n%w", path, err)
	}
	out, err := cfg.MarshalRedacted()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# %s is valid; effective configuration (file, then environment; secrets masked):\n%s", path, out)
	return nil
}
