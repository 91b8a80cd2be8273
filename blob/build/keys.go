// Package build is the build data layout of docs/architecture.md as code: where a
// build's request, status, log chunks, compacted log, artifacts and relay
// state live in the blob store, and typed access to each.
//
//	builds/<ref>/request.json          the request, secrets removed
//	builds/<ref>/status.json           current status document
//	builds/<ref>/log/<seq 10 digits>   log chunk: newline-delimited JSON records (zstd by default)
//	builds/<ref>/log.ndjson            whole log, compacted when the build ends (zstd when a chunk is)
//	builds/<ref>/diagnosis.json        a failed build's post-mortem (pods, Events, nodes)
//	builds/<ref>/artifacts/<stage>/<step>/<path>     artifact files
//	builds/<ref>/test-results/<stage>/<step>/<path>  test results as TRX
//	builds/<ref>/steps/<stage>/<step>/<what>.tar.zst archives steps upload
//	cache/<instance>/<project>/<key>.tar.zst         a project's caches
//	builds/<ref>/relay/lease           aggregator ownership (conditional writes)
//	builds/<ref>/relay/cursor          last chunk seq + status relayed
//
// Chunk sequence numbers start at 1 and are zero-padded, so keys sort in
// time order. A chunk is written create-only and never rewritten. A log
// object is plain NDJSON or NDJSON as zstd frames (CompressionZstd); the
// readers here tell them apart by their first bytes and hand out NDJSON.
package build

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/wharfjobs/wharfjobs/blob"
)

// Root is the prefix of every build's objects.
const Root = "builds/"

// seqDigits is the width of a chunk's sequence number in its key.
const seqDigits = 10

// MaxSeq is the largest chunk sequence number a key can hold.
const MaxSeq = 9_999_999_999

// ErrInvalidRef means a build ref cannot be used as a key segment.
var ErrInvalidRef = errors.New("invalid build ref")

// ValidateRef checks that ref is usable as one key segment: 1 to 128
// characters of letters, digits, '.', '_' and '-', not starting with '.'.
func ValidateRef(ref string) error {
	if ref == "" || len(ref) > 128 {
		// Not quoted back: it may be a whole request line long.
		return fmt.Errorf("%w: a ref has 1 to 128 characters, this one %d", ErrInvalidRef, len(ref))
	}
	if ref[0] == '.' {
		return fmt.Errorf("%w: %q starts with '.'", ErrInvalidRef, ref)
	}
	for _, r := range ref {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%w: %q has %q; allowed are letters, digits, '.', '_' and '-'", ErrInvalidRef, ref, r)
		}
	}
	return nil
}

// Dir is the prefix of one build's objects.
func Dir(ref string) string { return Root + ref + "/" }

// RequestKey is the key of the build's request (secrets removed).
func RequestKey(ref string) string { return Dir(ref) + "request.json" }

// StatusKey is the key of the build's status document.
func StatusKey(ref string) string { return Dir(ref) + "status.json" }

// ChunkPrefix is the prefix of the build's log chunks.
func ChunkPrefix(ref string) string { return Dir(ref) + "log/" }

// ChunkKey is the key of log chunk seq.
func ChunkKey(ref string, seq uint64) string {
	return ChunkPrefix(ref) + fmt.Sprintf("%0*d", seqDigits, seq)
}

// LogKey is the key of the compacted log.
func LogKey(ref string) string { return Dir(ref) + "log.ndjson" }

// ArtifactPrefix is the prefix of the build's artifacts.
func ArtifactPrefix(ref string) string { return Dir(ref) + "artifacts/" }

// TestResultPrefix is the prefix of the build's test results (TRX).
func TestResultPrefix(ref string) string { return Dir(ref) + "test-results/" }

// StepFilesPath is the start of the names of a step's artifacts and test
// results, "<stage>/<step>/": a stage name may hold any character, so it
// is escaped to stay one key segment.
func StepFilesPath(stage, step string) string {
	return url.PathEscape(stage) + "/" + url.PathEscape(step) + "/"
}

// StagingKey is where a step uploads the archive of what it declared
// (what: artifacts, test-results or cache) for the worker to take in.
func StagingKey(ref, stage, step, what string) string {
	return StagingPrefix(ref) + StepFilesPath(stage, step) + what + ".tar.zst"
}

// WorkspaceKey is where the kube runner publishes a build's checkout for
// its step pods (a tar.gz behind a pre-signed URL).
func WorkspaceKey(ref string) string { return Dir(ref) + "workspace.tar.gz" }

// StagingPrefix is the prefix of the archives a build's steps uploaded.
func StagingPrefix(ref string) string { return Dir(ref) + "steps/" }

// CacheRoot is the prefix of every cache archive; a lifecycle rule on it
// expires old ones.
const CacheRoot = "cache/"

// CacheKey is the key of a project's cache archive. Caches are scoped to
// one project of one wharf-api instance: a pipeline reads and writes only
// its own project's. instance and project are "_" when empty.
func CacheKey(instance, project, key string) string {
	if instance == "" {
		instance = "_"
	}
	if project == "" {
		project = "_"
	}
	return CacheRoot + url.PathEscape(instance) + "/" + url.PathEscape(project) + "/" + key + ".tar.zst"
}

// LeaseKey is the key of the aggregator's relay lease.
func LeaseKey(ref string) string { return Dir(ref) + "relay/lease" }

// CursorKey is the key of the aggregator's relay cursor.
func CursorKey(ref string) string { return Dir(ref) + "relay/cursor" }

// ParseChunkKey returns the sequence number of a chunk key of ref.
func ParseChunkKey(ref, key string) (uint64, bool) {
	rest, ok := strings.CutPrefix(key, ChunkPrefix(ref))
	if !ok || len(rest) != seqDigits {
		return 0, false
	}
	seq, err := strconv.ParseUint(rest, 10, 64)
	return seq, err == nil
}

// RefOfKey returns the build ref a key belongs to.
func RefOfKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, Root)
	if !ok {
		return "", false
	}
	ref, _, ok := strings.Cut(rest, "/")
	return ref, ok && ValidateRef(ref) == nil
}

// validateArtifactName checks a name for use under artifacts/.
func validateArtifactName(name string) error {
	if err := blob.ValidateKey(name); err != nil {
		return fmt.Errorf("artifact name: %w", err)
	}
	return nil
}
