package shadow

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkAdd measures one confident sample at a steady 0.98 agreement.
func BenchmarkAdd(b *testing.B) {
	tr := NewTracker(Gate{})
	r := rand.New(rand.NewPCG(1, 1))
	for range 2000 {
		tr.Add(Sample{Confident: true, Agree: r.Float64() < 0.98, Teacher: "a", Student: "b"})
	}
	tr.MarkPromoted()
	b.ReportAllocs()
	for b.Loop() {
		tr.Add(Sample{Confident: true, Agree: r.Float64() < 0.98, Teacher: "a", Student: "b"})
	}
}

func BenchmarkSnapshotRestore(b *testing.B) {
	tr := NewTracker(Gate{})
	r := rand.New(rand.NewPCG(1, 1))
	for range 2000 {
		tr.Add(Sample{Confident: true, Agree: r.Float64() < 0.98, Teacher: "a", Student: "b"})
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
