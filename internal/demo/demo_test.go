package demo

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/understudy-dev/understudy/internal/teachersim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ptr[T any](v T) *T { return &v }

// TestSummarize checks each summary figure on a small trace.
func TestSummarize(t *testing.T) {
	trace := []Request{
		{Index: 0, Domain: "a", Route: "teacher", Correct: true, StartMS: 0, LatencyMS: 300, CostUSD: 0.01},
		{Index: 1, Domain: "b", Route: "teacher", Correct: true, StartMS: 1, LatencyMS: 310, CostUSD: 0.02},
		{Index: 2, Domain: "a", Route: "teacher", Correct: true, StartMS: 2, LatencyMS: 290, CostUSD: 0.01},
		{Index: 3, Domain: "a", Route: "student", Correct: true, StartMS: 10, LatencyMS: 1, CostUSD: 0.01},
		{Index: 4, Domain: "a", Route: "deferred", Correct: true, StartMS: 11, LatencyMS: 320, CostUSD: 0.01},
		{Index: 5, Domain: "a", Route: "student", Correct: false, StartMS: 12, LatencyMS: 2, CostUSD: 0.01},
		{Index: 6, Domain: "a", Route: "error", StartMS: 13, LatencyMS: 5},
	}
	got := summarize("a", trace, ptr(10.0))
	want := Summary{
		Domain: "a", PromotedAtMS: ptr(10.0), PromotedAtRequest: ptr(3),
		Requests: 6, Errors: 1, Routes: map[string]int{"teacher": 2, "student": 2, "deferred": 1, "error": 1},
		RequestsAfterPromotion: 4, OffloadAfterPromotion: 0.5,
		StudentAnswers: 2, StudentCorrect: 1, StudentAgreement: 0.5, TeacherAgreement: 1,
		Latency: map[string]LatencyStats{
			"teacher":  {N: 2, P50MS: 290, P99MS: 300},
			"student":  {N: 2, P50MS: 1, P99MS: 2},
			"deferred": {N: 1, P50MS: 320, P99MS: 320},
			"error":    {N: 1, P50MS: 5, P99MS: 5},
		},
		SpentUSD: 0.03, SavedUSD: 0.02,
	}
	got.SpentUSD, got.SavedUSD = round(got.SpentUSD), round(got.SavedUSD)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("summarize:\n got %+v\nwant %+v", got, want)
	}
	if s := summarize("b", trace, nil); s.PromotedAtRequest != nil || s.Requests != 1 || s.OffloadAfterPromotion != 0 {
		t.Errorf("never promoted: %+v", s)
	}
}

func round(x float64) float64 { return float64(int64(x*1e9+0.5)) / 1e9 }

func TestPercentile(t *testing.T) {
	for _, tc := range []struct {
		values []float64
		q      float64
		want   float64
	}{
		{nil, 0.5, 0},
		{[]float64{7}, 0.99, 7},
		{[]float64{1, 2, 3, 4}, 0.5, 2},
		{[]float64{1, 2, 3, 4}, 0.51, 3},
		{[]float64{1, 2, 3, 4}, 0.99, 4},
		{[]float64{1, 2, 3, 4}, 0, 1},
	} {
		if got := Percentile(tc.values, tc.q); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.values, tc.q, got, tc.want)
		}
	}
}

// TestEncodeReport: the report is valid JSON that decodes to itself, with
// a trace entry a line.
func TestEncodeReport(t *testing.T) {
	r := &Report{Settings: Settings{Requests: 2}, Domains: []Summary{{Domain: "a", Routes: map[string]int{"teacher": 2}, Latency: map[string]LatencyStats{}}},
		Trace: []Request{{Index: 0, Domain: "a", Route: "teacher"}, {Index: 1, Domain: "a", Route: "teacher", Correct: true}}}
	b, err := encodeReport(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%v:\n%s", err, b)
	}
	if !reflect.DeepEqual(&back, r) {
		t.Errorf("decoded %+v, want %+v", back, *r)
	}
	if n := strings.Count(string(b), `{"index":`); n != 2 || !strings.Contains(string(b), "\n    {\"index\":1,") {
		t.Errorf("trace not one entry a line:\n%s", b)
	}
}

// TestSchedule: the replay is the same for a seed, mixes the tasks by
// weight, and does not repeat an e-mail before a task runs out.
func TestSchedule(t *testing.T) {
	tasks := datasets[0].tasks
	loaded := make([]teachersim.Task, len(tasks))
	for i := range loaded {
		for j := range 1000 {
			loaded[i].Examples = append(loaded[i].Examples, teachersim.Example{Text: tasks[i].domain + string(rune('a'+j%26)) + strings.Repeat("x", j), Label: "l"})
		}
	}
	a, b := schedule(tasks, loaded, 1000, 7), schedule(tasks, loaded, 1000, 7)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two schedules of one seed differ")
	}
	if reflect.DeepEqual(a, schedule(tasks, loaded, 1000, 8)) {
		t.Error("two seeds give one schedule")
	}
	perTask, streamed, seen := make([]int, len(tasks)), 0, map[string]bool{}
	for i, j := range a {
		if j.index != i || seen[j.text] {
			t.Fatalf("job %d: index %d, text seen before: %v", i, j.index, seen[j.text])
		}
		seen[j.text] = true
		perTask[j.task]++
		if j.stream {
			streamed++
		}
	}
	if perTask[0] < 230 || perTask[3] > 230 || streamed < 250 || streamed > 420 {
		t.Errorf("per task %v (weights 2:2:2:1), %d streamed of 1000 (want about a third)", perTask, streamed)
	}
}

// TestLogWatcher finds the gateway's addresses in its log, written in
// pieces, and keeps its last lines.
func TestLogWatcher(t *testing.T) {
	w := newLogWatcher(2)
	log := "time=x level=INFO msg=\"gateway listening\" addr=127.0.0.1:1234 x=y\n" +
		"time=x level=INFO msg=\"admin API listening\" addr=127.0.0.1:5678\nlast line\n"
	for i := 0; i < len(log); i += 7 {
		_, _ = w.Write([]byte(log[i:min(i+7, len(log))]))
	}
	if api, admin := w.addrs(); api != "127.0.0.1:1234" || admin != "127.0.0.1:5678" {
		t.Errorf("addrs = %q, %q", api, admin)
	}
	if tail := w.tail(); !strings.HasPrefix(tail, "  …\n") || !strings.HasSuffix(tail, "  last line\n") {
		t.Errorf("tail = %q", tail)
	}
}

func TestChildEnv(t *testing.T) {
	got := childEnv([]string{"PATH=/bin", "UNDERSTUDY_TRAINER_ENABLED=false", "UNDERSTUDY_ORT_LIB=/x.so", "OPENAI_API_KEY=sk-real", "HOME=/root"})
	want := []string{"PATH=/bin", "UNDERSTUDY_ORT_LIB=/x.so", "HOME=/root"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("childEnv = %q, want %q", got, want)
	}
}
