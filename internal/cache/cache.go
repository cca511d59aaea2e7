// Package cache finds what make deps fetched (ONNX Runtime, the data sets)
// wherever understudy runs from: the repository it was built in, or a
// user's cache directory.
package cache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// Dir is the cache's directory name in the repository.
const Dir = ".cache"

// EnvDir names the environment variable that sets the user cache
// directory understudy looks in, in place of $XDG_CACHE_HOME/understudy
// (~/.cache/understudy).
const EnvDir = "UNDERSTUDY_CACHE_DIR"

// Places returns where rel, a path under the cache, may be, in the order
// they are searched, without duplicates:
//
//   - .cache/rel in the module (repository) above the working directory;
//   - .cache/rel in the repository the binary was built into (its
//     directory, or the one above it: make build writes bin/understudy);
//   - rel under $UNDERSTUDY_CACHE_DIR, else under the user cache directory
//     ($XDG_CACHE_HOME/understudy, ~/.cache/understudy), where the fetch
//     scripts also write with CACHE_DIR set.
func Places(rel string) []string {
	var places []string
	add := func(p string) {
		for _, q := range places {
			if q == p {
				return
			}
		}
		places = append(places, p)
	}
	if wd, err := os.Getwd(); err == nil {
		if root, ok := above(wd, "go.mod"); ok {
			add(filepath.Join(root, Dir, rel))
		}
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err := filepath.EvalSymlinks(exe); err == nil {
			dir := filepath.Dir(exe)
			add(filepath.Join(dir, Dir, rel))
			add(filepath.Join(filepath.Dir(dir), Dir, rel))
		}
	}
	if d := UserDir(); d != "" {
		add(filepath.Join(d, rel))
	}
	return places
}

// UserDir is $UNDERSTUDY_CACHE_DIR, else understudy under the user cache
// directory, or "" when there is none.
func UserDir() string {
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "understudy")
}

// Find returns the first of Places(rel) that exists, or an error that
// lists every place it looked.
func Find(rel string) (string, error) {
	places := Places(rel)
	for _, p := range places {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", &NotFoundError{Rel: rel, Looked: places}
}

// NotFoundError says where Find looked.
type NotFoundError struct {
	Rel    string
	Looked []string
}

func (e *NotFoundError) Error() string {
	return e.Rel + " is not in the cache (looked in " + strings.Join(e.Looked, ", ") + ")"
}

// ErrNotFound matches every NotFoundError.
var ErrNotFound = errors.New("not in the cache")

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// above walks up from dir to the first directory holding name.
func above(dir, name string) (string, bool) {
	for {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
