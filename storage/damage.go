package storage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"google.golang.org/protobuf/proto"
)

// ErrDamaged is returned (wrapped) by Open for a data directory that Badger
// would open only by silently throwing data away, and by reads that meet a
// value they cannot read back.
var ErrDamaged = errors.New("pair log is damaged")

// Damage checks. Badger trusts its MANIFEST: on open it deletes every table
// file the MANIFEST does not list (levels.go, revertToManifest), so a
// truncated MANIFEST makes it delete the tables and start empty, without an
// error. A table file whose footer is cut off makes it panic in a goroutine
// of its own, which takes the process down. checkDir looks at both before
// Badger does, reading only, and refuses with ErrDamaged.
//
// Not every table missing from the MANIFEST is damage: a kill -9 during a
// memtable flush or a compaction leaves the table files it was writing, and
// Badger rightly deletes them (their data is still in the write-ahead log or
// in the tables they were to replace). Such leftovers are never larger than
// the tables the MANIFEST lists plus the write-ahead logs (.mem files), and
// the MANIFEST's last record is whole (Badger appends each record with one
// write, so a crash does not tear it). A torn last record, or unlisted tables
// beyond that size, is damage.

// vlogHeaderSize is the size of a value-log file's header (key ID and IV),
// the size of one that holds no entries.
const vlogHeaderSize = 20

// manifestInfo is what checkDir reads from a MANIFEST.
type manifestInfo struct {
	tables    map[uint64]bool // listed now
	mentioned map[uint64]bool // ever created or deleted in the MANIFEST
	size      int64
	end       int64 // offset after the last whole record
}

// readManifest replays a MANIFEST the way Badger does (manifest.go,
// ReplayManifestFile), without changing it.
func readManifest(path string) (*manifestInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	mi := &manifestInfo{tables: map[uint64]bool{}, mentioned: map[uint64]bool{}, size: fi.Size()}
	r := bufio.NewReader(f)
	var magic [8]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || !bytes.Equal(magic[:4], []byte("Bdgr")) {
		return nil, errors.New("does not start with Badger's magic bytes")
	}
	mi.end = 8
	for {
		var lenCrc [8]byte
		if _, err := io.ReadFull(r, lenCrc[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return mi, nil
			}
			return nil, err
		}
		n := y.BytesToU32(lenCrc[:4])
		if int64(n) > mi.size {
			return mi, nil // a length past the end: a torn record
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return mi, nil
			}
			return nil, err
		}
		if crc32.Checksum(buf, y.CastagnoliCrcTable) != y.BytesToU32(lenCrc[4:]) {
			return nil, fmt.Errorf("record at byte %d fails its checksum", mi.end)
		}
		var cs pb.ManifestChangeSet
		if err := proto.Unmarshal(buf, &cs); err != nil {
			return nil, fmt.Errorf("record at byte %d: %w", mi.end, err)
		}
		for _, c := range cs.Changes {
			mi.mentioned[c.Id] = true
			switch c.Op {
			case pb.ManifestChange_CREATE:
				mi.tables[c.Id] = true
			case pb.ManifestChange_DELETE:
				delete(mi.tables, c.Id)
			}
		}
		mi.end += 8 + int64(n)
	}
}

// checkDir refuses a data directory that Badger would open by deleting
// tables, or would panic on. It changes nothing.
func checkDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	tables := map[uint64]int64{} // id -> size
	var memBytes, vlogs int64
	hasManifest := false
	for _, e := range entries {
		name := e.Name()
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		switch {
		case name == badger.ManifestFilename:
			hasManifest = true
		case strings.HasSuffix(name, ".sst"):
			// Not table.ParseFileID: it exits the process on a negative number.
			if id, err := strconv.ParseUint(strings.TrimSuffix(name, ".sst"), 10, 64); err == nil {
				tables[id] = info.Size()
			}
		case strings.HasSuffix(name, ".mem"):
			memBytes += info.Size()
		case strings.HasSuffix(name, ".vlog") && info.Size() > vlogHeaderSize:
			vlogs++
		}
	}
	manifest := filepath.Join(dir, badger.ManifestFilename)
	if !hasManifest {
		if len(tables) > 0 || vlogs > 0 {
			return fmt.Errorf("%w: %s is missing but %d table files and %d value-log files are present; "+
				"Badger would start an empty database and delete the tables. Nothing was changed. %s",
				ErrDamaged, manifest, len(tables), vlogs, recoverHint(dir, vlogs))
		}
		return nil
	}
	mi, err := readManifest(manifest)
	if err != nil {
		return fmt.Errorf("%w (or not written by understudy): %s cannot be read (%v). Nothing was changed. %s",
			ErrDamaged, manifest, err, recoverHint(dir, vlogs))
	}

	var listedBytes, unlistedBytes int64
	var missing, unlisted []string
	for id := range mi.tables {
		if _, ok := tables[id]; !ok {
			missing = append(missing, table.IDToFilename(id))
		}
	}
	for id, size := range tables {
		switch {
		case mi.tables[id]:
			listedBytes += size
		case !mi.mentioned[id]:
			unlisted = append(unlisted, table.IDToFilename(id))
			unlistedBytes += size
		}
	}
	sort.Strings(missing)
	sort.Strings(unlisted)
	switch {
	case mi.end < mi.size && len(unlisted) > 0:
		return fmt.Errorf("%w: %s is cut short (a partial record at byte %d of %d) and no longer lists %d of the %d table files (%s); "+
			"Badger would delete them and start without their pairs. Nothing was changed. %s",
			ErrDamaged, manifest, mi.end, mi.size, len(unlisted), len(tables), fileList(unlisted), recoverHint(dir, vlogs))
	case len(missing) > 0:
		return fmt.Errorf("%w: %s lists %d table files that are missing (%s). Nothing was changed. %s",
			ErrDamaged, manifest, len(missing), fileList(missing), recoverHint(dir, vlogs))
	case len(unlisted) > 0 && unlistedBytes > listedBytes+memBytes:
		return fmt.Errorf("%w: %s does not list %d of the %d table files (%s, %d bytes, more than an interrupted flush or compaction leaves); "+
			"Badger would delete them and start without their pairs. Nothing was changed. %s",
			ErrDamaged, manifest, len(unlisted), len(tables), fileList(unlisted), unlistedBytes, recoverHint(dir, vlogs))
	}
	for id := range mi.tables {
		path := table.NewFilename(id, dir)
		if err := checkTable(path); err != nil {
			return fmt.Errorf("%w: table %s: %v. Nothing was changed. %s", ErrDamaged, path, err, recoverHint(dir, vlogs))
		}
	}
	return nil
}

// checkTable reads a table file's footer and checks its index against the
// index's checksum, as Badger does on open (table.initIndex) but with
// bounds checks instead of a panic. The checksum covers the bytes as stored,
// so encrypted tables need no key.
func checkTable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	u32 := func(off int64) (int64, error) {
		var b [4]byte
		if off < 0 || off+4 > size {
			return 0, io.ErrUnexpectedEOF
		}
		if _, err := f.ReadAt(b[:], off); err != nil {
			return 0, err
		}
		return int64(y.BytesToU32(b[:])), nil
	}
	short := fmt.Errorf("cut short or overwritten (%d bytes, footer does not fit)", size)
	pos := size - 4
	chkLen, err := u32(pos)
	if err != nil || chkLen > pos {
		return short
	}
	pos -= chkLen
	chkBuf := make([]byte, chkLen)
	if _, err := f.ReadAt(chkBuf, pos); err != nil {
		return short
	}
	var chk pb.Checksum
	if err := proto.Unmarshal(chkBuf, &chk); err != nil {
		return short
	}
	pos -= 4
	idxLen, err := u32(pos)
	if err != nil || idxLen > pos {
		return short
	}
	pos -= idxLen
	idx := make([]byte, idxLen)
	if _, err := f.ReadAt(idx, pos); err != nil {
		return short
	}
	if err := y.VerifyChecksum(idx, &chk); err != nil {
		return fmt.Errorf("index fails its checksum (cut short or overwritten): %v", err)
	}
	return nil
}

func fileList(names []string) string {
	if len(names) > 5 {
		return strings.Join(names[:5], ", ") + fmt.Sprintf(" and %d more", len(names)-5)
	}
	return strings.Join(names, ", ")
}

func recoverHint(dir string, vlogs int64) string {
	dir = filepath.Clean(dir)
	h := fmt.Sprintf("Restore %s from a backup, or move it aside (mv %s %s.damaged) to start with an empty pair log", dir, dir, dir)
	if vlogs > 0 {
		h += "; its value-log files (*.vlog) still hold the pairs' text"
	}
	return h + "."
}
