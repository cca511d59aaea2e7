package onnxgraph_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/understudy-dev/understudy/internal/onnxgraph"
)

// TestToFloat16Bits checks the conversion against binary16 bit patterns
// worked out by hand: exact values, ties to even at every scale,
// subnormals, overflow and the specials.
func TestToFloat16Bits(t *testing.T) {
	pow2 := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"0.1", 0.1, 0x2e66},
		{"one third", 1.0 / 3, 0x3555},
		{"pi", math.Pi, 0x4248},
		{"largest finite", 65504, 0x7bff},
		{"largest finite, negative", -65504, 0xfbff},
		{"below the tie above 65504", 65519.99, 0x7bff},
		{"tie above 65504 rounds to even: Inf", 65520, 0x7c00},
		{"overflow", 1e6, 0x7c00},
		{"overflow, negative", -1e6, 0xfc00},
		{"float32 max", math.MaxFloat32, 0x7c00},
		{"+Inf", float32(math.Inf(1)), 0x7c00},
		{"-Inf", float32(math.Inf(-1)), 0xfc00},
		{"1+2^-11 ties down to even", 1 + pow2(-11), 0x3c00},
		{"1+3·2^-11 ties up to even", 1 + 3*pow2(-11), 0x3c02},
		{"just above the tie", 1 + pow2(-11) + pow2(-23), 0x3c01},
		{"just below the tie", 1 + pow2(-11) - pow2(-23), 0x3c00},
		{"carry into the exponent", 2 - pow2(-12), 0x4000},
		{"least normal", pow2(-14), 0x0400},
		{"largest subnormal", 1023 * pow2(-24), 0x03ff},
		{"tie between subnormal and normal rounds up to even", 1023.5 * pow2(-24), 0x0400},
		{"least subnormal", pow2(-24), 0x0001},
		{"least subnormal, negative", -pow2(-24), 0x8001},
		{"subnormal tie down to even", 2.5 * pow2(-24), 0x0002},
		{"subnormal tie up to even", 1.5 * pow2(-24), 0x0002},
		{"subnormal 0.1 of the least normal", 0.1 * pow2(-14), 0x0066},
		{"half the least subnormal ties to zero", pow2(-25), 0x0000},
		{"just above half the least subnormal", pow2(-25) * (1 + pow2(-23)), 0x0001},
		{"just above half, negative", -pow2(-25) * (1 + pow2(-23)), 0x8001},
		{"underflow", pow2(-26), 0x0000},
		{"underflow, negative", -pow2(-30), 0x8000},
		{"float32 subnormal", math.SmallestNonzeroFloat32, 0x0000},
	}
	for _, tc := range tests {
		if got := onnxgraph.ToFloat16(tc.in); got != tc.want {
			t.Errorf("%s: ToFloat16(%g) = %#04x, want %#04x", tc.name, tc.in, got, tc.want)
		}
	}
	for _, nan := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0x7fbfffff} {
		f := math.Float32frombits(nan)
		h := onnxgraph.ToFloat16(f)
		if h&0x7c00 != 0x7c00 || h&0x3ff == 0 || h&0x8000 != uint16(nan>>16)&0x8000 {
			t.Errorf("ToFloat16(NaN %#08x) = %#04x, want a NaN of the same sign", nan, h)
		}
		if back := onnxgraph.FromFloat16(h); !math.IsNaN(float64(back)) {
			t.Errorf("FromFloat16(%#04x) = %v, want NaN", h, back)
		}
	}
}

// TestFloat16RoundTrip checks every binary16 value survives FromFloat16
// then ToFloat16, and that ToFloat16 rounds a sweep of float32 values to
// the nearest half (ties to even), within a relative 2^-11 in half's
// normal range and 2^-25 below it.
func TestFloat16RoundTrip(t *testing.T) {
	for h := range 1 << 16 {
		h := uint16(h)
		if h&0x7c00 == 0x7c00 && h&0x3ff != 0 {
			continue // NaNs: TestToFloat16Bits
		}
		if got := onnxgraph.ToFloat16(onnxgraph.FromFloat16(h)); got != h {
			t.Fatalf("ToFloat16(FromFloat16(%#04x) = %g) = %#04x", h, onnxgraph.FromFloat16(h), got)
		}
	}
	// Geometric steps of 2^-7 relative, offset at random so that they
	// fall between halves, and values near ties, from below the least
	// subnormal to past the overflow; each checked with both signs.
	rng := rand.New(rand.NewPCG(1, 2))
	var values []float32
	for x := math.Ldexp(1, -27); x < 70000; x *= 1 + math.Ldexp(1, -7) {
		values = append(values, float32(x*(1+rng.Float64()*math.Ldexp(1, -7))))
	}
	for range 20000 {
		// A tie, or one float32 ulp on either side of it.
		h := uint16(rng.IntN(0x7bff))
		mid := (float64(onnxgraph.FromFloat16(h)) + float64(onnxgraph.FromFloat16(h+1))) / 2
		f := float32(mid)
		values = append(values, f, math.Nextafter32(f, 0), math.Nextafter32(f, 1e9))
	}
	const limit = 65520 // the tie above 65504: from there, Inf
	for _, v := range values {
		for _, x := range []float32{v, -v} {
			h := onnxgraph.ToFloat16(x)
			got := float64(onnxgraph.FromFloat16(h))
			ax := math.Abs(float64(x))
			if ax >= limit {
				if !math.IsInf(got, int(math.Copysign(1, float64(x)))) {
					t.Fatalf("ToFloat16(%g) = %#04x (%g), want ±Inf", x, h, got)
				}
				continue
			}
			err := math.Abs(got - float64(x))
			if ax >= math.Ldexp(1, -14) && err > math.Ldexp(ax, -11) || err > math.Ldexp(1, -25) && ax < math.Ldexp(1, -14) {
				t.Fatalf("ToFloat16(%g) = %#04x (%g): error %g is too large", x, h, got, err)
			}
			// Nearest: no neighbour is closer, and a tie went to the
			// even one (all in float64, where these sums are exact).
			for _, n := range []uint16{h - 1, h + 1} {
				if n&0x7fff > 0x7bff || h&0x7fff == 0 && n&0x7fff != 1 {
					continue // past the finite halves, or across zero
				}
				d := math.Abs(float64(onnxgraph.FromFloat16(n)) - float64(x))
				if d < err || d == err && h&1 == 1 {
					t.Fatalf("ToFloat16(%g) = %#04x (%g), but %#04x (%g) is nearer or even", x, h, got, n, onnxgraph.FromFloat16(n))
				}
			}
		}
	}
}
