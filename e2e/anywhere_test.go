package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunsFromAnywhere runs the binary as an installed one: from outside
// the repository, with the cache next to it (bin/understudy beside
// .cache, as make build leaves it) or in the user cache directory. It
// finds ONNX Runtime and the demo's data either way, and says where it
// looked when it finds nothing.
func TestRunsFromAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	repoCache, err := filepath.Abs(filepath.Join("..", ".cache"))
	if err != nil {
		t.Fatal(err)
	}
	built := buildBinary(t)
	run := func(t *testing.T, bin, dir string, env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), append(env, "UNDERSTUDY_ORT_LIB=", "XDG_CACHE_HOME="+t.TempDir())...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
		}
		return string(out)
	}
	elsewhere := t.TempDir()

	t.Run("next to the binary", func(t *testing.T) {
		root := t.TempDir()
		bin := filepath.Join(root, "bin", "understudy")
		link(t, built, bin)
		if err := os.Symlink(repoCache, filepath.Join(root, ".cache")); err != nil {
			t.Fatal(err)
		}
		if out := run(t, bin, elsewhere, nil, "version"); !strings.Contains(out, "onnxruntime 1.") ||
			!strings.Contains(out, filepath.Join(root, ".cache", "onnxruntime")) {
			t.Errorf("version:\n%s\nwant the runtime found next to the binary", out)
		}
		out := run(t, bin, elsewhere, nil, "demo", "--requests", "200", "--teacher-latency", "1ms", "--teacher-jitter", "0")
		if !strings.Contains(out, "200 requests in") {
			t.Errorf("demo:\n%s", out)
		}
	})
	t.Run("user cache directory", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "understudy")
		link(t, built, bin)
		out := run(t, bin, elsewhere, []string{"UNDERSTUDY_CACHE_DIR=" + repoCache}, "version")
		if !strings.Contains(out, "onnxruntime 1.") || !strings.Contains(out, repoCache) {
			t.Errorf("version:\n%s\nwant the runtime found in the user cache", out)
		}
	})
	t.Run("nowhere", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "understudy")
		link(t, built, bin)
		empty := t.TempDir()
		out := run(t, bin, elsewhere, []string{"UNDERSTUDY_CACHE_DIR=" + empty}, "version")
		if !strings.Contains(out, "not found") || !strings.Contains(out, empty) || !strings.Contains(out, "fetch-onnxruntime.sh") {
			t.Errorf("version:\n%s\nwant where it looked and how to fetch the runtime", out)
		}
		cmd := exec.Command(bin, "demo", "--requests", "10")
		cmd.Dir = elsewhere
		cmd.Env = append(os.Environ(), "UNDERSTUDY_CACHE_DIR="+empty, "XDG_CACHE_HOME="+empty)
		b, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(b), "make deps") || !strings.Contains(string(b), "looked in") {
			t.Errorf("demo without data: %v\n%s\nwant where it looked and make deps", err, b)
		}
	})
}

// link makes a hard link (or a copy, across file systems) of src at dst,
// so that the binary's own path is dst.
func link(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(src, dst); err == nil {
		return
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
