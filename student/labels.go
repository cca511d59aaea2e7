package student

import "strings"

// Normalizer turns a teacher's raw answer into its label: surrounding space
// trimmed, inner whitespace folded to one space, and by its settings case
// folded and one trailing period removed. Training, shadow scoring and the
// pair log use the same Normalizer, so "Spam.", "spam" and " SPAM " are one
// label.
type Normalizer struct {
	FoldCase            bool
	StripTrailingPeriod bool
}

// Label returns answer's label: a record's label (Record.Label) when the
// answer is a JSON object, else its normalized text.
func (n Normalizer) Label(answer string) string {
	if rec, ok := n.Record(answer); ok {
		return rec.Label()
	}
	return n.text(answer)
}

// text normalizes a plain answer, or a string field of a record.
func (n Normalizer) text(answer string) string {
	s := strings.Join(strings.Fields(answer), " ")
	if n.StripTrailingPeriod {
		s = strings.TrimSpace(strings.TrimSuffix(s, "."))
	}
	if n.FoldCase {
		s = strings.ToLower(s)
	}
	return s
}
