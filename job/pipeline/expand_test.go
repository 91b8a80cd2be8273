package pipeline

import (
	"reflect"
	"strings"
	"testing"
)

// expandOne parses a file of one stage with one step and returns the
// step's container and the errors as text.
func expandOne(t *testing.T, src string, vars VarMap) (Container, string) {
	t.Helper()
	def, err := Parse([]byte(src), Options{File: "f.yml", Vars: vars})
	if err != nil {
		return Container{}, err.Error()
	}
	if len(def.Stages) != 1 || len(def.Stages[0].Steps) != 1 {
		t.Fatalf("stages = %+v", def.Stages)
	}
	return def.Stages[0].Steps[0].Container, ""
}

var wharfVars = VarMap{"REG_URL": "harbor.example.org", "REPO_GROUP": "Default/Team", "REPO_NAME": "app", "CHART_REPO": "https://charts.example.org"}

func with(vars VarMap, kv ...any) VarMap {
	out := VarMap{}
	for k, v := range vars {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestDockerDestination(t *testing.T) {
	cases := []struct {
		name, src string
		vars      VarMap
		want      string // a --destination, or the error
	}{
		// wharf-cmd pkg/steps/docker.go:81-83 at 421514f: name equal to
		// REPO_NAME, nothing appended; nothing lower-cased.
		{"step named as repo", "b: {app: {docker: {file: Dockerfile, tag: v1}}}", wharfVars, "--destination harbor.example.org/Default/Team/app:v1"},
		// docker.go:84-87: /name appended when it differs.
		{"other step name", "b: {web: {docker: {file: Dockerfile, tag: v1}}}", wharfVars, "--destination harbor.example.org/Default/Team/app/web:v1"},
		// docker.go:76: name overrides the step's name.
		{"name field", "b: {web: {docker: {file: Dockerfile, tag: v1, name: app}}}", wharfVars, "--destination harbor.example.org/Default/Team/app:v1"},
		// docker.go:73-74: registry and group override the variables.
		{"registry and group", "b: {web: {docker: {file: Dockerfile, tag: v1, registry: r.io, group: g}}}", with(wharfVars, "REG_URL", nil, "REPO_GROUP", nil), "--destination r.io/g/app/web:v1"},
		// docker.go:69: a destination needs no variable.
		{"destination", "b: {web: {docker: {file: Dockerfile, tag: 'a, b', destination: r.io/x}}}", VarMap{}, "--destination r.io/x:a --destination r.io/x:b"},
		// docker.go:72-80: the variables of the default are required.
		{"missing variables", "b: {web: {docker: {file: Dockerfile, tag: v1}}}", with(wharfVars, "REG_URL", nil, "REPO_NAME", ""),
			"f.yml:1:19: stages.b.steps.web.docker.destination: the default needs variable REG_URL, which is not set or empty; set it or the field destination\n" +
				"f.yml:1:19: stages.b.steps.web.docker.destination: the default needs variable REPO_NAME, which is not set or empty; set it or the field destination"},
		// docker.go:249-251
		{"zero tags", "b: {web: {docker: {file: Dockerfile, tag: ' , ', destination: r}}}", nil, "f.yml:1:43: stages.b.steps.web.docker.tag: field resolved to zero tags"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cont, errs := expandOne(t, c.src, c.vars)
			if errs != "" {
				if errs != c.want {
					t.Fatalf("errors:\n%s\nwant:\n%s", errs, c.want)
				}
				return
			}
			if !strings.Contains(cont.Cmds[0], c.want) || strings.Count(cont.Cmds[0], "--destination") != strings.Count(c.want, "--destination") {
				t.Fatalf("command %q, want %q", cont.Cmds[0], c.want)
			}
		})
	}
}

func TestDockerCommand(t *testing.T) {
	src := `b:
  app:
    docker:
      file: build/Dockerfile
      context: /src
      tag: ${GIT_COMMIT}
      push: false
      args: [A=1, B=two words]
`
	c, errs := expandOne(t, src, with(wharfVars, "GIT_COMMIT", "abc"))
	if errs != "" {
		t.Fatal(errs)
	}
	// docker.go:218-255 at 421514f: file and context inside the
	// repository, --skip-tls-verify always, build args, destinations,
	// --no-push.
	want := `/kaniko/executor --dockerfile "$PWD"/build/Dockerfile --context "$PWD"/src --skip-tls-verify --build-arg A=1 --build-arg 'B=two words' --destination harbor.example.org/Default/Team/app:abc --no-push`
	if c.Cmds[0] != want || c.Image != DefaultImages.Kaniko || c.Shell != "/busybox/sh" {
		t.Fatalf("command\n%q, want\n%q (%+v)", c.Cmds[0], want, c)
	}
	// docker.go:229-233: REG_INSECURE adds --insecure.
	for _, v := range []any{true, "true"} {
		c, _ = expandOne(t, src, with(wharfVars, "REG_INSECURE", v))
		if !strings.Contains(c.Cmds[0], "--skip-tls-verify --insecure --build-arg") {
			t.Fatalf("REG_INSECURE=%v: %q", v, c.Cmds[0])
		}
	}
	if _, errs = expandOne(t, src, with(wharfVars, "REG_INSECURE", "maybe")); !strings.Contains(errs, `variable REG_INSECURE is "maybe", expected true or false`) {
		t.Fatalf("REG_INSECURE=maybe: %s", errs)
	}
}

func TestDockerRegistrySecret(t *testing.T) {
	mount := func(name string) []Mount {
		return []Mount{{Secret: name, Path: "/kaniko/.docker", Items: map[string]string{".dockerconfigjson": "config.json"}}}
	}
	cases := []struct {
		name, fields string
		vars         VarMap
		want         []Mount
	}{
		// wharf-cmd pkg/steps/docker.go:64,188-216 at 421514f.
		{"default", "", wharfVars, mount("gitlab-registry")},
		// docker.go:104
		{"REG_SECRET", "", with(wharfVars, "REG_SECRET", "harbor"), mount("harbor")},
		{"empty REG_SECRET", "", with(wharfVars, "REG_SECRET", ""), mount("gitlab-registry")},
		// docker.go:101-102
		{"secret field", ", secret: mine", with(wharfVars, "REG_SECRET", "harbor"), mount("mine")},
		{"no secret", `, secret: ""`, wharfVars, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cont, errs := expandOne(t, "b: {app: {docker: {file: D, tag: v1"+c.fields+"}}}", c.vars)
			if errs != "" {
				t.Fatal(errs)
			}
			if !reflect.DeepEqual(cont.Mounts, c.want) || cont.SecretName != "" {
				t.Fatalf("mounts = %+v, secret %q; want %+v", cont.Mounts, cont.SecretName, c.want)
			}
		})
	}
}

func TestDockerSecretArgs(t *testing.T) {
	// wharf-cmd pkg/steps/docker.go:257-288 at 421514f: "--build-arg ARG"
	// with ARG from the secret's key, never the value in the command.
	c, errs := expandOne(t, "b: {app: {docker: {file: D, tag: v1, secretName: npm, secretArgs: [NPM_TOKEN=token, PAT=pat]}}}", wharfVars)
	if errs != "" {
		t.Fatal(errs)
	}
	if c.SecretName != "npm" || !reflect.DeepEqual(c.SecretEnv, map[string]string{"NPM_TOKEN": "token", "PAT": "pat"}) ||
		!strings.HasSuffix(c.Cmds[0], "--build-arg NPM_TOKEN --build-arg PAT") {
		t.Fatalf("secret args: %q, %q, %q", c.SecretName, c.SecretEnv, c.Cmds[0])
	}
	// docker.go:127-150
	for src, want := range map[string]string{
		"secretArgs: [A=a]":                 "docker.secretArgs: found secretArgs but is missing secretName",
		"secretName: s":                     "docker.secretName: found secretName but is missing secretArgs",
		"secretName: s, secretArgs: [A]":    `missing '=', expected 'ARG=secret-key': "A"`,
		"secretName: s, secretArgs: [=a]":   `empty 'ARG', expected 'ARG=secret-key': "=a"`,
		`secretName: s, secretArgs: ["A="]`: `empty 'secret-key', expected 'ARG=secret-key': "A="`,
	} {
		if _, errs := expandOne(t, "b: {app: {docker: {file: D, tag: v1, "+src+"}}}", wharfVars); !strings.Contains(errs, want) {
			t.Errorf("%s: errors %q lack %q", src, errs, want)
		}
	}
}

func TestHelm(t *testing.T) {
	base := "d: {deploy: {helm: {chart: api, name: api, namespace: prod%s}}}"
	kube := Mount{ConfigMap: "kubectl-config", Path: "/var/run/wharf/kube"}
	reg := func(s string) Mount {
		return Mount{Secret: s, Path: "/etc/helm/registry", Items: map[string]string{"config.json": "config.json"}}
	}
	cases := []struct {
		name, fields string
		vars         VarMap
		cmd, image   string
		mounts       []Mount
	}{
		// wharf-cmd pkg/steps/helm.go:41,46-58,107-115 at 421514f: repo
		// ${CHART_REPO}/${REPO_GROUP}, cluster kubectl-config, no --wait.
		{"defaults", "", wharfVars, "helm upgrade --install api api --repo https://charts.example.org/Default/Team --namespace prod", DefaultImages.Helm, []Mount{kube}},
		// helm.go:78-80
		{"repo stage", ", repo: stage", nil, "helm upgrade --install api api --repo https://kubernetes-charts.storage.googleapis.com --namespace prod", DefaultImages.Helm, []Mount{kube}},
		// helm.go:99: helmVersion is the image's tag; 117-123: version and values.
		{"fields", ", repo: r, helmVersion: v3.9.0, chartVersion: 1.0.0, files: [a.yaml, b.yaml], cluster: prod-kube", nil,
			"helm upgrade --install api api --repo r --namespace prod --version 1.0.0 --values a.yaml --values b.yaml", "docker.io/wharfse/helm:v3.9.0",
			[]Mount{{ConfigMap: "prod-kube", Path: "/var/run/wharf/kube"}}},
		// helm.go:60-64,127-129,146-173
		{"HELM_REG_SECRET", ", repo: r", VarMap{"HELM_REG_SECRET": "charts"}, "", DefaultImages.Helm, []Mount{kube, reg("charts")}},
		{"secret field", ", repo: r, secret: mine", VarMap{"HELM_REG_SECRET": "charts"}, "", DefaultImages.Helm, []Mount{kube, reg("mine")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cont, errs := expandOne(t, strings.Replace(base, "%s", c.fields, 1), c.vars)
			if errs != "" {
				t.Fatal(errs)
			}
			if c.cmd != "" && cont.Cmds[0] != c.cmd {
				t.Errorf("command\n%q, want\n%q", cont.Cmds[0], c.cmd)
			}
			if cont.Image != c.image || !reflect.DeepEqual(cont.Mounts, c.mounts) || cont.Env["KUBECONFIG"] != "/var/run/wharf/kube/config" {
				t.Errorf("image %q, mounts %+v, env %q; want %q, %+v", cont.Image, cont.Mounts, cont.Env, c.image, c.mounts)
			}
			if hasReg := len(c.mounts) > 1; hasReg != (cont.Env["HELM_REGISTRY_CONFIG"] == "/etc/helm/registry/config.json") {
				t.Errorf("HELM_REGISTRY_CONFIG = %q", cont.Env["HELM_REGISTRY_CONFIG"])
			}
		})
	}
	if _, errs := expandOne(t, strings.Replace(base, "%s", "", 1), VarMap{"REPO_GROUP": "g"}); !strings.Contains(errs, "helm.repo: the default needs variable CHART_REPO") {
		t.Fatalf("missing CHART_REPO: %s", errs)
	}
}

func TestHelmPackageDefaults(t *testing.T) {
	// wharf-cmd pkg/steps/helmpackage.go:39-57 at 421514f.
	c, errs := expandOne(t, "p: {chart: {helm-package: {chart-path: chart}}}", with(wharfVars, "HELM_REG_SECRET", "charts"))
	if errs != "" {
		t.Fatal(errs)
	}
	if c.Env["CHART_REPO"] != "https://charts.example.org/Default/Team" || c.Env["CHART_VERSION"] != "" || c.Env["CHART_PATH"] != "chart" ||
		len(c.Mounts) != 1 || c.Mounts[0].Secret != "charts" || c.Image != DefaultImages.Helm {
		t.Fatalf("helm-package = %+v", c)
	}
	if _, errs := expandOne(t, "p: {chart: {helm-package: {}}}", VarMap{}); !strings.Contains(errs, "helm-package.destination: the default needs variable CHART_REPO") {
		t.Fatalf("missing CHART_REPO: %s", errs)
	}
}

func TestKubectlFileRequired(t *testing.T) {
	// wharf-cmd pkg/steps/kubectl.go:52-56 at 421514f.
	if _, errs := expandOne(t, "d: {k: {kubectl: {namespace: x}}}", nil); !strings.Contains(errs, "stages.d.steps.k.kubectl.file: required field is missing") {
		t.Fatalf("kubectl without files: %s", errs)
	}
	c, errs := expandOne(t, "d: {k: {kubectl: {file: a.yaml, files: [b.yaml], action: delete, force: true, cluster: c}}}", nil)
	if errs != "" || c.Cmds[0] != "kubectl delete --filename b.yaml --filename a.yaml --force" || c.Mounts[0].ConfigMap != "c" {
		t.Fatalf("kubectl = %+v %s", c, errs)
	}
}
