package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/internal/testnet"
)

// TestRelayMemory sends a 256 MiB multipart upload to /v1/files and takes a
// 256 MiB download from /v1/files/{id}/content through the real binary,
// with gateway.max_body_size at 1 MiB. Both arrive whole (the hashes
// match), and the gateway's resident memory, read from /proc while the
// bytes flow, grows by a small fraction of either body: it streams them.
func TestRelayMemory(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the gateway's memory")
	}
	const size = 256 << 20
	const bound = 48 << 20 // growth of resident memory allowed while relaying

	var (
		mu       sync.Mutex
		received string
	)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/files":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			mu.Lock()
			received = hex.EncodeToString(h.Sum(nil))
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"file-1","object":"file","bytes":`+strconv.FormatInt(n, 10)+`}`)
		case r.Method == "GET" && r.URL.Path == "/v1/files/file-1/content":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.Itoa(size))
			_, _ = io.Copy(w, io.LimitReader(rand.NewChaCha8([32]byte{1}), size))
		default:
			http.NotFound(w, r)
		}
	}))
	defer upstream.Close()

	t.Setenv("UNDERSTUDY_GATEWAY_MAX_BODY_SIZE", "1MiB")
	gw := startChild(t, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--teacher-url", upstream.URL+"/v1")
	base := "http://" + gw.listening(t, "gateway")
	testnet.WaitReady(t, base+"/readyz")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}}
	pid := gw.cmd.Process.Pid
	// One request through first, so that the baseline includes the
	// buffers every relay uses.
	if resp, err := client.Get(base + "/v1/files/none"); err == nil {
		resp.Body.Close()
	}
	baseline := vmKiB(t, pid, "VmRSS")

	t.Run("upload", func(t *testing.T) {
		up := testnet.NewUpload(size, 2)
		req, _ := http.NewRequest("POST", base+"/v1/files", up.Body)
		req.Header.Set("Content-Type", up.ContentType)
		peak := watchRSS(t, pid, func() {
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"bytes":`)) {
				t.Fatalf("status %d, %.300q", resp.StatusCode, body)
			}
		})
		mu.Lock()
		got := received
		mu.Unlock()
		if want, _ := up.SHA256(); got != want {
			t.Errorf("the teacher's hash of the upload %s; want %s", got, want)
		}
		t.Logf("upload of %d MiB: gateway RSS %d MiB before, peak %d MiB", size>>20, baseline>>10, peak>>10)
		if (peak-baseline)<<10 > bound {
			t.Errorf("the gateway's RSS grew by %d MiB relaying a %d MiB upload; want under %d MiB", (peak-baseline)>>10, size>>20, bound>>20)
		}
	})

	t.Run("download", func(t *testing.T) {
		want := sha256.New()
		_, _ = io.Copy(want, io.LimitReader(rand.NewChaCha8([32]byte{1}), size))
		got := sha256.New()
		peak := watchRSS(t, pid, func() {
			resp, err := client.Get(base + "/v1/files/file-1/content")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			n, err := io.Copy(got, resp.Body)
			if err != nil || n != size || resp.Header.Get("Content-Type") != "application/octet-stream" {
				t.Fatalf("read %d bytes (%v), Content-Type %q; want %d, application/octet-stream", n, err, resp.Header.Get("Content-Type"), size)
			}
		})
		if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
			t.Error("the download differs from what the teacher sent")
		}
		t.Logf("download of %d MiB: gateway RSS %d MiB before, peak %d MiB", size>>20, baseline>>10, peak>>10)
		if (peak-baseline)<<10 > bound {
			t.Errorf("the gateway's RSS grew by %d MiB relaying a %d MiB download; want under %d MiB", (peak-baseline)>>10, size>>20, bound>>20)
		}
	})
}

// watchRSS runs f and returns the highest resident memory (KiB) the
// process pid had while f ran, sampled every few milliseconds.
func watchRSS(t *testing.T, pid int, f func()) (peak int64) {
	t.Helper()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss := vmKiB(t, pid, "VmRSS"); rss > peak {
				peak = rss
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
	return peak
}

// vmKiB reads a Vm* line (in KiB) of /proc/pid/status.
func vmKiB(t *testing.T, pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Errorf("reading the gateway's memory: %v", err)
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
