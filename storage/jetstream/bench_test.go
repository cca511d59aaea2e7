package jetstream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/storage"
)

// benchInputs returns n distinct inputs of about size bytes of word-like
// text, as storage's benchmarks do.
func benchInputs(n, size int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the a of to and in is for on that with free offer meeting invoice " +
		"click now order account password lunch report quarterly please review attached " +
		"shipment delayed refund urgent winner prize claim schedule tomorrow thanks regards")
	out := make([]string, n)
	var sb strings.Builder
	for i := range out {
		sb.Reset()
		fmt.Fprintf(&sb, "message %d:", i)
		for sb.Len() < size {
			sb.WriteByte(' ')
			sb.WriteString(words[r.IntN(len(words))])
		}
		out[i] = sb.String()[:size]
	}
	return out
}

var benchLabels = []string{"spam", "ham", "phishing", "newsletter", "invoice", "personal", "work", "other"}

func benchPair(i int, inputs []string) storage.Pair {
	l := benchLabels[i%len(benchLabels)]
	return storage.Pair{
		Domain:           []string{"spam", "sentiment", "intent", "topic"}[i%4],
		Model:            "gpt-4o-mini",
		System:           "Classify this e-mail. Answer with one word.",
		Input:            strings.Clone(inputs[i%len(inputs)]),
		Answer:           l,
		Label:            l,
		PromptTokens:     300,
		CompletionTokens: 2,
		TeacherLatency:   400 * time.Millisecond,
	}
}

// benchLog is what the benchmarks ask of a pair log.
type benchLog interface {
	Log(storage.Pair) bool
	QueueLen() int
	Flush(context.Context) error
	Close() error
	Pairs(context.Context, string, func(storage.Pair) error) error
}

// benchBackends opens each backend for the benchmarks that compare them:
// the Badger DB in a temporary directory, this store on a server of its
// own.
var benchBackends = []struct {
	name string
	open func(b *testing.B) benchLog
}{
	{"badger", func(b *testing.B) benchLog {
		db, err := storage.Open(storage.Options{Dir: b.TempDir(), Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		return db
	}},
	{"nats", func(b *testing.B) benchLog {
		s, err := Open(testOptions(startServer(b, nil)))
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
}

// BenchmarkPublish measures the pairs per second the stream sustains from
// one publisher: b.N pairs with 1 KB inputs through Log, as fast as the
// queue takes them, then Flush (every pair acknowledged and counted in
// its domain's record). storage's BenchmarkLog is Badger's counterpart.
// The server runs in process, on loopback, sharing the CPUs.
func BenchmarkPublish(b *testing.B) {
	inputs := benchInputs(4096, 1024)
	ts := startServer(b, nil)
	o := testOptions(ts)
	s := openStore(b, o)
	b.SetBytes(1024)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		p := benchPair(i, inputs)
		for !s.Log(p) {
			time.Sleep(50 * time.Microsecond)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pairs/s")
}

// BenchmarkLogCall measures what Log costs the request path, for the
// Badger DB and for this store, with their writers working beside it:
// b.N calls of Log with 1 KB pairs; the timer stops while the queue,
// past 4096 pairs (well under its bounds), drains, so every call is
// accepted.
func BenchmarkLogCall(b *testing.B) {
	inputs := benchInputs(4096, 1024)
	pairs := make([]storage.Pair, 4096)
	for i := range pairs {
		pairs[i] = benchPair(i, inputs)
	}
	for _, bc := range benchBackends {
		b.Run(bc.name, func(b *testing.B) {
			s := bc.open(b)
			defer s.Close()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%1024 == 0 && s.QueueLen() > 4096 {
					b.StopTimer()
					for s.QueueLen() > 1024 {
						time.Sleep(time.Millisecond)
					}
					b.StartTimer()
				}
				if !s.Log(pairs[i%len(pairs)]) {
					b.Fatal("dropped")
				}
			}
			b.StopTimer()
			if err := s.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkPairs measures reading a domain back, as a training run or an
// export does: 20,000 pairs with 1 KB inputs, oldest first, per op.
func BenchmarkPairs(b *testing.B) {
	inputs := benchInputs(4096, 1024)
	const n = 20000
	for _, bc := range benchBackends {
		b.Run(bc.name, func(b *testing.B) {
			s := bc.open(b)
			defer s.Close()
			for i := range n {
				p := benchPair(i, inputs)
				p.Domain = "read"
				for !s.Log(p) {
					time.Sleep(50 * time.Microsecond)
				}
			}
			if err := s.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				got := 0
				if err := s.Pairs(context.Background(), "read", func(storage.Pair) error { got++; return nil }); err != nil || got != n {
					b.Fatalf("read %d pairs, %v", got, err)
				}
			}
			b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "pairs/s")
		})
	}
}
