package stepfiles

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// ValidateKey checks a cache key as a pipeline wrote it: 1 to 128 letters,
// digits, '.', '_' or '-', not starting with '.' (so neither "." nor ".."
// nor a hidden name), and so always exactly one segment of an object key.
// The error wraps ErrInvalid and names the key.
func ValidateKey(key string) error {
	bad := func(detail string) error {
		return fmt.Errorf("cache key %q: %w (%s)", truncate(key), ErrInvalid, detail)
	}
	if key == "" || len(key) > 128 {
		return bad("must be 1 to 128 characters")
	}
	if key[0] == '.' {
		return bad("must not start with '.'")
	}
	for _, c := range []byte(key) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return bad("only letters, digits, '.', '_' and '-' are allowed")
		}
	}
	return nil
}

// cacheKeyDomain starts every hash, so that it can never equal a SHA-256
// computed for another purpose over the same bytes (and can be versioned).
const cacheKeyDomain = "wharfjobs cache key v1\x00"

// CacheKey is the key a cache's archive is stored under: key (checked by
// ValidateKey) followed, when files (doublestar patterns, as for Match) are
// given, by "-" and the hex SHA-256 of the matched files' paths and
// contents, so that a changed lock file starts a new cache. Files are
// hashed in path order, each as its path and content both prefixed by
// their lengths, so two different sets of files never feed the hash the
// same bytes. Symlinks are followed (inside the root only, as in Match).
// Patterns that match nothing are fine (they add nothing to the hash) and
// are returned so that the caller can warn.
func CacheKey(root, key string, files []string) (full string, unmatched []string, err error) {
	if err := ValidateKey(key); err != nil {
		return "", nil, err
	}
	if len(files) == 0 {
		return key, nil, nil
	}
	matched, unmatched, err := Match(root, files, MatchOptions{})
	if err != nil {
		return "", nil, err
	}
	res, err := openResolver(root)
	if err != nil {
		return "", nil, err
	}
	defer res.Close()
	h := sha256.New()
	io.WriteString(h, cacheKeyDomain)
	for _, f := range matched {
		if err := hashFile(h, res, f.Path); err != nil {
			return "", nil, fmt.Errorf("cache key %q: %w", key, err)
		}
	}
	return key + "-" + hex.EncodeToString(h.Sum(nil)), unmatched, nil
}

// hashFile feeds one file, length-prefixed, to h.
func hashFile(h hash.Hash, res *resolver, rel string) error {
	fh, fi, err := res.openRegular(rel)
	if err != nil {
		return err
	}
	defer fh.Close()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(rel)))
	h.Write(n[:])
	io.WriteString(h, rel)
	size := fi.Size()
	binary.BigEndian.PutUint64(n[:], uint64(size))
	h.Write(n[:])
	// Exactly the announced length, or the prefix would not describe what
	// follows it.
	got, err := io.CopyN(h, fh, size)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("file %q shrank from %s to %s while it was hashed", rel, FormatSize(size), FormatSize(got))
	}
	return err
}
