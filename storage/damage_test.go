package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

// fillClosed logs n pairs of domain "d" into a new pair log in dir and
// closes it, so that Badger has written them to a table and the value log.
func fillClosed(t *testing.T, dir string, n int) {
	t.Helper()
	db, err := Open(Options{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		mustLog(t, db, Pair{Domain: "d", Input: fmt.Sprintf("%d %s", i, strings.Repeat("x", 400)), Answer: "a", Label: fmt.Sprint(i % 3)})
	}
	flush(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// dirState is every file's name and size, to show a refused open changed
// nothing.
func dirState(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fi.Size()
	}
	return out
}

func onlyFile(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("want one %s in %s, found %v (%v)", pattern, dir, m, err)
	}
	return m[0]
}

// TestOpenRefusesDamagedStore: a damaged MANIFEST or table makes Open fail
// with ErrDamaged, naming the file and how to recover, and leaves every file
// as it was. Before, Badger deleted the tables a cut-short MANIFEST no longer
// listed and started empty without a word, and a cut-short table made it
// panic in a goroutine of its own.
func TestOpenRefusesDamagedStore(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []string
	}{
		{"MANIFEST cut to its header", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "MANIFEST"), 8); err != nil {
				t.Fatal(err)
			}
		}, []string{"MANIFEST", "does not list 1 of the 1 table files (000001.sst", "would delete them"}},
		{"MANIFEST cut inside a record", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "MANIFEST")
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, fi.Size()-3); err != nil {
				t.Fatal(err)
			}
		}, []string{"MANIFEST is cut short (a partial record", "000001.sst", "would delete them"}},
		{"MANIFEST missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "MANIFEST")); err != nil {
				t.Fatal(err)
			}
		}, []string{"MANIFEST is missing", "1 table files"}},
		{"table cut short", func(t *testing.T, dir string) {
			p := onlyFile(t, dir, "*.sst")
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, []string{"000001.sst", "cut short"}},
		{"table index overwritten", func(t *testing.T, dir string) {
			p := onlyFile(t, dir, "*.sst")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			// The index sits just before the footer; hit a byte of it.
			b[len(b)-200] ^= 0xff
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"000001.sst", "checksum"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fillClosed(t, dir, 2000)
			tt.damage(t, dir)
			before := dirState(t, dir)
			db, err := Open(Options{Dir: dir, Logger: quietLogger()})
			if err == nil {
				n := len(allPairs(t, db, "d"))
				db.Close()
				t.Fatalf("Open succeeded with %d of 2000 pairs, want ErrDamaged", n)
			}
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("err = %v, want ErrDamaged", err)
			}
			for _, s := range append(tt.want, "opening pair log at "+dir, "Nothing was changed", "mv "+dir+" "+dir+".damaged") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q:\n%v", s, err)
				}
			}
			if after := dirState(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("a refused Open changed the directory:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestOpenAcceptsCrashLeftovers: a table file the MANIFEST never listed, as
// a kill -9 during a memtable flush or a compaction leaves, is not damage:
// Open goes on, Badger removes the file, and every pair is there.
func TestOpenAcceptsCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	fillClosed(t, dir, 2000)
	b, err := os.ReadFile(onlyFile(t, dir, "*.sst"))
	if err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, "000009.sst")
	if err := os.WriteFile(leftover, b, 0o644); err != nil {
		t.Fatal(err)
	}
	db, _ := open(t, Options{Dir: dir})
	if n := len(allPairs(t, db, "d")); n != 2000 {
		t.Errorf("%d pairs after reopening, want 2000", n)
	}
	checkCounts(t, db, "d")
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover table still there (%v); Badger removes unlisted tables", err)
	}
}

// entryHeader finds the value-log entry whose key starts at k in b and
// returns the offset of its key-length byte. An entry is meta, user meta,
// then uvarint key length, value length and expiry, then the key.
func entryHeader(t *testing.T, b []byte, k, klen int) int {
	t.Helper()
	for start := k - 3; start >= max(0, k-32); start-- {
		off := start + 2
		kl, n := binary.Uvarint(b[off:])
		if n != 1 || int(kl) != klen {
			continue
		}
		i := off + n
		if _, n = binary.Uvarint(b[i:]); n <= 0 {
			continue
		}
		i += n
		if _, n = binary.Uvarint(b[i:]); n <= 0 {
			continue
		}
		if i+n == k {
			return off
		}
	}
	t.Fatalf("no entry header before offset %d", k)
	return 0
}

// TestDamagedValueLog: a pair whose value-log entry is damaged is skipped
// and reported (ErrDamaged, with the count) while every other pair is read,
// and Close still returns. Before, a flipped byte in a pair's text was read,
// and exported, as if nothing had happened, and a damaged entry header left
// a value-log file locked (Badger's "Invalid read" path), so that the next
// Close, on SIGTERM, waited forever.
func TestDamagedValueLog(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, b []byte, key int) (off int, val byte)
	}{
		{"flipped byte in the text", func(t *testing.T, b []byte, key int) (int, byte) {
			off := key + 31 + 100 // key (with Badger's 8-byte version) then the value
			return off, b[off] ^ 0x01
		}},
		{"entry header says a longer key", func(t *testing.T, b []byte, key int) (int, byte) {
			return entryHeader(t, b, key, 31), 0x7f
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			db, err := Open(Options{Dir: dir, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					db.Close()
				}
			}()
			const n = 500
			t0 := time.Now().Add(-time.Hour)
			var victim ulid.ULID
			for i := 0; i < n; i++ {
				id := ulid.MustNew(ulid.Timestamp(t0.Add(time.Duration(i)*time.Millisecond)), ulid.DefaultEntropy())
				if i == n/2 {
					victim = id
				}
				mustLog(t, db, Pair{ID: id.String(), Domain: "d", Input: fmt.Sprintf("%d %s", i, strings.Repeat("y", 300)), Answer: "a", Label: "l"})
			}
			flush(t, db)

			// Damage the victim's entry in the value log under the open
			// database, as a failing disk would.
			vlog := onlyFile(t, dir, "*.vlog")
			b, err := os.ReadFile(vlog)
			if err != nil {
				t.Fatal(err)
			}
			key := bytes.Index(b, appendPairKey(nil, "d", victim))
			if key < 0 {
				t.Fatal("victim's key not found in the value log")
			}
			off, val := tt.damage(t, b, key)
			f, err := os.OpenFile(vlog, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{val}, int64(off)); err != nil {
				t.Fatal(err)
			}
			f.Close()

			read, damagedRead := 0, false
			err = db.Pairs(context.Background(), "d", func(p Pair) error {
				read++
				damagedRead = damagedRead || p.ID == victim.String() || strings.HasPrefix(p.Input, fmt.Sprintf("%d ", n/2))
				return nil
			})
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("Pairs err = %v, want ErrDamaged", err)
			} else if !strings.Contains(err.Error(), "1 pairs could not be read back") || !strings.Contains(err.Error(), victim.String()) {
				t.Errorf("error does not count and name the damaged pair: %v", err)
			}
			if read != n-1 {
				t.Errorf("read %d pairs, want the %d readable ones", read, n-1)
			}
			if damagedRead {
				t.Error("the damaged pair was read")
			}

			done := make(chan error, 1)
			go func() { done <- db.Close() }()
			select {
			case err := <-done:
				closed = true
				if err != nil {
					t.Errorf("Close: %v", err)
				}
			case <-time.After(20 * time.Second):
				closed = true // leave it: it will never return
				t.Fatal("Close did not return after reading a damaged value: a value-log lock was left held")
			}
		})
	}
}
