package config

import (
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
)

var errEOF = io.EOF

// EnvPrefix starts every environment variable Understudy reads for its
// settings: the YAML path upper-cased, dots as underscores, e.g.
// teacher.first_byte_timeout is UNDERSTUDY_TEACHER_FIRST_BYTE_TIMEOUT.
// Lists are comma-separated.
const EnvPrefix = "UNDERSTUDY_"

// applyEnv overrides fields from the environment. OPENAI_BASE_URL and
// OPENAI_API_KEY, the variables OpenAI's SDKs read, set the teacher's URL
// and key; the UNDERSTUDY_ names win over them.
func (c *Config) applyEnv(getenv func(string) (string, bool)) error {
	if v, ok := getenv("OPENAI_BASE_URL"); ok && v != "" {
		c.Teacher.URL = v
	}
	if v, ok := getenv("OPENAI_API_KEY"); ok && v != "" {
		c.Teacher.APIKey = v
	}
	if v, ok := getenv("UNDERSTUDY_ORT_LIB"); ok && v != "" {
		c.ONNXRuntime.Library = v
	}
	return walkEnv(reflect.ValueOf(c).Elem(), "", getenv)
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

func walkEnv(v reflect.Value, path string, getenv func(string) (string, bool)) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		field := tag
		if path != "" {
			field = path + "." + tag
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := walkEnv(fv, field, getenv); err != nil {
				return err
			}
			continue
		}
		name := EnvName(field)
		raw, ok := getenv(name)
		if !ok {
			continue
		}
		if err := setFromString(fv, raw); err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
	}
	return nil
}

// EnvName returns the environment variable that overrides a YAML field path.
func EnvName(field string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(field, ".", "_"))
}

// setFromString parses raw into v by v's type. Slices of structs (such as
// domains) cannot be set from the environment and are skipped.
func setFromString(v reflect.Value, raw string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	case v.Type() == sizeType:
		s, err := ParseSize(raw)
		if err != nil {
			return err
		}
		v.SetInt(int64(s))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return nil
		}
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		v.Set(reflect.ValueOf(items))
	}
	return nil
}
