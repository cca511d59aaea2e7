package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
)

// runCLI runs the command line as main does and returns what a user sees.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = runMain(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestTopLevelHelp: -h, --help and help list every command with its one
// line and exit 0.
func TestTopLevelHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		code, out, errOut := runCLI(args...)
		if code != 0 || errOut != "" {
			t.Errorf("%q: exit %d, stderr %q; want 0 and nothing", args, code, errOut)
		}
		for _, d := range commandDocs {
			if !strings.Contains(out, "  "+d.name+strings.Repeat(" ", 14-len(d.name))+d.summary+"\n") {
				t.Errorf("%q: usage lacks the line for %s:\n%s", args, d.name, out)
			}
		}
	}
}

// TestCommandHelp: each command's -h (wherever it is on the line) starts
// with a sentence saying what the command does, shows how to call it and
// its flags, and exits 0 with nothing on stderr.
func TestCommandHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		doc  string
		flag string // one flag the help must list; "" for none
	}{
		{[]string{"serve", "-h"}, "serve", "--teacher-url URL"},
		{[]string{"serve", "--listen", "127.0.0.1:1", "--help"}, "serve", "--listen address"},
		{[]string{"status", "-h"}, "status", "--watch"},
		{[]string{"domains", "--help"}, "domains", "--json"},
		{[]string{"export", "-h"}, "export", "--domain domain"},
		{[]string{"train", "--data", "x.jsonl", "-h"}, "train", "--curve sizes"},
		{[]string{"config", "check", "-h"}, "config check", ""},
		{[]string{"config", "check", "missing.yaml", "--help"}, "config check", ""},
		{[]string{"config", "-h"}, "config check", ""},
		{[]string{"teacher-sim", "-h"}, "teacher-sim", "--task NAME=FILE.jsonl"},
		{[]string{"demo", "-h"}, "demo", "--requests int"},
		{[]string{"version", "-h"}, "version", ""},
		{[]string{"help", "status"}, "status", "--admin-url URL"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(tc.args...)
			if code != 0 || errOut != "" {
				t.Errorf("exit %d, stderr %q; want 0 and nothing", code, errOut)
			}
			d := docOf(tc.doc)
			first, _, _ := strings.Cut(out, "\n")
			if first != sentence(d.summary) {
				t.Errorf("first line %q, want %q", first, sentence(d.summary))
			}
			if !strings.Contains(out, "\nUsage: understudy "+tc.doc) {
				t.Errorf("no usage line:\n%s", out)
			}
			if tc.flag != "" && (!strings.Contains(out, "\nFlags:\n") || !strings.Contains(out, "\n  "+tc.flag)) {
				t.Errorf("flag %q not listed:\n%s", tc.flag, out)
			}
		})
	}
}

// TestUsageErrors: a mistake on the command line prints its error once,
// then the usage, and exits 2; nothing goes to stdout.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		msg   string
		usage string
	}{
		{nil, "no command given", "Commands:"},
		{[]string{"nope"}, `unknown command "nope"`, "Commands:"},
		{[]string{"help", "nope"}, `unknown command "nope"`, "Commands:"},
		{[]string{"serve", "extra"}, `serve: unexpected argument "extra"`, "Usage: understudy serve"},
		{[]string{"serve", "--bogus"}, "serve: unknown flag --bogus", "Usage: understudy serve"},
		{[]string{"status", "--bogus"}, "status: unknown flag --bogus", "Usage: understudy status"},
		{[]string{"status", "--interval", "soon"}, `status: invalid value "soon" for flag --interval`, "Usage: understudy status"},
		{[]string{"domains", "--bogus"}, "domains: unknown flag --bogus", "Usage: understudy domains"},
		{[]string{"export"}, "export: --domain is required", "Usage: understudy export"},
		{[]string{"export", "--domain"}, "export: flag needs an argument: --domain", "Usage: understudy export"},
		{[]string{"train"}, "train: --data is required", "Usage: understudy train"},
		{[]string{"train", "--data", "x", "--curve", "a"}, "train: --curve: want positive pair counts", "Usage: understudy train"},
		{[]string{"config"}, "config check: want: config check FILE", "Usage: understudy config check FILE"},
		{[]string{"config", "check"}, "config check: missing argument", "Usage: understudy config check FILE"},
		{[]string{"config", "check", "a.yaml", "b.yaml"}, `config check: unexpected argument "b.yaml"`, "Usage: understudy config check FILE"},
		{[]string{"teacher-sim", "--task", "x"}, `teacher-sim: --task "x": want NAME=FILE.jsonl`, "Usage: understudy teacher-sim"},
		{[]string{"demo", "extra"}, `demo: unexpected argument "extra"`, "Usage: understudy demo"},
		{[]string{"version", "--bogus"}, "version: unknown flag --bogus", "Usage: understudy version"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			first, rest, _ := strings.Cut(errOut, "\n")
			if want := "understudy: " + tc.msg; !strings.HasPrefix(first, want) {
				t.Errorf("first line %q, want it to start with %q", first, want)
			}
			if strings.Contains(rest, tc.msg) {
				t.Errorf("the error is printed twice:\n%s", errOut)
			}
			if !strings.Contains(rest, tc.usage) {
				t.Errorf("stderr lacks the usage %q:\n%s", tc.usage, errOut)
			}
		})
	}
}

// TestRuntimeFailures exit 1 with the error once and no usage.
func TestRuntimeFailures(t *testing.T) {
	for _, args := range [][]string{
		{"config", "check", "testdata/nonexistent.yaml"},
		{"status", "--admin-url", "http://127.0.0.1:1"},
	} {
		code, _, errOut := runCLI(args...)
		if code != 1 || strings.Count(errOut, "understudy:") != 1 || strings.Contains(errOut, "Usage:") {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit 1 and the error once, without the usage", args, code, errOut)
		}
	}
}

// TestConfigCheckNamesTheSetting: config check names a misspelt setting and
// a bad duration by their paths and lines, not yaml.v3's Go types.
func TestConfigCheckNamesTheSetting(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"breaker-typo.bad.yaml", "line 3: teacher.breaker.consecutive_falures: unknown setting (did you mean consecutive_failures?)"},
		{"trainer-cooldown.bad.yaml", `line 2: trainer.cooldown: invalid duration "5 minutes"`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			code, out, errOut := runCLI("config", "check", "../../config/testdata/"+tc.file)
			if code != 1 || out != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
			}
			if !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "config.") {
				t.Errorf("stderr:\n%s\nwant %q and no Go type", errOut, tc.want)
			}
		})
	}
}

// TestStatusAndDomainsAgree: status and domains, reading the same admin
// API, show a domain's student, agreement with its bound, coverage and
// offload in the same words.
func TestStatusAndDomainsAgree(t *testing.T) {
	st := &shadow.Stats{Samples: 1200, Tau: 0.91, Confident: 900, SelectiveAgreement: 0.968, LowerBound: 0.951, Coverage: 0.83}
	view := gateway.DomainView{
		Name: "spam", State: string(router.Serving), Pairs: 5000, Labels: 2, LatestVersion: 3, LastSeen: time.Now(),
		Routing: &router.View{State: router.Serving, Serving: 3, ServingStats: st, Offload: 0.62, RecentOffload: 0.813, RecentAnswers: 1000,
			Routes: map[router.Route]int64{router.RouteStudent: 62, router.RouteTeacher: 38}},
	}
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"domains": []gateway.DomainView{view}})
	}))
	defer admin.Close()

	outputs := map[string]string{}
	for _, cmd := range []string{"status", "domains"} {
		code, out, errOut := runCLI(cmd, "--admin-url", admin.URL)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", cmd, code, errOut)
		}
		t.Logf("understudy %s:\n%s", cmd, out)
		outputs[cmd] = out
	}
	for cmd, out := range outputs {
		for _, want := range []string{"AGREEMENT (≥ BOUND)", "OFFLOAD (RECENT)", " v3 ", "96.8% (≥ 95.1%)", "83.0%", "62.0% (81.3%)"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s lacks %q:\n%s", cmd, want, out)
			}
		}
	}
}
