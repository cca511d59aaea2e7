package student

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveLibrary(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "libonnxruntime.so")
	if err := os.WriteFile(lib, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.so")
	tests := []struct {
		name, libPath, env string
		want               string // path, or "" for an error
		errHas             string
	}{
		{name: "explicit path", libPath: lib, env: missing, want: lib},
		{name: "environment", env: lib, want: lib},
		{name: "explicit path missing", libPath: missing, errHas: "(from onnxruntime.library)"},
		{name: "environment missing", env: missing, errHas: "(from " + EnvLibrary + ")"},
		{name: "directory", libPath: dir, errHas: "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveLibrary(tc.libPath, tc.env)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("resolveLibrary = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrRuntime) || !strings.Contains(err.Error(), tc.errHas) ||
				!strings.Contains(err.Error(), "run scripts/fetch-onnxruntime.sh or set UNDERSTUDY_ORT_LIB / onnxruntime.library") {
				t.Fatalf("resolveLibrary error = %v, want ErrRuntime mentioning %q and how to fetch", err, tc.errHas)
			}
		})
	}
}

// TestResolveLibraryFindsCache checks the default: the fetch script's cache
// under the module root, found from a package directory.
func TestResolveLibraryFindsCache(t *testing.T) {
	got, err := resolveLibrary("", "")
	if err != nil {
		t.Fatalf("the fetch script's library is missing: %v", err)
	}
	if !strings.HasSuffix(got, filepath.FromSlash(CachedLibrary)) {
		t.Fatalf("resolveLibrary = %q, want the cached library", got)
	}
}

// TestInitRuntimeBadLibrary loads a file that is no shared library in a
// child process (ORT initialises once per process) and expects one clear
// error, the same on every call, and no panic.
func TestInitRuntimeBadLibrary(t *testing.T) {
	if os.Getenv("STUDENT_TEST_BAD_LIBRARY") == "1" {
		first, second := InitRuntime(""), InitRuntime("")
		if first == nil || first != second {
			os.Stdout.WriteString("UNEXPECTED\n")
			return
		}
		os.Stdout.WriteString("ERROR: " + first.Error() + "\n")
		return
	}
	bad := filepath.Join(t.TempDir(), "libonnxruntime.so")
	if err := os.WriteFile(bad, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInitRuntimeBadLibrary$", "-test.count=1")
	cmd.Env = append(os.Environ(), "STUDENT_TEST_BAD_LIBRARY=1", EnvLibrary+"="+bad)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
	for _, want := range []string{"ERROR: onnx runtime unavailable: loading " + bad, "run scripts/fetch-onnxruntime.sh"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("child output lacks %q:\n%s", want, out)
		}
	}
}

func TestInitRuntimeTwice(t *testing.T) {
	if err := InitRuntime(""); err != nil {
		t.Fatal(err)
	}
	if err := InitRuntime(""); err != nil {
		t.Fatalf("second InitRuntime: %v", err)
	}
	if err := InitRuntime(RuntimeLibrary()); err != nil {
		t.Fatalf("InitRuntime with the loaded path: %v", err)
	}
	other := filepath.Join(t.TempDir(), "other.so")
	if err := InitRuntime(other); err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Fatalf("InitRuntime with another path: %v", err)
	}
	if v := RuntimeVersion(); v != "1.30.0" {
		t.Errorf("RuntimeVersion() = %q, want 1.30.0", v)
	}
}
