// Package fs is the local-directory blob.Store, the embedded default.
//
// Each object is a plain file at <root>/<key>, so `cat` works on a build's
// log. Writes go to a temporary file that is synced and renamed into place,
// so a reader sees either the old or the new content, never half of it.
// Conditional puts check and rename while holding an flock(2) on one of a
// fixed set of lock files chosen by the key's hash: that serialises
// goroutines of one process (each operation opens its own descriptor) and
// separate processes alike.
//
// The ETag is the hex MD5 of the content, as S3 computes it for single-part
// uploads, so it is stable for unchanged content. It is cached with the
// content type in a sidecar file that is trusted only while the data file's
// inode, size and modification time still match; otherwise it is recomputed.
package fs

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
)

// Reserved names at the root; keys may not start with them.
const (
	reservedPrefix = ".wharfjobs-"
	metaDir        = ".wharfjobs-meta"
	tmpDir         = ".wharfjobs-tmp"
	lockDir        = ".wharfjobs-lock"
	lockShards     = 64
	// staleTemp is how old a leftover temporary file must be before Open
	// removes it; younger ones may belong to another live process.
	staleTemp = time.Hour
)

// Store is a blob.Store on a local directory.
type Store struct {
	root string
	// NoSync skips fsync before rename. Only benchmarks and throwaway
	// directories should set it: without it a power cut can leave an empty
	// object behind a successful put.
	NoSync bool
}

var _ blob.Store = (*Store)(nil)

// Open prepares root (creating it when missing) and returns the store.
func Open(root string) (*Store, error) {
	if root == "" {
		return nil, errors.New("fs store: root directory is empty (set WHARFJOBS_STORE_FS_ROOT)")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("fs store %s: %w", root, err)
	}
	for _, d := range []string{metaDir, tmpDir, lockDir} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("fs store %s: %w", abs, err)
		}
	}
	s := &Store{root: abs}
	s.removeStaleTemps()
	return s, nil
}

// Root is the directory the store lives in.
func (s *Store) Root() string { return s.root }

func (s *Store) removeStaleTemps() {
	entries, err := os.ReadDir(filepath.Join(s.root, tmpDir))
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
			_ = os.Remove(filepath.Join(s.root, tmpDir, e.Name()))
		}
	}
}

func checkKey(key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	if strings.HasPrefix(key, reservedPrefix) {
		return fmt.Errorf("%w: %q starts with %q, which the fs store reserves", blob.ErrInvalidKey, key, reservedPrefix)
	}
	return nil
}

func (s *Store) dataPath(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }
func (s *Store) metaPath(key string) string {
	return filepath.Join(s.root, metaDir, filepath.FromSlash(key))
}

// meta is the sidecar cache of an object's ETag and content type.
type meta struct {
	ETag        string `json:"etag"`
	ContentType string `json:"contentType"`
	Ino         uint64 `json:"ino"`
	Size        int64  `json:"size"`
	MTime       int64  `json:"mtime"`
}

func (m meta) matches(fi os.FileInfo) bool {
	return m.Ino == inode(fi) && m.Size == fi.Size() && m.MTime == fi.ModTime().UnixNano()
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// lock takes the exclusive flock of key's shard. The returned func releases it.
func (s *Store) lock(ctx context.Context, key string) (func(), error) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	p := filepath.Join(s.root, lockDir, fmt.Sprintf("%02d", h.Sum32()%lockShards))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	// Poll with LOCK_NB so a cancelled context is honoured; the lock is held
	// for a rename, so waits are short.
	delay := 50 * time.Microsecond
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", key, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", key, ctx.Err())
		case <-time.After(delay):
		}
		if delay < 5*time.Millisecond {
			delay *= 2
		}
	}
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts blob.PutOptions) (blob.Info, error) {
	if err := checkKey(key); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.root, tmpDir), "put-*")
	if err != nil {
		return blob.Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), ctxReader{ctx, r})
	if err != nil {
		return blob.Info{}, fmt.Errorf("put %s: write: %w", key, err)
	}
	if size >= 0 && n != size {
		return blob.Info{}, fmt.Errorf("put %s: read %d bytes, expected size %d", key, n, size)
	}
	if !s.NoSync {
		if err := tmp.Sync(); err != nil {
			return blob.Info{}, fmt.Errorf("put %s: sync: %w", key, err)
		}
	}
	fi, err := tmp.Stat()
	if err != nil {
		return blob.Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return blob.Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	ct := opts.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	m := meta{ETag: hex.EncodeToString(h.Sum(nil)), ContentType: ct, Ino: inode(fi), Size: fi.Size(), MTime: fi.ModTime().UnixNano()}

	unlock, err := s.lock(ctx, key)
	if err != nil {
		return blob.Info{}, err
	}
	defer unlock()
	if opts.IfNoneMatch || opts.IfMatch != "" {
		cur, err := s.stat(key)
		switch {
		case errors.Is(err, blob.ErrNotFound):
			if opts.IfMatch != "" {
				return blob.Info{}, fmt.Errorf("put %s if-match %s: object missing: %w", key, opts.IfMatch, blob.ErrPreconditionFailed)
			}
		case err != nil:
			return blob.Info{}, fmt.Errorf("put %s: %w", key, err)
		case opts.IfNoneMatch:
			return blob.Info{}, fmt.Errorf("put %s if-none-match: exists: %w", key, blob.ErrPreconditionFailed)
		case cur.ETag != opts.IfMatch:
			return blob.Info{}, fmt.Errorf("put %s if-match %s: current etag is %s: %w", key, opts.IfMatch, cur.ETag, blob.ErrPreconditionFailed)
		}
	}
	if err := s.writeMeta(key, m); err != nil {
		return blob.Info{}, err
	}
	if err := s.rename(tmp.Name(), key); err != nil {
		return blob.Info{}, err
	}
	committed = true
	return blob.Info{Key: key, Size: m.Size, ETag: m.ETag, ContentType: ct, ModTime: fi.ModTime()}, nil
}

// rename moves a finished temporary file into place, creating parent
// directories. A concurrent Delete may remove an empty parent in between,
// so it tries again a few times.
func (s *Store) rename(tmp, key string) error {
	dst := s.dataPath(key)
	var err error
	for range 5 {
		if err = os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			break
		}
		if err = os.Rename(tmp, dst); err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("put %s: the key clashes with another object's path on the fs store (one key is a prefix directory of the other): %w", key, err)
	}
	return fmt.Errorf("put %s: %w", key, err)
}

func (s *Store) writeMeta(key string, m meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("put %s: meta: %w", key, err)
	}
	p := s.metaPath(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("put %s: meta: %w", key, err)
	}
	tmp, err := os.CreateTemp(filepath.Join(s.root, tmpDir), "meta-*")
	if err != nil {
		return fmt.Errorf("put %s: meta: %w", key, err)
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("put %s: meta: %w", key, errors.Join(werr, cerr))
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("put %s: meta: %w", key, err)
	}
	return nil
}

// infoOf builds the Info of the open data file f, from the sidecar when it
// still describes this very file, else by hashing f (and leaving f's offset
// at 0).
func (s *Store) infoOf(key string, f *os.File) (blob.Info, error) {
	fi, err := f.Stat()
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	if fi.IsDir() {
		return blob.Info{}, fmt.Errorf("stat %s: %w", key, blob.ErrNotFound)
	}
	info := blob.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}
	if b, err := os.ReadFile(s.metaPath(key)); err == nil {
		var m meta
		if json.Unmarshal(b, &m) == nil && m.matches(fi) {
			info.ETag, info.ContentType = m.ETag, m.ContentType
			return info, nil
		}
	}
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return blob.Info{}, fmt.Errorf("hash %s: %w", key, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return blob.Info{}, fmt.Errorf("hash %s: %w", key, err)
	}
	info.ETag = hex.EncodeToString(h.Sum(nil))
	info.ContentType = "application/octet-stream"
	return info, nil
}

func (s *Store) open(key string) (*os.File, error) {
	f, err := os.Open(s.dataPath(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("%s: %w", key, blob.ErrNotFound)
		}
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	return f, nil
}

func (s *Store) stat(key string) (blob.Info, error) {
	f, err := s.open(key)
	if err != nil {
		return blob.Info{}, err
	}
	defer f.Close()
	return s.infoOf(key, f)
}

// Get implements blob.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	if err := checkKey(key); err != nil {
		return nil, blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, blob.Info{}, err
	}
	f, err := s.open(key)
	if err != nil {
		return nil, blob.Info{}, err
	}
	info, err := s.infoOf(key, f)
	if err != nil {
		_ = f.Close()
		return nil, blob.Info{}, err
	}
	return f, info, nil
}

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := checkKey(key); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	return s.stat(key)
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	p := s.dataPath(key)
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return nil // a prefix, not an object: nothing to delete, as in S3
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	_ = os.Remove(s.metaPath(key))
	s.pruneEmptyDirs(filepath.Dir(p), s.root)
	s.pruneEmptyDirs(filepath.Dir(s.metaPath(key)), filepath.Join(s.root, metaDir))
	return nil
}

// pruneEmptyDirs removes now-empty parents so listings do not walk dead
// directories; a parent that is not empty stops it.
func (s *Store) pruneEmptyDirs(dir, stop string) {
	for dir != stop && strings.HasPrefix(dir, stop) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// List implements blob.Store.
func (s *Store) List(ctx context.Context, opts blob.ListOptions) ([]blob.Info, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = blob.DefaultListLimit
	}
	// Walk only the directory that can hold the prefix.
	baseKey := ""
	if i := strings.LastIndex(opts.Prefix, "/"); i >= 0 {
		baseKey = opts.Prefix[:i]
	}
	base := s.root
	if baseKey != "" {
		base = s.dataPath(baseKey)
	}
	var keys []blob.Info
	seenPrefix := map[string]bool{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		key := filepath.ToSlash(rel)
		if p == s.root || p == base {
			return nil
		}
		if strings.HasPrefix(key, reservedPrefix) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			dirKey := key + "/"
			// Skip directories that cannot hold a matching key.
			if !strings.HasPrefix(dirKey, opts.Prefix) && !strings.HasPrefix(opts.Prefix, dirKey) {
				return fs.SkipDir
			}
			if opts.Delimited && strings.HasPrefix(dirKey, opts.Prefix) {
				cp := commonPrefix(opts.Prefix, dirKey)
				if cp > opts.After && !seenPrefix[cp] && hasFile(p) {
					seenPrefix[cp] = true
					keys = append(keys, blob.Info{Key: cp, IsPrefix: true})
				}
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(key, opts.Prefix) || key <= opts.After {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil // deleted while walking
		}
		keys = append(keys, blob.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", opts.Prefix, err)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Key < keys[j].Key })
	if len(keys) > limit {
		keys = keys[:limit]
	}
	// Fill in ETags only for the page returned: hashing is the costly part.
	for i := range keys {
		if keys[i].IsPrefix {
			continue
		}
		if info, err := s.stat(keys[i].Key); err == nil {
			keys[i] = info
		}
	}
	return keys, nil
}

// commonPrefix cuts dirKey (which starts with prefix) after the first "/"
// past the prefix.
func commonPrefix(prefix, dirKey string) string {
	rest := dirKey[len(prefix):]
	if i := strings.Index(rest, "/"); i >= 0 {
		return prefix + rest[:i+1]
	}
	return dirKey
}

// hasFile reports whether dir holds a file at any depth; empty directories
// left by a crash are not prefixes of any object.
func hasFile(dir string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	return found
}

// ctxReader stops a long copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
