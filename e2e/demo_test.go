package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/internal/demo"
)

// demoRequests is the test run's length. With no teacher latency the
// replay outruns training (a student takes seconds to train on 2 cores,
// while the replay sends 2,500 requests a second), so the run is longer
// than the ~3,000 requests a paced client needs: long enough for the
// spam/ham student to be promoted with room to spare (about request
// 21,000 on this project's loaded 2-core machine).
const demoRequests = 40000

// TestDemo runs `understudy demo` through the real binary with no teacher
// latency and checks its report as a user would read it: the spam/ham
// student is promoted and then answers most requests, agreeing with the
// data; every answer of the structured task (spam-json) is valid JSON of
// its schema; the open-ended task is never promoted nor answered by a
// student; every summary figure is what the report's own trace gives; the
// chart is a PNG; and the gateway is stopped and its directory removed.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	dataset := filepath.Dir(spamData(t, "spam-ham.jsonl"))
	dir := t.TempDir()
	reportPath, chartPath := filepath.Join(dir, "report.json"), filepath.Join(dir, "chart.png")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildBinary(t), "demo", "--dataset", dataset,
		"--requests", strconv.Itoa(demoRequests), "--concurrency", "2", "--teacher-latency", "0", "--teacher-jitter", "0",
		"--report", reportPath, "--chart", chartPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Logf("demo ran in %v:\n%s", time.Since(began).Round(time.Millisecond), out.String())

	rep := readReport(t, reportPath)
	if len(rep.Trace) != demoRequests || len(rep.Domains) != 4 {
		t.Fatalf("report has %d requests and %d domains, want %d and 4", len(rep.Trace), len(rep.Domains), demoRequests)
	}
	for i, r := range rep.Trace {
		if r.Index != i || r.Route == "error" {
			t.Fatalf("trace[%d] = %+v: want index %d and an answer", i, r, i)
		}
	}
	byName := map[string]demo.Summary{}
	for _, s := range rep.Domains {
		byName[s.Domain] = s
		checkSummary(t, s, rep.Trace)
	}
	checkPromoted(t, byName["spam-ham"])
	checkStructured(t, byName["spam-json"], rep.Trace, func(answer, label string) (map[string]bool, error) {
		got, err := parseSpamKind(answer)
		if err != nil {
			return nil, err
		}
		want, err := parseSpamKind(label)
		if err != nil {
			return nil, fmt.Errorf("the data's label %q: %w", label, err)
		}
		return map[string]bool{"spam": *got.Spam == *want.Spam, "kind": *got.Kind == *want.Kind}, nil
	})
	checkNeverServed(t, byName["subjects"], rep.Trace)
	checkChart(t, chartPath)
	checkStopped(t, out.String())
}

func readReport(t *testing.T, path string) demo.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep demo.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("decoding the report: %v", err)
	}
	return rep
}

// checkSummary recomputes a domain's summary from the trace.
func checkSummary(t *testing.T, s demo.Summary, trace []demo.Request) {
	t.Helper()
	var (
		requests, errs, studentN, correct, after, afterStudent int
		spent, saved                                           float64
		routes                                                 = map[string]int{}
		latencies                                              = map[string][]float64{}
		studentByAPI                                           = map[string]int{}
		wrongByAPI                                             = map[string]int{}
	)
	for _, r := range trace {
		if r.Domain != s.Domain {
			continue
		}
		requests++
		routes[r.Route]++
		latencies[r.Route] = append(latencies[r.Route], r.LatencyMS)
		student := r.Route == "student" || r.Route == "student-fallback"
		switch {
		case r.Route == "error":
			errs++
		case student:
			studentN++
			studentByAPI[r.API]++
			saved += r.CostUSD
			if r.Correct {
				correct++
			} else {
				wrongByAPI[r.API]++
			}
		default:
			spent += r.CostUSD
		}
		if s.PromotedAtMS != nil && r.StartMS >= *s.PromotedAtMS {
			after++
			if student {
				afterStudent++
			}
		}
	}
	if s.PromotedAtMS != nil {
		sentBefore := 0
		for _, r := range trace {
			if r.StartMS < *s.PromotedAtMS {
				sentBefore++
			}
		}
		if s.PromotedAtRequest == nil || *s.PromotedAtRequest != sentBefore {
			t.Errorf("%s: promoted_at_request %v, but %d requests were sent before promoted_at_ms", s.Domain, s.PromotedAtRequest, sentBefore)
		}
	} else if s.PromotedAtRequest != nil {
		t.Errorf("%s: promoted_at_request %d without promoted_at_ms", s.Domain, *s.PromotedAtRequest)
	}
	// A third of the traffic is on the Responses API, in one domain with
	// the chat traffic: the student answers both.
	if afterStudent > 0 && (studentByAPI["chat"] == 0 || studentByAPI["responses"] == 0) {
		t.Errorf("%s: the student answered %v requests by API; want both chat and the Responses API", s.Domain, studentByAPI)
	}
	for api, n := range studentByAPI {
		t.Logf("%s: the student answered %d requests on %s, %d of them unlike the data set", s.Domain, n, api, wrongByAPI[api])
	}
	checkInts(t, s.Domain, map[string][2]int{
		"requests": {s.Requests, requests}, "errors": {s.Errors, errs},
		"student_answers": {s.StudentAnswers, studentN}, "student_correct": {s.StudentCorrect, correct},
		"requests_after_promotion": {s.RequestsAfterPromotion, after},
	})
	checkFloats(t, s.Domain, map[string][2]float64{
		"student_agreement": {s.StudentAgreement, fraction(correct, studentN)},
		"offload_after":     {s.OffloadAfterPromotion, fraction(afterStudent, after)},
		"spent_usd":         {s.SpentUSD, spent}, "saved_usd": {s.SavedUSD, saved},
	})
	if len(s.Routes) != len(routes) {
		t.Errorf("%s: routes %v, trace has %v", s.Domain, s.Routes, routes)
	}
	for route, n := range routes {
		if s.Routes[route] != n {
			t.Errorf("%s: routes %v, trace has %v", s.Domain, s.Routes, routes)
		}
		l := latencies[route]
		slices.Sort(l)
		got := s.Latency[route]
		if got.N != len(l) || got.P50MS != nearestRank(l, 0.5) || got.P99MS != nearestRank(l, 0.99) {
			t.Errorf("%s: %s latency %+v; the trace gives n=%d p50=%v p99=%v", s.Domain, route, got, len(l), nearestRank(l, 0.5), nearestRank(l, 0.99))
		}
	}
}

func checkInts(t *testing.T, domain string, m map[string][2]int) {
	t.Helper()
	for name, v := range m {
		if v[0] != v[1] {
			t.Errorf("%s: %s = %d, the trace gives %d", domain, name, v[0], v[1])
		}
	}
}

func checkFloats(t *testing.T, domain string, m map[string][2]float64) {
	t.Helper()
	for name, v := range m {
		if math.Abs(v[0]-v[1]) > 1e-9*max(1, math.Abs(v[1])) {
			t.Errorf("%s: %s = %v, the trace gives %v", domain, name, v[0], v[1])
		}
	}
}

func fraction(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// nearestRank is the smallest value with at least a share q of the sorted
// values at or below it.
func nearestRank(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[max(int(math.Ceil(q*float64(len(sorted))))-1, 0)]
}

// checkPromoted: the student was promoted, then answered most of the
// domain's requests, agreeing with the data set.
func checkPromoted(t *testing.T, s demo.Summary) {
	t.Helper()
	if s.PromotedAtRequest == nil || s.State != "serving" {
		t.Fatalf("%s: state %s, promoted at %v; want a promotion and serving", s.Domain, s.State, s.PromotedAtRequest)
	}
	t.Logf("%s: promoted v%d at request %d; then %.1f%% of %d answered by the student; %.2f%% of %d student answers agree with the data; saved $%.2f",
		s.Domain, s.PromotedVersion, *s.PromotedAtRequest, 100*s.OffloadAfterPromotion, s.RequestsAfterPromotion,
		100*s.StudentAgreement, s.StudentAnswers, s.SavedUSD)
	if s.RequestsAfterPromotion < 100 || s.OffloadAfterPromotion < 0.5 {
		t.Errorf("%s: offload %.3f of %d requests after the promotion, want at least half of at least 100", s.Domain, s.OffloadAfterPromotion, s.RequestsAfterPromotion)
	}
	if s.StudentAgreement < 0.9 || s.SavedUSD <= 0 {
		t.Errorf("%s: student agreement with the data %.3f (want ≥ 0.9), saved $%v (want > 0)", s.Domain, s.StudentAgreement, s.SavedUSD)
	}
	if s.Latency["teacher"].N == 0 || s.Latency["student"].N == 0 {
		t.Errorf("%s: latency by route %v, want teacher and student", s.Domain, s.Latency)
	}
}

// checkNeverServed: an open-ended domain is never promoted nor answered by
// a student.
func checkNeverServed(t *testing.T, s demo.Summary, trace []demo.Request) {
	t.Helper()
	if s.State != "open_ended" || s.PromotedAtRequest != nil || s.StudentAnswers != 0 || s.Requests == 0 {
		t.Errorf("%s: state %s, promoted at %v, %d student answers of %d; want open_ended, never promoted, none",
			s.Domain, s.State, s.PromotedAtRequest, s.StudentAnswers, s.Requests)
	}
	for _, r := range trace {
		if r.Domain == s.Domain && r.Route != "teacher" {
			t.Fatalf("%s: request %d took route %s", s.Domain, r.Index, r.Route)
		}
	}
}

func checkChart(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 10<<10 {
		t.Errorf("chart: %d bytes, not a PNG of a chart", len(b))
	}
}

// checkStopped: the gateway no longer answers and the demo's directory is
// gone.
func checkStopped(t *testing.T, out string) {
	t.Helper()
	m := regexp.MustCompile(`gateway on (\S+) \(admin \S+\), data in (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no gateway line in the output")
	}
	if resp, err := http.Get("http://" + m[1] + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("the gateway still answers on %s after the demo", m[1])
	}
	if _, err := os.Stat(m[2]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's directory %s is still there (stat: %v)", m[2], err)
	}
}

// shownBelow reports whether k right of n shows, at 99% one-sided
// confidence, that the true rate is below p: whether the Wilson score
// interval's upper bound lies under p. A test holding a student to "right
// at least 95% of the time" fails on this, not on a point estimate, which
// dips under 95% by chance now and then for a student right 96% of the
// time over a few hundred answers: the gate certifies that much and no more.
func shownBelow(k, n int, p float64) bool {
	if n == 0 {
		return false
	}
	const z = 2.326 // one-sided 99%
	nf, phat := float64(n), float64(k)/float64(n)
	centre := phat + z*z/(2*nf)
	spread := z * math.Sqrt(phat*(1-phat)/nf+z*z/(4*nf*nf))
	return (centre+spread)/(1+z*z/nf) < p
}

func TestShownBelow(t *testing.T) {
	for _, tc := range []struct {
		k, n int
		want bool
	}{
		{673, 700, false}, // 96.1%: a student the gate would promote
		{665, 700, false}, // 95.0%
		{650, 700, true},  // 92.9%
		{930, 1000, true}, // 93.0%: more answers, less doubt
		{0, 0, false},
	} {
		if got := shownBelow(tc.k, tc.n, 0.95); got != tc.want {
			t.Errorf("shownBelow(%d, %d, 0.95) = %v, want %v", tc.k, tc.n, got, tc.want)
		}
	}
}
