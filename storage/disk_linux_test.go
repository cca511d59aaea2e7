package storage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of the given size (e.g. "256m") on a new
// directory and unmounts it on cleanup. It skips the test where that is not
// possible: mounting needs root, as CI has.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a tmpfs to fill needs root (CI runs tests as root)")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting the tmpfs: %v", err)
		}
	})
	return dir
}

// fillTo writes file until the filesystem holding it has at most leave
// bytes free (none at all for leave 0), as another program filling the disk
// would.
func fillTo(t *testing.T, file string, leave int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	free, err := diskFree(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	if free > leave {
		fi, _ := f.Stat()
		if err := unix.Fallocate(int(f.Fd()), 0, fi.Size(), free-leave); err != nil {
			t.Fatalf("filling the disk: %v", err)
		}
	}
	if leave > 0 {
		return
	}
	// The last bytes: write until the filesystem says no.
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}

// syncBuf collects log output from several goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDiskFull fills the filesystem of a pair log being written, on a real
// tmpfs: the process lives on, pairs are dropped and counted as disk_full
// with one warning, the gauge says paused, reads still work, and logging
// resumes by itself when space returns. Then it closes and reopens the pair
// log on a disk that is still full: Open succeeds (read-only), serves
// reads, and goes read-write again when space returns.
//
// Before, Badger wrote its value log through a map of a sparse file and the
// process died of SIGBUS the moment the disk was full; restarting on the
// full disk failed again.
func TestDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, diskFullTmpfs)
	dir := filepath.Join(mnt, "pairs")
	filler := filepath.Join(mnt, "filler")
	var logs syncBuf
	opts := diskFullOptions(dir)
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	floor := opts.MinFreeBytes
	reg := prometheus.NewRegistry()
	opts.Registry = reg
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			db.Close()
		}
	})
	text := strings.Repeat("a fairly long e-mail body to fill the value log ", 20) // ~1 KB
	var seq atomic.Int64
	logOne := func() bool {
		i := seq.Add(1)
		return db.Log(Pair{Domain: "d", Input: fmt.Sprint(i, " ", text), Answer: "ham", Label: fmt.Sprint("l", i%3)})
	}
	stored := func(db *DB) int64 {
		d, err := db.Domain("d")
		if err != nil {
			t.Fatal(err)
		}
		return d.Pairs
	}
	paused := func() bool { return metric(t, reg, "understudy_storage_logging_paused") == 1 }
	diskFull := func() float64 {
		return metric(t, reg, "understudy_storage_pairs_dropped_total", "reason", "disk_full")
	}

	for i := 0; i < 2000; i++ {
		if !logOne() {
			t.Fatal("dropped a pair with room on the disk")
		}
	}
	flush(t, db)
	if paused() || stored(db) != 2000 {
		t.Fatalf("before filling: paused %v, %d pairs stored; want not paused, 2000", paused(), stored(db))
	}
	if _, err := os.Stat(filepath.Join(dir, spareName)); err != nil {
		t.Errorf("no spare file with room on the disk: %v", err)
	}

	// Under load: producers log all the while.
	var accepted, attempts atomic.Int64
	producer := func() bool {
		attempts.Add(1)
		if logOne() {
			accepted.Add(1)
		}
		time.Sleep(200 * time.Microsecond)
		return true
	}
	stopLoad := repeat(producer, producer, producer, producer)

	t.Run("fills up", func(t *testing.T) {
		fillTo(t, filler, floor/2)
		waitFor(t, "logging to pause", paused)
		// Now take the last byte too: nothing Badger writes may fault.
		fillTo(t, filler, 0)
		if free, _ := diskFree(mnt); free != 0 {
			t.Fatalf("%d bytes still free after filling", free)
		}
		before := diskFull()
		time.Sleep(500 * time.Millisecond)
		if diskFull() <= before {
			t.Errorf("dropped{disk_full} = %v, not counting the pairs logged on a full disk", diskFull())
		}
		if n := logs.count("pair log paused"); n != 1 {
			t.Errorf("%d \"pair log paused\" warnings, want 1:\n%s", n, logs.b.String())
		}
		if got := metric(t, reg, "understudy_storage_disk_free_bytes"); got != 0 {
			t.Errorf("disk_free_bytes = %v, want 0", got)
		}
		if err := db.PutRoutingRecord("d", []byte(`{"state":"shadowing"}`)); !errors.Is(err, ErrDiskFull) {
			t.Errorf("PutRoutingRecord on a full disk = %v, want ErrDiskFull", err)
		}
		// Reads go on.
		if _, err := db.Domains(); err != nil {
			t.Errorf("Domains on a full disk: %v", err)
		}
	})

	t.Run("space returns", func(t *testing.T) {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		// resume flips the flag, then logs: wait for both.
		waitFor(t, "logging to resume", func() bool { return !paused() && logs.count("pair log resumed") > 0 })
		if n := logs.count("pair log resumed"); n != 1 {
			t.Errorf("%d \"pair log resumed\" lines, want 1", n)
		}
		stopLoad()
		if err := db.Flush(context.Background()); err != nil && !errors.Is(err, ErrDiskFull) {
			t.Fatal(err)
		}
		// Every pair was either stored or counted as dropped.
		if got, want := float64(stored(db))+diskFull(), float64(2000+attempts.Load()); got != want {
			t.Errorf("stored + dropped{disk_full} = %v, want %v pairs logged", got, want)
		}
		n := stored(db)
		for i := 0; i < 500; i++ {
			if !logOne() {
				t.Fatal("dropped a pair after space returned")
			}
		}
		flush(t, db)
		if got := stored(db); got != n+500 {
			t.Errorf("%d pairs stored after logging 500 more, want %d", got, n+500)
		}
		checkCounts(t, db, "d")
	})

	var n int64
	t.Run("restart on a full disk", func(t *testing.T) {
		fillTo(t, filler, floor/2)
		waitFor(t, "logging to pause", func() bool { return !logOne() && paused() })
		if err := db.Flush(context.Background()); err != nil && !errors.Is(err, ErrDiskFull) {
			t.Fatal(err)
		}
		n = stored(db)
		fillTo(t, filler, 0)
		if err := db.Close(); err != nil {
			t.Fatalf("Close on a full disk: %v", err)
		}
		closed = true
		fillTo(t, filler, 0) // what Close gave back, Badger its flush, is taken again
		db, err = Open(opts)
		if err != nil {
			t.Fatalf("Open on a full disk: %v", err)
		}
		closed = false
		if !paused() {
			t.Error("opened on a full disk without pausing")
		}
		if got := stored(db); got != n {
			t.Errorf("%d pairs after reopening on a full disk, want %d", got, n)
		}
		if got := len(allPairs(t, db, "d")); int64(got) != n {
			t.Errorf("read %d pairs after reopening on a full disk, want %d", got, n)
		}
		if logOne() {
			t.Error("Log accepted a pair on a full disk")
		}
	})

	t.Run("space returns after the restart", func(t *testing.T) {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "logging to resume", func() bool { return !paused() })
		for i := 0; i < 500; i++ {
			if !logOne() {
				t.Fatal("dropped a pair after space returned")
			}
		}
		flush(t, db)
		if got := stored(db); got != n+500 {
			t.Errorf("%d pairs stored, want %d", got, n+500)
		}
		if err := db.PutRoutingRecord("d", []byte(`{"state":"shadowing"}`)); err != nil {
			t.Errorf("PutRoutingRecord after space returned: %v", err)
		}
		checkCounts(t, db, "d")
	})
}

const diskFullEnv = "UNDERSTUDY_STORAGE_DISKFULL_DIR"

// The disk-full tests' filesystem and options: a floor above the spare
// file's size, as with the defaults, and Badger's least value-log file size
// (a new file every ~1,000 pairs) so that files are created while full.
const diskFullTmpfs = "320m"

func diskFullOptions(dir string) Options {
	return Options{
		Dir:          dir,
		MinFreeBytes: spareSize + 32<<20,
		Logger:       quietLogger(),
		vlogFileSize: 1 << 20,
		LogOptions:   LogOptions{BatchSize: 64, FlushInterval: 10 * time.Millisecond},
	}
}

// TestDiskFullCrashChild is the process TestDiskFullKilled kills: it logs
// and flushes pairs, fills the disk, logs until logging pauses, says so, and
// waits.
func TestDiskFullCrashChild(t *testing.T) {
	dir := os.Getenv(diskFullEnv)
	if dir == "" {
		t.Skip("only run as the child of TestDiskFullKilled")
	}
	db, err := Open(diskFullOptions(dir))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for i := 0; i < 2000; i++ {
		mustLog(t, db, Pair{Domain: "d", Input: fmt.Sprint(i, strings.Repeat(" text", 200)), Label: "l"})
	}
	flush(t, db)
	fmt.Println("flushed 2000")
	fillTo(t, filepath.Join(filepath.Dir(dir), "filler"), 0)
	for db.Log(Pair{Domain: "d", Input: "more", Label: "l"}) {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("paused")
	select {}
}

// TestDiskFullKilled: a gateway killed (kill -9, the OOM killer) while its
// disk was full restarts on the still-full disk. Badger must replay and
// flush its write-ahead log to open read-write, which takes room: the spare
// file the pair log keeps gives it that room.
func TestDiskFullKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	mnt := mountTmpfs(t, diskFullTmpfs)
	dir := filepath.Join(mnt, "pairs")
	filler := filepath.Join(mnt, "filler")
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFullCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), diskFullEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var said []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		said = append(said, sc.Text())
		if sc.Text() == "paused" {
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(said) == 0 || said[len(said)-1] != "paused" {
		t.Fatalf("the child did not pause on a full disk; it said %q", said)
	}
	fillTo(t, filler, 0)

	opts := diskFullOptions(dir)
	reg := prometheus.NewRegistry()
	opts.Registry = reg
	db, err := Open(opts)
	if err != nil {
		t.Fatalf("Open on a full disk after a kill: %v", err)
	}
	defer db.Close()
	if got := len(allPairs(t, db, "d")); got < 2000 {
		t.Errorf("%d pairs after the kill, want at least the 2000 flushed", got)
	}
	checkCounts(t, db, "d")
	if metric(t, reg, "understudy_storage_logging_paused") != 1 {
		t.Error("opened on a full disk without pausing")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "logging to resume", func() bool { return metric(t, reg, "understudy_storage_logging_paused") == 0 })
	mustLog(t, db, Pair{Domain: "d", Input: "after", Label: "l"})
	flush(t, db)
	checkCounts(t, db, "d")
}
