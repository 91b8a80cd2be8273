// Package settings checks configuration structs read with envconfig (the
// WHARFJOBS_* settings): the checks every such struct needs alike, so
// that a setting added later is checked without a list to update.
package settings

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"
)

// Prefix is the prefix of every setting's environment variable.
const Prefix = "WHARFJOBS_"

// NonNegative refuses every field of the struct cfg that a setting fills
// (an `envconfig` tag) and that holds a negative duration or number: such
// a value can only be a mistake, and zero takes the default. Each error
// names the variable as the operator wrote it, the value and the default.
// Fields named in skip (Go field names) are the caller's to check: a
// negative value that means something, or a message of their own.
// Nested structs are not walked: each has its own Validate.
func NonNegative(cfg any, skip ...string) error {
	v := reflect.ValueOf(cfg)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	var errs []error
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name := f.Tag.Get("envconfig")
		if name == "" || slices.Contains(skip, f.Name) {
			continue
		}
		what := "a number"
		var negative bool
		switch x := v.Field(i); {
		case x.Type() == reflect.TypeFor[time.Duration]():
			what, negative = "a duration", x.Int() < 0
		case x.CanInt():
			negative = x.Int() < 0
		}
		if !negative {
			continue
		}
		def := ""
		if d := f.Tag.Get("default"); d != "" {
			def = " (default " + d + ")"
		}
		errs = append(errs, fmt.Errorf("%s%s=%v: expected %s of 0 or more%s", Prefix, name, v.Field(i).Interface(), what, def))
	}
	return errors.Join(errs...)
}
