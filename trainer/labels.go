package trainer

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/understudy-dev/understudy/student"
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
//
// A plain domain's classes are its labels. A structured domain's (its
// answers are JSON records, see student.Record) are its fields' values: one
// head per field of the records' stable key set, in Order, each with its
// own closed set of values (a tags field: of tags); Labels and Surface are
// the heads' classes one after the other, as student.Artifact lays them
// out.
type LabelSpace struct {
	// Labels are the classes, most frequent first (ties by label); a
	// structured domain's are normalized field values as JSON, head by
	// head, a tags head's sorted.
	Labels []string
	// Surface[i] is the most frequent raw answer of Labels[i]; of a field
	// value, its most frequent raw JSON.
	Surface []string
	// Counts[i] is how many pairs carry Labels[i] (a tag: how many pairs
	// hold it).
	Counts []int
	// Coverage is the share of pairs whose label is in the space; of a
	// structured domain, of pairs with the stable key set and every field's
	// value (every tag) in its head.
	Coverage float64
	// OpenEnded is set when the rule fails; Reason says how.
	OpenEnded bool
	Reason    string
	// Heads and Order, for a structured domain, are the student's heads
	// and the key order it renders records in: the most frequent among
	// the pairs in the space. Both are nil for a plain domain.
	Heads []student.Head
	Order []string
	// classOf[h] maps head h's values (tags) to their classes.
	classOf []map[string]int
}

// Index returns a label's class, or -1. (A structured domain's value may
// be the class of several heads: Index finds the first.)
func (s *LabelSpace) Index(label string) int {
	for i, l := range s.Labels {
		if l == label {
			return i
		}
	}
	return -1
}

// BuildLabelSpace applies the rule to labelled examples. When at least
// rule.MinCoverage of their answers are JSON records (norm.Record; norm
// must be the Normalizer that labelled them), the domain is structured and
// the rule applies field by field (see buildRecordSpace); otherwise to the
// labels.
func BuildLabelSpace(examples []Example, rule LabelRule, norm student.Normalizer) LabelSpace {
	space, _ := buildLabelSpace(examples, rule, norm)
	return space
}

// buildLabelSpace is BuildLabelSpace that also returns the examples read
// as records, for a structured domain (recs[i] is nil where examples[i] is
// not one).
func buildLabelSpace(examples []Example, rule LabelRule, norm student.Normalizer) (LabelSpace, []*student.Record) {
	recs := make([]*student.Record, len(examples))
	n := 0
	for i, e := range examples {
		if r, ok := norm.Record(e.Answer); ok {
			recs[i] = &r
			n++
		}
	}
	if n == 0 || float64(n) < rule.MinCoverage*float64(len(examples)) {
		return buildPlainSpace(examples, rule), nil
	}
	return buildRecordSpace(recs, rule), recs
}

// buildPlainSpace applies the rule to the examples' labels.
func buildPlainSpace(examples []Example, rule LabelRule) LabelSpace {
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
	counts := make(map[string]int, len(stats))
	for l, s := range stats {
		counts[l] = s.n
	}
	kept, covered := closedSet(counts, rule)
	for _, l := range kept {
		space.Labels = append(space.Labels, l)
		space.Counts = append(space.Counts, counts[l])
		space.Surface = append(space.Surface, mostFrequent(stats[l].answers))
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
			len(stats), len(examples), rule.MinCount, 100*space.Coverage, 100*rule.MinCoverage)
	case len(space.Labels) < 2:
		space.OpenEnded = true
		space.Reason = fmt.Sprintf("the teacher gave one answer (%q) to every pair: nothing to learn", space.Surface[0])
	}
	return space
}

// closedSet applies the rule to counts: the values seen at least MinCount
// times, most frequent first (ties by value), at most MaxLabels of them,
// and how many of the counted occurrences they cover.
func closedSet(counts map[string]int, rule LabelRule) (kept []string, covered int) {
	all := make([]string, 0, len(counts))
	for v := range counts {
		all = append(all, v)
	}
	sort.Slice(all, func(i, j int) bool {
		if a, b := counts[all[i]], counts[all[j]]; a != b {
			return a > b
		}
		return all[i] < all[j]
	})
	for _, v := range all {
		if counts[v] < rule.MinCount || len(kept) == rule.MaxLabels {
			break
		}
		kept = append(kept, v)
		covered += counts[v]
	}
	return kept, covered
}

// fieldStat is what the records of the stable key set hold in one field.
type fieldStat struct {
	tags int // records in which the field is an array of scalars
	// values counts each normalized value (of a tags field, each tag) and
	// its raw forms.
	values map[string]map[string]int
	n      int // values counted: records, or tag occurrences
}

func (f *fieldStat) add(value, raw string) {
	raws := f.values[value]
	if raws == nil {
		raws = map[string]int{}
		f.values[value] = raws
	}
	raws[raw]++
	f.n++
}

// buildRecordSpace applies the rule to records (nil: not a record) field by
// field:
//
//   - The stable key set is the most frequent set of paths; it must be the
//     set of at least MinCoverage of all examples. The others are outside
//     the space.
//   - Each of its fields is a head. A field that is an array of scalars in
//     most records is a tags head: its classes are tags, a sigmoid each;
//     any other field a softmax head over its normalized values. Each head
//     must pass the rule on its own (values, or tag occurrences, seen at
//     least MinCount times cover at least MinCoverage of them, at most
//     MaxLabels classes), or the domain is open-ended, the reason naming
//     the field. A field with one value is a one-class head.
//   - A record is in the space when it has the stable key set and every
//     field's value (every tag) is in its head; those must be at least
//     MinCoverage of all examples, and hold at least two distinct records.
//   - Order is the most frequent key order among the records in the space;
//     the heads follow it.
func buildRecordSpace(recs []*student.Record, rule LabelRule) LabelSpace {
	var space LabelSpace
	sets := map[string]int{}
	keys := make([]string, len(recs))
	for i, r := range recs {
		if r != nil {
			paths := r.Paths()
			sort.Strings(paths)
			keys[i] = quoteAll(paths)
			sets[keys[i]]++
		}
	}
	stable, covered := closedSet(sets, LabelRule{MaxLabels: 1})
	if float64(covered) < rule.MinCoverage*float64(len(recs)) {
		space.OpenEnded = true
		space.Reason = fmt.Sprintf("answers are JSON objects without a stable set of keys: the most frequent, {%s}, is that of %.0f%% of pairs (need %.0f%%)",
			strings.Join(unquoteAll(stable[0]), ", "), 100*float64(covered)/float64(len(recs)), 100*rule.MinCoverage)
		return space
	}
	fields := map[string]*fieldStat{}
	var inSet []*student.Record
	for i, r := range recs {
		if keys[i] != stable[0] {
			continue
		}
		inSet = append(inSet, r)
		for _, f := range r.Fields {
			st := fields[f.Path]
			if st == nil {
				st = &fieldStat{values: map[string]map[string]int{}}
				fields[f.Path] = st
			}
			if f.IsTags {
				st.tags++
			}
		}
	}
	// Each field's values (tags), counted in the records where the field is
	// of its head's kind: an array of scalars for a tags head, where most
	// records have one, anything else for a softmax head.
	for _, r := range inSet {
		for _, f := range r.Fields {
			st := fields[f.Path]
			switch tags := 2*st.tags > len(inSet); {
			case tags && f.IsTags:
				for j, t := range f.Tags {
					st.add(t, f.RawTags[j])
				}
			case !tags && !f.IsTags:
				st.add(f.Value, f.Raw)
			}
		}
	}
	// The heads, checked in the most frequent key order of the whole set
	// (the order of the space's records is only known once the heads are).
	order := mostFrequentOrder(inSet)
	classOf := make([]map[string]int, len(order))
	for h, path := range order {
		st := fields[path]
		isTags := 2*st.tags > len(inSet)
		counts := make(map[string]int, len(st.values))
		for v, raws := range st.values {
			for _, n := range raws {
				counts[v] += n
			}
		}
		kept, covered := closedSet(counts, rule)
		// A softmax head's values cover a share of all the records of the
		// set (those where the field is an array of scalars count as not
		// covered), a tags head's tags one of the tags of its records.
		total := st.n
		if !isTags {
			total = len(inSet)
		}
		if total > 0 && float64(covered) < rule.MinCoverage*float64(total) {
			space.OpenEnded = true
			what := "values"
			if isTags {
				what = "tags"
			}
			space.Reason = fmt.Sprintf("field %q is open-ended: %d distinct %s in %d pairs; %s seen at least %d times cover %.0f%% of %s (need %.0f%%)",
				path, len(counts), what, len(inSet), what, rule.MinCount, 100*float64(covered)/float64(total), ofWhat(isTags), 100*rule.MinCoverage)
			return space
		}
		if isTags {
			sort.Strings(kept) // a tags head answers its tags sorted, as records hold them
		}
		head := student.Head{Path: path, Tags: isTags, Start: len(space.Labels)}
		classOf[h] = make(map[string]int, len(kept))
		for _, v := range kept {
			classOf[h][v] = len(space.Labels)
			space.Labels = append(space.Labels, v)
			space.Surface = append(space.Surface, mostFrequent(st.values[v]))
			space.Counts = append(space.Counts, counts[v])
		}
		head.End = len(space.Labels)
		space.Heads = append(space.Heads, head)
	}
	space.classOf = classOf
	var in []*student.Record
	distinct := map[string]bool{}
	for _, r := range inSet {
		if _, ok := space.encode(r); ok {
			in = append(in, r)
			if len(distinct) < 2 {
				distinct[r.Label()] = true
			}
		}
	}
	space.Coverage = float64(len(in)) / float64(len(recs))
	if space.Coverage < rule.MinCoverage {
		space.OpenEnded = true
		space.Reason = fmt.Sprintf("answers are JSON objects whose fields' closed sets of values together cover %.0f%% of pairs (need %.0f%%)",
			100*space.Coverage, 100*rule.MinCoverage)
		return space
	}
	space.Order = mostFrequentOrder(in)
	space.orderHeads()
	if len(distinct) < 2 {
		space.OpenEnded = true
		space.Reason = fmt.Sprintf("the teacher gave one answer (%s) to every pair: nothing to learn", space.render(in[0]))
	}
	return space
}

func ofWhat(tags bool) string {
	if tags {
		return "their occurrences"
	}
	return "pairs"
}

// orderHeads lays the heads and their classes out in Order, which may
// differ from the order they were built in.
func (s *LabelSpace) orderHeads() {
	at := make(map[string]int, len(s.Heads))
	for h, head := range s.Heads {
		at[head.Path] = h
	}
	var labels, surface []string
	var counts []int
	heads := make([]student.Head, 0, len(s.Heads))
	classOf := make([]map[string]int, 0, len(s.Heads))
	for _, path := range s.Order {
		h := s.Heads[at[path]]
		shift := len(labels) - h.Start
		labels = append(labels, s.Labels[h.Start:h.End]...)
		surface = append(surface, s.Surface[h.Start:h.End]...)
		counts = append(counts, s.Counts[h.Start:h.End]...)
		m := s.classOf[at[path]]
		for v, c := range m {
			m[v] = c + shift
		}
		h.Start, h.End = h.Start+shift, h.End+shift
		heads = append(heads, h)
		classOf = append(classOf, m)
	}
	s.Labels, s.Surface, s.Counts, s.Heads, s.classOf = labels, surface, counts, heads, classOf
}

// encode returns the classes a record sets (see Stepper.Step: one per
// softmax head, the present tags of a tags head); ok is false when the
// record is outside the space. The space must be structured.
func (s *LabelSpace) encode(r *student.Record) (targets []int32, ok bool) {
	if len(r.Fields) != len(s.Heads) {
		return nil, false
	}
	targets = make([]int32, 0, len(r.Fields)) // not nil: see sample
	for _, f := range r.Fields {
		h := s.headOf(f.Path)
		if h < 0 || f.IsTags != s.Heads[h].Tags {
			return nil, false
		}
		if !f.IsTags {
			c, ok := s.classOf[h][f.Value]
			if !ok {
				return nil, false
			}
			targets = append(targets, int32(c))
			continue
		}
		for _, t := range f.Tags {
			c, ok := s.classOf[h][t]
			if !ok {
				return nil, false
			}
			targets = append(targets, int32(c))
		}
	}
	return targets, true
}

// headOf returns the head of a path, or -1.
func (s *LabelSpace) headOf(path string) int {
	for h, head := range s.Heads {
		if head.Path == path {
			return h
		}
	}
	return -1
}

// render writes a record in the space as the student would answer it: in
// Order, each value's surface form.
func (s *LabelSpace) render(r *student.Record) string {
	targets, _ := s.encode(r)
	values := make([]string, len(s.Heads))
	for h, head := range s.Heads {
		var tags []string
		for _, c := range targets {
			if int(c) >= head.Start && int(c) < head.End {
				if !head.Tags {
					values[h] = s.Surface[c]
				}
				tags = append(tags, s.Surface[c])
			}
		}
		if head.Tags { // encode gives them in the record's order: sorted, as the head's classes
			values[h] = "[" + strings.Join(tags, ",") + "]"
		}
	}
	return student.RenderRecord(s.Order, values)
}

// mostFrequentOrder returns the most frequent key order of recs (ties by
// the order's paths).
func mostFrequentOrder(recs []*student.Record) []string {
	orders := map[string]int{}
	for _, r := range recs {
		orders[quoteAll(r.Paths())]++
	}
	top, _ := closedSet(orders, LabelRule{MaxLabels: 1})
	return unquoteAll(top[0])
}

// quoteAll joins paths into one string that unquoteAll splits again.
func quoteAll(paths []string) string {
	var b []byte
	for i, p := range paths {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, p)
	}
	return string(b)
}

func unquoteAll(s string) []string {
	var out []string
	for s != "" {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			break
		}
		p, _ := strconv.Unquote(q)
		out = append(out, p)
		s = strings.TrimPrefix(s[len(q):], ",")
	}
	return out
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
