package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/understudy-dev/understudy/internal/testnet"
)

func TestConfigCheck(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"config", "check", "testdata/gateway.yaml"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"is valid", "listen: 127.0.0.1:1", "api_key: '****4567'", "- '****cdef'"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "sk-from-file") || strings.Contains(out.String(), "sk-gateway-key") {
		t.Errorf("a secret is printed:\n%s", out.String())
	}
	err := run(context.Background(), []string{"config", "check", "../../config/testdata/teacher-url.bad.yaml"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "teacher.url") {
		t.Errorf("bad file: err = %v, want it to name teacher.url", err)
	}
}

// TestServe runs teacher-sim and the gateway through the command line, with
// a config file, environment and flags that must win in that order, and
// sends a request through with the SDK.
func TestServe(t *testing.T) {
	simAddr, gwAddr, adminAddr := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	t.Setenv("UNDERSTUDY_LISTEN", "127.0.0.1:3")                // beaten by --listen
	t.Setenv("UNDERSTUDY_TEACHER_URL", "http://"+simAddr+"/v1") // beats the file
	t.Setenv("UNDERSTUDY_LOG_LEVEL", "warn")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 2)
	var logs bytes.Buffer
	go func() {
		errs <- run(ctx, []string{"teacher-sim", "--listen", simAddr, "--task", "spam=testdata/spam.jsonl"}, &bytes.Buffer{}, &bytes.Buffer{})
	}()
	go func() {
		errs <- run(ctx, []string{"serve", "--config", "testdata/gateway.yaml", "--listen", gwAddr,
			"--admin-listen", adminAddr, "--data-dir", t.TempDir()}, &bytes.Buffer{}, &logs)
	}()
	testnet.WaitReady(t, "http://"+gwAddr+"/readyz")

	client := openai.NewClient(option.WithBaseURL("http://"+gwAddr+"/v1/"), option.WithAPIKey("sk-gateway-key-abcdef"), option.WithMaxRetries(0))
	resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "teacher-sim",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("Classify this e-mail as spam or ham."), openai.UserMessage("WIN a FREE cruise, click now!!!"),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0].Message.Content; got != "spam" {
		t.Errorf("answer %q, want spam", got)
	}
	cancel()
	for range 2 {
		if err := <-errs; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("command ended with %v", err)
		}
	}
}
