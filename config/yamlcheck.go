package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// checkYAML walks a parsed file beside the Config type and reports each key
// that names no setting and each value its setting cannot hold, by the
// setting's path and the line: what yaml.v3's own messages ("field urll
// not found in type config.Teacher") leave the reader to work out. It
// checks what the strict decoder would reject, so that decoding after it
// finds nothing to report.
func checkYAML(doc *yaml.Node) error {
	var errs []error
	if len(doc.Content) > 0 {
		checkNode(doc.Content[0], reflect.TypeFor[Config](), "", &errs)
	}
	return errors.Join(errs...)
}

func checkNode(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the default
	}
	bad := func(format string, args ...any) {
		*errs = append(*errs, &FieldError{Field: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case t == durationType:
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			bad("invalid duration %q: want a number with a unit, such as 30s, 5m or 1h30m", n.Value)
		}
	case t == sizeType:
		var s Size
		if err := n.Decode(&s); err != nil {
			bad("%v", err)
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("want a section of settings (%s), got %s", strings.Join(settingNames(t), ", "), describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, value := n.Content[i], n.Content[i+1]
			if key.Tag == "!!merge" { // <<: *anchor merges another section's settings
				if value.Kind == yaml.SequenceNode {
					for _, v := range value.Content {
						checkNode(v, t, path, errs)
					}
				} else {
					checkNode(value, t, path, errs)
				}
				continue
			}
			field, ok := fieldByTag(t, key.Value)
			if !ok {
				msg := "unknown setting"
				if near := nearest(key.Value, settingNames(t)); near != "" {
					msg += fmt.Sprintf(" (did you mean %s?)", near)
				}
				*errs = append(*errs, &FieldError{Field: join(path, key.Value), Line: key.Line, Msg: msg})
				continue
			}
			checkNode(value, field.Type, join(path, key.Value), errs)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		if n.Kind != yaml.SequenceNode {
			bad("want a list, got %s", describe(n))
			return
		}
		for i, item := range n.Content {
			checkNode(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			bad("want a map, got %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkNode(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
		}
	default:
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			bad("want %s, got %s", kindName(t), describe(n))
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name && tag != "" && tag != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func settingNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	return names
}

// describe renders a node for a message: a scalar quoted, else its kind.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	case yaml.MappingNode:
		return "a section"
	case yaml.SequenceNode:
		return "a list"
	}
	return "something else"
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "text"
	}
	return "a " + t.String()
}

// nearest returns the name closest to s by edit distance, if it is close
// enough to be a typo of it.
func nearest(s string, names []string) string {
	best, bestD := "", len(s)/3+1
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance counts the insertions, deletions, substitutions and swaps
// of neighbours that turn a into b (optimal string alignment).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
