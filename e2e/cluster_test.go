package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/understudy-dev/understudy/internal/testnet"
)

// natsCluster is three nats-servers with JetStream routed into one
// cluster on loopback. Each keeps its client port, cluster port and store
// directory across a shutdown and a restart.
type natsCluster struct {
	t       *testing.T
	opts    []*server.Options
	servers []*server.Server // nil: shut down
}

func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	var clusterAddrs []string
	for range 3 {
		clusterAddrs = append(clusterAddrs, testnet.FreeAddr(t))
	}
	for i := range 3 {
		_, cport, _ := net.SplitHostPort(clusterAddrs[i])
		_, port, _ := net.SplitHostPort(testnet.FreeAddr(t))
		o := &server.Options{ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", JetStream: true, StoreDir: t.TempDir(),
			JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30, NoLog: true, NoSigs: true}
		o.Port, _ = strconv.Atoi(port)
		o.Cluster.Name, o.Cluster.Host = "understudy-e2e", "127.0.0.1"
		o.Cluster.Port, _ = strconv.Atoi(cport)
		for j, a := range clusterAddrs {
			if j != i {
				o.Routes = append(o.Routes, &url.URL{Scheme: "nats", Host: a})
			}
		}
		c.opts = append(c.opts, o)
	}
	c.servers = make([]*server.Server, 3)
	t.Cleanup(func() {
		for i := range c.servers {
			c.shutdown(i)
		}
	})
	for i := range 3 {
		c.start(i)
	}
	c.waitFormed()
	return c
}

// start starts server i on its options: the same ports and store.
func (c *natsCluster) start(i int) {
	c.t.Helper()
	var err error
	// A port just released may be in use for a moment: try again.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var s *server.Server
		if s, err = server.NewServer(c.opts[i].Clone()); err == nil {
			s.Start()
			if s.ReadyForConnections(30 * time.Second) {
				c.servers[i] = s
				return
			}
			s.Shutdown()
			s.WaitForShutdown()
			err = fmt.Errorf("not ready in 30s")
		}
		if time.Now().After(deadline) {
			break
		}
	}
	c.t.Fatalf("nats-server n%d: %v", i+1, err)
}

// shutdown stops server i (server.Shutdown: its connections are cut at
// once and it keeps nothing in memory; what it wrote to its store stays,
// which is what kill -9 leaves of a nats-server).
func (c *natsCluster) shutdown(i int) {
	if s := c.servers[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.servers[i] = nil
	}
}

// waitFormed waits until a running server is the JetStream meta leader.
func (c *natsCluster) waitFormed() {
	c.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if slices.ContainsFunc(c.servers, func(s *server.Server) bool { return s != nil && s.JetStreamIsLeader() }) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal("no JetStream meta leader after 60s: the servers did not form a cluster")
		}
	}
}

// urls lists every server's client URL, comma-separated.
func (c *natsCluster) urls() string {
	var us []string
	for _, o := range c.opts {
		us = append(us, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(us, ",")
}

// streamMsgs counts the messages of the pair stream, read from the
// cluster directly; -1 when it cannot be read.
func (c *natsCluster) streamMsgs() int64 {
	nc, err := nats.Connect(c.urls(), nats.Timeout(5*time.Second))
	if err != nil {
		return -1
	}
	defer nc.Close()
	js, err := njs.New(nc)
	if err != nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "understudy_pairs")
	if err != nil {
		return -1
	}
	return int64(st.CachedInfo().State.Msgs)
}

var (
	queueFullDrops = regexp.MustCompile(`(?m)^understudy_storage_pairs_dropped_total\{reason="queue_full"\} (\S+)$`)
	queueLength    = regexp.MustCompile(`(?m)^understudy_storage_queue_length (\S+)$`)
)

// metricValue is the value re finds in a /metrics page; 0 when none.
func metricValue(re *regexp.Regexp, page string) int64 {
	m := re.FindStringSubmatch(page)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	return int64(n)
}

// TestNATSClusterFaults runs three gateways on a three-node JetStream
// cluster (storage.nats.replicas: 3, the url listing all three servers),
// with the official SDK sending round-robin over them, and checks that
// every answer the teacher gave is one pair in the stream, no fewer and no
// more (the admin API of every gateway and the stream itself agree, and
// the stream holds, by the Understudy-Replica header of its pairs, each
// teacher answer of each gateway process once, by text):
//
//  1. on a healthy cluster;
//  2. when the node leading the pair stream is shut down in the middle of
//     the traffic (server.Shutdown: in this process, the equivalent of
//     kill -9 — connections cut at once, nothing flushed beyond what the
//     store already holds): no request fails;
//  3. when all three nodes are shut down (the gateways restarted first
//     with a queue of 20 pairs, so that it overflows): no request fails,
//     each pair the teacher answered waits in a gateway's queue or is
//     counted as dropped (queue_full), and once the nodes are back (the
//     same stores, the same ports) the queued pairs are stored, once.
//
// Answers by the student, once the domain is promoted, are not logged and
// not counted. The waits are on conditions, with generous deadlines.
func TestNATSClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	began := time.Now()
	nc := startNATSCluster(t)

	spamPath := spamData(t, "spam-ham.jsonl")
	spam := readLabelled(t, spamPath, 1<<20)
	rand.New(rand.NewPCG(7, 8)).Shuffle(len(spam), func(i, j int) { spam[i], spam[j] = spam[j], spam[i] })
	simAddr := startChild(t, "teacher-sim", "--listen", "127.0.0.1:0", "--latency", "2ms",
		"--task", "spam="+spamPath, "--system", "spam="+spamSystem).listening(t, "teacher-sim")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "understudy.yaml")
	// writeConfig writes the gateways' configuration; queueSize 0 keeps
	// the default queue (65536 pairs).
	writeConfig := func(queueSize int) {
		conf := fmt.Sprintf("storage:\n  backend: nats\n  nats:\n    url: %s\n    replicas: 3\n", nc.urls())
		if queueSize > 0 {
			conf += fmt.Sprintf("  queue_size: %d\n", queueSize)
		}
		conf += "trainer:\n  min_pairs: 200\n  retrain_every: 500\n  interval: 100ms\n  cooldown: 1s\n"
		if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	gws := make([]*routeRun, 3)
	procs := make([]*child, 3)
	// reps counts the teacher's answers of each gateway process, those of
	// the current ones in cur, by text, to account for each pair.
	var reps []*replica
	cur := make([]*replica, 3)
	startGateways := func() {
		for i := range gws {
			p := startChild(t, "serve", "--config", cfg, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
				"--data-dir", filepath.Join(dir, fmt.Sprintf("gw-%d", i+1)), "--teacher-url", "http://"+simAddr+"/v1")
			r := &routeRun{t: t, gwAddr: p.listening(t, "gateway"), adminAddr: p.listening(t, "admin API")}
			r.client = openai.NewClient(option.WithBaseURL("http://"+r.gwAddr+"/v1/"), option.WithAPIKey("k"), option.WithMaxRetries(0))
			testnet.WaitReady(t, "http://"+r.gwAddr+"/readyz")
			gws[i], procs[i] = r, p
			cur[i] = &replica{name: fmt.Sprintf("gw-%d (process %d)", i+1, len(reps)/len(gws)+1), proc: p, byTeacher: map[string]int{}}
			reps = append(reps, cur[i])
		}
	}
	writeConfig(0)
	startGateways()

	mails := &cycle{all: spam}
	var mu sync.Mutex
	byTeacher, byStudent, failed := 0, 0, 0
	// round sends n requests, split round-robin over the gateways (each
	// gateway's share 8 at a time, every third streamed); it counts the
	// answers the teacher gave, each of which must be logged once.
	round := func(n int) {
		mu.Lock()
		ls := mails.take(n)
		mu.Unlock()
		var wg sync.WaitGroup
		for k, r := range gws {
			var mine []labelled
			for i := k; i < len(ls); i += len(gws) {
				mine = append(mine, ls[i])
			}
			rep := cur[k]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j, o := range r.send("spam", spamSystem, mine) {
					mu.Lock()
					switch {
					case o.content == "":
						failed++ // send reported the error
					case o.route == "student":
						byStudent++
					default:
						byTeacher++
						rep.mu.Lock()
						rep.byTeacher[mine[j].Text]++
						rep.mu.Unlock()
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	teacherSoFar := func() int64 { mu.Lock(); defer mu.Unlock(); return int64(byTeacher) }
	// stored waits until every gateway's admin API and the stream itself
	// hold want pairs of spam, and says what they hold; then it accounts
	// for them pair by pair: each process's teacher answers are in the
	// stream once each, but for the teacher answers beyond want (dropped).
	stored := func(what string, want int64) {
		t.Helper()
		views := make([]int64, len(gws))
		var msgs int64
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			agree := true
			for i, r := range gws {
				v, _ := getDomain(t, r.adminAddr, "spam")
				views[i] = v.Pairs
				agree = agree && v.Pairs == want
			}
			if msgs = nc.streamMsgs(); agree && msgs == want {
				missing, _ := accountPairs(t, nc.urls(), reps)
				lost := 0
				for _, n := range missing {
					lost += n
				}
				if int64(lost) != teacherSoFar()-want {
					t.Fatalf("%s: %d teacher answers are not in the stream, want %d", what, lost, teacherSoFar()-want)
				}
				t.Logf("%s: %d pairs stored, each teacher answer of each gateway process once, by text (%v into the test)",
					what, want, time.Since(began).Round(100*time.Millisecond))
				return
			}
		}
		t.Fatalf("%s: the gateways' admin API count %v pairs of spam and the stream holds %d, want %d (one per teacher answer; %d answered by the student, %d failed)",
			what, views, msgs, want, byStudent, failed)
	}

	// 1. A healthy cluster.
	for range 4 {
		round(100)
	}
	stored("healthy cluster", teacherSoFar())

	// 2. One node of three shut down in the middle of the traffic.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 8 {
			round(100)
			time.Sleep(150 * time.Millisecond)
		}
	}()
	answered := func() int { mu.Lock(); defer mu.Unlock(); return byTeacher + byStudent + failed }
	for answered() < 400+200 {
		time.Sleep(20 * time.Millisecond)
	}
	// The node that leads the pair stream, the hardest one to lose.
	victim := slices.IndexFunc(nc.servers, func(s *server.Server) bool { return s.JetStreamIsStreamLeader("$G", "understudy_pairs") })
	leads := victim >= 0
	if !leads {
		victim = 0
	}
	at := answered()
	nc.shutdown(victim)
	t.Logf("shut down n%d of 3 (leading the pair stream: %v) after %d requests", victim+1, leads, at)
	<-done
	if after := answered(); after-at < 100 {
		t.Logf("only %d requests after the node went down", after-at)
	}
	stored("one node of three down", teacherSoFar())

	// 3. Every node shut down: the gateways still answer; the pairs wait
	// in their queues. To see the queue overflow too, the gateways are
	// started again first (on the cluster, which is whole again) with a
	// queue of 20 pairs each: past it, pairs are dropped as queue_full.
	for i := range 3 {
		if nc.servers[i] == nil {
			nc.start(i)
		}
	}
	nc.waitFormed()
	for _, p := range procs {
		p.stop(t, os.Interrupt)
	}
	writeConfig(20)
	startGateways()
	before := teacherSoFar()
	stored("gateways restarted with a queue of 20", before)
	for i := range 3 {
		nc.shutdown(i)
	}
	t.Logf("shut down all three nodes")
	for range 4 {
		round(100)
	}
	if failed > 0 {
		t.Fatalf("%d requests failed", failed)
	}
	waiting := teacherSoFar() - before
	if waiting == 0 {
		t.Fatal("no answer from the teacher while NATS was down")
	}
	for i, r := range gws {
		if v, _ := getDomain(t, r.adminAddr, "spam"); v.Pairs > before {
			t.Errorf("gateway %d counts %d pairs of spam with every NATS node down, more than the %d stored before", i+1, v.Pairs, before)
		}
	}
	// Each pair the teacher answered waits in a queue or was dropped as
	// queue_full (the gateways queue a pair just after its answer).
	var queued, dropped int64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		queued, dropped = 0, 0
		for _, r := range gws {
			m := get(t, "http://"+r.gwAddr+"/metrics")
			queued += metricValue(queueLength, m)
			dropped += metricValue(queueFullDrops, m)
		}
		if queued+dropped == waiting {
			break
		}
	}
	if queued+dropped != waiting {
		t.Fatalf("with NATS down, %d pairs are queued and %d dropped as queue_full, want the %d the teacher answered", queued, dropped, waiting)
	}
	t.Logf("%d pairs answered by the teacher while NATS was down: %d wait in the queues, %d dropped as queue_full", waiting, queued, dropped)
	for i := range 3 {
		nc.start(i)
	}
	nc.waitFormed()
	t.Logf("restarted all three nodes")
	stored("after the restart", teacherSoFar()-dropped)
	t.Logf("%d answers by the teacher, %d by the student, in %v", byTeacher, byStudent, time.Since(began).Round(100*time.Millisecond))
}
