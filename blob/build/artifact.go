package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"strings"

	"github.com/wharfjobs/wharfjobs/blob"
)

// Artifact is one stored artifact of a build.
type Artifact struct {
	// Name is the path below builds/<ref>/artifacts/.
	Name        string
	Size        int64
	ContentType string
	ETag        string
}

// PutArtifact stores an artifact; an empty contentType is guessed from the
// name's extension. size is the exact length of r, or -1.
func PutArtifact(ctx context.Context, s blob.Store, ref, name string, r io.Reader, size int64, contentType string) (Artifact, error) {
	if err := ValidateRef(ref); err != nil {
		return Artifact{}, err
	}
	if err := validateArtifactName(name); err != nil {
		return Artifact{}, err
	}
	if contentType == "" {
		contentType = mime.TypeByExtension(path.Ext(name))
	}
	info, err := s.Put(ctx, ArtifactPrefix(ref)+name, r, size, blob.PutOptions{ContentType: contentType})
	if err != nil {
		return Artifact{}, fmt.Errorf("put artifact %s of build %s: %w", name, ref, err)
	}
	return Artifact{Name: name, Size: info.Size, ContentType: info.ContentType, ETag: info.ETag}, nil
}

// ListArtifacts returns every artifact of ref in name order.
func ListArtifacts(ctx context.Context, s blob.Store, ref string) ([]Artifact, error) {
	if err := ValidateRef(ref); err != nil {
		return nil, err
	}
	return ListFiles(ctx, s, ArtifactPrefix(ref))
}

// ListFiles returns every file below prefix (ArtifactPrefix or
// TestResultPrefix), named relative to it, in name order.
func ListFiles(ctx context.Context, s blob.Store, prefix string) ([]Artifact, error) {
	var out []Artifact
	err := blob.ListAll(ctx, s, blob.ListOptions{Prefix: prefix}, func(info blob.Info) error {
		out = append(out, Artifact{Name: strings.TrimPrefix(info.Key, prefix), Size: info.Size, ETag: info.ETag})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return out, nil
}

// GetArtifact opens an artifact for reading; the caller closes it.
func GetArtifact(ctx context.Context, s blob.Store, ref, name string) (io.ReadCloser, Artifact, error) {
	if err := validateArtifactName(name); err != nil {
		return nil, Artifact{}, err
	}
	rc, info, err := s.Get(ctx, ArtifactPrefix(ref)+name)
	if err != nil {
		return nil, Artifact{}, fmt.Errorf("get artifact %s of build %s: %w", name, ref, err)
	}
	return rc, Artifact{Name: name, Size: info.Size, ContentType: info.ContentType, ETag: info.ETag}, nil
}

// DeleteStaging removes the archives ref's steps uploaded and the
// published workspace: once a build ended, what they held is kept one
// object per file (or was refused), and no step will fetch the workspace
// again. The worker does it when it finishes; the aggregator for a build
// whose worker never did (lost, killed).
func DeleteStaging(ctx context.Context, s blob.Store, ref string) error {
	err := blob.ListAll(ctx, s, blob.ListOptions{Prefix: StagingPrefix(ref)}, func(info blob.Info) error {
		return s.Delete(ctx, info.Key)
	})
	if err == nil {
		if err = s.Delete(ctx, WorkspaceKey(ref)); errors.Is(err, blob.ErrNotFound) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("delete the steps' archives of build %s: %w", ref, err)
	}
	return nil
}
