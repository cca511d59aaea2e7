package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/understudy-dev/understudy/internal/testnet"
)

// crashSetup runs teacher-sim and returns what a gateway needs to use it.
type crashSetup struct {
	simAddr, gwAddr, adminAddr, dataDir string
}

func newCrashSetup(t *testing.T) *crashSetup {
	s := &crashSetup{dataDir: t.TempDir()}
	s.simAddr = startChild(t, "teacher-sim", "--listen", "127.0.0.1:0", "--task", "spam=testdata/spam.jsonl").listening(t, "teacher-sim")
	return s
}

// startGateway starts the gateway on new ports and the same data dir.
func (s *crashSetup) startGateway(t *testing.T) *child {
	t.Helper()
	c := startChild(t, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--data-dir", s.dataDir, "--teacher-url", "http://"+s.simAddr+"/v1")
	s.gwAddr, s.adminAddr = c.listening(t, "gateway"), c.listening(t, "admin API")
	testnet.WaitReady(t, "http://"+s.gwAddr+"/readyz")
	return c
}

// send sends n chat completions through the gateway, alternating streamed
// and plain ones, 8 at a time.
func (s *crashSetup) send(t *testing.T, n int) {
	t.Helper()
	client := openai.NewClient(option.WithBaseURL("http://"+s.gwAddr+"/v1/"), option.WithAPIKey("k"), option.WithMaxRetries(0))
	texts := []string{"WIN a FREE cruise, click now!!!", "Lunch moved to 1pm, see you there."}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			p := openai.ChatCompletionNewParams{Model: "teacher-sim", Messages: []openai.ChatCompletionMessageParamUnion{
				openai.SystemMessage("Classify this e-mail as spam or ham."), openai.UserMessage(texts[i%2]),
			}}
			if i%2 == 0 {
				_, err := client.Chat.Completions.New(context.Background(), p)
				errs <- err
				return
			}
			st := client.Chat.Completions.NewStreaming(context.Background(), p)
			for st.Next() {
			}
			errs <- st.Err()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("request failed: %v", err)
		}
	}
}

// storedPairs asks the admin API how many pairs are stored in all domains.
func (s *crashSetup) storedPairs(t *testing.T) int64 {
	t.Helper()
	resp, err := http.Get("http://" + s.adminAddr + "/admin/domains")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Domains []struct {
			Pairs int64 `json:"pairs"`
		} `json:"domains"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, d := range out.Domains {
		n += d.Pairs
	}
	return n
}

func (s *crashSetup) waitStored(t *testing.T, want int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if s.storedPairs(t) == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("admin API reports %d pairs stored, want %d", s.storedPairs(t), want)
}

// TestCrashKeepsPairs kills the gateway with SIGKILL once the admin API
// reports the pairs stored, restarts it on the same data dir and finds
// every pair; then stops it with SIGTERM right after the last response and
// finds every pair again.
func TestCrashKeepsPairs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	const n = 200
	s := newCrashSetup(t)

	gw := s.startGateway(t)
	s.send(t, n)
	s.waitStored(t, n)
	gw.stop(t, syscall.SIGKILL)

	gw = s.startGateway(t)
	if got := s.storedPairs(t); got != n {
		t.Fatalf("after kill -9 and restart: %d pairs, want %d", got, n)
	}
	s.send(t, n)
	gw.stop(t, syscall.SIGTERM) // at once: the queue may still hold pairs

	s.startGateway(t)
	if got := s.storedPairs(t); got != 2*n {
		t.Fatalf("after SIGTERM right after the last response and restart: %d pairs, want %d", got, 2*n)
	}
}
