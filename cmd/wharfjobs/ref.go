package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

// errAmbiguousRef means a build number names builds of several instances.
var errAmbiguousRef = errors.New("ambiguous build")

// resolveRef finds the build a person means: the ref itself when it is a
// build, else, for a build number as wharf-api shows it (4242), the one
// build of any instance with that number (prod-4242), saying on stderr
// which it picked. Several candidates are an error listing them; none
// leaves ref as it is, for the caller's "no build" message.
func resolveRef(ctx context.Context, store blob.Store, ref string, stderr io.Writer) (string, error) {
	if _, err := store.Stat(ctx, build.StatusKey(ref)); err == nil || !errors.Is(err, blob.ErrNotFound) {
		return ref, err
	}
	if ref == "" || strings.Trim(ref, "0123456789") != "" {
		return ref, nil
	}
	var found []string
	err := blob.ListAll(ctx, store, blob.ListOptions{Prefix: build.Root, Delimited: true}, func(info blob.Info) error {
		if r, ok := build.RefOfKey(info.Key); ok && info.IsPrefix && strings.HasSuffix(r, "-"+ref) {
			found = append(found, r)
		}
		return nil
	})
	if err != nil {
		return ref, fmt.Errorf("look for build %s: %w", ref, err)
	}
	sort.Strings(found)
	switch len(found) {
	case 0:
		return ref, nil
	case 1:
		fmt.Fprintf(stderr, "build %s is %s\n", ref, found[0])
		return found[0], nil
	}
	return ref, fmt.Errorf("%w %s: several instances have one: %s", errAmbiguousRef, ref, strings.Join(found, ", "))
}
