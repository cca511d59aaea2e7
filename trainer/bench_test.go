package trainer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/student"
)

// benchConfig is the default student's shape: 2^17 hashed buckets, 16-wide
// embeddings, two classes.
func benchConfig(hidden int) ModelConfig {
	return ModelConfig{Buckets: 1 << 17, Dim: 16, Hidden: hidden, Classes: 2}
}

// benchHeads makes benchConfig's model a structured answer's: a softmax
// head of two classes and a tags head of eight.
func benchHeads(cfg ModelConfig) ModelConfig {
	cfg.Classes = 10
	cfg.Heads = []student.Head{{Path: "spam", Start: 0, End: 2}, {Path: "tags", Tags: true, Start: 2, End: 10}}
	return cfg
}

// benchExamples are n examples of 64..256 Zipf-distributed ids, like hashed
// word and n-gram features of short documents, and their targets: a class
// of each softmax head, a random subset of each tags head.
func benchExamples(cfg ModelConfig, n, maxTokens int) ([][]int64, [][]int32) {
	rng := rand.New(rand.NewPCG(3, 4))
	zipf := rand.NewZipf(rng, 1.1, 2, uint64(cfg.Buckets-2))
	ids := make([][]int64, n)
	targets := make([][]int32, n)
	for i := range ids {
		row := make([]int64, maxTokens/4+rng.IntN(maxTokens*3/4+1))
		for j := range row {
			row[j] = int64(1 + zipf.Uint64())
		}
		ids[i] = row
		for _, h := range cfg.heads() {
			for c := h.Start; c < h.End; c++ {
				if h.Tags && rng.IntN(3) == 0 {
					targets[i] = append(targets[i], int32(c))
				}
			}
			if !h.Tags {
				targets[i] = append(targets[i], int32(h.Start+rng.IntN(h.End-h.Start)))
			}
		}
	}
	return ids, targets
}

// BenchmarkStep measures training throughput: batches of 64 examples of up
// to 256 ids (and 512, the default featurizer's limit) through the ORT
// train-step graph, of a plain student and of one with heads (benchHeads,
// named record/…).
func BenchmarkStep(b *testing.B) {
	requireRuntime(b)
	const batch = 64
	for _, bc := range []struct {
		hidden, threads, maxTokens int
		heads                      bool
	}{{0, 1, 256, false}, {64, 1, 256, false}, {0, 2, 256, false}, {0, 1, 512, false}, {0, 1, 256, true}} {
		maxTokens := bc.maxTokens
		name := fmt.Sprintf("hidden=%d/threads=%d/tokens=%d", bc.hidden, bc.threads, maxTokens)
		if bc.heads {
			name = "record/" + name // apart, so that a plain one's name selects it alone
		}
		b.Run(name, func(b *testing.B) {
			cfg := benchConfig(bc.hidden)
			if bc.heads {
				cfg = benchHeads(cfg)
			}
			ids, targets := benchExamples(cfg, 16*batch, maxTokens)
			weights := make([]float32, batch)
			for i := range weights {
				weights[i] = 1
			}
			s, err := NewStepper(cfg, DefaultAdam(), batch, maxTokens, NewParams(cfg, 1), bc.threads)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ResetTimer()
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				at := (i * batch) % len(ids)
				if _, err := s.Step(ids[at:at+batch], targets[at:at+batch], weights); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "examples/s")
		})
	}
}

// BenchmarkPredict measures single-example inference through a student
// session: one example of 128 ids, one intra-op thread.
func BenchmarkPredict(b *testing.B) {
	requireRuntime(b)
	for _, hidden := range []int{0, 64} {
		b.Run(fmt.Sprintf("hidden=%d", hidden), func(b *testing.B) {
			cfg := benchConfig(hidden)
			onnx, err := ExportInference(cfg, NewParams(cfg, 1), 1)
			if err != nil {
				b.Fatal(err)
			}
			sess, err := student.NewSession(onnx, 1)
			if err != nil {
				b.Fatal(err)
			}
			defer sess.Close()
			ids, _ := benchExamples(cfg, 1, 256)
			row := ids[0][:min(128, len(ids[0]))]
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				if _, _, err := sess.Run(row, 1, len(row)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/prediction")
		})
	}
}

// BenchmarkDueIdle measures one scheduler tick with 70,000 domains stored
// and none of them changing: the idle cost of the scan that runs every
// trainer.interval (1s by default).
func BenchmarkDueIdle(b *testing.B) {
	const domains = 70_000
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := storage.Open(storage.Options{Dir: b.TempDir(), Logger: quiet, LogOptions: storage.LogOptions{QueueSize: domains}})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for i := range domains {
		if !db.Log(storage.Pair{Domain: fmt.Sprintf("auto-%012x", i), Input: "x", Answer: "a", Label: "a"}) {
			b.Fatal("pair dropped")
		}
	}
	if err := db.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	s := NewScheduler(SchedulerConfig{}, SchedulerDeps{Store: db, Logger: quiet})
	s.due() // the first scan reads every domain
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if d := s.due(); len(d) != 0 {
			b.Fatalf("due %v", d)
		}
	}
}

// BenchmarkModelPredict measures one prediction through student.Model, as
// the gateway makes it: featurizing a short e-mail, the ONNX Runtime run
// and decoding the answer, with the default featurizer and one thread; of
// a plain student of three labels, and of a structured answer's student
// of the same three kinds, a yes/no field and four tags.
func BenchmarkModelPredict(b *testing.B) {
	requireRuntime(b)
	feat := student.DefaultFeaturizer()
	plain := &student.Artifact{
		Labels: []string{"spam", "easy_ham", "hard_ham"}, Surface: []string{"spam", "easy_ham", "hard_ham"},
	}
	record := &student.Artifact{
		Labels:  []string{`true`, `false`, `"spam"`, `"easy_ham"`, `"hard_ham"`, `"a"`, `"b"`, `"c"`, `"d"`},
		Surface: []string{`true`, `false`, `"spam"`, `"easy_ham"`, `"hard_ham"`, `"a"`, `"b"`, `"c"`, `"d"`},
		Heads: []student.Head{
			{Path: "spam", Start: 0, End: 2}, {Path: "kind", Start: 2, End: 5}, {Path: "tags", Tags: true, Start: 5, End: 9},
		},
		Order: []string{"spam", "kind", "tags"},
	}
	text := "Subject: your invoice is ready\n\nHello, please find attached the invoice for your last order. " +
		"Payment is due within 30 days; reply to this e-mail with any question about the charges."
	for _, bc := range []struct {
		name string
		a    *student.Artifact
	}{{"plain", plain}, {"record", record}} {
		b.Run(bc.name, func(b *testing.B) {
			a := bc.a
			cfg := ModelConfig{Buckets: feat.Buckets(), Dim: 16, Classes: len(a.Labels), Heads: a.Heads}
			onnx, err := ExportInference(cfg, NewParams(cfg, 1), 1)
			if err != nil {
				b.Fatal(err)
			}
			a.Domain, a.Version, a.Featurizer, a.Tau, a.Temperature, a.ONNX = "bench", 1, feat, 0.9, 1, onnx
			m, err := student.Load(a, 1)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				if _, err := m.Predict(text); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/1e3/float64(b.N), "µs/prediction")
		})
	}
}
