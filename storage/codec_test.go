package storage

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestPairCodec(t *testing.T) {
	tests := []struct {
		name string
		p    Pair
	}{
		{"zero", Pair{Time: time.Unix(0, 0).UTC()}},
		{"full", Pair{Time: time.Date(2025, 5, 6, 7, 8, 9, 10, time.UTC), Model: "m", Input: "in", System: "sys",
			Messages: json.RawMessage(`[{"role":"user","content":"in"}]`), Answer: "A.", Label: "a",
			PromptTokens: 1 << 20, CompletionTokens: -1, TeacherLatency: time.Hour, Stream: true, Deferred: true}},
		{"empty messages kept", Pair{Time: time.Unix(1, 0).UTC(), Messages: json.RawMessage{}}},
		{"before 1970", Pair{Time: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := appendPair(nil, &tt.p)
			if len(b) > pairSize(&tt.p) {
				t.Errorf("encoded %d bytes, pairSize estimated %d", len(b), pairSize(&tt.p))
			}
			var got Pair
			if err := decodePair(b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.p) {
				t.Errorf("got %+v\nwant %+v", got, tt.p)
			}
			l, err := decodePairLabel(b)
			if err != nil || l != tt.p.Label {
				t.Errorf("decodePairLabel = %q, %v; want %q", l, err, tt.p.Label)
			}
			for i := 0; i < len(b); i++ {
				if err := decodePair(b[:i], &got); err == nil {
					t.Errorf("decoding a record truncated to %d of %d bytes succeeded", i, len(b))
				}
			}
		})
	}
}

// FuzzDecodePair: decoding arbitrary bytes never panics, and whatever decodes
// encodes back to a record that decodes the same.
func FuzzDecodePair(f *testing.F) {
	f.Add(appendPair(nil, &Pair{Time: time.Unix(1700000000, 5), Input: "x", Label: "y", Stream: true}))
	f.Add(appendPair(nil, &Pair{Messages: json.RawMessage(`[]`)}))
	f.Add([]byte{1, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Pair
		if err := decodePair(b, &p); err != nil {
			return
		}
		var q Pair
		if err := decodePair(appendPair(nil, &p), &q); err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip changed the pair:\n%+v\n%+v", p, q)
		}
	})
}
