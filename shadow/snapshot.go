package shadow

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
)

// snapshotVersion is written in every snapshot. RestoreTracker also reads
// version 1, whose drift detector (a CUSUM) it restarts: the detector only
// sizes the demotion test's stakes, so the test stays valid.
const snapshotVersion = 2

// snapshot is the JSON form of a Tracker.
type snapshot struct {
	Version        int                 `json:"version"`
	Threshold      float64             `json:"threshold"`
	Samples        int64               `json:"samples"`
	Confident      int64               `json:"confident"`
	ConfidentAgree int64               `json:"confident_agree"`
	Agree          int64               `json:"agree"`
	Recent         []byte              `json:"recent"` // flags, oldest first
	Confusions     []snapshotConfusion `json:"confusions"`
	Promoted       bool                `json:"promoted"`
	Test           snapshotTest        `json:"test"`
	Drift          snapshotDrift       `json:"drift"`
}

type snapshotConfusion struct {
	Teacher string `json:"teacher"`
	Student string `json:"student"`
	Count   int64  `json:"count"`
}

// snapshotTest is the promotion test and the bounds: the grid and, per grid
// value, the wealth of each side's martingale.
type snapshotTest struct {
	N     int64     `json:"n"`
	S     int64     `json:"s"`
	Grid  []float64 `json:"grid"`
	Lower []float64 `json:"lower"`
	Upper []float64 `json:"upper"`
}

type snapshotDrift struct {
	LogE   float64 `json:"log_e"`
	Change float64 `json:"change"` // log(1 + R), see drift; absent in version 1
}

// Snapshot returns the tracker's statistics and test states as JSON, for
// RestoreTracker.
func (t *Tracker) Snapshot() ([]byte, error) {
	t.mu.Lock()
	s := snapshot{
		Version:        snapshotVersion,
		Threshold:      t.gate.Threshold,
		Samples:        t.samples,
		Confident:      t.confident,
		ConfidentAgree: t.confidentAgree,
		Agree:          t.agree,
		Recent:         make([]byte, 0, t.recentN),
		Confusions:     make([]snapshotConfusion, 0, len(t.confusions)),
		Promoted:       t.promoted,
		Test: snapshotTest{
			N: t.b.n, S: t.b.s,
			Grid:  slices.Clone(t.b.grid),
			Lower: slices.Clone(t.b.lower),
			Upper: slices.Clone(t.b.upper),
		},
		Drift: snapshotDrift{LogE: t.d.logE, Change: t.d.change},
	}
	for i := range t.recentN {
		s.Recent = append(s.Recent, t.recent[(t.next-t.recentN+i+RecentSize)%RecentSize])
	}
	for k, n := range t.confusions {
		s.Confusions = append(s.Confusions, snapshotConfusion{k.teacher, k.student, n})
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
// was not on the old grid starts afresh, and so does the demotion test. If
// g's confidence differs, the martingales are judged against the new 1/α from
// now on, which is still valid: a frozen one has bet nothing since it froze.
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

	t := NewTracker(g)
	t.samples, t.confident, t.confidentAgree, t.agree = s.Samples, s.Confident, s.ConfidentAgree, s.Agree
	for _, f := range s.Recent {
		t.remember(f)
	}
	for _, c := range s.Confusions {
		t.confusions[confusionKey{c.Teacher, c.Student}] = c.Count
	}
	t.promoted = s.Promoted
	t.b.n, t.b.s = s.Test.N, s.Test.S
	for k, v := range t.b.grid {
		if i, ok := slices.BinarySearch(s.Test.Grid, v); ok {
			t.b.lower[k], t.b.upper[k] = s.Test.Lower[i], s.Test.Upper[i]
		}
	}
	t.b.settle(t.reject)
	if s.Threshold == t.gate.Threshold {
		t.d = drift{logE: s.Drift.LogE, change: s.Drift.Change}
	}
	return t, nil
}

// check reports the first inconsistency of a decoded snapshot.
func (s *snapshot) check() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case s.Version != snapshotVersion && s.Version != 1:
		return fmt.Errorf("version %d, want %d", s.Version, snapshotVersion)
	case s.Samples < 0 || s.Confident < 0 || s.ConfidentAgree < 0 || s.Agree < 0:
		return fmt.Errorf("negative count")
	case s.Confident > s.Samples || s.ConfidentAgree > s.Confident || s.Agree > s.Samples:
		return fmt.Errorf("counts do not nest")
	case len(s.Recent) > RecentSize || int64(len(s.Recent)) > s.Samples:
		return fmt.Errorf("%d recent samples", len(s.Recent))
	case len(s.Confusions) > maxConfusionPairs:
		return fmt.Errorf("%d confusion pairs", len(s.Confusions))
	case s.Test.N < 0 || s.Test.S < 0 || s.Test.S > s.Test.N || s.Test.N > s.Confident:
		return fmt.Errorf("test counts %d of %d", s.Test.S, s.Test.N)
	case len(s.Test.Lower) != len(s.Test.Grid) || len(s.Test.Upper) != len(s.Test.Grid):
		return fmt.Errorf("grid of %d values with %d and %d martingales",
			len(s.Test.Grid), len(s.Test.Lower), len(s.Test.Upper))
	case !finite(s.Drift.LogE) || !finite(s.Drift.Change) || s.Drift.Change < 0:
		return fmt.Errorf("demotion test state %v, %v", s.Drift.LogE, s.Drift.Change)
	}
	for _, f := range s.Recent {
		if f > flagConfident|flagAgree {
			return fmt.Errorf("recent flag %d", f)
		}
	}
	for _, c := range s.Confusions {
		if c.Count <= 0 {
			return fmt.Errorf("confusion count %d", c.Count)
		}
	}
	for i, v := range s.Test.Grid {
		if !(v > 0 && v <= 1) || i > 0 && v <= s.Test.Grid[i-1] {
			return fmt.Errorf("grid value %v at %d", v, i)
		}
		if l, u := s.Test.Lower[i], s.Test.Upper[i]; !finite(l) || !finite(u) || l < 0 || u < 0 {
			return fmt.Errorf("martingale %v, %v at %v", l, u, v)
		}
	}
	return nil
}
