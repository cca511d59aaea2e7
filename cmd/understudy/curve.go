package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/understudy-dev/understudy/student"
	"github.com/understudy-dev/understudy/trainer"
)

// curveTestFraction of a shuffled data set is the learning curve's test
// set; training prefixes come from the rest.
const curveTestFraction = 0.2

// curvePoint is one size of a learning curve, averaged over its seeds.
type curvePoint struct {
	Pairs           int     `json:"pairs"`
	HoldoutAccuracy float64 `json:"holdout_accuracy"`
	TestAccuracy    float64 `json:"test_accuracy"`
	Tau             float64 `json:"tau"`
	// CoverageAtTau and SelectiveAtTau are the test set's share of inputs
	// at or above the trained τ and the agreement on them.
	CoverageAtTau  float64 `json:"coverage_at_tau"`
	SelectiveAtTau float64 `json:"selective_agreement_at_tau"`
	// OracleCoverage is the largest test coverage whose selective
	// agreement reaches the target, with the threshold chosen on the test
	// set itself: what τ could give at best.
	OracleCoverage float64 `json:"oracle_coverage"`
	Epochs         float64 `json:"epochs"`
	TrainSeconds   float64 `json:"train_seconds"`
	Seeds          int     `json:"seeds"`
	selN           int     // seeds whose τ covered some test input
}

// parseSizes reads a --curve list: increasing positive pair counts.
func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--curve: want positive pair counts separated by commas, got %q", s)
		}
		if len(sizes) > 0 && n <= sizes[len(sizes)-1] {
			return nil, fmt.Errorf("--curve: sizes must increase, got %q", s)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// learningCurve trains, for each seed, on the first n pairs of the data
// shuffled by that seed, for each n of sizes, and measures each student on
// the last curveTestFraction of the shuffle, which no student trains on.
// Sizes beyond the pairs left for training become one point with all of
// them. Seed k shuffles with k and trains with Seed k.
func learningCurve(ctx context.Context, examples []trainer.Example, sizes []int, seeds int, opts trainer.Options) ([]curvePoint, error) {
	nTest := int(math.Round(curveTestFraction * float64(len(examples))))
	pool := len(examples) - nTest
	if nTest < 1 || pool < 2 {
		return nil, fmt.Errorf("learning curve: %d pairs are too few", len(examples))
	}
	var ns []int
	for _, n := range sizes {
		n = min(n, pool)
		if len(ns) == 0 || ns[len(ns)-1] < n {
			ns = append(ns, n)
		}
	}
	points := make([]curvePoint, len(ns))
	for seed := 1; seed <= seeds; seed++ {
		shuffled := append([]trainer.Example(nil), examples...)
		rng := rand.New(rand.NewPCG(uint64(seed), 0xc0ffee))
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		test := shuffled[pool:]
		for i, n := range ns {
			o := opts
			o.Seed = uint64(seed)
			a, err := trainer.Train(ctx, shuffled[:n], o)
			if err != nil {
				return nil, fmt.Errorf("training on %d pairs (seed %d): %w", n, seed, err)
			}
			r, err := evaluate(a, test, opts.Target, opts.Threads)
			if err != nil {
				return nil, err
			}
			p := &points[i]
			p.Pairs, p.Seeds = n, seeds
			p.HoldoutAccuracy += a.Metrics.HoldoutAccuracy / float64(seeds)
			p.TestAccuracy += r.accuracy / float64(seeds)
			p.Tau += math.Min(a.Tau, 1) / float64(seeds)
			p.CoverageAtTau += r.coverage / float64(seeds)
			if r.coverage > 0 {
				p.SelectiveAtTau, p.selN = p.SelectiveAtTau+r.selective, p.selN+1
			}
			p.OracleCoverage += r.oracle / float64(seeds)
			p.Epochs += float64(a.Metrics.Epochs) / float64(seeds)
			p.TrainSeconds += a.Metrics.TrainSeconds / float64(seeds)
		}
	}
	for i := range points {
		if points[i].selN > 0 {
			points[i].SelectiveAtTau /= float64(points[i].selN)
		}
	}
	return points, nil
}

// testResult is a student's measurements on a test set.
type testResult struct {
	accuracy, coverage, selective, oracle float64
}

// evaluate predicts the test set as serving would and measures accuracy,
// coverage and selective agreement at the artifact's τ, and the oracle
// coverage at target.
func evaluate(a *student.Artifact, test []trainer.Example, target float64, threads int) (testResult, error) {
	m, err := student.Load(a, threads)
	if err != nil {
		return testResult{}, err
	}
	defer m.Close()
	type scored struct {
		conf  float64
		right bool
	}
	s := make([]scored, 0, len(test))
	const chunk = 256
	for start := 0; start < len(test); start += chunk {
		part := test[start:min(start+chunk, len(test))]
		texts := make([]string, len(part))
		for i, e := range part {
			texts[i] = e.Text
		}
		preds, err := m.PredictBatch(texts)
		if err != nil {
			return testResult{}, err
		}
		for i, p := range preds {
			s = append(s, scored{p.Confidence, p.Label == part[i].Label})
		}
	}
	var r testResult
	right, covered, coveredRight := 0, 0, 0
	for _, x := range s {
		if x.right {
			right++
		}
		if x.conf >= a.Tau {
			covered++
			if x.right {
				coveredRight++
			}
		}
	}
	n := float64(len(s))
	r.accuracy, r.coverage = float64(right)/n, float64(covered)/n
	if covered > 0 { // otherwise undefined; learningCurve leaves it out
		r.selective = float64(coveredRight) / float64(covered)
	}
	sort.Slice(s, func(i, j int) bool { return s[i].conf > s[j].conf })
	right = 0
	for i, x := range s {
		if x.right {
			right++
		}
		if i+1 < len(s) && s[i+1].conf == x.conf {
			continue // a threshold takes all ties
		}
		if float64(right) >= target*float64(i+1) {
			r.oracle = float64(i+1) / n
		}
	}
	return r, nil
}

// printCurve writes the learning curve as a table, or as JSON.
func printCurve(w io.Writer, points []curvePoint, target float64, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(points)
	}
	seeds := 1
	if len(points) > 0 {
		seeds = points[0].Seeds
	}
	fmt.Fprintf(w, "learning curve: test set %.0f%% of the pairs; target selective agreement %.2f; mean of %d seed(s)\n",
		100*curveTestFraction, target, seeds)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pairs\tholdout acc\ttest acc\tτ\tcoverage at τ\tsel. agreement at τ\toracle coverage\tepochs\ttrain s\t")
	for _, p := range points {
		fmt.Fprintf(tw, "%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f\t%.1f\t\n", p.Pairs, p.HoldoutAccuracy, p.TestAccuracy,
			p.Tau, p.CoverageAtTau, p.SelectiveAtTau, p.OracleCoverage, p.Epochs, p.TrainSeconds)
	}
	return tw.Flush()
}
