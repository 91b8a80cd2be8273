// Package dockerfile builds the repository's Dockerfile, the production
// image, for tests that run it: with a private dockerd (internal/
// enginetest), Debian's minbase from `make debian-base` imported as the
// Dockerfile's default base (no registry can be reached), and the static
// binary built as `make build` builds it. The result is a `docker save`
// archive that a test node's containerd imports.
//
// deploy/image's test checks the image itself (size, labels, user, what
// it runs); this package only produces it.
package dockerfile

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// DockerCLI is Debian's docker.io client, which matches the private
// dockerd (20.10); the PATH is not searched, as a machine may have
// another client in /usr/local/bin.
const DockerCLI = "/usr/bin/docker"

// BaseFile is where `make debian-base` writes Debian's minbase, relative
// to the module's root.
const BaseFile = ".cache/debian-bookworm-minbase.tar"

// DebianBase returns the debootstrap tarball: WHARFJOBS_DEBIAN_BASE when
// set, else BaseFile in the module's root.
func DebianBase() (string, error) {
	p := os.Getenv("WHARFJOBS_DEBIAN_BASE")
	if p == "" {
		root, err := testenv.ModuleRoot()
		if err != nil {
			return "", err
		}
		p = filepath.Join(root, BaseFile)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no Debian minbase tarball at %s: run `make debian-base` (or `make test`, which does it) or set WHARFJOBS_DEBIAN_BASE", p)
	}
	return p, nil
}

// Build builds the Dockerfile as name (repository:tag) with version as
// the binary's and the image's version, and writes `docker save`'s
// archive of it to archive. It needs root (a private dockerd) and
// reaches Debian's package mirrors from the build (--network host), as
// `make image` does.
func Build(ctx context.Context, name, version, archive string) error {
	base, err := DebianBase()
	if err != nil {
		return err
	}
	if _, err := os.Stat(DockerCLI); err != nil {
		return fmt.Errorf("%s not found: install Debian's docker.io: make engines", DockerCLI)
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		return err
	}
	ctxDir, err := os.MkdirTemp("", "wharfjobs-image-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ctxDir)
	bin := filepath.Join(ctxDir, "bin", "wharfjobs")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", bin, "./cmd/wharfjobs")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	for _, f := range []string{"Dockerfile", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(ctxDir, f), b, 0o644); err != nil {
			return err
		}
	}

	e, err := enginetest.StartDocker()
	if err != nil {
		return err
	}
	defer e.Stop()
	conf, err := os.MkdirTemp("", "wharfjobs-docker-config-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(conf)
	docker := func(args ...string) error {
		cmd := exec.CommandContext(ctx, DockerCLI, args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.Host, "DOCKER_CONFIG="+conf, "DOCKER_BUILDKIT=0")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, tail(out.String(), 40))
		}
		return nil
	}
	if err := docker("import", base, "debian:bookworm-slim"); err != nil {
		return err
	}
	if err := docker("build", "--network", "host",
		"--build-arg", "VERSION="+version, "--build-arg", "CREATED="+time.Now().UTC().Format(time.RFC3339),
		"-t", name, ctxDir); err != nil {
		return err
	}
	return docker("save", "-o", archive, name)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
