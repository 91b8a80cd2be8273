// Package image writes container images as docker-archive tarballs, the
// format `docker save` writes and `ctr images import` reads. The test node
// has no registry to pull from, so the project builds the images its tests
// run (the wharfjobs worker, a busybox step image, the pod sandbox's pause
// image) from files on this machine and imports them into containerd.
//
// An image is one layer: the files listed, their parent directories, and
// for host binaries the shared libraries ldd names.
package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"
)

// File is one entry of the image's layer: a regular file with Data or the
// content of the host file Source, a directory (Dir), or a symlink (Link).
type File struct {
	// Path inside the image, absolute.
	Path string
	// Mode is the permission bits; 0 means 0o755 for directories and
	// executables from Source, 0o644 otherwise.
	Mode   fs.FileMode
	Data   []byte
	Source string
	Link   string
	Dir    bool
}

// Image is what an image holds and how its container starts.
type Image struct {
	// Name is the reference the image is tagged with, "wharfjobs:e2e"
	// (containerd stores it as docker.io/library/wharfjobs:e2e, which is
	// what a pod's "wharfjobs:e2e" resolves to).
	Name       string
	Files      []File
	Entrypoint []string
	Cmd        []string
	Env        []string
	User       string
	WorkingDir string
}

// epoch is the time stamped on every entry, so that the same files give
// the same layer digest.
var epoch = time.Unix(0, 0)

// WriteArchive writes img as a docker-archive tarball to w.
func (img Image) WriteArchive(w io.Writer) error {
	if img.Name == "" {
		return fmt.Errorf("image: no name")
	}
	var layer bytes.Buffer
	if err := img.writeLayer(&layer); err != nil {
		return fmt.Errorf("image %s: %w", img.Name, err)
	}
	sum := sha256.Sum256(layer.Bytes())
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	layerName := hex.EncodeToString(sum[:]) + "/layer.tar"

	cfg := map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch.UTC().Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": img.Entrypoint,
			"Cmd":        img.Cmd,
			"Env":        img.Env,
			"User":       img.User,
			"WorkingDir": img.WorkingDir,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgSum := sha256.Sum256(cfgJSON)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   cfgName,
		"RepoTags": []string{img.Name},
		"Layers":   []string{layerName},
	}})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	for _, e := range []struct {
		name string
		data []byte
	}{{cfgName, cfgJSON}, {path.Dir(layerName) + "/", nil}, {layerName, layer.Bytes()}, {"manifest.json", manifest}} {
		hdr := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch, Typeflag: tar.TypeReg}
		if strings.HasSuffix(e.name, "/") {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// WriteFile writes the archive to a file.
func (img Image) WriteFile(name string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := img.WriteArchive(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (img Image) writeLayer(w io.Writer) error {
	entries := map[string]File{}
	for _, f := range img.Files {
		if !path.IsAbs(f.Path) {
			return fmt.Errorf("file %q: path must be absolute", f.Path)
		}
		p := path.Clean(f.Path)
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = File{Path: d, Dir: true}
			}
		}
		f.Path = p
		entries[p] = f
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	// Parents sort before their children.
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, n := range names {
		f := entries[n]
		hdr := &tar.Header{Name: strings.TrimPrefix(n, "/"), ModTime: epoch, Mode: int64(f.Mode.Perm())}
		var data []byte
		switch {
		case f.Dir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
			if f.Mode == 0 {
				hdr.Mode = 0o755
			}
			if f.Mode&fs.ModeSticky != 0 {
				hdr.Mode |= 0o1000 // /tmp
			}
		case f.Link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.Link, 0o777
		default:
			hdr.Typeflag = tar.TypeReg
			data = f.Data
			if f.Source != "" {
				b, err := os.ReadFile(f.Source)
				if err != nil {
					return fmt.Errorf("file %s: %w", n, err)
				}
				data = b
				if f.Mode == 0 {
					hdr.Mode = 0o644
					if st, err := os.Stat(f.Source); err == nil && st.Mode()&0o111 != 0 {
						hdr.Mode = 0o755
					}
				}
			} else if f.Mode == 0 {
				hdr.Mode = 0o644
			}
			hdr.Size = int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// lddLine matches "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)"
// and the loader's "/lib64/ld-linux-x86-64.so.2 (0x...)".
var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)`)

// HostBinary returns the host program at src as a file at dst in the image,
// with the shared libraries it loads (as ldd lists them) at their host
// paths. A static binary comes alone.
func HostBinary(src, dst string) ([]File, error) {
	files := []File{{Path: dst, Source: src, Mode: 0o755}}
	out, err := exec.Command("ldd", src).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") || strings.Contains(string(out), "statically linked") {
			return files, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s", src, err, strings.TrimSpace(string(out)))
	}
	for _, m := range lddLine.FindAllStringSubmatch(string(out), -1) {
		lib := m[1]
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return nil, fmt.Errorf("library %s of %s: %w", lib, src, err)
		}
		files = append(files, File{Path: lib, Source: real, Mode: 0o755})
	}
	return files, nil
}
