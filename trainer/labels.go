package trainer

import (
	"fmt"
	"sort"
)

// LabelRule decides whether a domain's answers form a closed label space.
type LabelRule struct {
	// MinCount is how often a label must be seen to join the space.
	// Default 3.
	MinCount int
	// MinCoverage is the share of pairs the space must cover. Default 0.9.
	MinCoverage float64
	// MaxLabels caps the space. Default 512.
	MaxLabels int
}

// DefaultLabelRule is the distillability rule the README states (How it
// works, Students): labels seen at least 3 times cover at least 90% of the
// domain's pairs, and there are at most 512 of them.
func DefaultLabelRule() LabelRule { return LabelRule{MinCount: 3, MinCoverage: 0.9, MaxLabels: 512} }

// LabelSpace is the set of classes a student of a domain chooses from.
type LabelSpace struct {
	// Labels are the classes, most frequent first (ties by label).
	Labels []string
	// Surface[i] is the most frequent raw answer of Labels[i].
	Surface []string
	// Counts[i] is how many pairs carry Labels[i].
	Counts []int
	// Coverage is the share of pairs whose label is in the space.
	Coverage float64
	// OpenEnded is set when the rule fails; Reason says how.
	OpenEnded bool
	Reason    string
}

// Index returns a label's class, or -1.
func (s *LabelSpace) Index(label string) int {
	for i, l := range s.Labels {
		if l == label {
			return i
		}
	}
	return -1
}

// BuildLabelSpace applies the rule to labelled examples.
func BuildLabelSpace(examples []Example, rule LabelRule) LabelSpace {
	type stat struct {
		n       int
		answers map[string]int
	}
	stats := map[string]*stat{}
	for _, e := range examples {
		s := stats[e.Label]
		if s == nil {
			s = &stat{answers: map[string]int{}}
			stats[e.Label] = s
		}
		s.n++
		s.answers[e.Answer]++
	}
	var space LabelSpace
	type lc struct {
		label string
		n     int
	}
	var all []lc
	for l, s := range stats {
		all = append(all, lc{l, s.n})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].label < all[j].label
	})
	covered := 0
	for _, c := range all {
		if c.n < rule.MinCount || len(space.Labels) == rule.MaxLabels {
			break
		}
		space.Labels = append(space.Labels, c.label)
		space.Counts = append(space.Counts, c.n)
		space.Surface = append(space.Surface, mostFrequent(stats[c.label].answers))
		covered += c.n
	}
	if len(examples) > 0 {
		space.Coverage = float64(covered) / float64(len(examples))
	}
	switch {
	case len(examples) == 0:
		space.OpenEnded, space.Reason = true, "no pairs"
	case space.Coverage < rule.MinCoverage:
		space.OpenEnded = true
		space.Reason = fmt.Sprintf("answers are open-ended: %d distinct answers in %d pairs; labels seen at least %d times cover %.0f%% of pairs (need %.0f%%)",
			len(all), len(examples), rule.MinCount, 100*space.Coverage, 100*rule.MinCoverage)
	case len(space.Labels) < 2:
		space.OpenEnded = true
		space.Reason = fmt.Sprintf("the teacher gave one answer (%q) to every pair: nothing to learn", space.Surface[0])
	}
	return space
}

func mostFrequent(m map[string]int) string {
	best, bn := "", -1
	for s, n := range m {
		if n > bn || (n == bn && s < best) {
			best, bn = s, n
		}
	}
	return best
}
