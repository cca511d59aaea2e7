package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTask writes n {"text","label"} lines of a two-label task, grouped by
// label as exported data sets are, and returns the file's path.
func writeTask(t *testing.T, n int) string {
	t.Helper()
	var b bytes.Buffer
	for _, label := range []string{"billing", "shipping"} {
		words := map[string][]string{
			"billing":  {"invoice", "refund", "charge", "payment"},
			"shipping": {"parcel", "delivery", "tracking", "courier"},
		}[label]
		for i := range n / 2 {
			text := fmt.Sprintf("ticket %d: about my %s and the %s", i, words[i%4], words[(i/4)%4])
			line, _ := json.Marshal(map[string]string{"text": text, "label": label})
			b.Write(append(line, '\n'))
		}
	}
	path := filepath.Join(t.TempDir(), "task.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTrainCurve: --curve trains on growing prefixes and measures each on
// the held-out 20%; a size beyond the data becomes one point with all the
// pairs left for training.
func TestTrainCurve(t *testing.T) {
	data := writeTask(t, 300) // 60 to test, 240 to train from
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"train", "--data", data, "--curve", "50,100,1000,2000", "--json"}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var points []curvePoint
	if err := json.Unmarshal(out.Bytes(), &points); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if len(points) != 3 || points[0].Pairs != 50 || points[1].Pairs != 100 || points[2].Pairs != 240 {
		t.Fatalf("points %+v; want 50, 100 and 240 pairs", points)
	}
	last := points[2]
	if last.TestAccuracy < 0.95 || last.OracleCoverage < 0.9 || last.CoverageAtTau == 0 {
		t.Errorf("on 240 pairs of an easy task: %+v", last)
	}

	out.Reset()
	if err := run(context.Background(), []string{"train", "--data", data, "--curve", "100"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"oracle coverage", "test acc", "\n    100  "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestTrainCurveUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{
		{"--curve", "100,50"}, {"--curve", "0"}, {"--curve", "a"},
		{"--curve", "100", "--seeds", "0"}, {"--curve", "100", "--save", "x"},
	} {
		err := run(context.Background(), append([]string{"train", "--data", "unused.jsonl"}, args...), &out, &errOut)
		if exitCode(err) != 2 {
			t.Errorf("%q: err = %v; want a usage error", args, err)
		}
	}
}
