package pipeline

import (
	"fmt"
	"sort"
	"strings"
)

// Images are the container images that step types other than container
// expand into. Every one can be changed (WHARFJOBS_IMAGE_*), for example to
// a mirror in a cluster without internet access.
type Images struct {
	// Kaniko builds docker steps [gcr.io/kaniko-project/executor:v1.23.2-debug].
	// The -debug variant is needed: it has the shell the commands run in.
	Kaniko string `envconfig:"IMAGE_KANIKO"`
	// Helm runs helm and helm-package steps [alpine/helm:3.16.2].
	Helm string `envconfig:"IMAGE_HELM"`
	// Kubectl runs kubectl steps [bitnami/kubectl:1.34].
	Kubectl string `envconfig:"IMAGE_KUBECTL"`
	// Dotnet runs nuget-package steps [mcr.microsoft.com/dotnet/sdk:8.0].
	Dotnet string `envconfig:"IMAGE_DOTNET"`
}

// DefaultImages are the images used when Images leaves a field empty.
var DefaultImages = Images{
	Kaniko:  "gcr.io/kaniko-project/executor:v1.23.2-debug",
	Helm:    "alpine/helm:3.16.2",
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
		{"secret", kindString, false}, {"secretName", kindString, false}, {"insecure", kindBool, false},
		{"append-cert", kindBool, false},
	},
	"helm": {
		{"chart", kindString, true}, {"name", kindString, true}, {"namespace", kindString, true},
		{"repo", kindString, false}, {"set", kindMap, false}, {"files", kindStrings, false},
		{"chartVersion", kindString, false}, {"helmVersion", kindString, false}, {"cluster", kindString, false},
	},
	"helm-package": {
		{"version", kindString, false}, {"chart-path", kindString, false}, {"destination", kindString, false},
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

// expand turns a step type's fields into the container that does its job,
// or says what is wrong.
func expand(typ, stepName string, f fieldValues, im Images) (Container, string) {
	switch typ {
	case "container":
		c := Container{
			Image: f.str("image"), Cmds: f.strs("cmds"), Shell: f.str("shell"), OS: f.str("os"),
			SecretName: f.str("secretName"), ServiceAccount: f.str("serviceAccount"),
			CertificatesMountPath: f.str("certificatesMountPath"),
		}
		if c.Shell == "" {
			c.Shell = "/bin/sh"
		}
		switch c.OS {
		case "":
			c.OS = "linux"
		case "linux", "windows":
		default:
			return c, fmt.Sprintf("os %q is not linux or windows", c.OS)
		}
		return c, ""

	case "docker":
		name := f.str("name")
		if name == "" {
			name = stepName
		}
		dest := f.str("destination")
		if dest == "" {
			parts := []string{}
			for _, p := range []string{f.str("registry"), f.str("group"), name} {
				if p != "" {
					parts = append(parts, strings.Trim(p, "/"))
				}
			}
			dest = strings.ToLower(strings.Join(parts, "/"))
		}
		cmd := []string{"/kaniko/executor", "--dockerfile", quote(f.str("file"))}
		ctxDir := f.str("context")
		if ctxDir == "" {
			ctxDir = "."
		}
		cmd = append(cmd, "--context", quote("dir://"+ctxDir))
		// Every tag repeats the destination: a long destination times
		// many tags would build a huge command from short values.
		size := 0
		for tag := range strings.SplitSeq(f.str("tag"), ",") {
			if tag = strings.TrimSpace(tag); tag != "" {
				d := quote(dest + ":" + tag)
				if size += len(d); size > MaxValueSize {
					return Container{}, fmt.Sprintf("destinations (tags times destination) are longer than %d bytes", MaxValueSize)
				}
				cmd = append(cmd, "--destination", d)
			}
		}
		for _, a := range f.strs("args") {
			cmd = append(cmd, "--build-arg", quote(a))
		}
		if !f.boolean("push", true) {
			cmd = append(cmd, "--no-push")
		}
		if f.boolean("insecure", false) {
			cmd = append(cmd, "--insecure", "--skip-tls-verify")
		}
		secret := f.str("secretName")
		if secret == "" {
			secret = f.str("secret")
		}
		return Container{Image: im.Kaniko, Shell: "/busybox/sh", OS: "linux", Cmds: []string{strings.Join(cmd, " ")}, SecretName: secret}, ""

	case "helm":
		chart := f.str("chart")
		cmd := []string{"helm", "upgrade", "--install", "--wait", quote(f.str("name")), quote(chart), "--namespace", quote(f.str("namespace"))}
		if repo := f.str("repo"); repo != "" {
			cmd = append(cmd, "--repo", quote(repo))
		}
		if v := f.str("chartVersion"); v != "" {
			cmd = append(cmd, "--version", quote(v))
		}
		for _, file := range f.strs("files") {
			cmd = append(cmd, "--values", quote(file))
		}
		set := f.kv("set")
		keys := make([]string, 0, len(set))
		for k := range set {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			cmd = append(cmd, "--set", quote(k+"="+set[k]))
		}
		return Container{Image: im.Helm, Shell: "/bin/sh", OS: "linux", Cmds: []string{strings.Join(cmd, " ")}, SecretName: f.str("cluster")}, ""

	case "helm-package":
		chartPath := f.str("chart-path")
		if chartPath == "" {
			chartPath = "."
		}
		pkg := []string{"helm", "package", quote(chartPath), "--destination", "/tmp/charts"}
		if v := f.str("version"); v != "" {
			pkg = append(pkg, "--version", quote(v), "--app-version", quote(v))
		}
		cmds := []string{strings.Join(pkg, " ")}
		if dest := f.str("destination"); dest != "" {
			cmds = append(cmds, `for c in /tmp/charts/*.tgz; do curl --fail --silent --show-error --data-binary "@$c" `+quote(strings.TrimSuffix(dest, "/")+"/api/charts")+`; done`)
		}
		return Container{Image: im.Helm, Shell: "/bin/sh", OS: "linux", Cmds: cmds}, ""

	case "kubectl":
		files := f.strs("files")
		if file := f.str("file"); file != "" {
			files = append([]string{file}, files...)
		}
		if len(files) == 0 {
			return Container{}, "needs file or files"
		}
		action := f.str("action")
		if action == "" {
			action = "apply"
		}
		cmd := []string{"kubectl", quote(action)}
		for _, file := range files {
			cmd = append(cmd, "-f", quote(file))
		}
		if ns := f.str("namespace"); ns != "" {
			cmd = append(cmd, "--namespace", quote(ns))
		}
		if f.boolean("force", false) {
			cmd = append(cmd, "--force")
		}
		return Container{Image: im.Kubectl, Shell: "/bin/sh", OS: "linux", Cmds: []string{strings.Join(cmd, " ")}, SecretName: f.str("cluster")}, ""

	case "nuget-package":
		pack := []string{"dotnet", "pack", quote(f.str("project-path")), "--configuration", "Release", "--output", "/tmp/nupkg",
			quote("-p:PackageVersion=" + f.str("version"))}
		// The API key comes from the step's secret as a file, never a
		// command-line literal.
		push := []string{"dotnet", "nuget", "push", "'/tmp/nupkg/*.nupkg'", "--source", quote(f.str("repo")), "--api-key", `"$(cat /var/run/wharf/secret/token)"`}
		if f.boolean("skip-duplicate", false) {
			push = append(push, "--skip-duplicate")
		}
		return Container{Image: im.Dotnet, Shell: "/bin/sh", OS: "linux", Cmds: []string{strings.Join(pack, " "), strings.Join(push, " ")},
			SecretName: "nuget-" + stepName, CertificatesMountPath: f.str("certificatesMountPath")}, ""
	}
	return Container{}, fmt.Sprintf("unknown step type %q", typ)
}
