package storage_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/storage/storagetest"
)

// TestConformance runs the backends' shared suite against the Badger DB.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storagetest.Backend {
		dir := t.TempDir()
		return storagetest.Backend{
			Open: func(o storagetest.Options) (storagetest.Store, error) {
				return storage.Open(storage.Options{
					Dir:        dir,
					Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
					LogOptions: storage.LogOptions{TTL: o.TTL, MaxPairsPerDomain: o.MaxPairsPerDomain, QueueSize: o.QueueSize},
				})
			},
			Retain: func(s storagetest.Store) error { return s.(*storage.DB).RunRetention() },
		}
	})
}
