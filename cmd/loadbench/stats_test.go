package main

import (
	"maps"
	"math"
	"testing"
	"time"
)

const exposition = `# HELP understudy_gateway_overhead_seconds Gateway time.
# TYPE understudy_gateway_overhead_seconds histogram
understudy_gateway_overhead_seconds_bucket{endpoint="chat_completions",le="0.002"} 20
understudy_gateway_overhead_seconds_bucket{endpoint="chat_completions",le="0.001"} 10
understudy_gateway_overhead_seconds_bucket{endpoint="chat_completions",le="+Inf"} 30
understudy_gateway_overhead_seconds_sum{endpoint="chat_completions"} 0.05
understudy_gateway_overhead_seconds_count{endpoint="chat_completions"} 30
understudy_gateway_overhead_seconds_bucket{endpoint="embeddings",le="0.001"} 7
understudy_gateway_overhead_seconds_bucket{endpoint="embeddings",le="0.002"} 7
understudy_gateway_overhead_seconds_bucket{endpoint="embeddings",le="+Inf"} 7
`

func TestParseHistogram(t *testing.T) {
	h, err := parseHistogram([]byte(exposition), overheadMetric, overheadLabel)
	if err != nil {
		t.Fatal(err)
	}
	wantBounds, wantCounts := []float64{0.001, 0.002, math.Inf(1)}, []float64{10, 20, 30}
	for i := range wantBounds {
		if h.Bounds[i] != wantBounds[i] || h.Counts[i] != wantCounts[i] {
			t.Fatalf("got bounds %v counts %v, want %v %v", h.Bounds, h.Counts, wantBounds, wantCounts)
		}
	}
	if h.Sum != 0.05 || h.count() != 30 {
		t.Errorf("got sum %g count %g, want 0.05 30", h.Sum, h.count())
	}
	empty, err := parseHistogram([]byte("# nothing yet\n"), overheadMetric, overheadLabel)
	if err != nil || empty.count() != 0 {
		t.Errorf("no series: got %+v, %v; want an empty histogram", empty, err)
	}
}

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	before := histogram{Bounds: []float64{0.001, 0.002, inf}, Counts: []float64{5, 5, 5}}
	after := histogram{Bounds: []float64{0.001, 0.002, inf}, Counts: []float64{15, 25, 25}}
	delta, err := after.sub(before) // 10 in (0, 1ms], 10 in (1ms, 2ms]
	if err != nil {
		t.Fatal(err)
	}
	withInf := histogram{Bounds: []float64{0.001, 0.002, inf}, Counts: []float64{10, 20, 30}}
	tests := []struct {
		name string
		h    histogram
		q    float64
		want float64
	}{
		{"first bucket interpolates from zero", delta, 0.25, 0.0005},
		{"upper edge of first bucket", delta, 0.5, 0.001},
		{"second bucket", delta, 0.75, 0.0015},
		{"rank in +Inf returns the highest finite bound", withInf, 0.99, 0.002},
		{"empty", histogram{Bounds: []float64{0.001, inf}, Counts: []float64{0, 0}}, 0.5, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.h.quantile(tt.q)
			if math.IsNaN(tt.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("quantile(%g) = %g, want %g", tt.q, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	lat := make([]time.Duration, 1000)
	for i := range lat {
		lat[len(lat)-1-i] = time.Duration(i+1) * time.Microsecond // 1..1000 µs, reversed
	}
	s := summarize(lat)
	if s.N != 1000 || s.P50 != 500 || s.P99 != 990 || s.P999 != 999 || s.Max != 1000 {
		t.Errorf("got %+v, want n 1000, p50 500, p99 990, p99.9 999, max 1000", s)
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median = %g, want 2.5", m)
	}
}

func TestParseSamples(t *testing.T) {
	const text = `# HELP understudy_storage_pairs_logged_total Pairs written.
# TYPE understudy_storage_pairs_logged_total counter
understudy_storage_pairs_logged_total 24001
understudy_storage_pairs_logged_total_extra 5
understudy_storage_pairs_dropped_total{reason="closed"} 0
understudy_storage_pairs_dropped_total{reason="queue_full"} 12
understudy_storage_queue_length 3
`
	tests := []struct {
		name string
		want map[string]float64
	}{
		{pairsLoggedMetric, map[string]float64{"": 24001}},
		{pairsDroppedMetric, map[string]float64{`reason="closed"`: 0, `reason="queue_full"`: 12}},
		{queueLengthMetric, map[string]float64{"": 3}},
		{"understudy_absent", map[string]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSamples([]byte(text), tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := parseSamples([]byte("understudy_storage_queue_length x\n"), queueLengthMetric); err == nil {
		t.Error("bad value: no error")
	}
}
