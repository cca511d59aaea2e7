package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/understudy-dev/understudy/internal/testnet"
)

// TestBackgroundTraining sends a closed task (spam/ham) and an open-ended
// one (answer: the e-mail's subject) through the real binary: the first
// gets a trained student version, the second is marked open_ended with its
// reason, with no action from the user.
func TestBackgroundTraining(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	spam := readLabelled(t, spamData(t, "spam-ham.jsonl"), 260)
	subjects := readLabelled(t, spamData(t, "subjects.jsonl"), 260)
	simAddr := startChild(t, "teacher-sim", "--listen", "127.0.0.1:0",
		"--task", "spam="+spamData(t, "spam-ham.jsonl"), "--system", "spam=Is this e-mail spam or ham?",
		"--task", "subjects="+spamData(t, "subjects.jsonl"), "--system", "subjects=What is the subject of this e-mail?").listening(t, "teacher-sim")
	cfg := filepath.Join(t.TempDir(), "understudy.yaml")
	if err := os.WriteFile(cfg, []byte("trainer:\n  min_pairs: 200\n  interval: 200ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startChild(t, "serve", "--config", cfg, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--teacher-url", "http://"+simAddr+"/v1")
	gwAddr, adminAddr := gw.listening(t, "gateway"), gw.listening(t, "admin API")
	testnet.WaitReady(t, "http://"+gwAddr+"/readyz")

	client := openai.NewClient(option.WithBaseURL("http://"+gwAddr+"/v1/"), option.WithAPIKey("k"), option.WithMaxRetries(0))
	send := func(domain, system string, ls []labelled) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, l := range ls {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
					Model:    "teacher-sim",
					Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(system), openai.UserMessage(l.Text)},
				}, option.WithHeader("X-Understudy-Domain", domain))
				if err != nil {
					t.Error(err)
				} else if resp.Choices[0].Message.Content != l.Label {
					t.Errorf("teacher answered %q, want %q", resp.Choices[0].Message.Content, l.Label)
				}
			}()
		}
		wg.Wait()
	}
	send("spam", "Is this e-mail spam or ham?", spam)
	send("subjects", "What is the subject of this e-mail?", subjects)

	deadline := time.Now().Add(3 * time.Minute)
	for {
		s, _ := getDomain(t, adminAddr, "spam")
		o, _ := getDomain(t, adminAddr, "subjects")
		if s.LatestVersion >= 1 && o.State == "open_ended" {
			var m struct {
				Version int `json:"version"`
				Metrics struct {
					HoldoutAccuracy float64 `json:"holdout_accuracy"`
					TrainPairs      int     `json:"train_pairs"`
				} `json:"metrics"`
			}
			if err := json.Unmarshal(s.Versions[0], &m); err != nil {
				t.Fatal(err)
			}
			if m.Version != 1 || m.Metrics.TrainPairs == 0 || m.Metrics.HoldoutAccuracy < 0.8 {
				t.Errorf("version 1 metrics %s", s.Versions[0])
			}
			if o.OpenEndedReason == "" || o.LatestVersion != 0 {
				t.Errorf("open-ended domain: reason %q, version %d", o.OpenEndedReason, o.LatestVersion)
			}
			break
		}
		if time.Now().After(deadline) || s.State == "open_ended" {
			t.Fatalf("spam has version %d (state %s, %s), subjects is %q", s.LatestVersion, s.State, s.OpenEndedReason, o.State)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A forced run makes the next version at once.
	resp, err := http.Post("http://"+adminAddr+"/admin/domains/spam/train", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST train: %s", resp.Status)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if s, _ := getDomain(t, adminAddr, "spam"); s.LatestVersion == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("forced training made no version 2")
		}
	}
	if _, status := getDomain(t, adminAddr, "nope"); status != http.StatusNotFound {
		t.Errorf("unknown domain: status %d, want 404", status)
	}
}
