package shadow

import (
	"errors"
	"fmt"
)

// ErrInvalidSnapshot is wrapped by the errors of RestoreTracker when the
// bytes are not a snapshot it can read.
var ErrInvalidSnapshot = errors.New("invalid tracker snapshot")

// Gate configures promotion and demotion of one domain's student.
//
// A student is promoted at the lowest confidence threshold τ of a fixed
// grid (Thresholds) whose selective agreement with the teacher is proven,
// anytime-valid at Confidence, to exceed Threshold, once it holds at least
// MinSamples confident samples; a promoted student's τ is raised, or the
// student demoted, when a test at DemotionConfidence shows its selective
// agreement at the τ in use to be below Threshold. See Tracker for the
// tests.
type Gate struct {
	// Threshold θ: the selective agreement a student must be shown to
	// reach to be promoted, and below which it is demoted. In (0, 1];
	// at 1 no student is ever promoted by the gate. Default 0.95.
	Threshold float64
	// Confidence 1−α of the promotion test and of the bounds in Stats.
	// In (0.5, 1): the two bounds, each one-sided at α, hold together
	// with probability at least 1 − 2α, which promises nothing once
	// α ≥ 0.5. Default 0.95.
	Confidence float64
	// DemotionConfidence 1−α of the demotion test: a student whose
	// agreement stays at or above Threshold is ever demoted with
	// probability at most α. In (0.5, 1): at α ≥ 0.5 the test fires once
	// its wealth merely doubles (1/α ≤ 2), and its guarantee would allow
	// demoting a student that stays at the threshold as often as not.
	// Default 0.85.
	//
	// The two errors do not cost the same. A student wrongly demoted sends
	// its traffic back to the teacher, whose answers are right by
	// definition, and earns it back through the gate; a drift noticed late
	// serves wrong answers meanwhile. So the gate asks for stronger evidence
	// to hand traffic to a student than to take it back. In the simulations
	// of gate_sim_test.go a drop from 0.98 to 0.85 is demoted within 150
	// shadow samples in 96.7–97.3% of streams at 0.85 (six seeds of 2,000
	// streams), 94.8–96.0% at 0.90 and about 93% at 0.95; a student steady
	// at 0.98 was not demoted in any of 2,000 streams of 20,000 samples,
	// and one exactly at the threshold of 0.95 in about 11%.
	DemotionConfidence float64
	// MinSamples is the fewest confident samples at a τ before the gate
	// uses it, counted since its test (re)started. At least 0; zero means
	// the default. Default 200.
	MinSamples int
}

// DefaultGate is the gate a zero Gate means, field by field: the
// defaults of config's router section.
func DefaultGate() Gate {
	return Gate{Threshold: 0.95, Confidence: 0.95, DemotionConfidence: 0.85, MinSamples: 200}
}

// withDefaults returns g with its zero fields set to their defaults.
func (g Gate) withDefaults() Gate {
	d := DefaultGate()
	if g.Threshold == 0 {
		g.Threshold = d.Threshold
	}
	if g.Confidence == 0 {
		g.Confidence = d.Confidence
	}
	if g.DemotionConfidence == 0 {
		g.DemotionConfidence = d.DemotionConfidence
	}
	if g.MinSamples == 0 {
		g.MinSamples = d.MinSamples
	}
	return g
}

// Validate reports the first field of g (zero fields taken as their
// defaults) that is out of range, naming it.
func (g Gate) Validate() error {
	g = g.withDefaults()
	switch {
	case !(g.Threshold > 0 && g.Threshold <= 1):
		return fmt.Errorf("gate.threshold: must be in (0,1], got %v", g.Threshold)
	case !(g.Confidence > 0.5 && g.Confidence < 1):
		return fmt.Errorf("gate.confidence: must be in (0.5,1), got %v", g.Confidence)
	case !(g.DemotionConfidence > 0.5 && g.DemotionConfidence < 1):
		return fmt.Errorf("gate.demotion_confidence: must be in (0.5,1), got %v", g.DemotionConfidence)
	case g.MinSamples < 0:
		return fmt.Errorf("gate.min_samples: must not be negative, got %d", g.MinSamples)
	}
	return nil
}

// Verdict is what one sample changed about a domain's routing.
type Verdict int

const (
	// None: nothing to do.
	None Verdict = iota
	// Promote: the gate has passed and the tracker is not marked promoted.
	// Add keeps returning Promote until MarkPromoted is called, so acting
	// on it must be idempotent.
	Promote
	// Demote: the promoted student was shown to agree less than θ at the
	// τ in use, and no higher τ is certified. Returned once: the tracker
	// leaves the promoted state and restarts its tests on the samples
	// that follow.
	Demote
	// Raise: the promoted student was shown to agree less than θ at the
	// τ in use; it keeps serving at the certified τ above (Tracker.Tau),
	// and the tests at the τ it left and below restart.
	Raise
)

func (v Verdict) String() string {
	switch v {
	case None:
		return "none"
	case Promote:
		return "promote"
	case Demote:
		return "demote"
	case Raise:
		return "raise"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}
