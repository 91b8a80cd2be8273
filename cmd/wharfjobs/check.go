package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/kuberun"
)

// CheckSchemaVersion is the version of `wharfjobs check --json`'s output.
// Fields are only ever added within a version; a removal or a change of
// meaning makes a new one.
const CheckSchemaVersion = 1

// checkOutput is `wharfjobs check --json`: either the plan (Stages) or
// the problems (Errors). docs/using.md documents every field.
type checkOutput struct {
	SchemaVersion int               `json:"schemaVersion"`
	File          string            `json:"file"`
	Environment   string            `json:"environment"`
	Errors        []checkProblem    `json:"errors,omitempty"`
	Warnings      []checkProblem    `json:"warnings,omitempty"`
	Inputs        []checkInput      `json:"inputs,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	Stages        []checkStage      `json:"stages,omitempty"`
}

type checkProblem struct {
	Line    int    `json:"line,omitempty"`
	Col     int    `json:"col,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

type checkInput struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Default any    `json:"default,omitempty"`
	// Value is what the build would use (--input, else the default);
	// a password's is masked.
	Value any `json:"value,omitempty"`
}

type checkStage struct {
	Name         string   `json:"name"`
	Line         int      `json:"line"`
	Environments []string `json:"environments,omitempty"`
	RunsIf       string   `json:"runsIf"`
	// Runs is false when the stage is not for the chosen environment;
	// RunsWhen says under which outcome of the earlier stages it runs.
	Runs      bool        `json:"runs"`
	RunsWhen  string      `json:"runsWhen"`
	Steps     []checkStep `json:"steps"`
	SkipCause string      `json:"skipCause,omitempty"`
}

type checkStep struct {
	Name           string `json:"name"`
	Line           int    `json:"line"`
	Type           string `json:"type"`
	Image          string `json:"image"`
	Shell          string `json:"shell"`
	OS             string `json:"os"`
	Script         string `json:"script"`
	SecretName     string `json:"secretName,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Env is what the step type adds to the build's variables (for
	// example helm-package's CHART_REPO: where the chart goes).
	Env map[string]string `json:"env,omitempty"`
	// SecretEnv maps variables to keys of the step's Secret (docker's
	// secretArgs).
	SecretEnv map[string]string `json:"secretEnv,omitempty"`
	// Mounts are the Secrets and ConfigMaps mounted by name (registry
	// credentials, kubeconfigs).
	Mounts []checkMount `json:"mounts,omitempty"`
	// Artifacts, TestResults and Cache are the files it declares.
	Artifacts   *pipeline.Artifacts   `json:"artifacts,omitempty"`
	TestResults *pipeline.TestResults `json:"testResults,omitempty"`
	Cache       *pipeline.Cache       `json:"cache,omitempty"`
	// Kube is what the kube runner would run, Local what the local one
	// would.
	Kube  checkRunner `json:"kube"`
	Local checkRunner `json:"local"`
}

type checkMount struct {
	Path      string            `json:"path"`
	Secret    string            `json:"secret,omitempty"`
	ConfigMap string            `json:"configMap,omitempty"`
	Items     map[string]string `json:"items,omitempty"`
}

type checkRunner struct {
	Command []string `json:"command,omitempty"`
	// Secret is the Kubernetes Secret the step's secretName reaches.
	Secret string `json:"secret,omitempty"`
	// Refused says why this runner would not run the step.
	Refused string `json:"refused,omitempty"`
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("check", "[--env E] [--input N=V]... [--var N=V]... [--json] [DIR|FILE]", "Parses and resolves a .wharf-ci.yml (default ./.wharf-ci.yml) without running anything.\nPrints each problem with file:line:col (exit 1), or the plan: stages, whether they run,\neach step's image, script and the Secrets and ServiceAccount it reaches (exit 0).", stdout, stderr)
	fl := cl.fl
	envName := fl.String("env", "", "environment to resolve the pipeline for")
	asJSON := fl.Bool("json", false, "print the plan (or the errors) as JSON, in the schema docs/using.md documents")
	var inputs, vars stringList
	fl.Var(&inputs, "input", "input value NAME=VALUE, as wharf-api's VARS gives it (repeatable)")
	fl.Var(&vars, "var", "variable NAME=VALUE over the built-in and file variables, e.g. WHARF_PROJECT_ID=17 (repeatable)")
	cl.env(&worker.Config{}, &kuberun.Config{})
	positional, err := cl.parse(args, 0, 1)
	if err != nil {
		return err
	}
	target := "."
	if len(positional) == 1 {
		target = positional[0]
	}
	dir, file := target, ""
	if info, err := os.Stat(target); err == nil && !info.IsDir() {
		dir, file = filepath.Dir(target), target
	}
	req := job.Request{BuildRef: "0", Environment: *envName}
	if req.Vars, err = inputs.assignments("input"); err != nil {
		return err
	}
	over, err := vars.assignments("var")
	if err != nil {
		return err
	}
	// The request fields the worker turns into variables come from --var
	// too, so the plan resolves secrets as the build would.
	req.ProjectID, _ = over["WHARF_PROJECT_ID"].(string)
	req.Instance, _ = over["WHARF_INSTANCE"].(string)
	var workerCfg worker.Config
	if err := loadEnv(&workerCfg); err != nil {
		return err
	}
	var kubeCfg kuberun.Config
	if err := loadEnv(&kubeCfg); err != nil {
		return err
	}
	plan, err := worker.Plan(ctx, worker.PlanOptions{Dir: dir, File: file, Request: req, Vars: over, Config: workerCfg})
	out := checkOutput{SchemaVersion: CheckSchemaVersion, File: displayPath(file, dir), Environment: *envName}
	var perrs pipeline.Errors
	switch {
	case errors.As(err, &perrs):
		for _, e := range perrs {
			out.Errors = append(out.Errors, checkProblem{Line: e.Pos.Line, Col: e.Pos.Col, Path: e.Path, Message: plan.Mask(e.Msg)})
		}
	case err != nil:
		return err
	default:
		out.fill(plan, req, kubeCfg)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		out.print(stdout, stderr)
	}
	if len(out.Errors) > 0 {
		return exitCode(1)
	}
	return nil
}

// displayPath names the pipeline file as the user gave it.
func displayPath(file, dir string) string {
	if file != "" {
		return file
	}
	return filepath.Join(dir, pipeline.FileName)
}

func (out *checkOutput) fill(plan worker.PlanResult, req job.Request, kubeCfg kuberun.Config) {
	def := plan.Definition
	out.Env = plan.Env
	for _, w := range def.Warnings {
		out.Warnings = append(out.Warnings, checkProblem{Line: w.Pos.Line, Col: w.Pos.Col, Path: w.Path, Message: plan.Mask(w.Msg)})
	}
	for _, in := range def.Inputs {
		ci := checkInput{Name: in.Name, Type: string(in.Type), Default: in.Default, Value: in.Default}
		if v, ok := req.Vars[in.Name]; ok {
			ci.Value = v
		}
		if in.Type == pipeline.InputPassword {
			ci.Default, ci.Value = maskAny(ci.Default), maskAny(ci.Value)
		}
		out.Inputs = append(out.Inputs, ci)
	}
	kr := &kuberun.Runner{Config: kubeCfg}
	for _, st := range def.Stages {
		cs := checkStage{Name: st.Name, Line: st.Pos.Line, Environments: st.Environments, RunsIf: string(st.RunsIf), Runs: st.RunsIn(req.Environment), Steps: []checkStep{}}
		cs.RunsWhen = map[pipeline.RunsIf]string{
			pipeline.RunsIfSuccess: "when every earlier step succeeded",
			pipeline.RunsIfFail:    "only when an earlier step failed",
			pipeline.RunsIfAlways:  "always",
		}[st.RunsIf]
		if !cs.Runs {
			cs.SkipCause = fmt.Sprintf("not for environment %q (only %s)", req.Environment, strings.Join(st.Environments, ", "))
		}
		for _, step := range st.Steps {
			c := step.Container
			s := checkStep{Name: step.Name, Line: step.Pos.Line, Type: step.Type, Image: c.Image, Shell: c.Shell, OS: c.OS,
				Script: plan.Mask(kuberun.Script(c)), SecretName: c.SecretName, ServiceAccount: c.ServiceAccount, Env: c.Env, SecretEnv: c.SecretEnv,
				Artifacts: step.Outputs.Artifacts, TestResults: step.Outputs.TestResults, Cache: step.Outputs.Cache}
			for _, m := range c.Mounts {
				s.Mounts = append(s.Mounts, checkMount{Path: m.Path, Secret: m.Secret, ConfigMap: m.ConfigMap, Items: m.Items})
			}
			ws := worker.Step{Ref: req.Ref(), Stage: st.Name, Name: step.Name, Container: c, Env: plan.Env, Instance: req.Instance, ProjectID: req.ProjectID, Type: step.Type}
			if c.SecretName != "" {
				s.Kube.Secret, _ = job.ProjectSecretName(req.Instance, req.ProjectID, c.SecretName)
			}
			if pod, err := kr.Pod(ws, "workspace"); err != nil {
				s.Kube.Refused = plan.Mask(err.Error())
			} else {
				s.Kube.Command = pod.Spec.Containers[0].Command
			}
			s.Local.Command = []string{c.Shell, "<script file>"}
			cs.Steps = append(cs.Steps, s)
		}
		out.Stages = append(out.Stages, cs)
	}
}

func maskAny(v any) any {
	if v == nil {
		return nil
	}
	return "*****"
}

// print writes the plan, or the problems, for a person.
func (out *checkOutput) print(stdout, stderr io.Writer) {
	if len(out.Errors) > 0 {
		for _, e := range out.Errors {
			fmt.Fprintln(stderr, pipeline.Error{File: out.File, Pos: pipeline.Pos{Line: e.Line, Col: e.Col}, Path: e.Path, Msg: e.Message}.Error())
		}
		fmt.Fprintf(stderr, "%d problem(s) in %s\n", len(out.Errors), out.File)
		return
	}
	env := "no environment"
	if out.Environment != "" {
		env = fmt.Sprintf("environment %q", out.Environment)
	}
	fmt.Fprintf(stdout, "%s: %d stage(s), %s\n", out.File, len(out.Stages), env)
	for _, w := range out.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", pipeline.Error{File: out.File, Pos: pipeline.Pos{Line: w.Line, Col: w.Col}, Path: w.Path, Msg: w.Message}.Error())
	}
	for _, in := range out.Inputs {
		if in.Value == nil {
			fmt.Fprintf(stdout, "input %s (%s): no value\n", in.Name, in.Type)
			continue
		}
		fmt.Fprintf(stdout, "input %s (%s) = %v\n", in.Name, in.Type, in.Value)
	}
	for _, st := range out.Stages {
		if !st.Runs {
			fmt.Fprintf(stdout, "\nstage %s: skipped, %s\n", st.Name, st.SkipCause)
			continue
		}
		fmt.Fprintf(stdout, "\nstage %s: runs %s\n", st.Name, st.RunsWhen)
		for _, s := range st.Steps {
			fmt.Fprintf(stdout, "  step %s: %s, image %s, shell %s\n", s.Name, s.Type, s.Image, s.Shell)
			for _, line := range strings.Split(s.Script, "\n") {
				fmt.Fprintf(stdout, "    | %s\n", line)
			}
			if s.Kube.Secret != "" {
				fmt.Fprintf(stdout, "    secret: %s (its keys as variables)\n", s.Kube.Secret)
			}
			if s.ServiceAccount != "" {
				fmt.Fprintf(stdout, "    serviceAccount: %s\n", s.ServiceAccount)
			}
			for _, k := range slices.Sorted(maps.Keys(s.Env)) {
				fmt.Fprintf(stdout, "    env %s=%s\n", k, s.Env[k])
			}
			for _, m := range s.Mounts {
				fmt.Fprintf(stdout, "    mounts %s%s at %s\n", map[bool]string{true: "Secret ", false: "ConfigMap "}[m.Secret != ""], m.Secret+m.ConfigMap, m.Path)
			}
			if a := s.Artifacts; a != nil {
				fmt.Fprintf(stdout, "    artifacts %s (%s, if no files: %s)\n", strings.Join(a.Paths, ", "), a.When, a.IfNoFilesFound)
			}
			if t := s.TestResults; t != nil {
				fmt.Fprintf(stdout, "    test results %s (%s, %s)\n", strings.Join(t.Paths, ", "), cmp.Or(string(t.Format), "trx or junit"), t.When)
			}
			if c := s.Cache; c != nil {
				fmt.Fprintf(stdout, "    cache %s of %s (%s, saved %s)\n", c.Key, strings.Join(c.Paths, ", "), c.Policy, c.When)
			}
			if s.Kube.Refused != "" {
				fmt.Fprintf(stdout, "    in a cluster: REFUSED: %s\n", s.Kube.Refused)
			}
		}
	}
	if len(out.Env) > 0 {
		fmt.Fprintln(stdout, "\nevery step's environment:")
		for _, k := range slices.Sorted(maps.Keys(out.Env)) {
			fmt.Fprintf(stdout, "  %s=%s\n", k, out.Env[k])
		}
	}
}
