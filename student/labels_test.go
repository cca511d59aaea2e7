package student

import "testing"

func TestNormalizer(t *testing.T) {
	for _, tc := range []struct {
		n        Normalizer
		in, want string
	}{
		{Normalizer{true, true}, " Spam. ", "spam"},
		{Normalizer{true, true}, "NOT\n  spam", "not spam"},
		{Normalizer{true, true}, "e.g..", "e.g."},
		{Normalizer{false, true}, "Spam.", "Spam"},
		{Normalizer{true, false}, "Spam.", "spam."},
		{Normalizer{}, "  Ham  ", "Ham"},
		{Normalizer{true, true}, "", ""},
	} {
		if got := tc.n.Label(tc.in); got != tc.want {
			t.Errorf("%+v.Label(%q) = %q, want %q", tc.n, tc.in, got, tc.want)
		}
	}
}
