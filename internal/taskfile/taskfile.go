// Package taskfile writes the labelled task files the data scripts make
// (scripts/fetch-*.sh) and the demo, tests and benchmarks read: one JSON
// object {"text","label"} per line.
package taskfile

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"unicode/utf8"
)

// Line is one labelled text.
type Line struct {
	Text  string `json:"text"`
	Label string `json:"label"`
}

// MaxText is how long a text may be, in bytes.
const MaxText = 2000

// Clip cuts s to at most n bytes on a rune boundary, and makes it valid
// UTF-8.
func Clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Write writes lines to path, one JSON object each.
func Write(path string, lines []Line) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
