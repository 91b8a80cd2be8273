package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"testing"
)

func readTar(t *testing.T, r io.Reader) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name], data[h.Name] = h, b
	}
}

func TestArchiveIsConsistent(t *testing.T) {
	img := Image{
		Name: "example:test",
		Files: []File{
			{Path: "/bin/hello", Data: []byte("#!/bin/sh\necho hi\n"), Mode: 0o755},
			{Path: "/bin/sh", Link: "busybox"},
			{Path: "/tmp", Dir: true, Mode: fs.ModeSticky | 0o777},
		},
		Entrypoint: []string{"/bin/hello"},
		User:       "65532",
	}
	var buf bytes.Buffer
	if err := img.WriteArchive(&buf); err != nil {
		t.Fatal(err)
	}
	first := buf.Bytes()
	var again bytes.Buffer
	if err := img.WriteArchive(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again.Bytes()) {
		t.Error("the same image gave two different archives")
	}

	_, data := readTar(t, bytes.NewReader(first))
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(data["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 || len(manifest[0].Layers) != 1 || manifest[0].RepoTags[0] != "example:test" {
		t.Fatalf("manifest = %+v", manifest)
	}
	var cfg struct {
		Config struct {
			Entrypoint []string
			User       string
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(data[manifest[0].Config], &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	layer := data[manifest[0].Layers[0]]
	sum := sha256.Sum256(layer)
	if want := "sha256:" + hex.EncodeToString(sum[:]); len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != want {
		t.Errorf("diff_ids = %v, want [%s]", cfg.RootFS.DiffIDs, want)
	}
	if cfg.Config.Entrypoint[0] != "/bin/hello" || cfg.Config.User != "65532" {
		t.Errorf("config = %+v", cfg.Config)
	}

	hdrs, files := readTar(t, bytes.NewReader(layer))
	if h := hdrs["bin/"]; h == nil || h.Typeflag != tar.TypeDir {
		t.Errorf("parent directory bin/ missing: %v", hdrs)
	}
	if h := hdrs["bin/hello"]; h == nil || h.Mode != 0o755 || string(files["bin/hello"]) != "#!/bin/sh\necho hi\n" {
		t.Errorf("bin/hello = %+v %q", h, files["bin/hello"])
	}
	if h := hdrs["bin/sh"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
		t.Errorf("bin/sh = %+v", h)
	}
	if h := hdrs["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp/ = %+v", h)
	}
}

func TestHostBinaryBringsItsLibraries(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	files, err := HostBinary(git, "/usr/bin/git")
	if err != nil {
		t.Fatal(err)
	}
	var loader, libc bool
	for _, f := range files[1:] {
		if _, err := os.Stat(f.Source); err != nil {
			t.Errorf("%s: %v", f.Path, err)
		}
		loader = loader || bytes.Contains([]byte(f.Path), []byte("ld-linux"))
		libc = libc || bytes.Contains([]byte(f.Path), []byte("libc.so"))
	}
	if !loader || !libc {
		t.Errorf("git's files lack the loader or libc: %+v", files)
	}
	if _, err := HostBinary("/nonexistent/tool", "/x"); err == nil {
		t.Error("a missing program gave no error")
	}
}
