package shadow

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkAdd measures one sample of a promoted student at a steady 0.98
// agreement, its confidence spread over the grid of thresholds.
func BenchmarkAdd(b *testing.B) {
	tr := NewTracker(Gate{}, 0)
	r := rand.New(rand.NewPCG(1, 1))
	for range 2000 {
		tr.Add(Sample{Confidence: 0.5 + r.Float64()/2, Uniform: true, Agree: r.Float64() < 0.98, Teacher: "a", Student: "b"})
	}
	tr.MarkPromoted()
	b.ReportAllocs()
	for b.Loop() {
		tr.Add(Sample{Confidence: 0.5 + r.Float64()/2, Uniform: true, Agree: r.Float64() < 0.98, Teacher: "a", Student: "b"})
	}
}

func BenchmarkSnapshotRestore(b *testing.B) {
	tr := NewTracker(Gate{}, 0)
	r := rand.New(rand.NewPCG(1, 1))
	for range 2000 {
		tr.Add(Sample{Confidence: 0.5 + r.Float64()/2, Uniform: true, Agree: r.Float64() < 0.98, Teacher: "a", Student: "b"})
	}
	b.ReportAllocs()
	for b.Loop() {
		snap, err := tr.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := RestoreTracker(Gate{}, snap); err != nil {
			b.Fatal(err)
		}
	}
}
