package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/understudy-dev/understudy/internal/testnet"
)

// TestNATSBackend runs the gateway on storage.backend nats against a real
// nats-server with JetStream (in this process, on loopback): the spam
// domain is learned and promoted as on Badger; every request the client
// got a 200 for is one pair in the stream; and a gateway started again
// with an empty data directory — a fresh replica — knows the domain, its
// pairs and its student from NATS alone, and answers with it at once.
func TestNATSBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	spam, simAddr, cfg, dir, _ := startNATSSpam(t, 3)
	r := &routeRun{t: t}
	start := func(dataDir string) *child {
		gw := startChild(t, "serve", "--config", cfg, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
			"--data-dir", dataDir, "--teacher-url", "http://"+simAddr+"/v1")
		r.gwAddr, r.adminAddr = gw.listening(t, "gateway"), gw.listening(t, "admin API")
		r.client = openai.NewClient(option.WithBaseURL("http://"+r.gwAddr+"/v1/"), option.WithAPIKey("k"), option.WithMaxRetries(0))
		testnet.WaitReady(t, "http://"+r.gwAddr+"/readyz")
		return gw
	}
	gw := start(filepath.Join(dir, "data-1"))
	mails := &cycle{all: spam}
	byTeacher := 0 // answers that were the teacher's: each is a pair
	for mails.sent < 4000 && r.state("spam") != "serving" {
		for _, o := range r.send("spam", spamSystem, mails.take(100)) {
			if o.content != "" && o.route != "student" {
				byTeacher++
			}
		}
		time.Sleep(400 * time.Millisecond)
	}
	if st := r.state("spam"); st != "serving" {
		t.Fatalf("spam is %s after %d requests on NATS, want serving", st, mails.sent)
	}
	t.Logf("promoted after %d requests, %d answered by the teacher", mails.sent, byTeacher)
	// Pairs are logged just after their answer: the stream holds each of
	// the teacher's answers once (a student's own are not logged).
	var v domainView
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if v, _ = getDomain(t, r.adminAddr, "spam"); v.Pairs == int64(byTeacher) {
			break
		}
	}
	if v.Pairs != int64(byTeacher) {
		t.Errorf("the stream holds %d pairs of spam, want one per teacher answer: %d", v.Pairs, byTeacher)
	}
	gw.stop(t, os.Interrupt)

	// A fresh replica: no local data, the same NATS.
	start(filepath.Join(dir, "data-2"))
	// The first gateway may have trained another version after v was
	// read, before it stopped: versions only grow.
	after, _ := getDomain(t, r.adminAddr, "spam")
	if after.State != "serving" || after.Pairs != v.Pairs || after.LatestVersion < v.LatestVersion {
		t.Errorf("a fresh gateway on the same NATS sees spam %s with %d pairs at v%d, want serving with %d at v%d or later",
			after.State, after.Pairs, after.LatestVersion, v.Pairs, v.LatestVersion)
	}
	student := 0
	for _, o := range r.send("spam", spamSystem, mails.take(200)) {
		if o.route == "student" {
			student++
		}
	}
	if student < 100 {
		t.Errorf("the fresh gateway's student answered %d of 200, want most", student)
	}
}

// startNATSSpam starts what the NATS tests share: a nats-server with
// JetStream in this process (stopped when the test ends), teacher-sim
// answering the spam task, and a gateway config file on the nats backend
// with a quick trainer. It returns the spam mails shuffled by seed,
// teacher-sim's address, the config's path, the test's directory and the
// nats-server's URL.
func startNATSSpam(t *testing.T, seed uint64) (spam []labelled, simAddr, cfg, dir, natsURL string) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	spamPath := spamData(t, "spam-ham.jsonl")
	spam = readLabelled(t, spamPath, 1<<20)
	rand.New(rand.NewPCG(seed, seed+1)).Shuffle(len(spam), func(i, j int) { spam[i], spam[j] = spam[j], spam[i] })
	simAddr = startChild(t, "teacher-sim", "--listen", "127.0.0.1:0", "--latency", "2ms",
		"--task", "spam="+spamPath, "--system", "spam="+spamSystem).listening(t, "teacher-sim")
	dir = t.TempDir()
	cfg = filepath.Join(dir, "understudy.yaml")
	conf := fmt.Sprintf("storage:\n  backend: nats\n  nats:\n    url: nats://%s\n"+
		"trainer:\n  min_pairs: 200\n  retrain_every: 500\n  interval: 100ms\n  cooldown: 1s\n", ns.Addr())
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return spam, simAddr, cfg, dir, "nats://" + ns.Addr().String()
}
