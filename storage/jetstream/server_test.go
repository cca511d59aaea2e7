package jetstream

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	"github.com/understudy-dev/understudy/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServer is a real nats-server with JetStream, in process, keeping
// its data in a temporary directory, on a loopback port that a restart
// keeps.
type testServer struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
}

// startServer starts a server; mod may change its options (limits,
// authentication) before it starts.
func startServer(t testing.TB, mod func(*server.Options)) *testServer {
	t.Helper()
	ts := &testServer{t: t, opts: server.Options{
		Host:               "127.0.0.1",
		Port:               -1,
		JetStream:          true,
		StoreDir:           t.TempDir(),
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  1 << 30,
		NoLog:              true,
		NoSigs:             true,
	}}
	if mod != nil {
		mod(&ts.opts)
	}
	ts.start()
	ts.opts.Port = ts.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start() {
	ts.t.Helper()
	o := ts.opts
	srv, err := server.NewServer(&o)
	if err != nil {
		ts.t.Fatalf("starting nats-server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		ts.t.Fatal("nats-server not ready after 30s")
	}
	ts.srv = srv
}

// stop shuts the server down, as a crash or an upgrade would.
func (ts *testServer) stop() {
	if ts.srv != nil {
		ts.srv.Shutdown()
		ts.srv.WaitForShutdown()
		ts.srv = nil
	}
}

// restart starts the server again on its port and data.
func (ts *testServer) restart() {
	ts.t.Helper()
	ts.stop()
	ts.start()
}

func (ts *testServer) url() string { return ts.srv.ClientURL() }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testOptions are the options of a store on ts for a test: quick to
// reconnect, quiet.
func testOptions(ts *testServer) Options {
	return Options{URL: ts.url(), Logger: quietLogger(), AckTimeout: 2 * time.Second,
		reconnectWait: 20 * time.Millisecond, ensureEvery: 200 * time.Millisecond}
}

// openStore opens a store and closes it when the test ends.
func openStore(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestConformance runs the backends' shared suite against a real
// nats-server, one per test.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storagetest.Backend {
		ts := startServer(t, nil)
		return storagetest.Backend{
			Open: func(so storagetest.Options) (storagetest.Store, error) {
				o := testOptions(ts)
				o.TTL, o.MaxPairsPerDomain, o.QueueSize = so.TTL, so.MaxPairsPerDomain, so.QueueSize
				return Open(o)
			},
			Retain: func(s storagetest.Store) error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				return s.(*Store).RefreshCounts(ctx)
			},
		}
	})
}
