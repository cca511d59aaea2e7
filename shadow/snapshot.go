package shadow

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
)

// snapshotVersion is written in every snapshot. Version 3 holds one test
// per threshold τ; RestoreTracker refuses the single-τ versions before it
// (the router then starts a fresh tracker: an upgrade restarts the
// evidence of the versions being scored).
const snapshotVersion = 3

// snapshot is the JSON form of a Tracker.
type snapshot struct {
	Version    int                 `json:"version"`
	Threshold  float64             `json:"threshold"`
	Samples    int64               `json:"samples"`
	Agree      int64               `json:"agree"`
	Uniform    int64               `json:"uniform"`
	Backtest   int64               `json:"backtest"`
	Use        int                 `json:"use"`    // index in Levels of the τ in use; -1 if none
	Recent     []uint16            `json:"recent"` // oldest first
	Confusions []snapshotConfusion `json:"confusions"`
	Promoted   bool                `json:"promoted"`
	Grid       []float64           `json:"grid"` // the bounds' grid, shared by every level
	Levels     []snapshotLevel     `json:"levels"`
	// Fields are the per-field counts, in the order first seen; absent
	// from snapshots taken before they existed (and read as none).
	Fields []snapshotField `json:"fields,omitempty"`
}

// snapshotField is one field's counts (fieldCount).
type snapshotField struct {
	Path      string `json:"path"`
	Samples   int64  `json:"samples"`
	Confident int64  `json:"confident"`
	Agree     int64  `json:"agree"`
}

type snapshotConfusion struct {
	Teacher string `json:"teacher"`
	Student string `json:"student"`
	Count   int64  `json:"count"`
}

// snapshotLevel is one threshold's tests: counts, the wealth of each side's
// martingale per grid value, and the demotion test.
type snapshotLevel struct {
	Tau    float64   `json:"tau"`
	N      int64     `json:"n"`
	S      int64     `json:"s"`
	Lower  []float64 `json:"lower"`
	Upper  []float64 `json:"upper"`
	LogE   float64   `json:"log_e"`
	Change float64   `json:"change"` // log(1 + R), see drift
}

// Snapshot returns the tracker's statistics and test states as JSON, for
// RestoreTracker.
func (t *Tracker) Snapshot() ([]byte, error) {
	t.mu.Lock()
	s := snapshot{
		Version:    snapshotVersion,
		Threshold:  t.gate.Threshold,
		Samples:    t.samples,
		Agree:      t.agree,
		Uniform:    t.uniform,
		Backtest:   t.backtest,
		Use:        t.use,
		Recent:     make([]uint16, 0, t.recentN),
		Confusions: make([]snapshotConfusion, 0, len(t.confusions)),
		Promoted:   t.promoted,
		Grid:       slices.Clone(t.levels[0].b.grid),
	}
	for _, l := range t.levels {
		s.Levels = append(s.Levels, snapshotLevel{Tau: l.tau, N: l.b.n, S: l.b.s,
			Lower: slices.Clone(l.b.lower), Upper: slices.Clone(l.b.upper), LogE: l.d.logE, Change: l.d.change})
	}
	for i := range t.recentN {
		s.Recent = append(s.Recent, t.recent[(t.next-t.recentN+i+RecentSize)%RecentSize])
	}
	for k, n := range t.confusions {
		s.Confusions = append(s.Confusions, snapshotConfusion{k.teacher, k.student, n})
	}
	for _, c := range t.fields {
		s.Fields = append(s.Fields, snapshotField{c.path, c.samples, c.confident, c.agree})
	}
	t.mu.Unlock()

	slices.SortFunc(s.Confusions, func(a, b snapshotConfusion) int {
		return compareConfusions(Confusion(a), Confusion(b))
	})
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding tracker snapshot: %w", err)
	}
	return b, nil
}

// RestoreTracker rebuilds a tracker from Snapshot's bytes under gate g.
//
// Under the gate the snapshot was taken with, the restored tracker behaves as
// the original would have. If g's threshold differs, the counts and every
// martingale of the bounds at a grid value both gates share are kept (they
// do not depend on the threshold), a martingale at the new threshold that
// was not on the old grid starts afresh, and so do the demotion tests and
// the τ in use. If g's confidence differs, the martingales are judged
// against the new 1/α from now on, which is still valid: a frozen one has
// bet nothing since it froze.
func RestoreTracker(g Gate, b []byte) (*Tracker, error) {
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("restoring tracker: %w", err)
	}
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decoding tracker snapshot: %w: %w", ErrInvalidSnapshot, err)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("checking tracker snapshot: %w: %w", ErrInvalidSnapshot, err)
	}
	t := NewTracker(g, StartIndex(s.Levels[0].Tau))
	if len(t.levels) != len(s.Levels) {
		return nil, fmt.Errorf("checking tracker snapshot: %w: %d thresholds from %v, want %d",
			ErrInvalidSnapshot, len(s.Levels), s.Levels[0].Tau, len(t.levels))
	}
	t.samples, t.agree, t.uniform, t.backtest = s.Samples, s.Agree, s.Uniform, s.Backtest
	for _, v := range s.Recent {
		t.recent[t.next] = v
		t.next = (t.next + 1) % RecentSize
		t.recentN = min(t.recentN+1, RecentSize)
	}
	for _, c := range s.Confusions {
		t.confusions[confusionKey{c.Teacher, c.Student}] = c.Count
	}
	for _, f := range s.Fields {
		if t.fieldIx == nil {
			t.fieldIx = map[string]int{}
		}
		t.fieldIx[f.Path] = len(t.fields)
		t.fields = append(t.fields, fieldCount{path: f.Path, samples: f.Samples, confident: f.Confident, agree: f.Agree})
	}
	t.promoted = s.Promoted
	same := s.Threshold == t.gate.Threshold
	for k := range t.levels {
		l, sl := &t.levels[k], &s.Levels[k]
		if sl.Tau != l.tau {
			return nil, fmt.Errorf("checking tracker snapshot: %w: threshold %v at %d, want %v", ErrInvalidSnapshot, sl.Tau, k, l.tau)
		}
		l.b.n, l.b.s = sl.N, sl.S
		for j, v := range l.b.grid {
			if i, ok := slices.BinarySearch(s.Grid, v); ok {
				l.b.lower[j], l.b.upper[j] = sl.Lower[i], sl.Upper[i]
			}
		}
		l.b.settle(t.reject)
		if same {
			l.d = drift{logE: sl.LogE, change: sl.Change}
		}
	}
	if same {
		t.use = s.Use
	} else if t.promoted {
		t.use = 0
	}
	return t, nil
}

// check reports the first inconsistency of a decoded snapshot.
func (s *snapshot) check() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case s.Version != snapshotVersion:
		return fmt.Errorf("version %d, want %d", s.Version, snapshotVersion)
	case s.Samples < 0 || s.Agree < 0 || s.Uniform < 0 || s.Backtest < 0:
		return fmt.Errorf("negative count")
	case s.Agree > s.Samples || s.Uniform > s.Samples || s.Backtest > s.Uniform:
		return fmt.Errorf("counts do not nest")
	case len(s.Recent) > RecentSize || int64(len(s.Recent)) > s.Samples:
		return fmt.Errorf("%d recent samples", len(s.Recent))
	case len(s.Confusions) > maxConfusionPairs:
		return fmt.Errorf("%d confusion pairs", len(s.Confusions))
	case len(s.Levels) == 0 || len(s.Levels) > len(Thresholds):
		return fmt.Errorf("%d thresholds", len(s.Levels))
	case s.Use < -1 || s.Use >= len(s.Levels) || s.Promoted && s.Use < 0:
		return fmt.Errorf("threshold in use %d of %d", s.Use, len(s.Levels))
	}
	for _, v := range s.Recent {
		if v&^recentAgree > 1000 {
			return fmt.Errorf("recent sample %d", v)
		}
	}
	for _, c := range s.Confusions {
		if c.Count <= 0 {
			return fmt.Errorf("confusion count %d", c.Count)
		}
	}
	if len(s.Fields) > MaxFields+1 {
		return fmt.Errorf("%d fields", len(s.Fields))
	}
	paths := make(map[string]bool, len(s.Fields))
	named := 0
	for _, f := range s.Fields {
		switch {
		case f.Path == "" || paths[f.Path]:
			return fmt.Errorf("field %q", f.Path)
		case f.Agree < 0 || f.Agree > f.Confident || f.Confident > f.Samples:
			return fmt.Errorf("field %q counts %d of %d of %d", f.Path, f.Agree, f.Confident, f.Samples)
		}
		paths[f.Path] = true
		if f.Path != OtherField {
			named++
		}
	}
	if named > MaxFields {
		return fmt.Errorf("%d named fields", named)
	}
	for i, v := range s.Grid {
		if !(v > 0 && v <= 1) || i > 0 && v <= s.Grid[i-1] {
			return fmt.Errorf("grid value %v at %d", v, i)
		}
	}
	for _, l := range s.Levels {
		switch {
		case l.N < 0 || l.S < 0 || l.S > l.N || l.N > s.Uniform:
			return fmt.Errorf("counts %d of %d at τ %v", l.S, l.N, l.Tau)
		case len(l.Lower) != len(s.Grid) || len(l.Upper) != len(s.Grid):
			return fmt.Errorf("grid of %d values with %d and %d martingales at τ %v", len(s.Grid), len(l.Lower), len(l.Upper), l.Tau)
		case !finite(l.LogE) || !finite(l.Change) || l.Change < 0:
			return fmt.Errorf("demotion test state %v, %v at τ %v", l.LogE, l.Change, l.Tau)
		}
		for i := range s.Grid {
			if lo, up := l.Lower[i], l.Upper[i]; !finite(lo) || !finite(up) || lo < 0 || up < 0 {
				return fmt.Errorf("martingale %v, %v at %v, τ %v", lo, up, s.Grid[i], l.Tau)
			}
		}
	}
	return nil
}
