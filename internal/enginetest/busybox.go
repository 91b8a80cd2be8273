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
	"dd", "yes", "tr", "rm", "touch",
}

// BusyboxImage returns a small step image named name ("busybox:e2e"):
// Debian's static busybox with BusyboxApplets in /bin, a sticky /tmp,
// PATH=/bin and /bin/sh as entrypoint; as the end-to-end test's step image
// (internal/e2e), without a registry to pull from.
func BusyboxImage(name string) (image.Image, error) {
	if _, err := os.Stat(BusyboxBin); err != nil {
		return image.Image{}, fmt.Errorf("enginetest: %s not found: install Debian's busybox-static: make engines", BusyboxBin)
	}
	out, err := exec.Command("ldd", BusyboxBin).CombinedOutput()
	if err == nil || !(strings.Contains(string(out), "not a dynamic executable") || strings.Contains(string(out), "statically linked")) {
		return image.Image{}, fmt.Errorf("enginetest: %s is not static (%s): install Debian's busybox-static: make engines", BusyboxBin, strings.TrimSpace(string(out)))
	}
	files := []image.File{
		{Path: "/bin/busybox", Source: BusyboxBin, Mode: 0o755},
		{Path: "/tmp", Dir: true, Mode: fs.ModeSticky | 0o777},
	}
	for _, applet := range BusyboxApplets {
		files = append(files, image.File{Path: "/bin/" + applet, Link: "busybox"})
	}
	return image.Image{Name: name, Files: files, Entrypoint: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}, nil
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
