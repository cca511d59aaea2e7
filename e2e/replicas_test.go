package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/understudy-dev/understudy/internal/testnet"
)

// replica is one gateway process of several on one NATS.
type replica struct {
	name              string
	proc              *child
	gwAddr, adminAddr string
	client            openai.Client
	dead              bool
}

// answer sends one spam request and returns its route and, when a student
// answered, the version that did ("spam@v3").
func (r *replica) answer(t *testing.T, text string) (route, student string) {
	var resp *http.Response
	p := openai.ChatCompletionNewParams{Model: "teacher-sim",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(spamSystem), openai.UserMessage(text)}}
	if _, err := r.client.Chat.Completions.New(context.Background(), p,
		option.WithHeader("X-Understudy-Domain", "spam"), option.WithResponseInto(&resp)); err != nil {
		t.Errorf("%s: request: %v", r.name, err)
		return "", ""
	}
	return resp.Header.Get("X-Understudy-Route"), resp.Header.Get("X-Understudy-Student")
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
// replica leads (understudy_leader); it is killed (SIGKILL) once it has
// trained a version, and another replica takes the learner lease within
// seconds and carries on: the spam domain is still promoted, on the
// samples of both survivors. The promotion reaches the other replica
// within about a second, and from then on both answer with the same
// student version.
func TestNATSReplicasShareOneLearner(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	spam, simAddr, cfg, dir := startNATSSpam(t, 5)
	reps := make([]*replica, 3)
	for i := range reps {
		name := fmt.Sprintf("replica-%d", i+1)
		p := startChild(t, "serve", "--config", cfg, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
			"--data-dir", filepath.Join(dir, name), "--teacher-url", "http://"+simAddr+"/v1")
		r := &replica{name: name, proc: p, gwAddr: p.listening(t, "gateway"), adminAddr: p.listening(t, "admin API")}
		r.client = openai.NewClient(option.WithBaseURL("http://"+r.gwAddr+"/v1/"), option.WithAPIKey("k"), option.WithMaxRetries(0))
		testnet.WaitReady(t, "http://"+r.gwAddr+"/readyz")
		reps[i] = r
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
	// round sends 90 requests spread round-robin over the live replicas.
	round := func() {
		rs := live()
		ls := mails.take(90)
		var wg sync.WaitGroup
		for k, r := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := k; i < len(ls); i += len(rs) {
					r.answer(t, ls[i].Text)
				}
			}()
		}
		wg.Wait()
		sent += len(ls)
		time.Sleep(300 * time.Millisecond)
	}
	for sent < 3000 {
		round()
		if v, _ := getDomain(t, first.adminAddr, "spam"); v.LatestVersion >= 1 {
			break
		}
	}
	state, _ := first.servingVersion(t)
	t.Logf("%s trained v1 after %d requests (spam %s); killing it", first.name, sent, state)
	if err := first.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.proc.done
	first.proc.done <- nil
	first.dead = true

	second, took := leader()
	t.Logf("%s took the learner lease %v after the leader was killed", second.name, took.Round(10*time.Millisecond))

	// Traffic goes on over the survivors until the new leader promotes.
	for sent < 9000 {
		if st, _ := second.servingVersion(t); st == "serving" {
			break
		}
		round()
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
	// Every survivor answers with the same student version.
	want := fmt.Sprintf("spam@v%d", v)
	for _, r := range live() {
		students, other := 0, 0
		for _, l := range mails.take(60) {
			route, s := r.answer(t, l.Text)
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
