package onnxgraph

import "math"

// ToFloat16 returns the IEEE 754 binary16 value nearest to f, as its bits:
// rounded to nearest with ties to even, below half's normal range to its
// subnormals (and to a signed zero below half the least of them), above
// its largest finite value (65504) to ±Inf, and a NaN to a quiet NaN that
// keeps f's sign and the top of its payload. A normal result is within a
// relative 2^-11 of f; a subnormal one within 2^-25.
func ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	switch {
	case exp == 0xff && mant != 0:
		return sign | 0x7e00 | uint16(mant>>13)
	case exp == 0xff:
		return sign | 0x7c00
	case exp == 0:
		// Zero, or a float32 subnormal: below 2^-126, far below half
		// the least half subnormal (2^-25).
		return sign
	}
	sig := mant | 0x800000 // 24 bits, the leading one explicit
	e := exp - 127 + 15    // half's biased exponent
	switch {
	case e >= 0x1f:
		return sign | 0x7c00
	case e >= 1:
		// 24 significant bits rounded to 11; a carry out of the
		// rounded significand raises the exponent, from 30 to 31: Inf.
		return sign | uint16(uint32(e-1)<<10+shiftRound(sig, 13))
	case e >= -10:
		// A subnormal half, m×2^-24: the significand shifted further
		// right by 1−e; rounding up from the largest gives the least
		// normal, 0x0400, as it should.
		return sign | uint16(shiftRound(sig, uint32(14-e)))
	default:
		// Below 2^-25, half the least subnormal: zero.
		return sign
	}
}

// shiftRound returns x >> s (1 ≤ s ≤ 31) rounded to nearest, ties to even.
func shiftRound(x, s uint32) uint32 {
	q := x >> s
	rem := x & (1<<s - 1)
	half := uint32(1) << (s - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	return q
}

// FromFloat16 returns the float32 whose value is the binary16 value h
// (every one is exact in float32; a NaN stays a NaN).
func FromFloat16(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	e := uint32(h>>10) & 0x1f
	m := uint32(h & 0x3ff)
	switch e {
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | m<<13)
	case 0:
		v := float32(m) / (1 << 24) // m×2^-24, exact
		return math.Float32frombits(sign | math.Float32bits(v))
	default:
		return math.Float32frombits(sign | (e-15+127)<<23 | m<<13)
	}
}
