package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/understudy-dev/understudy/internal/testnet"
)

// natsCluster is three nats-server processes with JetStream routed into
// one cluster on loopback, built from the nats-server module this
// repository requires. Each keeps its client port, cluster port and store
// directory across a kill and a restart.
type natsCluster struct {
	t     *testing.T
	nodes []*natsNode
}

// natsNode is one server of a natsCluster; proc is nil while it is down.
type natsNode struct {
	name        string
	port, cport int
	dir         string
	proc        *exec.Cmd
	done        chan struct{}
	logs        *lockedWriter
}

func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	for i := range 3 {
		_, port, _ := net.SplitHostPort(testnet.FreeAddr(t))
		_, cport, _ := net.SplitHostPort(testnet.FreeAddr(t))
		n := &natsNode{name: fmt.Sprintf("n%d", i+1), dir: t.TempDir()}
		n.port, _ = strconv.Atoi(port)
		n.cport, _ = strconv.Atoi(cport)
		c.nodes = append(c.nodes, n)
	}
	t.Cleanup(func() {
		for i, n := range c.nodes {
			c.kill(i)
			if t.Failed() {
				n.logs.mu.Lock()
				t.Logf("nats-server %s logs (last 4 KB):\n%s", n.name, tail(n.logs.b.String(), 4096))
				n.logs.mu.Unlock()
			}
		}
	})
	for i := range 3 {
		c.start(i)
	}
	c.waitFormed()
	return c
}

// start starts server i on its ports and store, and waits until it takes
// clients.
func (c *natsCluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	var routes []string
	for _, o := range c.nodes {
		if o != n {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.cport))
		}
	}
	if n.logs == nil {
		n.logs = &lockedWriter{mu: &sync.Mutex{}, b: &strings.Builder{}}
	}
	cmd := exec.Command(natsServerBinary(c.t), "-n", n.name, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port),
		"-js", "-sd", n.dir, "--cluster_name", "understudy-e2e",
		"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.cport), "--routes", strings.Join(routes, ","))
	cmd.Stdout, cmd.Stderr = n.logs, n.logs
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	n.proc, n.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.done) }()
	addr := fmt.Sprintf("127.0.0.1:%d", n.port)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return
		}
		select {
		case <-n.done:
			c.t.Fatalf("nats-server %s exited on start", n.name)
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nats-server %s takes no clients after 30s", n.name)
		}
	}
}

// kill kills server i with SIGKILL, as a machine or an OOM killer would:
// nothing is flushed or handed over; what it wrote to its store stays.
func (c *natsCluster) kill(i int) {
	n := c.nodes[i]
	if n.proc == nil {
		return
	}
	_ = n.proc.Process.Signal(syscall.SIGKILL)
	<-n.done
	n.proc = nil
}

// up reports whether server i runs.
func (c *natsCluster) up(i int) bool { return c.nodes[i].proc != nil }

// jetStream connects to the running servers; the caller closes nc.
func (c *natsCluster) jetStream() (*nats.Conn, njs.JetStream, error) {
	nc, err := nats.Connect(c.urls(), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, err
	}
	js, err := njs.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// waitFormed waits until JetStream answers: the running servers elected a
// meta leader.
func (c *natsCluster) waitFormed() {
	c.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if nc, js, err := c.jetStream(); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatal("JetStream does not answer after 60s: the servers did not form a cluster")
		}
	}
}

// pairStream reads the pair stream's info from the running servers.
func (c *natsCluster) pairStream() (*njs.StreamInfo, error) {
	nc, js, err := c.jetStream()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "understudy_pairs")
	if err != nil {
		return nil, err
	}
	return st.CachedInfo(), nil
}

// streamLeader is the index of the server leading the pair stream; -1
// when it cannot be told.
func (c *natsCluster) streamLeader() int {
	info, err := c.pairStream()
	if err != nil || info.Cluster == nil {
		return -1
	}
	return slices.IndexFunc(c.nodes, func(n *natsNode) bool { return n.name == info.Cluster.Leader })
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// urls lists every server's client URL, comma-separated.
func (c *natsCluster) urls() string {
	var us []string
	for _, n := range c.nodes {
		us = append(us, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return strings.Join(us, ",")
}

// streamMsgs counts the messages of the pair stream, read from the
// cluster directly; -1 when it cannot be read.
func (c *natsCluster) streamMsgs() int64 {
	info, err := c.pairStream()
	if err != nil {
		return -1
	}
	return int64(info.State.Msgs)
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
//  2. when the node leading the pair stream is killed (SIGKILL) in the
//     middle of the traffic: no request fails;
//  3. when all three nodes are killed (the gateways restarted first
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

	// 2. One node of three killed in the middle of the traffic.
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
	victim := nc.streamLeader()
	leads := victim >= 0
	if !leads {
		victim = 0
	}
	at := answered()
	nc.kill(victim)
	t.Logf("killed n%d of 3 (leading the pair stream: %v) after %d requests", victim+1, leads, at)
	<-done
	if after := answered(); after-at < 100 {
		t.Logf("only %d requests after the node went down", after-at)
	}
	stored("one node of three down", teacherSoFar())

	// 3. Every node killed: the gateways still answer; the pairs wait
	// in their queues. To see the queue overflow too, the gateways are
	// started again first (on the cluster, which is whole again) with a
	// queue of 20 pairs each: past it, pairs are dropped as queue_full.
	for i := range 3 {
		if !nc.up(i) {
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
		nc.kill(i)
	}
	t.Logf("killed all three nodes")
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
