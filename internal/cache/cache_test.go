package cache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFind: a file is found in the repository from any directory inside
// it, and, from outside any repository, in the user cache directory; when
// it is nowhere the error lists every place looked.
func TestFind(t *testing.T) {
	user := t.TempDir()
	t.Setenv(EnvDir, user)
	const rel = "data/x/file.jsonl"

	outside := t.TempDir()
	t.Chdir(outside)
	_, err := Find(rel)
	var nf *NotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), filepath.Join(user, rel)) {
		t.Fatalf("Find of a missing file = %v, want a NotFoundError naming the user cache", err)
	}

	if err := os.MkdirAll(filepath.Join(user, "data", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(user, rel), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Find(rel); err != nil || got != filepath.Join(user, rel) {
		t.Fatalf("Find from outside a repository = %q, %v; want the user cache's", got, err)
	}

	repo := t.TempDir()
	for _, p := range []string{"go.mod", filepath.Join(Dir, rel)} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(repo, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sub := filepath.Join(repo, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)
	if got, err := Find(rel); err != nil || got != filepath.Join(repo, Dir, rel) {
		t.Fatalf("Find inside a repository = %q, %v; want the repository's", got, err)
	}
}
