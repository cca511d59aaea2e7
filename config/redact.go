package config

import (
	"fmt"
	"reflect"

	"go.yaml.in/yaml/v3"
)

// MarshalRedacted renders the configuration as YAML with every secret
// masked. A secret is a field tagged `secret:"true"`, a string or a list of
// strings, wherever it sits in the configuration: tagging a new field is all
// it takes to mask it.
func (c *Config) MarshalRedacted() ([]byte, error) {
	r := redacted(reflect.ValueOf(*c)).Interface().(Config)
	return yaml.Marshal(&r)
}

// redacted returns a copy of v with the secrets it holds masked. Values that
// hold no struct are returned as they are; slices and maps of structs are
// copied, so the original configuration is never changed.
func redacted(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			if f.Tag.Get("secret") == "true" {
				out.Field(i).Set(masked(v.Field(i), f.Name))
			} else {
				out.Field(i).Set(redacted(v.Field(i)))
			}
		}
		return out
	case reflect.Slice:
		if v.IsNil() || v.Type().Elem().Kind() != reflect.Struct {
			return v
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(redacted(v.Index(i)))
		}
		return out
	case reflect.Map:
		if v.IsNil() || v.Type().Elem().Kind() != reflect.Struct {
			return v
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		for it := v.MapRange(); it.Next(); {
			out.SetMapIndex(it.Key(), redacted(it.Value()))
		}
		return out
	}
	return v
}

// masked returns a masked copy of a secret field's value: a string, or a
// list of strings masked one by one. Any other type is a programming error
// (TestRedactedMasksEveryTaggedField finds it).
func masked(v reflect.Value, name string) reflect.Value {
	out := reflect.New(v.Type()).Elem()
	switch {
	case v.Kind() == reflect.String:
		out.SetString(mask(v.String()))
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		if v.IsNil() {
			return out
		}
		out.Set(reflect.MakeSlice(v.Type(), v.Len(), v.Len()))
		for i := range v.Len() {
			out.Index(i).SetString(mask(v.Index(i).String()))
		}
	default:
		panic(fmt.Sprintf("config: secret field %s is a %s; only strings and lists of strings can be masked", name, v.Type()))
	}
	return out
}

// mask hides a secret, keeping only enough to tell two apart.
func mask(s string) string {
	switch {
	case s == "":
		return ""
	case len(s) <= 8:
		return "****"
	default:
		return "****" + s[len(s)-4:]
	}
}
