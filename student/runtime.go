package student

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/understudy-dev/understudy/internal/cache"
)

// EnvLibrary names the environment variable that points at the ONNX Runtime
// shared library when no path is configured.
const EnvLibrary = "UNDERSTUDY_ORT_LIB"

// CachedLibrary is where scripts/fetch-onnxruntime.sh puts the library,
// relative to the cache (see internal/cache: .cache in the repository, or
// the user cache directory).
const CachedLibrary = "onnxruntime/1.30.0/libonnxruntime.so"

// ErrRuntime wraps every failure to find or load the ONNX Runtime library.
var ErrRuntime = errors.New("onnx runtime unavailable")

// fetchHint ends every ErrRuntime message: how to get a library.
const fetchHint = "run scripts/fetch-onnxruntime.sh or set " + EnvLibrary + " / onnxruntime.library"

// runtimeState is the process's one ONNX Runtime environment.
var runtimeState struct {
	mu   sync.Mutex
	done bool
	path string
	err  error
}

// InitRuntime loads the ONNX Runtime shared library and creates the
// process's ORT environment. Only the first call does the work: later calls
// return its error again, or nil when libPath is empty or names the library
// already loaded, and an error when it names another one. It is safe for
// concurrent use.
//
// An empty libPath means $UNDERSTUDY_ORT_LIB, else CachedLibrary in the
// cache: the repository's above the working directory, the one the binary
// was built into, or the user cache directory (internal/cache.Places).
// Every failure wraps ErrRuntime, says where it looked and how to fetch
// the library.
func InitRuntime(libPath string) error {
	rs := &runtimeState
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.done {
		rs.path, rs.err = loadRuntime(libPath)
		rs.done = true
	}
	if rs.err != nil {
		return rs.err
	}
	if libPath != "" && !samePath(libPath, rs.path) {
		return fmt.Errorf("initialising onnx runtime from %s: already initialised from %s", libPath, rs.path)
	}
	return nil
}

// RuntimeLibrary returns the path of the library InitRuntime loaded, or ""
// before a successful InitRuntime.
func RuntimeLibrary() string {
	rs := &runtimeState
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.done || rs.err != nil {
		return ""
	}
	return rs.path
}

// RuntimeVersion returns the loaded ONNX Runtime's version, or "" before a
// successful InitRuntime.
func RuntimeVersion() string {
	if RuntimeLibrary() == "" {
		return ""
	}
	return ort.GetVersion()
}

// loadRuntime resolves the library path and initialises ORT from it.
func loadRuntime(libPath string) (string, error) {
	if ort.IsInitialized() {
		// Someone in this process initialised ORT without us; use it.
		return "(initialised outside student.InitRuntime)", nil
	}
	path, err := resolveLibrary(libPath, os.Getenv(EnvLibrary))
	if err != nil {
		return "", err
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return path, fmt.Errorf("%w: loading %s: %w; %s", ErrRuntime, path, err, fetchHint)
	}
	return path, nil
}

// resolveLibrary picks the library path: libPath, else env, else the
// fetch script's cache. The file must exist.
func resolveLibrary(libPath, env string) (string, error) {
	path, from := libPath, "onnxruntime.library"
	if path == "" {
		path, from = env, EnvLibrary
	}
	if path == "" {
		found, err := cache.Find(CachedLibrary)
		if err != nil {
			return "", fmt.Errorf("%w: %s is unset and %v; %s", ErrRuntime, EnvLibrary, err, fetchHint)
		}
		path, from = found, "the fetch script's cache"
	}
	info, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: library %s (from %s): %w; %s", ErrRuntime, path, from, err, fetchHint)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%w: library %s (from %s) is not a regular file; %s", ErrRuntime, path, from, fetchHint)
	}
	return path, nil
}

// samePath reports whether a and b name the same file, following links.
func samePath(a, b string) bool {
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	if errA != nil || errB != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return ra == rb
}
