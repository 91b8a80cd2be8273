package kuberun

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job/stepexec"
)

// Presigner is a store that can hand out time-limited GET URLs (the minio
// and s3 backends).
type Presigner interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
	PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// StoreWorkspaces publishes workspaces as builds/<ref>/workspace.tar.gz in
// the blob store behind a pre-signed URL.
type StoreWorkspaces struct {
	Store blob.Store
	// TTL of the URL; it must cover the build's longest wait for a step.
	TTL time.Duration
}

// Publish implements Workspaces.
func (w StoreWorkspaces) Publish(ctx context.Context, ref, dir string) (string, error) {
	ps, ok := w.Store.(Presigner)
	if !ok {
		return "", errors.New("the kube runner needs a store that can pre-sign URLs (WHARFJOBS_STORE=minio or s3)")
	}
	tmp, err := os.CreateTemp("", "wharfjobs-workspace-*.tar.gz")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := Archive(dir, tmp); err != nil {
		return "", fmt.Errorf("archive workspace %s: %w", dir, err)
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	key := build.WorkspaceKey(ref)
	if _, err := w.Store.Put(ctx, key, tmp, size, blob.PutOptions{ContentType: "application/gzip"}); err != nil {
		return "", err
	}
	return ps.PresignGet(ctx, key, w.ttl())
}

// PresignPlan implements Workspaces: a GET URL for every archive to
// restore (a missing one answers 404, which a cache may be) and a PUT URL
// for every archive the step uploads.
func (w StoreWorkspaces) PresignPlan(ctx context.Context, p stepexec.Plan) (stepexec.Plan, error) {
	ps, ok := w.Store.(Presigner)
	if !ok {
		return p, errors.New("the kube runner needs a store that can pre-sign URLs (WHARFJOBS_STORE=minio or s3)")
	}
	p.URLs = map[string]string{}
	for _, r := range p.Restore {
		for _, key := range r.Keys {
			u, err := ps.PresignGet(ctx, key, w.ttl())
			if err != nil {
				return p, fmt.Errorf("pre-sign %s: %w", r.What, err)
			}
			p.URLs[key] = u
		}
	}
	for _, c := range p.Collect {
		u, err := ps.PresignPut(ctx, c.Key, w.ttl())
		if err != nil {
			return p, fmt.Errorf("pre-sign %s: %w", c.What, err)
		}
		p.URLs[c.Key] = u
	}
	return p, nil
}

func (w StoreWorkspaces) ttl() time.Duration {
	if w.TTL <= 0 {
		return 6 * time.Hour
	}
	return w.TTL
}

// Archive writes dir as a gzipped tar to w: directories, regular files
// and symlinks.
func Archive(dir string, w io.Writer) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !info.Mode().IsRegular() && !info.IsDir() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// Extract unpacks a gzipped tar into dir, refusing entries that would land
// outside it.
func Extract(r io.Reader, dir string) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	root, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		target := filepath.Join(root, filepath.FromSlash(hdr.Name))
		if target != root && !strings.HasPrefix(target, root+string(filepath.Separator)) {
			return fmt.Errorf("archive entry %q leaves the workspace", hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, fs.FileMode(hdr.Mode).Perm()|0o700); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(hdr.Mode).Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		}
	}
}

// Fetch downloads a workspace archive from url into dir, trying again
// (stepexec.URLTransport's retries) while the store cannot be reached or
// answers busy.
func Fetch(ctx context.Context, url, dir string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	t := stepexec.URLTransport{URLs: map[string]string{"workspace": url}, Timeout: timeout}
	rc, err := t.Get(ctx, "workspace")
	if err != nil {
		return fmt.Errorf("fetch workspace: %w", err)
	}
	defer rc.Close()
	return Extract(rc, dir)
}
