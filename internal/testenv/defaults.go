package testenv

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The two helpers below let each package's configuration test prove that
// the envconfig default tags and the defaults in code are one and the
// same: process the struct from an empty environment, apply the code's
// defaults to a zero struct, and compare.

// EmptyEnv unsets every WHARFJOBS_* variable, and the bare names envconfig
// falls back to (a field's tag without the prefix), for the test t.
func EmptyEnv(t *testing.T, cfg any) {
	t.Helper()
	unset := func(k string) {
		if _, ok := os.LookupEnv(k); ok {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "WHARFJOBS_") {
			unset(k)
		}
	}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if tag := f.Tag.Get("envconfig"); tag != "" {
				unset(tag)
			} else if f.Type.Kind() == reflect.Struct {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeOf(cfg).Elem())
}

// SameDefaults fails for every field that the defaults in code set (a
// non-zero field of fromCode) to other than what envconfig's default tag
// gave fromEnv, walking into nested structs; skip names fields whose
// default is not a constant (the system temporary directory, say).
func SameDefaults(t *testing.T, fromEnv, fromCode any, skip ...string) {
	t.Helper()
	var cmp func(path string, e, c reflect.Value)
	cmp = func(path string, e, c reflect.Value) {
		for i := range c.NumField() {
			f := c.Type().Field(i)
			name := path + f.Name
			if !f.IsExported() || f.Tag.Get("ignored") == "true" || slices.Contains(skip, f.Name) || c.Field(i).IsZero() {
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Tag.Get("envconfig") == "" {
				cmp(name+".", e.Field(i), c.Field(i))
				continue
			}
			if !reflect.DeepEqual(e.Field(i).Interface(), c.Field(i).Interface()) {
				t.Errorf("%s: the default tag (WHARFJOBS_%s) gives %v, the code %v", name, f.Tag.Get("envconfig"), e.Field(i).Interface(), c.Field(i).Interface())
			}
		}
	}
	cmp("", reflect.ValueOf(fromEnv).Elem(), reflect.ValueOf(fromCode).Elem())
}
