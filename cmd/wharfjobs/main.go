// Command wharfjobs is the one binary of every wharfjobs role: the
// provisioner and aggregator functions, the build worker, and the tools a
// developer or operator runs by hand.
//
// The command line is the standard library's flag package and about 300
// lines around it (flags.go, env.go, completion.go), not a framework such
// as cobra, on purpose. What a framework would bring is here already:
// flags before or after the arguments (parseInterspersed), --help on
// stdout with exit 0, usage errors on stderr with exit 64 (ExitUsage),
// each command's WHARFJOBS_* settings in its --help, generated from the
// envconfig structs the command reads (their desc tags), and bash and zsh
// completion generated from commands() and each command's flag.FlagSet.
// What it would cost is a dependency tree in a binary that does not only
// serve: it is also copied into every step pod and runs there as
// step-exec and workspace-fetch, where its size is pulled, and its
// dependencies trusted, once per step.
//
// Exit codes: 0 success (a build completed), 1 error, 2 a build failed
// or was cancelled, 3 a build could not start, 4 the store failed, 64 a
// usage error (see usage).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"version":         {"print the version and exit", runVersion},
		"dev":             {"run provisioner, aggregator and local workers in one process (--demo: one example build)", runDev},
		"logs":            {"print a build's log from the store (--follow while it runs)", runLogs},
		"status":          {"print a build's status, or a table of recent builds", runStatus},
		"worker":          {"run one build (the body of a build Job's pod)", runWorker},
		"provisioner":     {"serve the trigger API wharf-api calls (creates build Jobs)", runProvisioner},
		"aggregator":      {"relay logs, status and artifacts from the store to wharf-api", runAggregator},
		"run":             {"run a directory's .wharf-ci.yml locally, showing the log live", runRun},
		"check":           {"parse and resolve a .wharf-ci.yml without running it: errors, or the plan", runCheck},
		"workspace-fetch": {"fetch a build's workspace into a step pod (init container)", runWorkspaceFetch},
		"artifacts":       {"list or download a build's artifacts and test results", runArtifacts},
		"store-setup":     {"create the bucket and the cache expiry rule (once per installation)", runStoreSetup},
		"step-exec":       {"run a step's command, then upload its declared files (step container entrypoint)", runStepExec},
		"completion":      {"print a bash or zsh completion script", runCompletion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// ExitUsage is the exit code of a usage error (a wrong flag or argument):
// sysexits' EX_USAGE, which no build outcome uses (0 completed, 1 error,
// 2 build failed, 3 build invalid, 4 store failure), so a script can tell
// a typo from a failed build.
const ExitUsage = 64

// run dispatches to a subcommand and returns the exit code (see usage).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "wharfjobs: unknown command %q\n\n", args[0])
		usage(stderr)
		return ExitUsage
	}
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		var code exitCode
		switch {
		case errors.Is(err, errHelp):
			return 0
		case errors.Is(err, errUsage):
			return ExitUsage
		case errors.As(err, &code):
			return int(code)
		}
		fmt.Fprintf(stderr, "wharfjobs %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// errUsage reports a usage error that the subcommand already printed;
// errHelp that it printed its help as asked.
var (
	errUsage = errors.New("usage")
	errHelp  = errors.New("help")
)

func usage(w io.Writer) {
	fmt.Fprintln(w, "wharfjobs runs Wharf CI builds as Kubernetes Jobs.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: wharfjobs <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'wharfjobs <command> --help' for a command's flags and the WHARFJOBS_*")
	fmt.Fprintln(w, "environment variables it reads, with their defaults; flags may come before or")
	fmt.Fprintln(w, "after the arguments. Shell completion: source <(wharfjobs completion bash), or zsh.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Exit codes: 0 success (a build completed), 1 error, 2 a build failed or was")
	fmt.Fprintln(w, "cancelled, 3 a build could not start (clone or pipeline error; check: problems")
	fmt.Fprintln(w, "found are 1), 4 the store failed, 64 usage error.")
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if dirty {
				rev += "-dirty"
			}
			return "devel+" + rev
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "devel"
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "wharfjobs version: takes no arguments, got %q\n", strings.Join(args, " "))
		return errUsage
	}
	bi, _ := debug.ReadBuildInfo()
	goVersion := ""
	if bi != nil {
		goVersion = bi.GoVersion
	}
	fmt.Fprintf(stdout, "wharfjobs %s (%s)\n", versionString(), goVersion)
	return nil
}
