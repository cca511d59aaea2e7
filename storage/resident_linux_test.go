package storage

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vlogResident sums the resident size (smaps Rss) of this process's
// mappings of value-log files under dir.
func vlogResident(t *testing.T, dir string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	var sum int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			// A mapping's header line. Anonymous mappings have no path
			// (5 fields): they must end the previous mapping too, or
			// the Go heap (and the race detector's memory) mapped after
			// a value-log file would count as the file's.
			in = len(fields) >= 6 && strings.HasPrefix(fields[5], dir+"/") && strings.HasSuffix(fields[5], ".vlog")
		case in && len(fields) >= 2 && fields[0] == "Rss:":
			var kb int64
			fmt.Sscanf(fields[1], "%d", &kb)
			sum += kb << 10
		}
	}
	return sum
}

// TestValueLogLeavesResidentSet writes ~130 MB of value log and checks that
// its pages leave the process's resident set, and that every pair reads
// back intact afterwards (the releaser never loses data).
func TestValueLogLeavesResidentSet(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	db, _ := open(t, Options{Dir: dir, LogOptions: LogOptions{MaxPairsPerDomain: -1}})
	const n = 100_000
	inputs := benchInputs(1024, 1024)
	logAll(db, n, inputs, 0)
	flush(t, db)
	var written int64 // the pairs' text alone; the value log holds a little more
	for i := range n {
		written += int64(len(inputs[i%len(inputs)]))
	}
	if err := releaseMapped(dir); err != nil {
		t.Fatalf("releaseMapped: %v", err)
	}
	res := vlogResident(t, dir)
	t.Logf("value log: %d MB of pair text written, %d MB resident after release", written>>20, res>>20)
	if res > written/4 {
		t.Errorf("value-log pages resident after release: %d MB of %d MB written", res>>20, written>>20)
	}

	got := 0
	for k, d := range []string{"spam", "sentiment", "intent", "topic"} {
		j := 0 // benchPair sends pair i to domain i%4
		err := db.Pairs(context.Background(), d, func(p Pair) error {
			if want := benchPair(k+4*j, inputs); p.Input != want.Input || p.Label != want.Label {
				return fmt.Errorf("%s pair %d (%s) reads back %.30q/%s, want %.30q/%s", d, j, p.ID, p.Input, p.Label, want.Input, want.Label)
			}
			j++
			got++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got != n {
		t.Errorf("read back %d pairs, want %d", got, n)
	}
}
