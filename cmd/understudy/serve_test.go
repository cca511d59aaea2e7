package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/understudy-dev/understudy/internal/testnet"
)

// TestServeSignals stops `understudy serve` the way an orchestrator does,
// with real SIGTERMs to this process, and a shutdown delay of an hour
// (UNDERSTUDY_GATEWAY_SHUTDOWN_DELAY): after the first, /readyz answers 503
// while requests are still answered; the second stops the gateway without
// waiting out the delay, and the command returns. The signal context is
// main's.
func TestServeSignals(t *testing.T) {
	simAddr, gwAddr, adminAddr := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	t.Setenv("UNDERSTUDY_TEACHER_URL", "http://"+simAddr+"/v1")
	t.Setenv("UNDERSTUDY_GATEWAY_SHUTDOWN_DELAY", "1h")
	t.Setenv("UNDERSTUDY_LOG_LEVEL", "warn")
	simCtx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() {
		simDone <- run(simCtx, []string{"teacher-sim", "--listen", simAddr, "--task", "spam=testdata/spam.jsonl"}, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	defer func() {
		stopSim()
		<-simDone
	}()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() {
		served <- run(ctx, []string{"serve", "--config", "testdata/gateway.yaml", "--listen", gwAddr,
			"--admin-listen", adminAddr, "--data-dir", t.TempDir()}, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	testnet.WaitReady(t, "http://"+gwAddr+"/readyz")

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for readyz(t, gwAddr) != http.StatusServiceUnavailable {
		time.Sleep(time.Millisecond) // until the signal is handled
	}
	client := openai.NewClient(option.WithBaseURL("http://"+gwAddr+"/v1/"), option.WithAPIKey("sk-gateway-key-abcdef"), option.WithMaxRetries(0),
		option.WithHTTPClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}))
	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "teacher-sim",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("Classify this e-mail as spam or ham."), openai.UserMessage("WIN a FREE cruise, click now!!!"),
		},
	})
	if err != nil {
		t.Fatalf("a request after the first SIGTERM, during the shutdown delay: %v", err)
	}
	if got := resp.Choices[0].Message.Content; got != "spam" {
		t.Errorf("answer %q during the shutdown delay, want spam", got)
	}
	select {
	case err := <-served:
		t.Fatalf("serve returned (%v) within an hour's delay after one signal", err)
	default:
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("serve ended with %v", err)
	}
	if c, err := net.Dial("tcp", gwAddr); err == nil {
		c.Close()
		t.Error("the gateway's port still accepts connections after serve returned")
	}
}

// readyz returns the status of GET /readyz on a new connection.
func readyz(t *testing.T, addr string) int {
	t.Helper()
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("/readyz after the first signal: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
