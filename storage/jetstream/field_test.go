package jetstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/understudy-dev/understudy/internal/testnet"
	"github.com/understudy-dev/understudy/storage"
)

// Field conditions: what happens to pairs when the servers go away, refuse
// a publish, or are flooded, with a real nats-server.

// reasonQueueFull is storage.Queue's drop reason for a full queue.
const reasonQueueFull = "queue_full"

func pair(domain string, i int) storage.Pair {
	return storage.Pair{Domain: domain, Model: "m", Input: fmt.Sprintf("%s %d", domain, i), Answer: "A", Label: "a"}
}

func flush(t testing.TB, s *Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func inputsOf(t testing.TB, s *Store, domain string) []string {
	t.Helper()
	var out []string
	if err := s.Pairs(context.Background(), domain, func(p storage.Pair) error {
		out = append(out, p.Input)
		return nil
	}); err != nil {
		t.Fatalf("Pairs(%s): %v", domain, err)
	}
	return out
}

func wantInputs(domain string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s %d", domain, i))
	}
	return out
}

// loggedBy is how many pairs s counted as logged
// (understudy_storage_pairs_logged_total).
func loggedBy(s *Store) float64 {
	n, _ := s.q.Counts()
	return float64(n)
}

// drops is how many pairs s dropped for reason
// (understudy_storage_pairs_dropped_total).
func drops(s *Store, reason string) float64 { return testutil.ToFloat64(s.q.Dropped(reason)) }

// TestServerRestartMidLogging: pairs logged while the server is down wait
// in the queue, Flush waits for them rather than report them logged, and
// once the server is back every one is stored, once, in order.
func TestServerRestartMidLogging(t *testing.T) {
	ts := startServer(t, nil)
	reg := prometheus.NewRegistry()
	o := testOptions(ts)
	o.Registry = reg
	s := openStore(t, o)
	for i := range 100 {
		if !s.Log(pair("d", i)) {
			t.Fatalf("pair %d dropped", i)
		}
	}
	flush(t, s)

	ts.stop()
	for i := 100; i < 300; i++ {
		if !s.Log(pair("d", i)) {
			t.Fatalf("pair %d dropped while the server was down, with room in the queue", i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := s.Flush(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush while the server is down: %v, want it to wait (deadline exceeded)", err)
	}
	if got := loggedBy(s); got != 100 {
		t.Errorf("%v pairs counted as logged while the server was down, want the 100 acknowledged before", got)
	}
	if n := s.QueueLen(); n != 200 {
		t.Errorf("QueueLen = %d while the server is down, want 200", n)
	}

	ts.restart()
	flush(t, s)
	if got := inputsOf(t, s, "d"); !slices.Equal(got, wantInputs("d", 0, 300)) {
		t.Errorf("after the restart the stream holds %d pairs, want 300 in order: %q", len(got), got)
	}
	d, err := s.Domain("d")
	if err != nil || d.Logged != 300 || d.Pairs != 300 {
		t.Errorf("Domain(d) = %+v, %v; want 300 logged and stored", d, err)
	}
	if got := loggedBy(s); got != 300 {
		t.Errorf("logged_total = %v, want 300", got)
	}
	for _, r := range []string{reasonQueueFull, reasonRejected, reasonDuplicate, reasonClosed} {
		if n := drops(s, r); n != 0 {
			t.Errorf("%v pairs dropped as %s", n, r)
		}
	}
}

// TestQueueOverflowWhileDown: while the server is down the queue fills;
// what does not fit is dropped and counted (queue_full), Log never waits,
// and what was accepted is stored once the server is back.
func TestQueueOverflowWhileDown(t *testing.T) {
	ts := startServer(t, nil)
	reg := prometheus.NewRegistry()
	o := testOptions(ts)
	o.Registry, o.QueueSize, o.BatchSize = reg, 50, 10
	s := openStore(t, o)
	for i := range 20 {
		s.Log(pair("d", i))
	}
	flush(t, s)
	ts.stop()
	var accepted []string
	for i := 20; i < 220; i++ {
		if s.Log(pair("d", i)) {
			accepted = append(accepted, fmt.Sprintf("d %d", i))
		}
	}
	// The queue holds 50, the publisher a batch of 10 more.
	if n := len(accepted); n < 50 || n > 60 {
		t.Errorf("%d of 200 pairs accepted while down, want 50 (the queue) to 60 (and a batch in hand)", n)
	}
	if got, want := drops(s, reasonQueueFull), float64(200-len(accepted)); got != want {
		t.Errorf("queue_full drops = %v, want %v", got, want)
	}
	ts.restart()
	flush(t, s)
	got := inputsOf(t, s, "d")
	if want := append(wantInputs("d", 0, 20), accepted...); !slices.Equal(got, want) {
		t.Errorf("stored %d pairs, want the 20 before and the %d accepted: %q", len(got), len(accepted), got)
	}
	if got := loggedBy(s); got != float64(20+len(accepted)) {
		t.Errorf("logged_total = %v, want %d", got, 20+len(accepted))
	}
}

// TestPublishRefused: a pair the server refuses, or one larger than its
// max_payload, is not logged: counted as dropped, missing from the
// domain's counts, reported by Flush; the pairs around it are logged.
func TestPublishRefused(t *testing.T) {
	ts := startServer(t, func(o *server.Options) { o.MaxPayload = 64 << 10 })
	big := strings.Repeat("x", 100<<10)
	for _, tc := range []struct {
		name, reason, msg string
		setUp             func(t *testing.T, s *Store)
		input             string
	}{
		{"over max_payload", reasonTooLarge, "max_payload", nil, big},
		{"refused by the stream", reasonRejected, "refused by the stream", func(t *testing.T, s *Store) {
			// An operator caps the stream's message size below the pair's.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			info, err := s.stream.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cfg := info.Config
			cfg.MaxMsgSize = 4 << 10
			if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
		}, strings.Repeat("y", 8<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			o := testOptions(ts)
			o.Registry, o.Prefix = reg, strings.ReplaceAll(tc.reason, "_", "")
			s := openStore(t, o)
			if tc.setUp != nil {
				tc.setUp(t, s)
			}
			s.Log(pair("d", 0))
			p := pair("d", 1)
			p.Input = tc.input
			if !s.Log(p) {
				t.Fatal("the big pair was not even queued")
			}
			s.Log(pair("d", 2))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Flush(ctx); err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Flush: %v, want an error saying %q", err, tc.msg)
			}
			if got := inputsOf(t, s, "d"); !slices.Equal(got, []string{"d 0", "d 2"}) {
				t.Errorf("stored %q, want the pairs around the refused one", got)
			}
			if n := drops(s, tc.reason); n != 1 {
				t.Errorf("%s drops = %v, want 1", tc.reason, n)
			}
			if n := loggedBy(s); n != 2 {
				t.Errorf("logged_total = %v, want 2", n)
			}
			if d, err := s.Domain("d"); err != nil || d.Logged != 2 {
				t.Errorf("Domain(d) = %+v, %v; want 2 logged", d, err)
			}
			flush(t, s) // the refusal is reported once
		})
	}
}

// TestStreamDeletedUnderneath: with no stream to answer (an operator
// deleted it, a server lost its data), pairs wait unacknowledged, are not
// counted as logged, and the store creates the stream again and publishes
// them.
func TestStreamDeletedUnderneath(t *testing.T) {
	ts := startServer(t, nil)
	reg := prometheus.NewRegistry()
	o := testOptions(ts)
	o.Registry = reg
	s := openStore(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.js.DeleteStream(ctx, s.names.pairs); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		s.Log(pair("d", i))
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := s.Flush(fctx)
	fcancel()
	if err == nil {
		if n := loggedBy(s); n != 10 {
			t.Fatalf("Flush succeeded with %v of 10 pairs logged", n)
		}
	} else if n := loggedBy(s); n != 0 {
		t.Errorf("%v pairs counted as logged with no stream to store them", n)
	}
	flush(t, s)
	if got := inputsOf(t, s, "d"); !slices.Equal(got, wantInputs("d", 0, 10)) {
		t.Errorf("stored %q, want the 10 pairs", got)
	}
}

// TestDomainFlood: a flood of new domains (one pair each, as a hostile
// client naming domains would send) costs what it is bounded by: Log
// never blocks, what the queue cannot take is dropped and counted, every
// pair accepted is stored and counted once, a real domain logging beside
// the flood keeps its pairs, and a domain with a new label per pair keeps
// a bounded record.
func TestDomainFlood(t *testing.T) {
	ts := startServer(t, nil)
	reg := prometheus.NewRegistry()
	o := testOptions(ts)
	o.Registry, o.QueueSize = reg, 2000
	s := openStore(t, o)

	const flood = 20000
	accepted := map[string]int{}
	var legit []string
	for i := range flood {
		if s.Log(pair(fmt.Sprintf("flood-%d", i), i)) {
			accepted[fmt.Sprintf("flood-%d", i)]++
		}
		if i%100 == 0 {
			p := pair("legit", i)
			if s.Log(p) {
				legit = append(legit, p.Input)
			}
		}
		if i%2000 == 0 {
			time.Sleep(time.Millisecond) // let the publisher in, as request gaps would
		}
	}
	open := storage.Pair{Domain: "open-ended", Model: "m"}
	openDrops := 0
	for i := range 2 * maxLabels {
		open.Input, open.Label = fmt.Sprint(i), fmt.Sprintf("answer number %d", i)
		for !s.Log(open) {
			openDrops++
			flush(t, s)
		}
	}
	flush(t, s)

	total := len(accepted) + len(legit) + 2*maxLabels
	if got := loggedBy(s); got != float64(total) {
		t.Errorf("logged_total = %v, want the %d pairs accepted", got, total)
	}
	if got, want := drops(s, reasonQueueFull), float64(flood+flood/100-len(accepted)-len(legit)+openDrops); got != want {
		t.Errorf("queue_full drops = %v, want %v (every pair not accepted)", got, want)
	}
	sums, err := s.Summaries()
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != len(accepted)+2 {
		t.Errorf("%d domains listed, want the %d flooded ones accepted, legit and open-ended", len(sums), len(accepted))
	}
	if got := inputsOf(t, s, "legit"); !slices.Equal(got, legit) {
		t.Errorf("legit stored %d pairs, want the %d accepted beside the flood", len(got), len(legit))
	}
	d, err := s.Domain("open-ended")
	if err != nil {
		t.Fatal(err)
	}
	if d.Logged != 2*maxLabels || len(d.Labels) != maxLabels {
		t.Errorf("open-ended: %d logged, %d labels listed; want %d and at most %d", d.Logged, len(d.Labels), 2*maxLabels, maxLabels)
	}
	if s.QueueLen() != 0 {
		t.Errorf("QueueLen = %d after Flush", s.QueueLen())
	}
	t.Logf("%d of %d flooded domains accepted", len(accepted), flood)
}

// TestPairsWhileWriting: a reader of one domain sees exactly its pairs,
// oldest first, while other domains (and its own) are being written.
func TestPairsWhileWriting(t *testing.T) {
	ts := startServer(t, nil)
	o := testOptions(ts)
	o.QueueSize = 100000
	s := openStore(t, o)
	for i := range 1000 {
		s.Log(pair("read-me", i))
	}
	flush(t, s)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.Log(pair(fmt.Sprintf("busy-%d", i%3), i))
			if i%10 == 0 {
				s.Log(pair("read-me", 1000+i/10))
			}
			if i%500 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for range 3 {
		got := inputsOf(t, s, "read-me")
		if len(got) < 1000 || !slices.Equal(got, wantInputs("read-me", 0, len(got))) {
			t.Errorf("reading while writing: %d pairs, want the 1000 flushed and then the newer ones in order", len(got))
		}
	}
	close(stop)
	wg.Wait()
	flush(t, s)
}

// TestReplicasShareRecords: two replicas logging into one domain add up
// in its record; what one stores (pairs, settings, routing records)
// reaches the other.
func TestReplicasShareRecords(t *testing.T) {
	ts := startServer(t, nil)
	a := openStore(t, testOptions(ts))
	b := openStore(t, testOptions(ts))
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				s.Log(pair("shared", i))
				if i%30 == 0 {
					flush(t, s) // many small batches: many record updates racing
				}
			}
			flush(t, s)
		}()
	}
	wg.Wait()
	for name, s := range map[string]*Store{"a": a, "b": b} {
		d, err := s.Domain("shared")
		if err != nil || d.Logged != 600 || d.Pairs != 600 || d.Labels["a"] != 600 {
			t.Errorf("replica %s: Domain(shared) = %+v, %v; want 600 logged and stored", name, d, err)
		}
	}
	_, cur, err := b.ChangedSince(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetDomainSetting("shared", "k", "v"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to see a's setting", func() bool {
		ds, _, err := b.ChangedSince(cur)
		return err == nil && len(ds) == 1 && ds[0].Settings["k"] == "v" && ds[0].Logged == 600
	})
	if err := a.PutRoutingRecord("shared", []byte("serving")); err != nil {
		t.Fatal(err)
	}
	if recs, err := b.RoutingRecords(); err != nil || string(recs["shared"]) != "serving" {
		t.Errorf("b's routing records: %q, %v", recs, err)
	}
}

// waitFor polls cond for up to 30 seconds: for what another replica's
// watch delivers.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not after 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchRoutingRecords: a watch gets the records stored, then each
// change any replica stores, in order; it ends with its context or the
// store.
func TestWatchRoutingRecords(t *testing.T) {
	ts := startServer(t, nil)
	a := openStore(t, testOptions(ts))
	b, err := Open(testOptions(ts))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.PutRoutingRecord("x.y", []byte("collecting")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := b.WatchRoutingRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func() storage.RoutingChange {
		t.Helper()
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatal("the watch ended")
			}
			return c
		case <-time.After(30 * time.Second):
			t.Fatal("no change after 30s")
		}
		return storage.RoutingChange{}
	}
	if c := next(); c.Domain != "x.y" || string(c.Record) != "collecting" {
		t.Errorf("first change = %s %q, want the stored record of x.y", c.Domain, c.Record)
	}
	stored := map[string][]string{"x.y": {"shadowing", "serving"}, "z": {"collecting"}}
	for _, r := range [][2]string{{"x.y", "shadowing"}, {"z", "collecting"}, {"x.y", "serving"}} {
		if err := a.PutRoutingRecord(r[0], []byte(r[1])); err != nil {
			t.Fatal(err)
		}
	}
	// A record stored again before the watch delivered it comes in its
	// latest version only; each domain's records come in the order stored.
	seen := map[string][]string{}
	for seen["z"] == nil || len(seen["x.y"]) == 0 || seen["x.y"][len(seen["x.y"])-1] != "serving" {
		c := next()
		seen[c.Domain] = append(seen[c.Domain], string(c.Record))
	}
	for d, got := range seen {
		if !isSubsequence(got, stored[d]) {
			t.Errorf("%s: records %q, want those stored, %q, in order", d, got, stored[d])
		}
	}
	cancel()
	for range ch {
	}
	// A watch ends when its store closes, too.
	ch, err = b.WatchRoutingRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = next()
	_ = next()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range ch {
	}
	if _, err := b.WatchRoutingRecords(context.Background()); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("watch after Close: %v, want ErrClosed", err)
	}
}

func isSubsequence(sub, of []string) bool {
	i := 0
	for _, x := range of {
		if i < len(sub) && sub[i] == x {
			i++
		}
	}
	return i == len(sub)
}

// TestCloseTimeout: Close with the server away waits at most CloseTimeout
// for the queue, and counts what it drops.
func TestCloseTimeout(t *testing.T) {
	ts := startServer(t, nil)
	reg := prometheus.NewRegistry()
	o := testOptions(ts)
	o.Registry, o.CloseTimeout = reg, 300*time.Millisecond
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	ts.stop()
	for i := range 10 {
		s.Log(pair("d", i))
	}
	if err := s.Close(); err == nil || !strings.Contains(err.Error(), "10 pairs not acknowledged within the close timeout (300ms) were dropped") {
		t.Errorf("Close: %v, want it to say what it dropped", err)
	}
	// Close unregistered the metrics: read the counter itself.
	if n := testutil.ToFloat64(s.q.Dropped(reasonClosed)); n != 10 {
		t.Errorf("closed drops = %v, want 10", n)
	}
}

// TestOpen: Open names the servers it could not reach, and authenticates
// as configured.
func TestOpen(t *testing.T) {
	ts := startServer(t, func(o *server.Options) { o.Authorization = "s3cret" })
	o := testOptions(ts)
	for _, tc := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"right token", "s3cret", true},
		{"wrong token", "guess", false},
		{"no token", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := o
			o.Token = tc.token
			s, err := Open(o)
			if tc.ok {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, nats.ErrAuthorization) || !strings.Contains(err.Error(), o.URL) {
				t.Errorf("Open: %v, want an authorization error naming %s", err, o.URL)
			}
		})
	}
	o = testOptions(ts)
	o.URL, o.ConnectTimeout = "nats://127.0.0.1:1", time.Second
	if _, err := Open(o); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Open of no server: %v, want an error naming it", err)
	}
}

// TestOpenWaitsForServers: Open started before any server takes
// connections (a cluster starting beside its gateways) keeps trying, and
// opens once one does; the store then logs as any.
func TestOpenWaitsForServers(t *testing.T) {
	_, portText, _ := net.SplitHostPort(testnet.FreeAddr(t))
	port, _ := strconv.Atoi(portText)
	o := Options{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), Logger: quietLogger(), ConnectTimeout: time.Minute,
		reconnectWait: 20 * time.Millisecond}
	type opened struct {
		s   *Store
		err error
	}
	done := make(chan opened, 1)
	go func() {
		s, err := Open(o)
		done <- opened{s, err}
	}()
	time.Sleep(300 * time.Millisecond) // Open is trying by now
	select {
	case r := <-done:
		t.Fatalf("Open returned before any server ran: %v", r.err)
	default:
	}
	startServer(t, func(so *server.Options) { so.Port = port })
	r := <-done
	if r.err != nil {
		t.Fatalf("Open, the server started after it: %v", r.err)
	}
	t.Cleanup(func() { r.s.Close() })
	if !r.s.Log(storage.Pair{Domain: "late", Input: "hello", Answer: "hi", Label: "hi"}) {
		t.Fatal("Log refused a pair")
	}
	if err := r.s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d, err := r.s.Domain("late"); err != nil || d.Pairs != 1 {
		t.Errorf("domain late: %d pairs, %v; want 1", d.Pairs, err)
	}
}

// TestTokens: the subject token of a domain is a valid subject token and
// KV key, and gives the domain back.
func TestTokens(t *testing.T) {
	for _, d := range []string{"a", "a.b", "...", "a..b", "-", "_", "A-b_c.9", strings.Repeat("x.", 32)} {
		if !storage.ValidDomain(d) {
			continue
		}
		tok := token(d)
		if strings.ContainsAny(tok, ". *>\t") || tok == "" || domainOf(tok) != d {
			t.Errorf("token(%q) = %q", d, tok)
		}
		if !validKey(tok) {
			t.Errorf("token(%q) = %q is not a valid KV key", d, tok)
		}
	}
	for _, id := range []string{"resp_1", "a b", "x/y", "é", "=", strings.Repeat("z", 128)} {
		k := responseKey(id)
		if !validKey(k) {
			t.Errorf("responseKey(%q) = %q is not a valid KV key", id, k)
		}
	}
	if responseKey("a b") == responseKey("a_b") || responseKey("=YQ") == responseKey("a") {
		t.Error("responseKey maps two ids to one key")
	}
}

// validKey is the KV key rule of nats.go.
func validKey(k string) bool {
	if k == "" || k[0] == '.' || k[len(k)-1] == '.' {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-/_=.", c)) {
			return false
		}
	}
	return true
}

// FuzzToken: token is reversible for every domain name.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"a", "a.b", "...", "x_y-z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, d string) {
		if !storage.ValidDomain(d) {
			return
		}
		tok := token(d)
		if domainOf(tok) != d || strings.Contains(tok, ".") || !validKey(tok) {
			t.Errorf("token(%q) = %q", d, tok)
		}
	})
}

// TestWatchesSurviveRestart: after the server restarts, a replica still
// learns what the others store: domain records and routing records.
func TestWatchesSurviveRestart(t *testing.T) {
	ts := startServer(t, nil)
	a := openStore(t, testOptions(ts))
	b := openStore(t, testOptions(ts))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := a.WatchRoutingRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ts.restart()
	waitFor(t, "b to reconnect", func() bool { return b.nc.IsConnected() })
	b.Log(pair("after", 0))
	flush(t, b)
	waitFor(t, "a to see b's new domain", func() bool {
		sums, err := a.Summaries()
		return err == nil && len(sums) == 1 && sums[0].Name == "after" && sums[0].Logged == 1
	})
	waitFor(t, "b to store a routing record", func() bool { return b.PutRoutingRecord("after", []byte("r")) == nil })
	select {
	case c := <-ch:
		if c.Domain != "after" || string(c.Record) != "r" {
			t.Errorf("a's watch got %s %q, want after r", c.Domain, c.Record)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a's routing watch got nothing after the restart")
	}
}

// TestReadsWhileDown: with the server away, reads that need it fail
// (within Timeout) instead of hanging, Summaries still answer from
// memory, and everything works again once it is back.
func TestReadsWhileDown(t *testing.T) {
	ts := startServer(t, nil)
	o := testOptions(ts)
	o.Timeout = time.Second
	s := openStore(t, o)
	s.Log(pair("d", 0))
	flush(t, s)
	ts.stop()
	if err := s.Pairs(context.Background(), "d", func(storage.Pair) error { return nil }); err == nil {
		t.Error("Pairs with the server down succeeded")
	}
	if _, err := s.Domain("d"); err == nil {
		t.Error("Domain with the server down succeeded")
	}
	if _, err := s.RoutingRecords(); err == nil {
		t.Error("RoutingRecords with the server down succeeded")
	}
	if sums, err := s.Summaries(); err != nil || len(sums) != 1 || sums[0].Logged != 1 {
		t.Errorf("Summaries with the server down: %+v, %v; want d from memory", sums, err)
	}
	ts.restart()
	waitFor(t, "the store to reconnect", func() bool { return s.nc.IsConnected() })
	waitFor(t, "Pairs to work again", func() bool {
		n := 0
		err := s.Pairs(context.Background(), "d", func(storage.Pair) error { n++; return nil })
		return err == nil && n == 1
	})
}
