package main

import (
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/trainer"
)

// TestPackageDefaultsMatchConfig: what a package does with a zero field,
// which its tests and the tools get, is what config.Default() configures,
// mapped by the functions serve uses. When this fails, one of the two
// defaults drifted: decide which is right and change the other.
func TestPackageDefaultsMatchConfig(t *testing.T) {
	cfg := config.Default()
	storageOpts := storageOptions(cfg, nil, nil)
	storageOpts.Dir = "" // not a default: data_dir/db
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"storage.DefaultOptions", storageOpts, storage.DefaultOptions()},
		{"trainer.DefaultSchedulerConfig", schedulerConfig(cfg), trainer.DefaultSchedulerConfig()},
		{"trainer.DefaultOptions", trainerOptions(cfg), trainer.DefaultOptions()},
		{"shadow.DefaultGate", routerConfig(cfg).Gate, shadow.DefaultGate()},
		{"shadow.DefaultPoolConfig", poolConfig(cfg), shadow.DefaultPoolConfig()},
		{"router.DefaultMaxDomains", cfg.Metrics.MaxDomains, router.DefaultMaxDomains},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if reflect.DeepEqual(tc.got, tc.want) {
				return
			}
			d := fieldDiff(reflect.ValueOf(tc.got), reflect.ValueOf(tc.want), "")
			if len(d) == 0 {
				d = []string{fmt.Sprintf("%+v, package %+v", tc.got, tc.want)}
			}
			for _, s := range d {
				t.Errorf("config.Default() gives %s", s)
			}
		})
	}
}

// fieldDiff lists the exported fields where a and b differ.
func fieldDiff(a, b reflect.Value, path string) []string {
	if a.Kind() != reflect.Struct {
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			return nil
		}
		return []string{fmt.Sprintf("%s = %v, package default %v", path, a.Interface(), b.Interface())}
	}
	var out []string
	for i := range a.NumField() {
		if f := a.Type().Field(i); f.IsExported() {
			out = append(out, fieldDiff(a.Field(i), b.Field(i), path+"."+f.Name)...)
		}
	}
	return out
}

// TestGateRangesMatchConfig: the gate checks the ranges of the values the
// router section gives it itself; config must accept exactly what the gate
// does, or a valid config panics in shadow.NewTracker. (Zero is left out: it
// is the gate's "default" and out of config's ranges.)
func TestGateRangesMatchConfig(t *testing.T) {
	floats := []float64{-1, 0.3, 0.5, 0.5000001, 0.85, 0.95, 0.999, 1, 1.5, math.NaN(), math.Inf(1)}
	for _, tc := range []struct {
		field  string
		set    func(*config.Router, float64)
		values []float64
	}{
		{"router.agreement_threshold", func(r *config.Router, v float64) { r.AgreementThreshold = v }, floats},
		{"router.confidence", func(r *config.Router, v float64) { r.Confidence = v }, floats},
		{"router.demotion_confidence", func(r *config.Router, v float64) { r.DemotionConfidence = v }, floats},
		{"router.min_samples", func(r *config.Router, v float64) { r.MinSamples = int(v) }, []float64{-1, 1, 200}},
	} {
		for _, v := range tc.values {
			t.Run(fmt.Sprintf("%s=%v", tc.field, v), func(t *testing.T) {
				cfg := config.Default()
				tc.set(&cfg.Router, v)
				cerr, gerr := cfg.Validate(), routerConfig(cfg).Gate.Validate()
				if (cerr == nil) != (gerr == nil) {
					t.Errorf("config: %v; gate: %v", cerr, gerr)
				}
			})
		}
	}
}
