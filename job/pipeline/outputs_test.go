package pipeline

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseOutputs: artifacts, testResults and cache are wharfjobs'
// extensions, put inside the step-type map because wharf-cmd reads only
// the keys it names there and ignores the rest (pkg/steps/container.go:46-53
// at 421514f visits image, os, shell, secretName, serviceAccount,
// certificatesMountPath and cmds by name), so the same file still runs in
// wharf-cmd; here they are decoded, and not warned about.
func TestParseOutputs(t *testing.T) {
	src := `
test:
  unit:
    container:
      image: mcr.microsoft.com/dotnet/sdk:8.0
      cmds: ["dotnet test --logger trx --results-directory TestResults"]
      artifacts: ["bin/**/*.nupkg", "out/${REPO_NAME}.bin"]
      testResults: ["TestResults/*.trx"]
      cache: {key: nuget, files: ["**/packages.lock.json"], paths: [".nuget/packages"], policy: pull-push}
  junit:
    container:
      image: golang
      cmds: [go test]
      artifacts: {paths: [report], when: always, ifNoFilesFound: error}
      testResults: {paths: [report.xml], format: junit, when: onFailure}
      cache: {key: go, fallbackKeys: [go-main], paths: [.gomod], policy: pull, when: always}
build:
  image:
    docker:
      file: Dockerfile
      tag: latest
      artifacts: [image.tar]
`
	def, err := Parse([]byte(src), Options{Vars: VarMap{"REPO_NAME": "app", "REPO_GROUP": "g", "REG_URL": "r"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(def.Warnings) != 0 {
		t.Fatalf("extension fields warned about: %v", def.Warnings)
	}
	unit := def.Stages[0].Steps[0].Outputs
	want := Outputs{
		Artifacts:   &Artifacts{Paths: []string{"bin/**/*.nupkg", "out/app.bin"}, When: OnSuccess, IfNoFilesFound: NoFilesWarn},
		TestResults: &TestResults{Paths: []string{"TestResults/*.trx"}, When: Always, IfNoFilesFound: NoFilesWarn},
		Cache:       &Cache{Key: "nuget", Files: []string{"**/packages.lock.json"}, Paths: []string{".nuget/packages"}, Policy: CachePullPush, When: OnSuccess},
	}
	if !reflect.DeepEqual(unit, want) {
		t.Fatalf("unit outputs = %+v %+v %+v", unit.Artifacts, unit.TestResults, unit.Cache)
	}
	junit := def.Stages[0].Steps[1].Outputs
	want = Outputs{
		Artifacts:   &Artifacts{Paths: []string{"report"}, When: Always, IfNoFilesFound: NoFilesError},
		TestResults: &TestResults{Paths: []string{"report.xml"}, Format: FormatJUnit, When: OnFailure, IfNoFilesFound: NoFilesWarn},
		Cache:       &Cache{Key: "go", FallbackKeys: []string{"go-main"}, Paths: []string{".gomod"}, Policy: CachePull, When: Always},
	}
	if !reflect.DeepEqual(junit, want) {
		t.Fatalf("junit outputs = %+v %+v %+v", junit.Artifacts, junit.TestResults, junit.Cache)
	}
	if img := def.Stages[1].Steps[0].Outputs; img.Artifacts == nil || img.Artifacts.Paths[0] != "image.tar" || img.TestResults != nil || img.Cache != nil {
		t.Fatalf("docker step outputs = %+v", img)
	}
}

func TestParseOutputsRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ name, fields, want string }{
		{"escaping glob", `artifacts: ["../secrets/*"]`, `stages.s.steps.x.container.artifacts[0]: "../secrets/*" leads outside the repository (..)`},
		{"escaping inside", `artifacts: ["a/../../b"]`, `"a/../../b" leads outside the repository`},
		{"absolute", `testResults: ["/etc/passwd"]`, `container.testResults[0]: "/etc/passwd" is absolute`},
		{"empty list", `artifacts: []`, `artifacts: expected at least one path pattern`},
		{"bad glob", `artifacts: ["a/[b"]`, `"a/[b" is not a valid pattern`},
		{"bad when", `artifacts: {paths: [a], when: sometimes}`, `artifacts.when: "sometimes" is not one of onSuccess, onFailure, always`},
		{"no paths", `artifacts: {when: always}`, `artifacts.paths: required field is missing`},
		{"unknown field", `artifacts: {paths: [a], expire: 1d}`, `artifacts.expire: unknown field; expected paths, when, ifNoFilesFound`},
		{"bad format", `testResults: {paths: [a], format: nunit}`, `testResults.format: "nunit" is not a test result format; expected trx or junit`},
		{"cache key with ../", `cache: {key: ../other-project, paths: [a]}`, `cache.key: cache key "../other-project": invalid (must not start with '.')`},
		{"cache key with /", `cache: {key: a/b, paths: [a]}`, `cache.key: cache key "a/b": invalid (only letters, digits`},
		{"fallback key", `cache: {key: a, fallbackKeys: ["x y"], paths: [a]}`, `cache.fallbackKeys[0]: cache key "x y": invalid`},
		{"cache without key", `cache: {paths: [a]}`, `cache.key: required field is missing`},
		{"cache without paths", `cache: {key: a}`, `cache.paths: required field is missing`},
		{"cache policy", `cache: {key: a, paths: [a], policy: both}`, `cache.policy: "both" is not one of pull, push, pull-push`},
		{"cache paths escape", `cache: {key: a, paths: [../../root]}`, `cache.paths[0]: "../../root" leads outside`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "s:\n  x:\n    container:\n      image: alpine\n      cmds: [true]\n      " + tc.fields + "\n"
			_, err := Parse([]byte(src), Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}
