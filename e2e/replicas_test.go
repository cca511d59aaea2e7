package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/storage/jetstream"
)

// replica is one gateway process of several on one NATS.
type replica struct {
	name              string
	proc              *child
	gwAddr, adminAddr string
	client            openai.Client
	dead              bool

	mu sync.Mutex // guards the counts below
	// byTeacher counts, by text, the requests this replica answered with
	// the teacher's answer (a 200 the client read whole): each is a pair.
	byTeacher map[string]int
	failed    int // requests that failed
	sent      int // requests sent and answered or failed
}

// answer sends one spam request and returns its route and, when a student
// answered, the version that did ("spam@v3"). It counts the answer, or the
// failure (route "").
func (r *replica) answer(text string) (route, student string) {
	var resp *http.Response
	p := openai.ChatCompletionNewParams{Model: "teacher-sim",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(spamSystem), openai.UserMessage(text)}}
	_, err := r.client.Chat.Completions.New(context.Background(), p,
		option.WithHeader("X-Understudy-Domain", "spam"), option.WithResponseInto(&resp))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent++
	if err != nil {
		r.failed++
		return "", ""
	}
	route, student = resp.Header.Get("X-Understudy-Route"), resp.Header.Get("X-Understudy-Student")
	if route != "student" {
		r.byTeacher[text]++
	}
	return route, student
}

// teacherAnswers is how many requests the replica answered with the
// teacher's answer.
func (r *replica) teacherAnswers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.byTeacher {
		n += c
	}
	return n
}

var leaderGauge = regexp.MustCompile(`(?m)^understudy_leader (\S+)$`)

// leading reads the replica's understudy_leader gauge.
func (r *replica) leading(t *testing.T) bool {
	m := leaderGauge.FindStringSubmatch(get(t, "http://"+r.gwAddr+"/metrics"))
	return m != nil && m[1] == "1"
}

// servingVersion is the version the replica's admin API says serves spam.
func (r *replica) servingVersion(t *testing.T) (string, int) {
	var v struct {
		State   string `json:"state"`
		Routing struct {
			Serving int `json:"serving_version"`
		} `json:"routing"`
	}
	resp, err := http.Get("http://" + r.adminAddr + "/admin/domains/spam")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return v.State, v.Routing.Serving
}

// TestNATSReplicasShareOneLearner runs three gateway replicas on one
// nats-server with traffic spread round-robin over them. Exactly one
// replica leads (understudy_leader); once it has trained a version it is
// killed (SIGKILL) in the middle of a round, and another replica takes
// the learner lease within seconds and carries on: the spam domain is
// still promoted, once, on the samples of both survivors. The promotion
// reaches the other replica within about a second, and from then on both
// answer with the same student version.
//
// Every pair is accounted for against the client's 200s: the stream holds
// each survivor's teacher answers exactly once, by the Understudy-Replica
// header of each pair (none lost, none twice, none made up); of the
// killed replica's, at most one each, and at least as many as it had
// counted acknowledged (understudy_storage_pairs_logged_total) just
// before the kill: no acknowledged pair is lost. The operator commands
// (status, domains, export) give the same answers against every replica.
func TestNATSReplicasShareOneLearner(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	spam, simAddr, cfg, dir, natsURL := startNATSSpam(t, 5)
	var reps []*replica
	start := func() *replica {
		name := fmt.Sprintf("replica-%d", len(reps)+1)
		p := startChild(t, "serve", "--config", cfg, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
			"--data-dir", filepath.Join(dir, name), "--teacher-url", "http://"+simAddr+"/v1")
		r := &replica{name: name, proc: p, gwAddr: p.listening(t, "gateway"), adminAddr: p.listening(t, "admin API"), byTeacher: map[string]int{}}
		r.client = openai.NewClient(option.WithBaseURL("http://"+r.gwAddr+"/v1/"), option.WithAPIKey("k"), option.WithMaxRetries(0))
		testnet.WaitReady(t, "http://"+r.gwAddr+"/readyz")
		reps = append(reps, r)
		return r
	}
	for range 3 {
		start()
	}
	live := func() []*replica {
		var out []*replica
		for _, r := range reps {
			if !r.dead {
				out = append(out, r)
			}
		}
		return out
	}
	// leader waits until exactly one live replica leads.
	leader := func() (*replica, time.Duration) {
		began := time.Now()
		for deadline := began.Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			var leads []*replica
			for _, r := range live() {
				if r.leading(t) {
					leads = append(leads, r)
				}
			}
			if len(leads) > 1 {
				t.Fatalf("%d replicas lead at once", len(leads))
			}
			if len(leads) == 1 {
				return leads[0], time.Since(began)
			}
		}
		t.Fatal("no replica leads within 60s")
		return nil, 0
	}
	first, _ := leader()
	t.Logf("%s leads", first.name)

	mails := &cycle{all: spam}
	sent := 0
	// round sends n requests spread round-robin over the live replicas.
	round := func(n int) {
		rs := live()
		ls := mails.take(n)
		var wg sync.WaitGroup
		for k, r := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := k; i < len(ls); i += len(rs) {
					r.answer(ls[i].Text)
				}
			}()
		}
		wg.Wait()
		sent += len(ls)
		time.Sleep(300 * time.Millisecond)
	}
	for sent < 3000 {
		round(90)
		if v, _ := getDomain(t, first.adminAddr, "spam"); v.LatestVersion >= 1 {
			break
		}
	}
	state, _ := first.servingVersion(t)
	t.Logf("%s trained v1 after %d requests (spam %s)", first.name, sent, state)

	// The leader is killed in the middle of a round over all three: once
	// it answered 20 of its share, it is asked how many pairs the stream
	// acknowledged to it, and killed at once.
	acked := make(chan int64, 1)
	sentBy := func(r *replica) int { r.mu.Lock(); defer r.mu.Unlock(); return r.sent }
	base := sentBy(first)
	go func() {
		for deadline := time.Now().Add(60 * time.Second); sentBy(first) < base+20 && time.Now().Before(deadline); {
			time.Sleep(2 * time.Millisecond)
		}
		n := int64(-1)
		if resp, err := http.Get("http://" + first.gwAddr + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			n = metricValue(pairsLogged, string(b))
		}
		if err := first.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Error(err)
		}
		acked <- n
	}()
	round(180)
	firstAcked := <-acked
	if firstAcked < 0 {
		t.Fatalf("%s: its metrics could not be read before the kill", first.name)
	}
	<-first.proc.done
	first.proc.done <- nil
	first.dead = true
	t.Logf("%s killed mid-round: %d teacher answers, %d pairs acknowledged to it just before, %d requests failed",
		first.name, first.teacherAnswers(), firstAcked, first.failed)

	second, took := leader()
	t.Logf("%s took the learner lease %v after the leader was killed", second.name, took.Round(10*time.Millisecond))

	// Traffic goes on over the survivors until the new leader promotes.
	for sent < 9000 {
		if st, _ := second.servingVersion(t); st == "serving" {
			break
		}
		round(90)
	}
	promotedAt := time.Now()
	st, v := second.servingVersion(t)
	if st != "serving" {
		t.Fatalf("spam is %s after %d requests, want serving", st, sent)
	}
	t.Logf("the new leader promoted spam v%d after %d requests in all", v, sent)
	for _, r := range live() {
		var rst string
		var rv int
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if rst, rv = r.servingVersion(t); rst == "serving" && rv == v {
				break
			}
		}
		if rst != "serving" || rv != v {
			t.Fatalf("%s sees spam %s at v%d, want serving v%d", r.name, rst, rv, v)
		}
		t.Logf("%s serves v%d %v after the leader's view showed it", r.name, v, time.Since(promotedAt).Round(10*time.Millisecond))
	}
	// A replica started now (an empty data directory, the same NATS)
	// serves the same version at once, and takes part from here on.
	late := start()
	if rst, rv := late.servingVersion(t); rst != "serving" || rv != v {
		t.Errorf("%s, started after the promotion, sees spam %s at v%d, want serving v%d", late.name, rst, rv, v)
	}
	// Every live replica answers with the same student version.
	want := fmt.Sprintf("spam@v%d", v)
	for _, r := range live() {
		students, other := 0, 0
		for _, l := range mails.take(60) {
			route, s := r.answer(l.Text)
			if route == "student" {
				students++
				if s != want {
					other++
				}
			}
		}
		if students == 0 || other > 0 {
			t.Errorf("%s: the student answered %d of 60, %d of them not as %s", r.name, students, other, want)
		}
	}
	// The followers' samples reached the gate: each published some; and
	// every replica shows the one promotion.
	published := regexp.MustCompile(`(?m)^understudy_storage_nats_samples_published_total (\S+)$`)
	for _, r := range live() {
		if r.failed > 0 {
			t.Errorf("%s: %d requests failed", r.name, r.failed)
		}
		if m := published.FindStringSubmatch(get(t, "http://"+r.gwAddr+"/metrics")); r != second && (m == nil || m[1] == "0") {
			t.Errorf("%s, a follower, published no shadow samples", r.name)
		}
		if n := promotions(t, r); n != 1 {
			t.Errorf("%s shows %d promotions of spam, want 1", r.name, n)
		}
		// Only the leader trains: a follower refuses a run it would never start.
		resp, err := http.Post("http://"+r.adminAddr+"/admin/domains/spam/train", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: http.StatusAccepted, false: http.StatusConflict}[r == second]; resp.StatusCode != want {
			t.Errorf("POST /train on %s: %d, want %d", r.name, resp.StatusCode, want)
		}
	}
	// How long the promotion took to reach the followers, from the logs
	// (one clock): the leader's transition to their loading the version.
	promoted := logTime(t, second, `msg="domain route changed".* to=serving`)
	for _, r := range live() {
		if r == second {
			continue
		}
		if at := logTime(t, r, `msg="following the learner: serving version changed".* to=`+fmt.Sprint(v)); !promoted.IsZero() && !at.IsZero() {
			t.Logf("the promotion reached %s %v after the leader decided it", r.name, at.Sub(promoted))
		}
	}

	// Every pair is accounted for, once the survivors' queues drained.
	var missing map[*replica]int
	var stored int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		missing, stored = accountPairs(t, natsURL, reps)
		if !slices.ContainsFunc(live(), func(r *replica) bool { return missing[r] > 0 }) {
			break
		}
	}
	for _, r := range reps {
		switch {
		case r != first && missing[r] > 0:
			t.Errorf("%s: %d of its %d teacher answers are not in the stream", r.name, missing[r], r.teacherAnswers())
		case r != first:
			t.Logf("%s: each of its %d teacher answers is in the stream once", r.name, r.teacherAnswers())
		case int64(r.teacherAnswers()-missing[r]) < firstAcked:
			t.Errorf("%s (killed): the stream holds %d of its pairs, fewer than the %d acknowledged to it before the kill",
				r.name, r.teacherAnswers()-missing[r], firstAcked)
		default:
			t.Logf("%s (killed): %d teacher answers, %d pairs stored (%d acknowledged before the kill), %d lost with its queue",
				r.name, r.teacherAnswers(), r.teacherAnswers()-missing[r], firstAcked, missing[r])
		}
	}
	operatorsAgree(t, live(), stored)
	countsAgree(t, live())
}

// countsAgree checks the route counts every live replica's admin API
// shows for spam, and its status totals: the requests answered by the
// live replicas since they started, each counted once, with as many
// replicas as are live. The replicas announce their counts every few
// seconds, so it waits for them to show.
func countsAgree(t *testing.T, live []*replica) {
	t.Helper()
	var answered int64
	for _, r := range live {
		r.mu.Lock()
		answered += int64(r.sent - r.failed)
		r.mu.Unlock()
	}
	for _, r := range live {
		var v struct {
			Routing struct {
				Routes map[string]int64 `json:"routes"`
			} `json:"routing"`
			Replicas int `json:"replicas"`
		}
		var st struct {
			Replicas int `json:"replicas"`
			Totals   struct {
				Requests int64 `json:"requests"`
			} `json:"totals"`
		}
		var routes int64
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if err := json.Unmarshal([]byte(get(t, "http://"+r.adminAddr+"/admin/domains/spam")), &v); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(get(t, "http://"+r.adminAddr+"/admin/status")), &st); err != nil {
				t.Fatal(err)
			}
			routes = 0
			for _, n := range v.Routing.Routes {
				routes += n
			}
			if routes == answered && v.Replicas == len(live) && st.Totals.Requests == answered && st.Replicas == len(live) {
				break
			}
		}
		if routes != answered || v.Replicas != len(live) || st.Totals.Requests != answered || st.Replicas != len(live) {
			t.Errorf("%s: spam's route counts sum %d over %d replicas and the status totals %d over %d, want the %d requests the %d live replicas answered",
				r.name, routes, v.Replicas, st.Totals.Requests, st.Replicas, answered, len(live))
		}
	}
	if !t.Failed() {
		t.Logf("every replica's admin API counts the %d requests the %d live replicas answered, each once", answered, len(live))
	}
}

var pairsLogged = regexp.MustCompile(`(?m)^understudy_storage_pairs_logged_total (\S+)$`)

// accountPairs holds the pair stream to the replicas' 200s. For each
// replica it reports an error for a pair stored more than once or one it
// never answered, and returns how many of its teacher answers are not in
// the stream (missing); the caller decides how many may be. Pairs from no
// replica of the list are errors too. It also returns how many pairs the
// stream holds.
func accountPairs(t *testing.T, natsURL string, reps []*replica) (missing map[*replica]int, stored int) {
	t.Helper()
	got, unknown, stored := streamPairs(t, natsURL, reps)
	for id, n := range unknown {
		t.Errorf("the stream holds %d pairs from %q, no replica of this test", n, id)
	}
	missing = map[*replica]int{}
	for _, r := range reps {
		r.mu.Lock()
		var twice, strange int
		for text, n := range r.byTeacher {
			if g := got[r][text]; g < n {
				missing[r] += n - g
			} else if g > n {
				twice += g - n
			}
		}
		for text, g := range got[r] {
			if r.byTeacher[text] == 0 {
				strange += g
			}
		}
		r.mu.Unlock()
		if twice > 0 || strange > 0 {
			t.Errorf("%s: the stream holds %d pairs more than once and %d it never answered", r.name, twice, strange)
		}
	}
	return missing, stored
}

// streamPairs reads the whole pair stream and counts its pairs' input
// texts by the replica that logged them (by the process id in the
// Understudy-Replica header), and those of no replica by header.
func streamPairs(t *testing.T, natsURL string, reps []*replica) (map[*replica]map[string]int, map[string]int, int) {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := njs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "understudy_pairs")
	if err != nil {
		t.Fatal(err)
	}
	state := st.CachedInfo().State
	byPid := map[string]*replica{}
	for _, r := range reps {
		byPid[strconv.Itoa(r.proc.cmd.Process.Pid)] = r
	}
	got, unknown := map[*replica]map[string]int{}, map[string]int{}
	for seq := state.FirstSeq; state.Msgs > 0 && seq <= state.LastSeq; seq++ {
		msg, err := st.GetMsg(ctx, seq)
		if errors.Is(err, njs.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("reading pair %d of the stream: %v", seq, err)
		}
		var p storage.Pair
		if err := storage.DecodePairRecord(msg.Data, &p); err != nil {
			t.Fatalf("pair %d of the stream: %v", seq, err)
		}
		id := msg.Header.Get(jetstream.ReplicaHeader)
		parts := strings.Split(id, "/")
		r := (*replica)(nil)
		if len(parts) == 3 {
			r = byPid[parts[1]]
		}
		if r == nil {
			unknown[id]++
			continue
		}
		if got[r] == nil {
			got[r] = map[string]int{}
		}
		got[r][p.Input]++
	}
	return got, unknown, int(state.Msgs)
}

// operatorsAgree runs the operator commands against every live replica:
// `understudy domains spam --json` shows the same state, serving version
// and pairs on each (the pairs the stream holds), `understudy export`
// writes every stored pair from each, and `understudy status` works.
func operatorsAgree(t *testing.T, live []*replica, stored int) {
	t.Helper()
	type view struct {
		State   string `json:"state"`
		Pairs   int    `json:"pairs"`
		Routing struct {
			Serving int `json:"serving_version"`
		} `json:"routing"`
	}
	var first *view
	for _, r := range live {
		admin := "http://" + r.adminAddr
		out, err := exec.Command(buildBinary(t), "domains", "spam", "--json", "--admin-url", admin).Output()
		if err != nil {
			t.Fatalf("understudy domains spam against %s: %v", r.name, err)
		}
		var v view
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("understudy domains spam --json against %s: %v\n%s", r.name, err, out)
		}
		if v.Pairs != stored {
			t.Errorf("understudy domains against %s shows %d pairs, the stream holds %d", r.name, v.Pairs, stored)
		}
		if first == nil {
			first = &v
		} else if v.State != first.State || v.Routing.Serving != first.Routing.Serving {
			t.Errorf("understudy domains against %s shows spam %s at v%d, against %s %s at v%d",
				r.name, v.State, v.Routing.Serving, live[0].name, first.State, first.Routing.Serving)
		}
		out, err = exec.Command(buildBinary(t), "export", "--domain", "spam", "--admin-url", admin).Output()
		if err != nil {
			t.Fatalf("understudy export against %s: %v", r.name, err)
		}
		if lines := strings.Count(string(out), "\n"); lines != stored {
			t.Errorf("understudy export against %s wrote %d lines, the stream holds %d pairs", r.name, lines, stored)
		}
		if out, err := exec.Command(buildBinary(t), "status", "--admin-url", admin).CombinedOutput(); err != nil || !strings.Contains(string(out), "spam") {
			t.Errorf("understudy status against %s: %v\n%s", r.name, err, out)
		}
	}
	t.Logf("understudy domains, export and status agree on %d replicas: %d pairs", len(live), stored)
}

// promotions counts the transitions into serving that a replica's admin
// API lists for spam.
func promotions(t *testing.T, r *replica) int {
	var v struct {
		Routing struct {
			Transitions []struct {
				From, To string
			} `json:"transitions"`
		} `json:"routing"`
	}
	if err := json.Unmarshal([]byte(get(t, "http://"+r.adminAddr+"/admin/domains/spam")), &v); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tr := range v.Routing.Transitions {
		if tr.To == "serving" && tr.From != "serving" {
			n++
		}
	}
	return n
}

// logTime is the time of the last line of a replica's log that matches
// re; zero when none does.
func logTime(t *testing.T, r *replica, re string) time.Time {
	r.proc.mu.Lock()
	logs := r.proc.logs.String()
	r.proc.mu.Unlock()
	m := regexp.MustCompile(re)
	var at time.Time
	for _, line := range strings.Split(logs, "\n") {
		if !m.MatchString(line) {
			continue
		}
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "time=") {
			if ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time=")); err == nil {
				at = ts
			}
		}
	}
	return at
}
