package storage

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// writeForeignBadger leaves a valid Badger database with someone else's keys
// in dir.
func writeForeignBadger(t *testing.T, dir string) {
	t.Helper()
	bdb, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(1 << 20).WithValueThreshold(1 << 10))
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(txn *badger.Txn) error { return txn.Set([]byte("users/1"), []byte("alice")) }); err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
}

const crashEnv = "UNDERSTUDY_STORAGE_CRASH_DIR"

// TestCrashChild is the process TestKillAfterFlush kills: it logs pairs,
// flushes them, says how many, and waits to be killed mid-way through more.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("only run as the child of TestKillAfterFlush")
	}
	db, err := Open(Options{Dir: dir, Logger: quietLogger()})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	const n = 3000
	for i := 0; i < n; i++ {
		db.Log(Pair{Domain: "crash", Input: fmt.Sprint(i), Label: fmt.Sprint(i % 5)})
	}
	flush(t, db)
	fmt.Println("flushed", n)
	// Keep writing until killed: the kill lands in the middle of batches.
	for i := 0; ; i++ {
		db.Log(Pair{Domain: "crash", Input: fmt.Sprint("more", i), Label: fmt.Sprint(i % 5)})
		if i%100 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// TestKillAfterFlush: pairs written to Badger survive kill -9, and the
// domain counts still match the pairs stored (each batch is one transaction).
func TestKillAfterFlush(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	flushed := -1
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "flushed" {
			flushed, _ = strconv.Atoi(f[1])
			break
		}
	}
	time.Sleep(300 * time.Millisecond) // let it write more batches
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if flushed < 0 {
		t.Fatal("child did not report a flush")
	}
	db, _ := open(t, Options{Dir: dir})
	ps := allPairs(t, db, "crash")
	if len(ps) < flushed {
		t.Errorf("after kill -9: %d pairs, want at least the %d flushed", len(ps), flushed)
	}
	for i := 0; i < flushed && i < len(ps); i++ {
		if ps[i].Input != fmt.Sprint(i) {
			t.Fatalf("pair %d = %q, want %q", i, ps[i].Input, fmt.Sprint(i))
		}
	}
	checkCounts(t, db, "crash")
	t.Logf("%d pairs flushed, %d survived the kill", flushed, len(ps))
}
