package storage

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchInputs returns n distinct inputs of about size bytes of word-like
// text (not compressible to nothing, not random bytes either).
func benchInputs(n, size int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the a of to and in is for on that with free offer meeting invoice " +
		"click now order account password lunch report quarterly please review attached " +
		"shipment delayed refund urgent winner prize claim schedule tomorrow thanks regards")
	out := make([]string, n)
	var sb strings.Builder
	for i := range out {
		sb.Reset()
		fmt.Fprintf(&sb, "message %d:", i)
		for sb.Len() < size {
			sb.WriteByte(' ')
			sb.WriteString(words[r.IntN(len(words))])
		}
		out[i] = sb.String()[:size]
	}
	return out
}

var benchLabels = []string{"spam", "ham", "phishing", "newsletter", "invoice", "personal", "work", "other"}

func benchPair(i int, inputs []string) Pair {
	l := benchLabels[i%len(benchLabels)]
	return Pair{
		Domain:           []string{"spam", "sentiment", "intent", "topic"}[i%4],
		Model:            "gpt-4o-mini",
		System:           "Classify this e-mail. Answer with one word.",
		Input:            strings.Clone(inputs[i%len(inputs)]), // each pair owns its text, as in the gateway
		Answer:           l,
		Label:            l,
		PromptTokens:     300,
		CompletionTokens: 2,
		TeacherLatency:   400 * time.Millisecond,
	}
}

// logAll logs n pairs as fast as the queue takes them: a full queue makes the
// producer wait briefly and retry, so the rate measured is the writer's.
// rate > 0 paces the producer at that many pairs per second instead.
func logAll(db *DB, n int, inputs []string, rate int) (retries int) {
	start := time.Now()
	for i := 0; i < n; i++ {
		if rate > 0 && i%100 == 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				time.Sleep(d)
			}
		}
		p := benchPair(i, inputs)
		for !db.Log(p) {
			retries++
			time.Sleep(50 * time.Microsecond)
		}
	}
	return retries
}

// BenchmarkLog measures sustained write throughput: b.N pairs with 1 KB
// inputs through Log, then Flush, with the default options, with SyncWrites,
// and with encryption.
func BenchmarkLog(b *testing.B) {
	inputs := benchInputs(4096, 1024)
	key := filepath.Join(b.TempDir(), "key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 32)), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"default", Options{}},
		{"sync_writes", Options{SyncWrites: true}},
		{"encrypted", Options{EncryptionKeyFile: key}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			o := bc.opts
			o.Dir, o.Logger = b.TempDir(), quietLogger()
			db, err := Open(o)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			b.SetBytes(1024)
			b.ResetTimer()
			start := time.Now()
			logAll(db, b.N, inputs, 0)
			if err := db.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pairs/s")
		})
	}
}

// procStatus returns the fields of /proc/self/status named, in kB.
func procStatus(t testing.TB, names ...string) map[string]int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		for _, n := range names {
			if k == n {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
				out[n] = kb
			}
		}
	}
	return out
}

func logRSS(t *testing.T, phase string) {
	t.Helper()
	s := procStatus(t, "VmRSS", "VmHWM", "RssAnon", "RssFile")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%-28s VmRSS %4d MB  VmHWM %4d MB  (RssAnon %4d MB, RssFile %4d MB)  Go heap in use %4d MB, Go sys %4d MB",
		phase, s["VmRSS"]>>10, s["VmHWM"]>>10, s["RssAnon"]>>10, s["RssFile"]>>10, ms.HeapInuse>>20, ms.Sys>>20)
}

// TestRSSMillionPairs writes 1,000,000 pairs with 1 KB inputs, then closes,
// reopens and lists the domains, logging the process RSS at each step. It
// runs only with UNDERSTUDY_BENCH_RSS=1 (it needs ~1.5 GB of disk). By
// default the producer logs as fast as the writer takes pairs (the queue
// stays full); UNDERSTUDY_BENCH_RSS_RATE=20000 paces it at 20,000 pairs/s.
//
//	UNDERSTUDY_BENCH_RSS=1 go test -run TestRSSMillionPairs -v -timeout 30m ./storage
func TestRSSMillionPairs(t *testing.T) {
	if os.Getenv("UNDERSTUDY_BENCH_RSS") != "1" {
		t.Skip("set UNDERSTUDY_BENCH_RSS=1 to run")
	}
	const n = 1_000_000
	dir := t.TempDir()
	inputs := benchInputs(4096, 1024)
	logRSS(t, "start")

	// MaxPairsPerDomain above n/4 so that nothing is capped away.
	opts := Options{Dir: dir, Logger: quietLogger(), MaxPairsPerDomain: n}
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	rate, _ := strconv.Atoi(os.Getenv("UNDERSTUDY_BENCH_RSS_RATE"))
	start := time.Now()
	retries := logAll(db, n, inputs, rate)
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Logf("wrote %d pairs in %s: %.0f pairs/s (producer waited on a full queue %d times)", n, el.Round(time.Millisecond), n/el.Seconds(), retries)
	logRSS(t, "after 1M writes")
	t.Logf("%-28s on disk: LSM tables %d MB, value log %d MB", "", dirSize(dir, ".sst")>>20, dirSize(dir, ".vlog")>>20)
	debug.FreeOSMemory()
	logRSS(t, "after writes + FreeOSMemory")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	debug.FreeOSMemory()
	logRSS(t, "after Close")

	// Reset VmHWM so the reopen phase reports its own peak.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Logf("cannot reset VmHWM: %v", err)
	}
	start = time.Now()
	db, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ds, err := db.Domains()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, d := range ds {
		total += d.Pairs
	}
	t.Logf("reopen + Domains(): %s, %d domains, %d pairs", time.Since(start).Round(time.Millisecond), len(ds), total)
	if total != n {
		t.Errorf("stored %d pairs, want %d", total, n)
	}
	logRSS(t, "after reopen + Domains()")
	t.Logf("data directory: %d MB", dirSize(dir, "")>>20)
}

// dirSize sums the sizes of the files in dir whose names end in ext ("" = all).
func dirSize(dir, ext string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ext) {
			n += fi.Size()
		}
	}
	return n
}
