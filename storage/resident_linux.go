package storage

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseMapped asks the kernel to reclaim the resident pages of this
// process's shared mappings of the value-log files in dir.
//
// Badger maps its value-log, table and write-ahead-log files and writes the
// value log through the mapping, so every value-log page written stays
// in the process's resident set until memory runs short: after a million
// pairs that is over a gigabyte of RSS for data nobody reads again until an
// export. MADV_PAGEOUT drops those pages from the process (and from the page
// cache once they are clean) while the data stays on disk; a later read
// faults them back in. It never discards data, whatever the range holds, so
// a mapping Badger unmaps between our reading /proc/self/maps and the call
// is harmless: the advice then applies to nothing, or to memory that is
// simply faulted back. Tables and write-ahead logs are left alone: they hold
// keys only, are small (see options.go) and are read on every lookup.
func releaseMapped(dir string) error {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	sc := bufio.NewScanner(bytes.NewReader(maps))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// 7f2c1a200000-7f2c22200000 rw-s 00000000 fd:01 1234 /data/000001.vlog
		f := strings.Fields(sc.Text())
		if len(f) < 6 || len(f[1]) < 4 || f[1][3] != 's' || !strings.HasPrefix(f[5], prefix) || !strings.HasSuffix(f[5], ".vlog") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT)
		if errno != 0 && errno != unix.ENOMEM {
			return errno
		}
	}
	return sc.Err()
}
