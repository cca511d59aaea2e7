package storage

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// diskFree returns the bytes an unprivileged user may still write on the
// filesystem holding path (statfs f_bavail; root may use a few percent more
// on ext4, which then stays in hand).
func diskFree(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// fallocate allocates disk blocks for the first size bytes of f without
// changing its contents or size.
func fallocate(f *os.File, size int64) error {
	for {
		err := unix.Fallocate(int(f.Fd()), 0, 0, size)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
			return errUnsupported
		}
		return err
	}
}
