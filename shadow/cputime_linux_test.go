package shadow

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/understudy-dev/understudy/student"
)

// costly predicts after spending burn of its thread's CPU time, or after
// sleeping. The burn is measured on the thread's own clock, not the wall's,
// so a loaded machine only makes it take longer.
type costly struct {
	burn, sleep time.Duration
}

func (c costly) PredictBatch(texts []string) ([]student.Prediction, error) {
	time.Sleep(c.sleep)
	if c.burn > 0 {
		start, _ := threadCPU()
		for now := start; time.Duration(now-start) < c.burn; now, _ = threadCPU() {
		}
	}
	return make([]student.Prediction, len(texts)), nil
}

// TestPoolCountsScoringCPU: understudy_shadow_cpu_seconds_total counts the
// CPU the workers spend scoring, not the time they wait.
func TestPoolCountsScoringCPU(t *testing.T) {
	for _, tc := range []struct {
		name     string
		model    costly
		min, max time.Duration
	}{
		{"busy", costly{burn: 200 * time.Millisecond}, 100 * time.Millisecond, time.Hour},
		{"idle", costly{sleep: 200 * time.Millisecond}, 0, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			c := collector()
			p := runPool(t, PoolConfig{Batch: 1, Linger: time.Millisecond}, reg)
			p.Submit(Job{Domain: "d", Version: 1, Model: tc.model, Input: "x", Label: "x", Sink: c.sink})
			c.wait(t, 1)
			// The counter moves once the batch is done, just after its samples.
			var cpu time.Duration
			for deadline := time.Now().Add(5 * time.Second); cpu == 0 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				cpu = time.Duration(testutil.ToFloat64(p.cpu) * 1e9)
			}
			if cpu < tc.min || cpu > tc.max {
				t.Errorf("scoring CPU %v, want within [%v, %v]", cpu, tc.min, tc.max)
			}
		})
	}
}
