package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parseFile(t *testing.T, path string, opts Options) (*Definition, error) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts.File = filepath.Base(path)
	return Parse(src, opts)
}

var buildVars = VarMap{
	"BUILD_REF": 42, "GIT_COMMIT": "abc123", "REPO_NAME": "app", "REPO_GROUP": "Default/Team",
	"REG_URL": "registry.example.org", "CHART_REPO": "https://charts.example.org",
}

func TestParseGoService(t *testing.T) {
	def, err := parseFile(t, "testdata/valid/go-service.yml", Options{Environment: "stage", Vars: buildVars, Inputs: map[string]any{"LOG_LEVEL": "debug"}})
	if err != nil {
		t.Fatal(err)
	}
	var stages []string
	for _, s := range def.Stages {
		stages = append(stages, s.Name)
	}
	if got := strings.Join(stages, ","); got != "test,build,deploy,notify-failure" {
		t.Fatalf("stages in file order = %s", got)
	}
	if len(def.Inputs) != 3 || def.Inputs[1].Default != 2 || def.Inputs[0].Values[1] != "info" || def.Inputs[2].Type != InputPassword {
		t.Fatalf("inputs = %+v", def.Inputs)
	}
	test := def.Stages[0]
	if len(test.Steps) != 2 || test.Steps[0].Name != "unit" || test.Steps[0].Container.Shell != "/bin/sh" || test.Steps[0].Container.Cmds[1] != "go test -race ./..." {
		t.Fatalf("test stage = %+v", test)
	}
	img := def.Stages[1].Steps[0]
	cmd := img.Container.Cmds[0]
	for _, want := range []string{
		// registry and group as given, not lower-cased, and the step's
		// name after REPO_NAME because they differ
		// (wharf-cmd pkg/steps/docker.go:81-87 at 421514f).
		"--destination registry.example.org/Default/Team/app/image:abc123",
		"--destination registry.example.org/Default/Team/app/image:latest",
		"--build-arg LOG_LEVEL=debug", // request input beats the default
	} {
		if !strings.Contains(cmd, want) {
			t.Errorf("docker command %q lacks %q", cmd, want)
		}
	}
	if img.Type != "docker" || img.Container.Image != DefaultImages.Kaniko {
		t.Fatalf("docker step = %+v", img)
	}
	deploy := def.Stages[2]
	if !deploy.RunsIn("stage") || deploy.RunsIn("dev") {
		t.Fatal("deploy stage environments")
	}
	helm := deploy.Steps[0].Container
	// wharf-cmd's command line, no --wait (pkg/steps/helm.go:107-123 at
	// 421514f), with --set, which wharf-cmd drops.
	if want := "helm upgrade --install app app --repo https://charts.example.org --namespace app-stage --version 1.2.3 --set host=stage.example.org --set image.tag=abc123 --set replicas=2"; helm.Cmds[0] != want {
		t.Errorf("helm command\n%q, want\n%q", helm.Cmds[0], want)
	}
	// cluster is a ConfigMap (helm.go:103,132-141), mounted here at /var/run/wharf/kube (steps run as non-root).
	if helm.SecretName != "" || len(helm.Mounts) != 1 || helm.Mounts[0].ConfigMap != "kubeconfig-app-stage" || helm.Mounts[0].Path != "/var/run/wharf/kube" {
		t.Fatalf("helm cluster = %q, %+v", helm.SecretName, helm.Mounts)
	}
	report := def.Stages[3]
	if report.RunsIf != RunsIfFail {
		t.Fatalf("runs-if = %q", report.RunsIf)
	}
	if got := report.Steps[0].Container.Cmds[0]; got != `echo "build 42 failed, literal ${BUILD_REF}, shell ${HOME}"` {
		t.Fatalf("substituted command = %q", got)
	}
}

func TestParseOtherStepTypes(t *testing.T) {
	def, err := parseFile(t, "testdata/valid/dotnet-lib.yml", Options{Environment: "release", Vars: buildVars})
	if err != nil {
		t.Fatal(err)
	}
	// nuget-package: wharf-cmd's script with the fields as environment
	// variables and the token of wharf-nuget-api-token
	// (pkg/steps/nugetpackage.go:66-92 at 421514f), here from a file.
	nuget := def.Stages[0].Steps[0].Container
	if nuget.Shell != "/bin/bash" || len(nuget.Cmds) != 1 || !strings.Contains(nuget.Cmds[0], `dotnet nuget push "$nuget"`) ||
		nuget.Env["NUGET_VERSION"] != "1.0.42" || nuget.Env["NUGET_REPO"] != "https://nuget.example.org/v3/index.json" ||
		nuget.Env["NUGET_PROJECT_PATH"] != "src/Lib/Lib.csproj" || nuget.Env["NUGET_SKIP_DUP"] != "true" {
		t.Fatalf("nuget step = %+v", nuget)
	}
	if len(nuget.Mounts) != 1 || nuget.Mounts[0].Secret != "wharf-nuget-api-token" || nuget.Mounts[0].Items["token"] == "" ||
		!strings.Contains(nuget.Cmds[0], `$(cat "${NUGET_TOKEN_FILE`) || nuget.Env["NUGET_TOKEN_FILE"] != nuget.Mounts[0].Path+"/token" {
		t.Fatalf("nuget token = %+v, %q", nuget.Mounts, nuget.Env)
	}
	// helm-package: wharf-cmd's script, given CHART_PATH, CHART_REPO and
	// CHART_VERSION (pkg/steps/helmpackage.go:74-88 at 421514f).
	pkg := def.Stages[1].Steps[0].Container
	if pkg.Shell != "/bin/bash" || len(pkg.Cmds) != 1 || !strings.Contains(pkg.Cmds[0], `helm push *.tgz "$CHART_REPO" --insecure`) ||
		pkg.Env["CHART_PATH"] != "deploy/chart" || pkg.Env["CHART_REPO"] != "https://charts.example.org" || pkg.Env["CHART_VERSION"] != "0.1.42" {
		t.Fatalf("helm-package step = %+v", pkg)
	}
	// kubectl: --namespace first, --filename for files, then file
	// (pkg/steps/kubectl.go:76-96 at 421514f), the kubeconfig ConfigMap
	// kubectl-config by default (kubectl.go:37,100-109).
	kubectl := def.Stages[2].Steps[0].Container
	if want := "kubectl apply --namespace lib --filename deploy/ns.yaml --filename deploy/app.yaml"; kubectl.Cmds[0] != want {
		t.Fatalf("kubectl command = %q, want %q", kubectl.Cmds[0], want)
	}
	if len(kubectl.Mounts) != 1 || kubectl.Mounts[0].ConfigMap != "kubectl-config" || kubectl.Mounts[0].Path != "/var/run/wharf/kube" || kubectl.Env["KUBECONFIG"] != "/var/run/wharf/kube/config" {
		t.Fatalf("kubectl kubeconfig = %+v %q", kubectl.Mounts, kubectl.Env)
	}
}

func TestParseErrorsCarryPositionAndExpectation(t *testing.T) {
	cases := []struct {
		file string
		want []string
	}{
		{"two-types.yml", []string{`two-types.yml:2:3: stages.build.steps.compile: step has 2 types, "container", "docker"; expected exactly one`}},
		{"many-problems.yml", []string{
			`many-problems.yml:3:11: inputs.MODE.type: unknown input type "color"; expected string, password, number or choice`,
			`many-problems.yml:4:5: inputs[1]: input has no name`,
			`many-problems.yml:5:15: environments: expected a map of environment name to variables, got a list`,
			`many-problems.yml:7:12: stages.build.runs-if: "sometimes" is not one of success, fail, always`,
			`many-problems.yml:14:5: stages.build.steps.test: unknown step type "contianer"; expected one of container, docker, helm, helm-package, kubectl, nuget-package`,
			`many-problems.yml:18:7: stages.build.steps.deploy.helm.name: required field is missing`,
			`many-problems.yml:18:7: stages.build.steps.deploy.helm.namespace: required field is missing`,
		}},
		{"not-a-map.yml", []string{"not-a-map.yml:1:1: expected a map of stages (and inputs, environments), got a list"}},
		{"syntax.yml", []string{"syntax.yml:2: did not find expected ',' or '}'"}},
		{"cycle.yml", []string{"variable cycle: a -> b -> a"}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			_, err := parseFile(t, "testdata/invalid/"+c.file, Options{Environment: "e"})
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v is not Errors", err)
			}
			msg := err.Error()
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("errors lack %q; got:\n%s", w, msg)
				}
			}
			if c.file == "many-problems.yml" && len(errs) < len(c.want) {
				t.Fatalf("%d errors, want all %d in one pass:\n%s", len(errs), len(c.want), msg)
			}
		})
	}
}

func TestParseRequestAndEnvironmentChecks(t *testing.T) {
	src, _ := os.ReadFile("testdata/valid/go-service.yml")
	_, err := Parse(src, Options{Environment: "qa", Vars: buildVars})
	if err == nil || !strings.Contains(err.Error(), `environment "qa" is not defined; defined are: stage, prod`) {
		t.Fatalf("unknown environment: %v", err)
	}
	_, err = Parse(src, Options{Environment: "stage", Vars: buildVars, Inputs: map[string]any{"LOG_LEVEL": "trace", "REPLICAS": "many"}})
	if err == nil || !strings.Contains(err.Error(), `inputs.LOG_LEVEL: value from the request: "trace" is not one of the choices debug, info`) ||
		!strings.Contains(err.Error(), "inputs.REPLICAS: value from the request: many is not a number") {
		t.Fatalf("bad input values: %v", err)
	}
	if _, err := Parse(nil, Options{}); err == nil || !strings.Contains(err.Error(), "file is empty") {
		t.Fatalf("empty file: %v", err)
	}
}

func TestSubstitute(t *testing.T) {
	vars := Layered{VarMap{"a": "A", "n": 3, "b": true, "nested": "x${a}y", "deep": "${nested}!"}, VarMap{"a": "shadowed", "low": "L"}}
	cases := []struct {
		in   string
		want any
	}{
		{"${a}", "A"},
		{"${ n }", 3},
		{"${b}", true},
		{"n=${n}", "n=3"},
		{"${deep}", "xAy!"},
		{"${%a%}", "${a}"},
		{"${unknown} ${low}", "${unknown} L"},
		{"no vars", "no vars"},
		{"$${a}", "$A"},
	}
	for _, c := range cases {
		got, err := Substitute(c.in, vars)
		if err != nil || got != c.want {
			t.Errorf("Substitute(%q) = %#v, %v; want %#v", c.in, got, err, c.want)
		}
	}
	loop := VarMap{"x": "${x}"}
	if _, err := Substitute("${x}", loop); err == nil || !strings.Contains(err.Error(), "variable cycle: x -> x") {
		t.Fatalf("self reference: %v", err)
	}
	chain := VarMap{}
	for i := range MaxVarDepth + 2 {
		chain[string(rune('a'+i))] = "${" + string(rune('a'+i+1)) + "}"
	}
	if _, err := Substitute("${a}", chain); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("deep chain: %v", err)
	}
}
