package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBinaryGoesWhereGoTestRemovesIt: under `go test` the binary is built
// into the go command's work directory, which the go command removes when
// the run ends, even after a -timeout panic or ^C, so that no 50 MB binary
// is left in the temporary directory.
func TestBinaryGoesWhereGoTestRemovesIt(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(exe, string(filepath.Separator)+"go-build") {
		t.Skipf("%s was not run by go test from its work directory (go test -c?)", exe)
	}
	if goWorkDir() == "" {
		t.Errorf("goWorkDir does not recognize go test's work directory in %s: the binary would outlive a timed-out run", exe)
	}
}

// TestStaleBinariesRemoved: a binary directory left by a test process that
// is gone (killed, or timed out outside go test) is removed by the next
// run; one of a live process is not.
func TestStaleBinariesRemoved(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	mk := func(pid int) string {
		d, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", binaryPrefix, pid))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "understudy"), []byte("binary"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	stale, live := mk(gone.Process.Pid), mk(os.Getppid())
	removeStaleBinaries()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("%s of an ended process is still there (%v)", stale, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("%s of a live process was removed: %v", live, err)
	}
}
