package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
)

// latencySummary holds percentiles in microseconds.
type latencySummary struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// summarize sorts lat in place and returns its percentiles (nearest rank).
func summarize(lat []time.Duration) latencySummary {
	if len(lat) == 0 {
		return latencySummary{}
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	pct := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(lat)))) - 1
		return us(lat[max(0, min(i, len(lat)-1))])
	}
	return latencySummary{
		N: len(lat), Mean: us(sum / time.Duration(len(lat))),
		P50: pct(.50), P90: pct(.90), P99: pct(.99), P999: pct(.999), Max: us(lat[len(lat)-1]),
	}
}

// median returns the median of xs, NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// histogram is one series of a Prometheus histogram: cumulative bucket
// counts by upper bound, ascending, the last bound +Inf.
type histogram struct {
	Bounds []float64
	Counts []float64
	Sum    float64
}

// MarshalJSON writes the buckets with le as a string, as Prometheus does,
// since JSON has no +Inf.
func (h histogram) MarshalJSON() ([]byte, error) {
	type bucket struct {
		LE    string  `json:"le"`
		Count float64 `json:"count"`
	}
	bs := make([]bucket, len(h.Bounds))
	for i, b := range h.Bounds {
		bs[i] = bucket{LE: strconv.FormatFloat(b, 'g', -1, 64), Count: h.Counts[i]}
	}
	return json.Marshal(struct {
		Buckets []bucket `json:"buckets"`
		Sum     float64  `json:"sum"`
	}{bs, h.Sum})
}

// number is a float64 that is written to JSON as null when it is NaN.
type number float64

func (n number) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(n))
}

// count is the number of observations.
func (h histogram) count() float64 {
	if len(h.Counts) == 0 {
		return 0
	}
	return h.Counts[len(h.Counts)-1]
}

// parseHistogram finds the series of histogram name whose labels include
// label (`key="value"`) in Prometheus text exposition format. A histogram
// that has no such series yet is empty, not an error.
func parseHistogram(text []byte, name, label string) (histogram, error) {
	var h histogram
	bucket, sum := []byte(name+"_bucket{"), []byte(name+"_sum{")
	for line := range bytes.SplitSeq(text, []byte{'\n'}) {
		isBucket := bytes.HasPrefix(line, bucket)
		if !isBucket && !bytes.HasPrefix(line, sum) || !bytes.Contains(line, []byte(label)) {
			continue
		}
		end := bytes.LastIndexByte(line, '}')
		fields := bytes.Fields(line[end+1:])
		if end < 0 || len(fields) == 0 {
			return histogram{}, fmt.Errorf("parsing %s: bad line %q", name, line)
		}
		v, err := strconv.ParseFloat(string(fields[0]), 64)
		if err != nil {
			return histogram{}, fmt.Errorf("parsing %s: %w", name, err)
		}
		if !isBucket {
			h.Sum = v
			continue
		}
		_, le, ok := bytes.Cut(line[:end], []byte(`le="`))
		le, _, _ = bytes.Cut(le, []byte{'"'})
		bound, err := strconv.ParseFloat(string(le), 64)
		if !ok || err != nil {
			return histogram{}, fmt.Errorf("parsing %s: bad le in %q", name, line)
		}
		h.Bounds = append(h.Bounds, bound)
		h.Counts = append(h.Counts, v)
	}
	sort.Sort(byBound(h))
	if n := len(h.Bounds); n > 0 && !math.IsInf(h.Bounds[n-1], 1) {
		return histogram{}, fmt.Errorf("parsing %s: no +Inf bucket", name)
	}
	return h, nil
}

type byBound histogram

func (b byBound) Len() int           { return len(b.Bounds) }
func (b byBound) Less(i, j int) bool { return b.Bounds[i] < b.Bounds[j] }
func (b byBound) Swap(i, j int) {
	b.Bounds[i], b.Bounds[j] = b.Bounds[j], b.Bounds[i]
	b.Counts[i], b.Counts[j] = b.Counts[j], b.Counts[i]
}

// sub returns the observations made between before and h, bucket by
// bucket. An empty before counts as zero.
func (h histogram) sub(before histogram) (histogram, error) {
	d := histogram{Bounds: slices.Clone(h.Bounds), Counts: slices.Clone(h.Counts), Sum: h.Sum - before.Sum}
	if len(before.Bounds) == 0 {
		return d, nil
	}
	if !slices.Equal(h.Bounds, before.Bounds) {
		return histogram{}, fmt.Errorf("subtracting histograms: buckets changed between scrapes")
	}
	for i := range d.Counts {
		d.Counts[i] -= before.Counts[i]
	}
	return d, nil
}

// quantile estimates the q-quantile like Prometheus's histogram_quantile:
// find the bucket holding rank q·count and interpolate linearly within it
// (from 0 in the first bucket); a rank in the +Inf bucket returns the
// highest finite bound. NaN for an empty histogram.
func (h histogram) quantile(q float64) float64 {
	n := len(h.Counts)
	if n < 2 || h.count() == 0 {
		return math.NaN()
	}
	rank := q * h.count()
	b := sort.SearchFloat64s(h.Counts, rank)
	if b >= n-1 {
		return h.Bounds[n-2]
	}
	if b == 0 && h.Bounds[0] <= 0 {
		return h.Bounds[0]
	}
	start, prev := 0.0, 0.0
	if b > 0 {
		start, prev = h.Bounds[b-1], h.Counts[b-1]
	}
	return start + (h.Bounds[b]-start)*(rank-prev)/(h.Counts[b]-prev)
}

// parseSamples reads every sample of the counter or gauge name in
// Prometheus text exposition format, keyed by its label set as written
// between the braces ("" for none). A metric without samples gives an
// empty map.
func parseSamples(text []byte, name string) (map[string]float64, error) {
	out := map[string]float64{}
	for line := range bytes.SplitSeq(text, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte(name))
		if !ok || len(rest) == 0 || rest[0] != '{' && rest[0] != ' ' {
			continue
		}
		var labels []byte
		if rest[0] == '{' {
			end := bytes.LastIndexByte(rest, '}')
			if end < 0 {
				return nil, fmt.Errorf("parsing %s: bad line %q", name, line)
			}
			labels, rest = rest[1:end], rest[end+1:]
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("parsing %s: bad line %q", name, line)
		}
		v, err := strconv.ParseFloat(string(fields[0]), 64)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", name, err)
		}
		out[string(labels)] = v
	}
	return out, nil
}
