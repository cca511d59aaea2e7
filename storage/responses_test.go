package storage

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestResponses: a kept response reads back after a reopen, deletes once,
// and expires with the pair log's TTL.
func TestResponses(t *testing.T) {
	dir := t.TempDir()
	db, _ := open(t, Options{Dir: dir})
	rec := []byte(`{"id":"resp_1","output":[]}`)
	if err := db.PutResponse("resp_1", rec); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", strings.Repeat("x", 129)} {
		if err := db.PutResponse(bad, rec); err == nil {
			t.Errorf("PutResponse(%.20q) stored a response", bad)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, _ = open(t, Options{Dir: dir})
	got, err := db.Response("resp_1")
	if err != nil || !bytes.Equal(got, rec) {
		t.Fatalf("Response after reopen = %q, %v; want %q", got, err, rec)
	}
	if _, err := db.Response("resp_2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Response(unknown) = %v, want ErrNotFound", err)
	}
	if err := db.DeleteResponse("resp_1"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteResponse("resp_1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteResponse = %v, want ErrNotFound", err)
	}
	if _, err := db.Response("resp_1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Response after delete = %v, want ErrNotFound", err)
	}

	short, _ := open(t, Options{Dir: t.TempDir(), LogOptions: LogOptions{TTL: time.Second}})
	if err := short.PutResponse("resp_3", rec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := short.Response("resp_3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Response after its TTL = %v, want ErrNotFound", err)
	}
}
