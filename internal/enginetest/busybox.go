package enginetest

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"

	"github.com/wharfjobs/wharfjobs/internal/image"
)

// BusyboxBin is Debian's static busybox (busybox-static), the only program
// of the step image: a static binary needs no libraries in the image.
const BusyboxBin = "/usr/bin/busybox"

// BusyboxApplets are the commands of BusyboxImage, links to /bin/busybox:
// the shell and what CI steps and the runner's tests use.
var BusyboxApplets = []string{
	"sh", "echo", "cat", "ls", "id", "pwd", "sleep", "env", "wc", "seq",
	"true", "false", "mkdir", "cp", "printf", "test", "head", "wget", "nc",
	"dd", "yes", "tr", "rm", "touch", "ash", "grep", "mv", "sed", "tar", "which",
}

// BusyboxImage returns a small step image named name ("busybox:e2e"):
// Debian's static busybox with BusyboxApplets in /bin, a sticky /tmp,
// PATH=/bin and /bin/sh as entrypoint; as the end-to-end test's step image
// (internal/e2e), without a registry to pull from.
func BusyboxImage(name string) (image.Image, error) {
	files, err := busyboxFiles("/bin")
	if err != nil {
		return image.Image{}, err
	}
	files = append(files, image.File{Path: "/tmp", Dir: true, Mode: fs.ModeSticky | 0o777})
	return image.Image{Name: name, Files: files, Entrypoint: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}, nil
}

// busyboxFiles are Debian's static busybox at dir/busybox and
// BusyboxApplets beside it.
func busyboxFiles(dir string) ([]image.File, error) {
	if _, err := os.Stat(BusyboxBin); err != nil {
		return nil, fmt.Errorf("enginetest: %s not found: install Debian's busybox-static: make engines", BusyboxBin)
	}
	out, err := exec.Command("ldd", BusyboxBin).CombinedOutput()
	if err == nil || !(strings.Contains(string(out), "not a dynamic executable") || strings.Contains(string(out), "statically linked")) {
		return nil, fmt.Errorf("enginetest: %s is not static (%s): install Debian's busybox-static: make engines", BusyboxBin, strings.TrimSpace(string(out)))
	}
	files := []image.File{{Path: dir + "/busybox", Source: BusyboxBin, Mode: 0o755}}
	for _, applet := range BusyboxApplets {
		files = append(files, image.File{Path: dir + "/" + applet, Link: "busybox"})
	}
	return files, nil
}

// KanikoImage is kaniko's executor (the binary at executor, `make kaniko`)
// laid out as its -debug image is: /kaniko/executor, busybox under
// /busybox (docker steps run /busybox/sh), the registry credentials
// expected at /kaniko/.docker/config.json, root as the user.
func KanikoImage(name, executor string) (image.Image, error) {
	files, err := busyboxFiles("/busybox")
	if err != nil {
		return image.Image{}, err
	}
	files = append(files,
		image.File{Path: "/kaniko/executor", Source: executor, Mode: 0o755},
		image.File{Path: "/kaniko/.docker", Dir: true},
		image.File{Path: "/kaniko/ssl/certs/ca-certificates.crt", Source: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644},
		image.File{Path: "/root", Dir: true, Mode: 0o700},
		image.File{Path: "/tmp", Dir: true, Mode: fs.ModeSticky | 0o777},
	)
	return image.Image{Name: name, Files: files, Entrypoint: []string{"/kaniko/executor"},
		Env: []string{"PATH=/usr/local/bin:/kaniko:/busybox", "HOME=/root", "USER=root", "DOCKER_CONFIG=/kaniko/.docker/", "SSL_CERT_DIR=/kaniko/ssl/certs"}}, nil
}

// KubectlImage is the kubectl binary at kubectl (`make kube-bins`) with
// the libraries it loads and busybox's sh, as a non-root user.
func KubectlImage(name, kubectl string) (image.Image, error) {
	files, err := image.HostBinary(kubectl, "/usr/local/bin/kubectl")
	if err != nil {
		return image.Image{}, err
	}
	bb, err := busyboxFiles("/bin")
	if err != nil {
		return image.Image{}, err
	}
	files = append(append(files, bb...), image.File{Path: "/tmp", Dir: true, Mode: fs.ModeSticky | 0o777})
	return image.Image{Name: name, Files: files, Entrypoint: []string{"/bin/sh"}, User: "65532",
		Env: []string{"PATH=/usr/local/bin:/bin", "HOME=/tmp"}}, nil
}

// LoadImage writes img as a docker-archive tarball into the engine's
// directory and loads it (see Load for the names it is listed under).
func (e *Engine) LoadImage(ctx context.Context, img image.Image) error {
	f, err := os.CreateTemp(e.Dir, "image-*.tar")
	if err != nil {
		return err
	}
	tarball := f.Name()
	f.Close()
	defer os.Remove(tarball)
	if err := img.WriteFile(tarball); err != nil {
		return fmt.Errorf("enginetest: write image %s: %w", img.Name, err)
	}
	return e.Load(ctx, tarball)
}

// LoadBusybox builds BusyboxImage(name) and loads it into the engine.
func (e *Engine) LoadBusybox(ctx context.Context, name string) error {
	img, err := BusyboxImage(name)
	if err != nil {
		return err
	}
	return e.LoadImage(ctx, img)
}
