package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command line of one subcommand: the flags, where the help goes, and the
// settings its --help lists.
type cmdLine struct {
	fl             *flag.FlagSet
	stdout, stderr io.Writer
	vars           *[]envVar
}

// newFlags starts a subcommand's flag set; summary and usage become its
// --help: what the command does, its flags, then the WHARFJOBS_* settings
// it reads (see env).
func newFlags(name, usage, summary string, stdout, stderr io.Writer) cmdLine {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	vars := new([]envVar)
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: wharfjobs %s %s\n\n%s\n\nFlags (before or after the arguments):\n", name, usage, summary)
		fl.PrintDefaults()
		printEnv(fl.Output(), *vars)
	}
	return cmdLine{fl: fl, stdout: stdout, stderr: stderr, vars: vars}
}

// env adds the settings of the configuration structs roots (pointers,
// as loadEnv takes them) to the command's --help.
func (c cmdLine) env(roots ...any) {
	for _, r := range roots {
		*c.vars = append(*c.vars, envVars(r)...)
	}
}

// envVar adds a setting that is read without a struct (PORT, say).
func (c cmdLine) envVar(name, def, desc string) {
	*c.vars = append(*c.vars, envVar{Name: name, Default: def, Desc: desc})
}

// flagCollector is the stdout of a command run for its flags alone
// (completion): parse hands it the flag set and the settings, and stops.
type flagCollector struct {
	fl   *flag.FlagSet
	vars []envVar
}

func (*flagCollector) Write(p []byte) (int, error) { return len(p), nil }

// parse parses args, flags anywhere among them, and checks that between
// min and max arguments remain (max < 0: no limit). --help goes to stdout
// (errHelp); a bad flag or argument count prints the usage to stderr
// (errUsage).
func (c cmdLine) parse(args []string, min, max int) ([]string, error) {
	if fc, ok := c.stdout.(*flagCollector); ok {
		fc.fl, fc.vars = c.fl, *c.vars
		return nil, errHelp
	}
	var out bytes.Buffer
	c.fl.SetOutput(&out)
	positional, err := parseInterspersed(c.fl, args)
	c.fl.SetOutput(c.stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = io.Copy(c.stdout, &out)
		return nil, errHelp
	case err != nil:
		_, _ = io.Copy(c.stderr, &out)
		return nil, errUsage
	case len(positional) < min || max >= 0 && len(positional) > max:
		want := fmt.Sprintf("%d to %d arguments", min, max)
		switch {
		case max == 0:
			want = "no arguments"
		case min == max:
			want = fmt.Sprintf("%d argument(s)", min)
		case max < 0:
			want = fmt.Sprintf("at least %d argument(s)", min)
		}
		fmt.Fprintf(c.stderr, "wharfjobs %s: takes %s, got %d: %s\n\n", c.fl.Name(), want, len(positional), strings.Join(positional, " "))
		c.fl.Usage()
		return nil, errUsage
	}
	return positional, nil
}

// parseInterspersed parses flags before and after the positional
// arguments (`check DIR --json`, as people type it) and returns the
// positional ones; "--" ends the flags.
func parseInterspersed(fl *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fl.Parse(args); err != nil {
			return nil, err
		}
		args = fl.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" && len(positional) == 0 {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// assignments reads NAME=VALUE flags (--input, --var) into a map; flag
// names the flag in errors.
func (s stringList) assignments(flag string) (map[string]any, error) {
	out := map[string]any{}
	for _, in := range s {
		k, v, ok := strings.Cut(in, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: expected NAME=VALUE", flag, in)
		}
		out[k] = v
	}
	return out, nil
}
