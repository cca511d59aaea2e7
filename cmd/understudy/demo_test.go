package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/internal/demo"
)

// TestDemoWithoutData: without the data set the demo says how to get it.
func TestDemoWithoutData(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"demo", "--dataset", t.TempDir()}, &out, &errOut)
	if !errors.Is(err, demo.ErrNoDataset) || !strings.Contains(err.Error(), "make deps") {
		t.Errorf("err = %v; want demo.ErrNoDataset telling to run make deps", err)
	}
	if err := run(context.Background(), []string{"demo", "extra"}, &out, &errOut); exitCode(err) != 2 {
		t.Errorf("demo extra: err = %v, want a usage error", err)
	}
}
