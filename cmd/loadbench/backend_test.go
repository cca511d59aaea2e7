package main

import (
	"math"
	"testing"
)

func TestParseNATSSpec(t *testing.T) {
	port, mport, dir, err := parseNATSSpec("4222,8222,/tmp/a,b/jetstream")
	if err != nil || port != 4222 || mport != 8222 || dir != "/tmp/a,b/jetstream" {
		t.Fatalf("got %d %d %q %v", port, mport, dir, err)
	}
	for _, bad := range []string{"", "4222", "4222,8222", "4222,8222,", "x,8222,/d", "4222,-1,/d", "0,8222,/d"} {
		if _, _, _, err := parseNATSSpec(bad); err == nil {
			t.Errorf("parseNATSSpec(%q): no error", bad)
		}
	}
}

func TestRatio(t *testing.T) {
	if r := ratio(130, 100); math.Abs(r-1.3) > 1e-12 {
		t.Errorf("ratio(130, 100) = %v", r)
	}
	for _, b := range []float64{0, -1} {
		if r := ratio(1, b); !math.IsNaN(r) {
			t.Errorf("ratio(1, %v) = %v, want NaN", b, r)
		}
	}
	for r, want := range map[float64]string{1.3: "1.30×", 0.5: "0.50×", math.NaN(): "n/a"} {
		if got := fmtRatio(r); got != want {
			t.Errorf("fmtRatio(%v) = %q, want %q", r, got, want)
		}
	}
}

func TestRangeOf(t *testing.T) {
	rs := []backendRun{{pairCounts: pairCounts{PairsLogged: 24000}}, {pairCounts: pairCounts{PairsLogged: 23990}}, {pairCounts: pairCounts{PairsLogged: 24010}}}
	f := func(r backendRun) float64 { return r.PairsLogged }
	if got := rangeOf(rs, f, false); got != "23990–24010" {
		t.Errorf("rangeOf = %q", got)
	}
}
