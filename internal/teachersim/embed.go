package teachersim

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
)

// maxEmbeddingDims bounds Config.EmbeddingDims and a request's "dimensions".
const maxEmbeddingDims = 8192

// embed fills v with the embedding of text: a unit vector drawn from a
// splitmix64 stream seeded by the text's FNV-1a hash, so the same text always
// gets the same vector and a shorter vector is a rescaled prefix of a longer.
func embed(v []float32, text string) {
	seed := fnv1a(text)

	var sum float64
	state := seed
	for range v {
		x := unitFloat(&state)
		sum += x * x
	}
	norm := math.Sqrt(sum)
	if norm == 0 {
		clear(v)
		if len(v) > 0 {
			v[0] = 1
		}
		return
	}
	state = seed
	for i := range v {
		v[i] = float32(unitFloat(&state) / norm)
	}
}

// fnv1a is the 64-bit FNV-1a hash of s (hash/fnv, without its allocations).
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// unitFloat advances a splitmix64 state and returns a float in [-1, 1).
func unitFloat(state *uint64) float64 {
	*state += 0x9e3779b97f4a7c15
	z := *state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11)/(1<<53)*2 - 1
}

// appendFloats appends v as a JSON array of numbers, each the shortest
// decimal that reads back as the same float32.
func appendFloats(dst []byte, v []float32) []byte {
	dst = append(dst, '[')
	for i, f := range v {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendFloat(dst, float64(f), 'g', -1, 32)
	}
	return append(dst, ']')
}

// appendBase64 appends v as a JSON string holding the base64 of its
// little-endian float32 bytes, the form OpenAI returns for
// "encoding_format": "base64".
func appendBase64(dst, scratch []byte, v []float32) ([]byte, []byte) {
	scratch = scratch[:0]
	for _, f := range v {
		scratch = binary.LittleEndian.AppendUint32(scratch, math.Float32bits(f))
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, scratch)
	return append(dst, '"'), scratch
}
