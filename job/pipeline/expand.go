package pipeline

import (
	_ "embed"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Images are the container images that step types other than container
// expand into. Every one can be changed (WHARFJOBS_IMAGE_*), for example to
// a mirror in a cluster without internet access.
type Images struct {
	// Kaniko builds docker steps.
	// The -debug variant is needed: it has the shell the commands run in.
	Kaniko string `envconfig:"IMAGE_KANIKO" default:"gcr.io/kaniko-project/executor:v1.23.2-debug" desc:"image of docker steps (kaniko, a -debug variant: it has a shell)"`
	// Helm runs helm and helm-package steps,
	// the image wharf-cmd uses: a helm step's helmVersion replaces its tag,
	// and helm-package's upload relies on its "helm push".
	Helm string `envconfig:"IMAGE_HELM" default:"docker.io/wharfse/helm:v3.8.1" desc:"image of helm and helm-package steps (helmVersion replaces its tag)"`
	// Kubectl runs kubectl steps.
	Kubectl string `envconfig:"IMAGE_KUBECTL" default:"bitnami/kubectl:1.34" desc:"image of kubectl steps"`
	// Dotnet runs nuget-package steps.
	Dotnet string `envconfig:"IMAGE_DOTNET" default:"mcr.microsoft.com/dotnet/sdk:8.0" desc:"image of nuget-package steps"`
}

// DefaultImages are the images used when Images leaves a field empty; the
// fields' default tags repeat them for the environment (a test keeps the
// two equal).
var DefaultImages = Images{
	Kaniko:  "gcr.io/kaniko-project/executor:v1.23.2-debug",
	Helm:    "docker.io/wharfse/helm:v3.8.1",
	Kubectl: "bitnami/kubectl:1.34",
	Dotnet:  "mcr.microsoft.com/dotnet/sdk:8.0",
}

func (im Images) withDefaults() Images {
	if im.Kaniko == "" {
		im.Kaniko = DefaultImages.Kaniko
	}
	if im.Helm == "" {
		im.Helm = DefaultImages.Helm
	}
	if im.Kubectl == "" {
		im.Kubectl = DefaultImages.Kubectl
	}
	if im.Dotnet == "" {
		im.Dotnet = DefaultImages.Dotnet
	}
	return im
}

var stepFields = map[string][]fieldSpec{
	"container": {
		{"image", kindString, true}, {"cmds", kindStrings, true}, {"shell", kindString, false},
		{"os", kindString, false}, {"secretName", kindString, false}, {"serviceAccount", kindString, false},
		{"certificatesMountPath", kindString, false},
	},
	"docker": {
		{"file", kindString, true}, {"tag", kindString, true}, {"context", kindString, false},
		{"destination", kindString, false}, {"registry", kindString, false}, {"group", kindString, false},
		{"name", kindString, false}, {"args", kindStrings, false}, {"push", kindBool, false},
		{"secret", kindString, false}, {"secretName", kindString, false}, {"secretArgs", kindStrings, false},
		{"append-cert", kindBool, false},
		// Not a wharf-cmd field (there only REG_INSECURE does this); kept
		// for the files written for wharfjobs before.
		{"insecure", kindBool, false},
	},
	"helm": {
		{"chart", kindString, true}, {"name", kindString, true}, {"namespace", kindString, true},
		{"repo", kindString, false}, {"set", kindMap, false}, {"files", kindStrings, false},
		{"chartVersion", kindString, false}, {"helmVersion", kindString, false}, {"cluster", kindString, false},
		{"secret", kindString, false},
	},
	"helm-package": {
		{"version", kindString, false}, {"chart-path", kindString, false}, {"destination", kindString, false},
		{"secret", kindString, false},
	},
	"kubectl": {
		{"file", kindString, false}, {"files", kindStrings, false}, {"namespace", kindString, false},
		{"action", kindString, false}, {"force", kindBool, false}, {"cluster", kindString, false},
	},
	"nuget-package": {
		{"version", kindString, true}, {"project-path", kindString, true}, {"repo", kindString, true},
		{"skip-duplicate", kindBool, false}, {"certificatesMountPath", kindString, false},
	},
}

// size is the bytes of text in c, which the expansion budget counts.
func (c Container) size() int {
	n := len(c.Image) + len(c.Shell) + len(c.OS) + len(c.SecretName) + len(c.ServiceAccount) + len(c.CertificatesMountPath)
	for _, cmd := range c.Cmds {
		n += len(cmd)
	}
	for k, v := range c.Env {
		n += len(k) + len(v)
	}
	for k, v := range c.SecretEnv {
		n += len(k) + len(v)
	}
	for _, m := range c.Mounts {
		n += len(m.Secret) + len(m.ConfigMap) + len(m.Path)
		for k, v := range m.Items {
			n += len(k) + len(v)
		}
	}
	return n
}

// quote makes s one word for /bin/sh.
func quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// fieldErr is a problem expanding a step type, with the field it is about
// ("" for the step type as a whole).
type fieldErr struct {
	field, msg string
}

// expander expands one step type. It holds what the expansion needs
// besides the fields: the variables, for the defaults wharf-cmd takes from
// them (REG_URL, REPO_GROUP, ...), and the problems found so far.
type expander struct {
	f    fieldValues
	vars Vars
	bud  *budget
	errs []fieldErr
}

func (e *expander) errorf(field, format string, args ...any) {
	e.errs = append(e.errs, fieldErr{field, fmt.Sprintf(format, args...)})
}

// lookupVar is wharf-cmd's MapVisitor.LookupStringFromVarSub: the value of
// variable name, ok false when it is not set or is empty
// (pkg/wharfyml/visit/mapvisitor.go:289-322 at 421514f). A value that
// refers to other variables is substituted, as ${name} in the file would
// be.
func (e *expander) lookupVar(name string) (string, bool, error) {
	v, ok := e.vars.Lookup(name)
	if !ok {
		return "", false, nil
	}
	if s, isStr := v.(string); isStr {
		sub, err := substitute(s, e.vars, e.bud, []string{name})
		if err != nil {
			return "", false, err
		}
		v = sub
	}
	s := format(v)
	return s, s != "", nil
}

// requireVar is wharf-cmd's MapVisitor.RequireStringFromVarSub: a missing
// or empty variable is an error on field, whose default it is
// (pkg/wharfyml/visit/mapvisitor.go:289-298 at 421514f).
func (e *expander) requireVar(field, name string) string {
	s, ok, err := e.lookupVar(name)
	switch {
	case err != nil:
		e.errorf(field, "default from variable %s: %v", name, err)
	case !ok:
		e.errorf(field, "the default needs variable %s, which is not set or empty; set it or the field %s", name, field)
	}
	return s
}

// strOr is field name's value, or def when the file does not have it. An
// empty value is a value: wharf-cmd asks HasNode, not whether it is empty.
func (f fieldValues) strOr(name, def string) string {
	if _, ok := f[name]; ok {
		return f.str(name)
	}
	return def
}

func (f fieldValues) has(name string) bool {
	_, ok := f[name]
	return ok
}

// inRepo is p inside the step's working directory (the checked-out
// repository), as wharf-cmd's path.Join(repoDir, p) makes it: an absolute
// path is taken from the repository's root too.
func inRepo(p string) string {
	return `"$PWD"/` + quote(path.Join(".", p))
}

// imageRepository is image without its tag or digest.
func imageRepository(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		image = image[:i]
	}
	return image
}

// Where wharf-cmd's step types mount what they read; the commands and the
// tools in the images expect them there.
const (
	// wharf-cmd mounts it at /root/.kube (pkg/steps/helm.go:103,
	// kubectl.go:72); steps here run as a non-root user who cannot enter
	// /root, and KUBECONFIG points at the file wherever it is.
	kubeconfigDir     = "/var/run/wharf/kube"
	helmRegistryDir   = "/etc/helm/registry" // pkg/steps/helm.go:164
	kanikoDockerDir   = "/kaniko/.docker"    // pkg/steps/docker.go:214
	nugetTokenDir     = "/var/run/wharf/nuget"
	nugetTokenSecret  = "wharf-nuget-api-token" // pkg/steps/nugetpackage.go:79
	defaultKubeconfig = "kubectl-config"        // pkg/steps/helm.go:41, kubectl.go:37
)

// CACertificatesConfigMap is the ConfigMap a container step's
// certificatesMountPath mounts (pkg/steps/container.go:97 at 421514f).
const CACertificatesConfigMap = "ca-certificates-config"

// kubeconfig mounts the ConfigMap cluster where wharf-cmd does and points
// KUBECONFIG at it, so the image's user and HOME do not matter.
func kubeconfig(c *Container, cluster string) {
	c.Mounts = append(c.Mounts, Mount{ConfigMap: cluster, Path: kubeconfigDir})
	c.Env["KUBECONFIG"] = kubeconfigDir + "/config"
}

// helmRegistry is wharf-cmd's addHelmSecretVolume
// (pkg/steps/helm.go:146-173 at 421514f).
func helmRegistry(c *Container, secret string) {
	if secret == "" {
		return
	}
	c.Mounts = append(c.Mounts, Mount{Secret: secret, Path: helmRegistryDir, Items: map[string]string{"config.json": "config.json"}})
	c.Env["HELM_REGISTRY_CONFIG"] = helmRegistryDir + "/config.json"
}

// expand turns a step type's fields into the container that does its job,
// as wharf-cmd's pkg/steps does, or says what is wrong. vars are the
// build's variables, for the defaults wharf-cmd takes from them.
func expand(typ, stepName string, f fieldValues, vars Vars, bud *budget, im Images) (Container, []fieldErr) {
	e := &expander{f: f, vars: vars, bud: bud}
	var c Container
	switch typ {
	case "container":
		c = Container{
			Image: f.str("image"), Cmds: f.strs("cmds"), Shell: f.str("shell"), OS: f.str("os"),
			SecretName: f.str("secretName"), ServiceAccount: f.str("serviceAccount"),
			CertificatesMountPath: f.str("certificatesMountPath"),
		}
		if c.Shell == "" {
			c.Shell = "/bin/sh"
		}
		if c.CertificatesMountPath != "" {
			// The cluster's CA certificates, from the ConfigMap wharf-cmd
			// mounts there (pkg/steps/container.go:90-105 at 421514f).
			c.Mounts = append(c.Mounts, Mount{ConfigMap: CACertificatesConfigMap, Path: c.CertificatesMountPath})
		}
		switch c.OS {
		case "":
			c.OS = "linux"
		case "linux", "windows":
		default:
			e.errorf("os", "os %q is not linux or windows", c.OS)
		}
	case "docker":
		c = e.docker(stepName, im)
	case "helm":
		c = e.helm(im)
	case "helm-package":
		c = e.helmPackage(im)
	case "kubectl":
		c = e.kubectl(im)
	case "nuget-package":
		c = e.nugetPackage(im)
	default:
		e.errorf("", "unknown step type %q", typ)
	}
	if len(e.errs) > 0 {
		return Container{}, e.errs
	}
	if len(c.Env) == 0 {
		c.Env = nil
	}
	return c, nil
}

// docker is wharf-cmd's Docker step (pkg/steps/docker.go at 421514f): a
// kaniko build, pushed to the registry with the credentials of a
// docker-registry Secret.
func (e *expander) docker(stepName string, im Images) Container {
	f := e.f
	c := Container{Image: im.Kaniko, Shell: "/busybox/sh", OS: "linux", Env: map[string]string{}}
	// docker.go:63,76: the name defaults to the step's name.
	name := f.strOr("name", stepName)
	dest := f.str("destination")
	if !f.has("destination") {
		// docker.go:69-88: ${REG_URL}/${REPO_GROUP}/${REPO_NAME}, and
		// /name after it unless name is REPO_NAME. Nothing is lower-cased.
		registry := f.strOr("registry", "")
		if !f.has("registry") {
			registry = e.requireVar("destination", "REG_URL")
		}
		group := f.strOr("group", "")
		if !f.has("group") {
			group = e.requireVar("destination", "REPO_GROUP")
		}
		repoName := e.requireVar("destination", "REPO_NAME")
		dest = registry + "/" + group + "/" + repoName
		if repoName != name {
			dest += "/" + name
		}
	}
	// append-cert (docker.go:90-99,174-186) only mounts an empty directory
	// at /mnt/cert in wharf-cmd, which nothing reads: it has no effect
	// here either.

	// docker.go:64,101-105: the registry credentials are the Secret
	// gitlab-registry, ${REG_SECRET} if set, or the secret field; "" for
	// none. Kaniko reads them from /kaniko/.docker/config.json
	// (docker.go:188-216).
	secret := "gitlab-registry"
	if f.has("secret") {
		secret = f.str("secret")
	} else if s, ok, err := e.lookupVar("REG_SECRET"); err != nil {
		e.errorf("secret", "default from variable REG_SECRET: %v", err)
	} else if ok {
		secret = s
	}
	if secret != "" {
		c.Mounts = append(c.Mounts, Mount{Secret: secret, Path: kanikoDockerDir, Items: map[string]string{".dockerconfigjson": "config.json"}})
	}

	// docker.go:218-227: --skip-tls-verify always, "for backward
	// compatibility".
	cmd := []string{"/kaniko/executor", "--dockerfile", inRepo(f.str("file")), "--context", inRepo(f.str("context")), "--skip-tls-verify"}
	insecure, err := e.boolVar("REG_INSECURE")
	if err != "" {
		e.errorf("", "%s", err)
	}
	if insecure || f.boolean("insecure", false) {
		cmd = append(cmd, "--insecure") // docker.go:229-233
	}
	for _, a := range f.strs("args") {
		cmd = append(cmd, "--build-arg", quote(a))
	}
	// Every tag repeats the destination: a long destination times many
	// tags would build a huge command from short values.
	size, anyTag := 0, false
	for tag := range strings.SplitSeq(f.str("tag"), ",") {
		if tag = strings.TrimSpace(tag); tag == "" {
			continue
		}
		anyTag = true
		d := quote(dest + ":" + tag)
		if size += len(d); size > MaxValueSize {
			e.errorf("tag", "destinations (tags times destination) are longer than %d bytes", MaxValueSize)
			return c
		}
		cmd = append(cmd, "--destination", d)
	}
	if !anyTag && f.str("tag") != "" {
		e.errorf("tag", "field resolved to zero tags") // docker.go:249-251
	}
	if !f.boolean("push", true) {
		cmd = append(cmd, "--no-push")
	}

	// docker.go:127-150,257-288: secretArgs "ARG=key" pass key of the
	// step's Secret as build argument ARG. "--build-arg ARG" alone makes
	// kaniko take the value from the environment variable ARG, so the
	// value is in neither the command nor the Pod spec.
	c.SecretName = f.str("secretName")
	secretArgs := f.strs("secretArgs")
	for _, arg := range secretArgs {
		argName, key, hasCut := strings.Cut(arg, "=")
		switch {
		case !hasCut:
			e.errorf("secretArgs", "invalid secret format: missing '=', expected 'ARG=secret-key': %q", arg)
		case argName == "":
			e.errorf("secretArgs", "invalid secret format: empty 'ARG', expected 'ARG=secret-key': %q", arg)
		case key == "":
			e.errorf("secretArgs", "invalid secret format: empty 'secret-key', expected 'ARG=secret-key': %q", arg)
		case c.SecretName != "":
			if c.SecretEnv == nil {
				c.SecretEnv = map[string]string{}
			}
			c.SecretEnv[argName] = key
			cmd = append(cmd, "--build-arg", quote(argName))
		}
	}
	if len(secretArgs) > 0 && c.SecretName == "" {
		e.errorf("secretArgs", "found secretArgs but is missing secretName")
	} else if len(secretArgs) == 0 && c.SecretName != "" {
		e.errorf("secretName", "found secretName but is missing secretArgs")
	}
	c.Cmds = []string{strings.Join(cmd, " ")}
	return c
}

// boolVar is wharf-cmd's LookupBoolFromVarSub: false when the variable is
// not set or empty. A string "true" or "false" is taken too: variables
// from the process environment or the request are text.
func (e *expander) boolVar(name string) (bool, string) {
	v, ok := e.vars.Lookup(name)
	if !ok {
		return false, ""
	}
	switch v := v.(type) {
	case bool:
		return v, ""
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "":
			return false, ""
		case "true":
			return true, ""
		case "false":
			return false, ""
		}
	}
	return false, fmt.Sprintf("variable %s is %q, expected true or false", name, format(v))
}

// helm is wharf-cmd's Helm step (pkg/steps/helm.go at 421514f).
func (e *expander) helm(im Images) Container {
	f := e.f
	c := Container{Image: im.Helm, Shell: "/bin/sh", OS: "linux", Env: map[string]string{}}
	// helm.go:42,99: helmVersion is the tag of the helm image. Without it
	// wharf-cmd takes v2.14.1, a Helm 2 that needs Tiller, gone from
	// clusters for years: the configured image is taken instead.
	if v := f.str("helmVersion"); v != "" {
		c.Image = imageRepository(im.Helm) + ":" + v
	}
	repo := f.str("repo")
	if !f.has("repo") {
		// helm.go:46-58
		repo = e.requireVar("repo", "CHART_REPO") + "/" + e.requireVar("repo", "REPO_GROUP")
	}
	if repo == "stage" {
		repo = "https://kubernetes-charts.storage.googleapis.com" // helm.go:78-80
	}
	// helm.go:107-123
	cmd := []string{"helm", "upgrade", "--install", quote(f.str("name")), quote(f.str("chart")), "--repo", quote(repo), "--namespace", quote(f.str("namespace"))}
	if v := f.str("chartVersion"); v != "" {
		cmd = append(cmd, "--version", quote(v))
	}
	for _, file := range f.strs("files") {
		cmd = append(cmd, "--values", quote(file))
	}
	// wharf-cmd reads set (helm.go:76) but never passes it on, which
	// loses what the file asks for; Wharf before it did pass it.
	set := f.kv("set")
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd = append(cmd, "--set", quote(k+"="+set[k]))
	}
	c.Cmds = []string{strings.Join(cmd, " ")}
	kubeconfig(&c, f.strOr("cluster", defaultKubeconfig))
	helmRegistry(&c, e.helmSecret())
	return c
}

// helmSecret is the secret field, or ${HELM_REG_SECRET}: the registry
// credentials of helm and helm-package (helm.go:60-64,
// helmpackage.go:53-57).
func (e *expander) helmSecret() string {
	if e.f.has("secret") {
		return e.f.str("secret")
	}
	s, _, err := e.lookupVar("HELM_REG_SECRET")
	if err != nil {
		e.errorf("secret", "default from variable HELM_REG_SECRET: %v", err)
	}
	return s
}

//go:embed helm-package.sh
var helmPackageScript string

// helmPackage is wharf-cmd's HelmPackage step (pkg/steps/helmpackage.go
// at 421514f): its script, given the fields as environment variables,
// packages the chart and pushes it.
func (e *expander) helmPackage(im Images) Container {
	f := e.f
	dest := f.str("destination")
	if !f.has("destination") {
		// helmpackage.go:39-51
		dest = e.requireVar("destination", "CHART_REPO") + "/" + e.requireVar("destination", "REPO_GROUP")
	}
	c := Container{Image: im.Helm, Shell: "/bin/bash", OS: "linux", Cmds: []string{helmPackageScript},
		Env: map[string]string{"CHART_PATH": f.str("chart-path"), "CHART_REPO": dest, "CHART_VERSION": f.str("version")}}
	helmRegistry(&c, e.helmSecret())
	return c
}

// kubectl is wharf-cmd's Kubectl step (pkg/steps/kubectl.go at 421514f).
func (e *expander) kubectl(im Images) Container {
	f := e.f
	files := f.strs("files")
	if file := f.str("file"); file != "" {
		files = append(files, file) // kubectl.go:85-88: file comes last
	}
	if len(f.strs("files")) == 0 && f.str("file") == "" {
		e.errorf("file", "required field is missing (or give files)") // kubectl.go:52-56
	}
	cmd := []string{"kubectl", quote(f.strOr("action", "apply"))}
	if ns := f.str("namespace"); ns != "" {
		cmd = append(cmd, "--namespace", quote(ns))
	}
	for _, file := range files {
		cmd = append(cmd, "--filename", quote(file))
	}
	if f.boolean("force", false) {
		cmd = append(cmd, "--force")
	}
	c := Container{Image: im.Kubectl, Shell: "/bin/sh", OS: "linux", Cmds: []string{strings.Join(cmd, " ")}, Env: map[string]string{}}
	kubeconfig(&c, f.strOr("cluster", defaultKubeconfig))
	return c
}

//go:embed nuget-package.sh
var nugetPackageScript string

// nugetPackage is wharf-cmd's NuGetPackage step
// (pkg/steps/nugetpackage.go at 421514f): its script packs and pushes
// with the token of the Secret wharf-nuget-api-token. The token is mounted
// as a file, not an environment variable of the Pod spec; the script
// reads it into NUGET_TOKEN. certificatesMountPath is read but not used,
// as in wharf-cmd (nugetpackage.go:48,63-96).
func (e *expander) nugetPackage(im Images) Container {
	f := e.f
	return Container{Image: im.Dotnet, Shell: "/bin/bash", OS: "linux", Cmds: []string{nugetPackageScript},
		Env: map[string]string{
			"NUGET_REPO": f.str("repo"), "NUGET_PROJECT_PATH": f.str("project-path"), "NUGET_VERSION": f.str("version"),
			"NUGET_SKIP_DUP":   strconv.FormatBool(f.boolean("skip-duplicate", false)),
			"NUGET_TOKEN_FILE": nugetTokenDir + "/token",
		},
		Mounts: []Mount{{Secret: nugetTokenSecret, Path: nugetTokenDir, Items: map[string]string{"token": "token"}}},
	}
}
