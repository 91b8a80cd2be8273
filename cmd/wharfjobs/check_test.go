package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestCheckGolden")

// checkVars are what wharf-api and the operator would provide; the golden
// plans resolve docker and helm destinations with them.
var checkVars = []string{"--var", "WHARF_PROJECT_ID=17", "--var", "WHARF_INSTANCE=prod", "--var", "REPO_NAME=app", "--var", "REPO_GROUP=default",
	"--var", "REG_URL=registry.example.org", "--var", "CHART_REPO=https://charts.example.org"}

// TestCheckGolden compares `wharfjobs check --json` for the repository's
// testdata pipelines with testdata/check/*.json (go test -run
// TestCheckGolden -update rewrites them; review the diff).
func TestCheckGolden(t *testing.T) {
	pipelines := map[string]string{}
	files, _ := filepath.Glob("../../job/pipeline/testdata/valid/*.yml")
	for _, f := range files {
		pipelines["pipeline-"+strings.TrimSuffix(filepath.Base(f), ".yml")] = f
	}
	dirs, _ := filepath.Glob("../../job/worker/testdata/*/.wharf-ci.yml")
	for _, f := range dirs {
		pipelines["worker-"+filepath.Base(filepath.Dir(f))] = f
	}
	pipelines["demo"] = "demorepo/wharf-ci.yml"
	if len(pipelines) < 5 {
		t.Fatalf("found only %d testdata pipelines", len(pipelines))
	}
	for name, src := range pipelines {
		t.Run(name, func(t *testing.T) {
			// A directory outside any git repository: no GIT_* variables
			// from this one.
			dir := t.TempDir()
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, ".wharf-ci.yml"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"check", dir, "--json"}, checkVars...), &out, &errb)
			got := strings.ReplaceAll(out.String(), dir, "REPO")
			var doc checkOutput
			if err := json.Unmarshal([]byte(got), &doc); err != nil {
				t.Fatalf("exit %d, not JSON: %v\n%s\n%s", code, err, got, errb.String())
			}
			if (code == 0) != (len(doc.Errors) == 0) || code > 1 {
				t.Fatalf("exit %d with %d errors", code, len(doc.Errors))
			}
			golden := filepath.Join("testdata", "check", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("check --json differs from %s (run with -update and review the diff):\n%s", golden, got)
			}
		})
	}
}

func TestCheckErrorsAndPlan(t *testing.T) {
	dir := t.TempDir()
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, ".wharf-ci.yml"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("inputs:\n  - name: PW\n    type: password\nbuild:\n  runs-if: ${PW}\n  compile:\n    container:\n      image: golang\n      cmds: [go build]\n")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "--input", "PW=hunter2-secret", dir}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), ".wharf-ci.yml:5:") || !strings.Contains(errb.String(), "stages.build.runs-if") || strings.Contains(errb.String(), "hunter2-secret") {
		t.Fatalf("errors:\n%s", errb.String())
	}

	write("inputs:\n  - name: PW\n    type: password\nenvironments:\n  stage: {}\n  prod: {}\nbuild:\n  compile:\n    container:\n      image: golang\n      imagePullPolicy: Always\n      secretName: registry\n      serviceAccount: deployer\n      cmds:\n        - go build\n        - echo ${PW}\ndeploy:\n  environments: [prod]\n  ship:\n    container:\n      image: alpine\n      cmds: [true]\n")
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"check", dir, "--json", "--env", "stage", "--input", "PW=hunter2-secret", "--var", "WHARF_PROJECT_ID=17"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	var doc checkOutput
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "hunter2-secret") {
		t.Fatalf("the password is in the plan:\n%s", out.String())
	}
	if len(doc.Warnings) != 1 || doc.Warnings[0].Path != "stages.build.steps.compile.container.imagePullPolicy" {
		t.Fatalf("warnings %+v", doc.Warnings)
	}
	step := doc.Stages[0].Steps[0]
	if step.Script != "go build\necho *****" || step.Kube.Secret != "wharf-local-project-17-secretname-registry" ||
		!strings.Contains(step.Kube.Refused, "WHARFJOBS_STEP_SERVICE_ACCOUNTS") || doc.Stages[1].Runs || doc.Stages[1].SkipCause == "" {
		t.Fatalf("plan: %+v", doc)
	}
}
