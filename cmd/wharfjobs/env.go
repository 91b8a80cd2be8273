package main

import (
	"encoding"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

// envPrefix is the prefix of every setting's variable.
const envPrefix = "WHARFJOBS"

// envParts returns root, a pointer to a configuration struct, and
// pointers to the structs nested in it (worker.Config's Log, Files and
// Images, a command's Store...), depth first. Each is read on its own
// under WHARFJOBS_, so a nested field's variable is WHARFJOBS_ and its
// own name, not its parent's: that is how the settings are spelled.
func envParts(root any) []any {
	parts := []any{root}
	v := reflect.ValueOf(root).Elem()
	for i := range v.NumField() {
		f, sf := v.Field(i), v.Type().Field(i)
		if !sf.IsExported() || sf.Tag.Get("ignored") == "true" || !nestedEnv(f) {
			continue
		}
		parts = append(parts, envParts(f.Addr().Interface())...)
	}
	return parts
}

// nestedEnv reports whether the field f is a struct of settings rather
// than one setting (a struct that decodes itself is one setting).
func nestedEnv(f reflect.Value) bool {
	if f.Kind() != reflect.Struct {
		return false
	}
	p := f.Addr().Interface()
	_, dec := p.(envconfig.Decoder)
	_, set := p.(envconfig.Setter)
	_, text := p.(encoding.TextUnmarshaler)
	_, bin := p.(encoding.BinaryUnmarshaler)
	return !dec && !set && !text && !bin
}

// validator is a configuration that can refuse nonsense.
type validator interface{ Validate() error }

// loadEnv reads root and the structs nested in it from the WHARFJOBS_*
// environment, then validates each that has a Validate method.
func loadEnv(root any) error {
	parts := envParts(root)
	for _, p := range parts {
		if err := envconfig.Process(envPrefix, p); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
	}
	for _, p := range parts {
		if v, ok := p.(validator); ok {
			if err := v.Validate(); err != nil {
				return fmt.Errorf("configuration: %w", err)
			}
		}
	}
	return nil
}

// envAssignments renders the settings of root (a pointer to a
// configuration struct) as NAME=VALUE, in the notation loadEnv reads back:
// the inverse of loadEnv, for a child process.
func envAssignments(root any) []string {
	var out []string
	eachSetting(root, func(sf reflect.StructField, f reflect.Value, _ reflect.Type) {
		val := fmt.Sprint(f.Interface())
		if f.Kind() == reflect.Slice {
			parts := make([]string, f.Len())
			for j := range parts {
				parts[j] = fmt.Sprint(f.Index(j).Interface())
			}
			val = strings.Join(parts, ",")
		}
		out = append(out, envName(sf)+"="+val)
	})
	return out
}

// eachSetting calls fn with every setting of root and the structs nested
// in it, in field order, as loadEnv reads them: the field, its value and
// the struct type holding it.
func eachSetting(root any, fn func(sf reflect.StructField, f reflect.Value, in reflect.Type)) {
	for _, p := range envParts(root) {
		v := reflect.ValueOf(p).Elem()
		for i := range v.NumField() {
			sf := v.Type().Field(i)
			if !sf.IsExported() || sf.Tag.Get("ignored") == "true" || nestedEnv(v.Field(i)) {
				continue
			}
			fn(sf, v.Field(i), v.Type())
		}
	}
}

// envName is the variable of a setting's field.
func envName(sf reflect.StructField) string {
	name := sf.Tag.Get("envconfig")
	if name == "" {
		name = sf.Name
	}
	return strings.ToUpper(envPrefix + "_" + name)
}

// envVar is one setting as --help lists it.
type envVar struct {
	Name, Default, Desc string
	// Field is the struct field it comes from (Type.Field), for tests.
	Field string
}

// envVars lists the settings of root and the structs nested in it, in
// field order, as loadEnv reads them: variable, default, meaning (the
// field's desc tag).
func envVars(root any) []envVar {
	var out []envVar
	eachSetting(root, func(sf reflect.StructField, _ reflect.Value, in reflect.Type) {
		out = append(out, envVar{
			Name:    envName(sf),
			Default: sf.Tag.Get("default"),
			Desc:    sf.Tag.Get("desc"),
			Field:   in.String() + "." + sf.Name,
		})
	})
	return out
}

// printEnv writes the settings table of --help.
func printEnv(w io.Writer, vars []envVar) {
	if len(vars) == 0 {
		return
	}
	fmt.Fprintln(w, "\nEnvironment:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tMEANING")
	seen := map[string]bool{}
	for _, v := range vars {
		if seen[v.Name] {
			continue // LOG_FORMAT of two parts, say
		}
		seen[v.Name] = true
		def := v.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, def, v.Desc)
	}
	_ = tw.Flush()
}
