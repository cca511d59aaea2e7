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
	"slices"
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
	opts := Options{Dir: dir, Logger: quietLogger(), LogOptions: LogOptions{MaxPairsPerDomain: n}}
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

// TestRetentionStall measures retention over a large excess, as an operator
// saw it at the default cap: it stores cap+excess pairs with 1 KB inputs in
// one domain, then runs a pass while a producer logs at 5,000 pairs/s and a
// probe measures how late a 1 ms sleep wakes (a stall of the process). It
// logs the pass's time and deletion rate, the peak RSS it added, the probe's
// lateness and the pairs dropped; then, once compaction has told Badger
// which value-log files are garbage, the same for a second pass, whose work
// is value-log GC; last, the probe for 20 s without retention (the floor). It runs only with UNDERSTUDY_BENCH_RETENTION=1 (it needs
// ~1 GB of disk); UNDERSTUDY_BENCH_RETENTION_EXCESS and _CAP change the
// sizes (defaults 475,000 and 200,000).
//
//	UNDERSTUDY_BENCH_RETENTION=1 go test -run TestRetentionStall -v -timeout 30m ./storage
func TestRetentionStall(t *testing.T) {
	if os.Getenv("UNDERSTUDY_BENCH_RETENTION") != "1" {
		t.Skip("set UNDERSTUDY_BENCH_RETENTION=1 to run")
	}
	capN, excess := 200_000, 475_000
	if v, err := strconv.Atoi(os.Getenv("UNDERSTUDY_BENCH_RETENTION_CAP")); err == nil {
		capN = v
	}
	if v, err := strconv.Atoi(os.Getenv("UNDERSTUDY_BENCH_RETENTION_EXCESS")); err == nil {
		excess = v
	}
	inputs := benchInputs(4096, 1024)
	// Only the passes measured here run.
	db, reg := open(t, Options{noRetentionLoop: true, LogOptions: LogOptions{MaxPairsPerDomain: capN}})
	fill := time.Now()
	for i := 0; i < capN+excess; i++ {
		p := benchPair(i, inputs)
		p.Domain = "d"
		for !db.Log(p) {
			time.Sleep(50 * time.Microsecond)
		}
	}
	flush(t, db)
	t.Logf("stored %d pairs in %s", capN+excess, time.Since(fill).Round(time.Millisecond))

	deleted := 0.0
	for pass := 1; pass <= 2; pass++ {
		if pass == 2 {
			// Compaction of the deletions feeds Badger's discard stats,
			// which value-log GC needs; a few seconds are enough here.
			time.Sleep(10 * time.Second)
		}
		debug.FreeOSMemory()
		logRSS(t, fmt.Sprintf("before pass %d", pass))
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			t.Logf("cannot reset VmHWM: %v", err)
		}
		before := procStatus(t, "VmRSS")["VmRSS"]
		var el time.Duration
		st := underLoad(db, inputs, func() {
			start := time.Now()
			if err := db.RunRetention(); err != nil {
				t.Fatal(err)
			}
			el = time.Since(start)
		})
		d := metric(t, reg, "understudy_storage_retention_deleted_total", "reason", "cap") - deleted
		deleted += d
		s := procStatus(t, "VmHWM")
		t.Logf("pass %d: %s, %.0f pairs deleted (%.0f pairs/s); peak RSS %d MB, +%d MB over the %d MB before",
			pass, el.Round(time.Millisecond), d, d/el.Seconds(), s["VmHWM"]>>10, (s["VmHWM"]-before)>>10, before>>10)
		t.Logf("pass %d: %s", pass, st)
		logRSS(t, fmt.Sprintf("after pass %d", pass))
	}
	// The floor: what the probe sees with the producer alone.
	t.Logf("no retention, 20 s: %s", underLoad(db, inputs, func() { time.Sleep(20 * time.Second) }))
	flush(t, db)
	if n := mustDomain(t, db, "d").Pairs; n > int64(capN)+150_000 {
		t.Errorf("%d pairs after two passes, cap %d", n, capN)
	}
	t.Logf("data directory: %d MB", dirSize(db.opts.Dir, "")>>20)
}

// underLoad runs f while a producer logs to db at 5,000 pairs/s and a probe
// sleeps 1 ms at a time, and describes what they saw.
func underLoad(db *DB, inputs []string, f func()) string {
	var late []time.Duration
	var logged, dropped int
	start, i := time.Now(), 0
	stop := repeat(
		func() bool { // the probe
			t0 := time.Now()
			time.Sleep(time.Millisecond)
			late = append(late, time.Since(t0)-time.Millisecond)
			return true
		},
		func() bool { // the producer, 5,000 pairs/s
			if d := time.Until(start.Add(time.Duration(i) * time.Second / 5000)); d > 0 {
				time.Sleep(d)
			}
			p := benchPair(i, inputs)
			p.Domain = "d"
			if db.Log(p) {
				logged++
			} else {
				dropped++
			}
			i++
			return true
		})
	f()
	stop()
	slices.Sort(late)
	q := func(f float64) time.Duration { return late[int(f*float64(len(late)-1))].Round(10 * time.Microsecond) }
	return fmt.Sprintf("%d pairs logged at 5,000/s meanwhile, %d dropped; a 1 ms sleep woke late by p50 %s, p99 %s, p99.9 %s, max %s (%d sleeps)",
		logged, dropped, q(.5), q(.99), q(.999), late[len(late)-1].Round(10*time.Microsecond), len(late))
}
