// Package pipeline is the .wharf-ci.yml model and parser: inputs,
// environments, stages in file order, steps of one stage run in parallel,
// and ${variable} substitution. Every step type is expanded into a
// container step (image, shell, commands) so runners know only one kind.
package pipeline

import (
	"fmt"
	"strings"
)

// FileName is the pipeline file at the root of a repository.
const FileName = ".wharf-ci.yml"

// Definition is a parsed .wharf-ci.yml.
type Definition struct {
	Inputs       []Input
	Environments []Environment
	// Stages in file order.
	Stages []Stage
	// Warnings are problems that do not stop the build, such as a field a
	// step type does not know (wharf-cmd ignores those): the worker prints
	// them to the build log.
	Warnings []Error
}

// InputType is the type of a build input.
type InputType string

// Input types.
const (
	InputString   InputType = "string"
	InputPassword InputType = "password"
	InputNumber   InputType = "number"
	InputChoice   InputType = "choice"
)

// Input is a value the person starting the build may give (wharf-api
// sends them as VARS).
type Input struct {
	Name    string
	Type    InputType
	Default any
	// Values are the allowed values of a choice input.
	Values []string
	Pos    Pos
}

// Environment is a named set of variables; a build runs in at most one.
type Environment struct {
	Name string
	Vars map[string]any
	Pos  Pos
}

// RunsIf decides whether a stage runs given how the build went so far.
type RunsIf string

// RunsIf values.
const (
	RunsIfSuccess RunsIf = "success" // only if nothing failed so far (default)
	RunsIfFail    RunsIf = "fail"    // only if something failed
	RunsIfAlways  RunsIf = "always"  // in any case
)

// Stage is a group of steps that run in parallel.
type Stage struct {
	Name string
	// Environments, when set, limits the stage to builds in one of them.
	Environments []string
	RunsIf       RunsIf
	Steps        []Step
	Pos          Pos
}

// RunsIn reports whether the stage runs in environment env.
func (s Stage) RunsIn(env string) bool {
	if len(s.Environments) == 0 {
		return true
	}
	for _, e := range s.Environments {
		if e == env {
			return true
		}
	}
	return false
}

// Step is one step, already expanded into a container.
type Step struct {
	Name string
	// Type is the step type the file used (container, docker, helm, ...).
	Type      string
	Container Container
	// Outputs are the artifacts, test results and cache it declares.
	Outputs Outputs
	Pos     Pos
}

// Container is what a step runs: commands in a shell in an image.
type Container struct {
	Image string
	Cmds  []string
	// Shell runs each command: Shell -c cmd [/bin/sh].
	Shell                 string
	OS                    string // linux or windows
	SecretName            string // Kubernetes Secret mounted into the step
	ServiceAccount        string // the step pod's ServiceAccount; none when empty
	CertificatesMountPath string
	// Env are extra environment variables the expansion of a step type
	// needs (never secrets: those come from SecretName, SecretEnv or
	// Mounts).
	Env map[string]string
	// SecretEnv maps environment variable names to keys of the step's
	// Secret (SecretName, project-scoped by the runner). When it is set the
	// runner gives the step only these variables from the Secret, each
	// from its key (a Kubernetes secretKeyRef), instead of every key under
	// its own name: a docker step's secretArgs "ARG=key" become
	// "--build-arg ARG" with ARG taken from key, so the value is never in
	// the command or the Pod spec, as wharf-cmd does.
	SecretEnv map[string]string
	// Mounts are Secrets and ConfigMaps of the cluster, named as they are
	// (not project-scoped), that the runner mounts into the step as files:
	// registry credentials, kubeconfigs and the NuGet token the step types
	// of wharf-cmd read from fixed places.
	Mounts []Mount
}

// Mount is a Secret or a ConfigMap the runner mounts as a directory.
type Mount struct {
	// Secret or ConfigMap names the object; exactly one is set.
	Secret, ConfigMap string
	// Path is the directory in the container.
	Path string
	// Items maps the keys to mount to their file names in Path; nil
	// mounts every key under its own name.
	Items map[string]string
}

// Pos is a position in the file, 1-based.
type Pos struct {
	Line, Col int
}

// Error is one problem in a file, with where it is and what was expected.
type Error struct {
	File string
	Pos  Pos
	// Path names the element, e.g. "stages.build.steps.compile".
	Path string
	Msg  string
}

func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	}
	if e.Pos.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Pos.Line)
		if e.Pos.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Pos.Col)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one pass over a file.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
