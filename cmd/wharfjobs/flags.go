package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command line of one subcommand: the flags, where the help goes, and how
// many arguments it takes.
type cmdLine struct {
	fl             *flag.FlagSet
	stdout, stderr io.Writer
}

// newFlags starts a subcommand's flag set; summary and usage become its
// --help: what the command does, then its flags.
func newFlags(name, usage, summary string, stdout, stderr io.Writer) cmdLine {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: wharfjobs %s %s\n\n%s\n\nFlags (before or after the arguments):\n", name, usage, summary)
		fl.PrintDefaults()
	}
	return cmdLine{fl: fl, stdout: stdout, stderr: stderr}
}

// parse parses args, flags anywhere among them, and checks that between
// min and max arguments remain (max < 0: no limit). --help goes to stdout
// (errHelp); a bad flag or argument count prints the usage to stderr
// (errUsage).
func (c cmdLine) parse(args []string, min, max int) ([]string, error) {
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
