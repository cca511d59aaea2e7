// Package taskfile writes the labelled task files the data scripts make
// (scripts/fetch-*.sh) and the demo, tests and benchmarks read: one JSON
// object {"text","label"} per line. It also holds what the converters
// under cmd/ share: their main, and the walk of an npm package tarball.
package taskfile

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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

// Main is a converter command's main: it reads the -tgz and -out flags,
// runs convert, and on an error prints it after name and exits 1.
func Main(name string, convert func(tgz, out string) error) {
	tgz := flag.String("tgz", "", "the npm package tarball")
	out := flag.String("out", ".", "output `directory`")
	flag.Parse()
	if err := convert(*tgz, *out); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// WalkTarball calls fn with the name and contents of each regular file of
// the gzipped tarball at path (an npm package), in archive order.
func WalkTarball(path string, fn func(name string, r io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if err := fn(h.Name, tr); err != nil {
			return fmt.Errorf("reading %s: %w", h.Name, err)
		}
	}
}
