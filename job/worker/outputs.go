package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/internal/settings"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/stepexec"
	"github.com/wharfjobs/wharfjobs/job/stepfiles"
	"github.com/wharfjobs/wharfjobs/job/testresult"
)

// Size is a number of bytes, read from the environment in Kubernetes
// quantity notation (100Mi, 1Gi, 2G) or as plain bytes.
type Size int64

// Decode implements envconfig.Decoder.
func (s *Size) Decode(v string) error {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return fmt.Errorf("%q is not a size such as 100Mi, 1Gi or 1048576: %w", v, err)
	}
	if q.Sign() < 0 {
		return fmt.Errorf("%q: a size cannot be negative", v)
	}
	*s = Size(q.Value())
	return nil
}

// Defaults of the file limits (Config.Files).
const (
	// DefaultArtifactMaxFileSize: wharf-api keeps artifacts in its
	// database, so one file stays well below what a row can hold.
	DefaultArtifactMaxFileSize  Size = 100 << 20
	DefaultArtifactMaxBuildSize Size = 1 << 30
	DefaultCacheMaxSize         Size = 2 << 30
	// DefaultArtifactMaxFiles: wharf-api stores and lists every file one
	// by one, and wharf-web shows them in one list.
	DefaultArtifactMaxFiles = 1000
)

// FilesConfig limits what steps keep.
type FilesConfig struct {
	// ArtifactMaxFileSize bounds one artifact or test result file.
	ArtifactMaxFileSize Size `envconfig:"ARTIFACT_MAX_FILE_SIZE" default:"100Mi" desc:"bound of one artifact or test result file"`
	// ArtifactMaxBuildSize bounds all artifacts of one build.
	ArtifactMaxBuildSize Size `envconfig:"ARTIFACT_MAX_BUILD_SIZE" default:"1Gi" desc:"bound of all artifacts of one build"`
	// CacheMaxSize bounds the files of one cache.
	CacheMaxSize Size `envconfig:"CACHE_MAX_SIZE" default:"2Gi" desc:"bound of the files of one cache"`
	// ArtifactMaxFiles bounds the artifacts, and the test results, one
	// step keeps.
	ArtifactMaxFiles int `envconfig:"ARTIFACT_MAX_FILES" default:"1000" desc:"bound of the number of artifacts, and of test results, one step keeps"`
}

// Validate refuses negative sizes (a Size read from the environment never
// is; one set in code may be).
func (c FilesConfig) Validate() error {
	return settings.NonNegative(c)
}

// withDefaults fills the limits left zero with their defaults.
func (c FilesConfig) withDefaults() FilesConfig {
	if c.ArtifactMaxFileSize <= 0 {
		c.ArtifactMaxFileSize = DefaultArtifactMaxFileSize
	}
	if c.ArtifactMaxBuildSize <= 0 {
		c.ArtifactMaxBuildSize = DefaultArtifactMaxBuildSize
	}
	if c.ArtifactMaxFiles <= 0 {
		c.ArtifactMaxFiles = DefaultArtifactMaxFiles
	}
	if c.CacheMaxSize <= 0 {
		c.CacheMaxSize = DefaultCacheMaxSize
	}
	return c
}

// What the archives of a step hold; the last part of their staging keys.
const (
	filesArtifacts   = "artifacts"
	filesTestResults = "test-results"
	filesCache       = "cache"
)

// stepFiles is what the worker planned for one step's files.
type stepFiles struct {
	plan     stepexec.Plan
	cacheKey string // the step's cache key with its files' hash
	format   pipeline.TestResultFormat
	// started is when the step began: the test times of a JUnit file
	// without timestamps (Maven Surefire) count from it.
	started time.Time
}

// plan is what moves in and out of a step's workspace: the artifacts of
// the steps of earlier stages, its cache, and what it declared.
func (r *run) plan(stage string, step pipeline.Step, dir string) stepFiles {
	lim := r.cfg.Files
	r.filesMu.Lock()
	p := stepexec.Plan{Restore: append([]stepexec.Restore(nil), r.restorable...)}
	left := int64(lim.ArtifactMaxBuildSize) - r.artifactBytes
	r.filesMu.Unlock()
	out := step.Outputs
	sf := stepFiles{}
	if c := out.Cache; c != nil {
		key, unmatched, err := stepfiles.CacheKey(dir, c.Key, c.Files)
		for _, pat := range unmatched {
			r.sysf("warning: step %s/%s: cache files: no file matches %q", stage, step.Name, pat)
		}
		if err != nil {
			// The key was checked with the file; what remains is reading
			// the files it hashes, which the step will meet too.
			r.sysf("warning: step %s/%s: cache %s not used: %v", stage, step.Name, c.Key, err)
		} else {
			if c.Policy.Pull() {
				keys := []string{build.CacheKey(r.req.Instance, r.req.ProjectID, key)}
				for _, k := range c.FallbackKeys {
					keys = append(keys, build.CacheKey(r.req.Instance, r.req.ProjectID, k))
				}
				p.Restore = append(p.Restore, stepexec.Restore{What: "cache " + key, Keys: keys, Optional: true,
					Limits: stepfiles.Limits{MaxTotalSize: int64(lim.CacheMaxSize)}})
			}
			if c.Policy.Push() {
				p.Collect = append(p.Collect, stepexec.Collect{What: "cache " + key, Key: build.StagingKey(r.ref, stage, step.Name, filesCache),
					Paths: c.Paths, When: c.When, IfNoFilesFound: pipeline.NoFilesWarn, KeepLinks: true, WarnOnly: true,
					Limits:     stepfiles.Limits{MaxTotalSize: int64(lim.CacheMaxSize)},
					LimitsFrom: "WHARFJOBS_CACHE_MAX_SIZE=" + stepfiles.FormatSize(int64(lim.CacheMaxSize))})
				sf.cacheKey = key
			}
		}
	}
	if a := out.Artifacts; a != nil {
		p.Collect = append(p.Collect, stepexec.Collect{What: "artifacts", Key: build.StagingKey(r.ref, stage, step.Name, filesArtifacts),
			Paths: a.Paths, When: a.When, IfNoFilesFound: a.IfNoFilesFound,
			Limits: stepfiles.Limits{MaxFileSize: int64(lim.ArtifactMaxFileSize), MaxTotalSize: max(left, 0), MaxFiles: lim.ArtifactMaxFiles},
			LimitsFrom: fmt.Sprintf("WHARFJOBS_ARTIFACT_MAX_FILE_SIZE=%s per file, WHARFJOBS_ARTIFACT_MAX_FILES=%d per step, WHARFJOBS_ARTIFACT_MAX_BUILD_SIZE=%s per build, of which %s were left",
				stepfiles.FormatSize(int64(lim.ArtifactMaxFileSize)), lim.ArtifactMaxFiles, stepfiles.FormatSize(int64(lim.ArtifactMaxBuildSize)), stepfiles.FormatSize(max(left, 0)))})
	}
	if t := out.TestResults; t != nil {
		sf.format = t.Format
		p.Collect = append(p.Collect, stepexec.Collect{What: "test results", Key: build.StagingKey(r.ref, stage, step.Name, filesTestResults),
			Paths: t.Paths, When: t.When, IfNoFilesFound: t.IfNoFilesFound,
			Limits:     stepfiles.Limits{MaxFileSize: int64(lim.ArtifactMaxFileSize), MaxFiles: lim.ArtifactMaxFiles},
			LimitsFrom: fmt.Sprintf("WHARFJOBS_ARTIFACT_MAX_FILE_SIZE=%s per file, WHARFJOBS_ARTIFACT_MAX_FILES=%d per step", stepfiles.FormatSize(int64(lim.ArtifactMaxFileSize)), lim.ArtifactMaxFiles)})
	}
	sf.plan = p
	return sf
}

// takeIn checks and keeps what a step uploaded: its artifacts one object
// each (and the archive, for the steps of later stages), its test results
// as TRX, its cache under the project's key. The archives come from
// untrusted code, so the limits and paths are checked again here, and an
// archive that breaks them is refused whole. It returns the restore of the
// step's artifacts for later stages (nil if none), the step's status
// additions, and an error that fails the step.
func (r *run) takeIn(ctx context.Context, stage, step string, sf stepFiles, ok bool) (*stepexec.Restore, func(*build.StepStatus), error) {
	var restore *stepexec.Restore
	var nFiles int
	var nBytes int64
	var tests *build.TestCounts
	var errs []error
	for _, c := range sf.plan.Collect {
		if !c.When.Applies(ok) {
			continue
		}
		what := strings.TrimSuffix(path.Base(c.Key), ".tar.zst")
		staged, statErr := r.store.Stat(ctx, c.Key)
		if errors.Is(statErr, blob.ErrNotFound) {
			continue // nothing matched, or the step did not get that far
		}
		var err error
		switch what {
		case filesArtifacts:
			nFiles, nBytes, err = r.takeArtifacts(ctx, stage, step, c)
			if err == nil && nFiles > 0 {
				restore = &stepexec.Restore{What: "artifacts of " + stage + "/" + step, Keys: []string{c.Key}, Limits: c.Limits}
			}
		case filesTestResults:
			tests, err = r.takeTestResults(ctx, stage, step, c, sf)
		case filesCache:
			r.takeCache(ctx, stage, step, c, sf.cacheKey, staged, statErr)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.What, err))
		}
	}
	return restore, func(s *build.StepStatus) {
		s.Artifacts, s.ArtifactBytes, s.Tests = nFiles, nBytes, tests
	}, errors.Join(errs...)
}

func (r *run) takeArtifacts(ctx context.Context, stage, step string, c stepexec.Collect) (int, int64, error) {
	r.filesMu.Lock()
	left := int64(r.cfg.Files.ArtifactMaxBuildSize) - r.artifactBytes
	r.filesMu.Unlock()
	lim := stepfiles.Limits{MaxFileSize: c.Limits.MaxFileSize, MaxTotalSize: max(left, 0), MaxFiles: c.Limits.MaxFiles}
	// A first pass checks the whole archive, so a refused one leaves no
	// artifact behind; a second keeps the files.
	var n int
	var total int64
	if err := r.readArchive(ctx, c.Key, lim, func(e stepfiles.Entry, _ io.Reader) error {
		n, total = n+1, total+e.Size
		return nil
	}); err != nil {
		return 0, 0, fmt.Errorf("%w (limits: %s)", err, c.LimitsFrom)
	}
	r.filesMu.Lock()
	if int64(r.cfg.Files.ArtifactMaxBuildSize)-r.artifactBytes < total {
		r.filesMu.Unlock()
		return 0, 0, fmt.Errorf("%s more would take the build over WHARFJOBS_ARTIFACT_MAX_BUILD_SIZE=%s", stepfiles.FormatSize(total), stepfiles.FormatSize(int64(r.cfg.Files.ArtifactMaxBuildSize)))
	}
	r.artifactBytes += total
	r.filesMu.Unlock()
	prefix := build.StepFilesPath(stage, step)
	err := r.readArchive(ctx, c.Key, lim, func(e stepfiles.Entry, body io.Reader) error {
		_, err := build.PutArtifact(ctx, r.store, r.ref, prefix+e.Path, body, e.Size, "")
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	r.sysf("step %s/%s: kept %d artifact(s), %s", stage, step, n, stepfiles.FormatSize(total))
	return n, total, nil
}

func (r *run) takeTestResults(ctx context.Context, stage, step string, c stepexec.Collect, sf stepFiles) (*build.TestCounts, error) {
	var sum build.TestCounts
	format := testresult.Format(sf.format)
	prefix := build.StepFilesPath(stage, step)
	err := r.readArchive(ctx, c.Key, c.Limits, func(e stepfiles.Entry, body io.Reader) error {
		data, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		trx, counts, err := testresult.Options{Start: sf.started}.ToTRX(data, format)
		if err != nil {
			// wharf-api answers 400 to anything but TRX, after storing
			// it: such a file is never sent, and the step does not fail
			// for a report it could not show.
			r.sysf("warning: step %s/%s: test result %s not kept: %v", stage, step, e.Path, err)
			return nil
		}
		name := e.Path
		if !strings.EqualFold(path.Ext(name), ".trx") {
			name += ".trx"
		}
		if _, err := r.store.Put(ctx, build.TestResultPrefix(r.ref)+prefix+name, bytes.NewReader(trx), int64(len(trx)), blob.PutOptions{ContentType: "application/xml"}); err != nil {
			return fmt.Errorf("keep %s: %w", e.Path, err)
		}
		sum.Add(build.TestCounts{Total: counts.Total, Passed: counts.Passed, Failed: counts.Failed, Skipped: counts.Skipped})
		r.sysf("step %s/%s: test result %s: %d passed, %d failed, %d skipped", stage, step, e.Path, counts.Passed, counts.Failed, counts.Skipped)
		return nil
	})
	if err != nil {
		return nil, err
	}
	_ = r.store.Delete(ctx, c.Key)
	return &sum, nil
}

// takeCache moves a step's cache archive (staged, as takeIn found it, or
// the error of looking) to its project's key. A cache that cannot be kept
// is a warning: it costs the next build time, nothing else.
func (r *run) takeCache(ctx context.Context, stage, step string, c stepexec.Collect, key string, staged blob.Info, err error) {
	defer func() { _ = r.store.Delete(ctx, c.Key) }()
	info := staged
	if err == nil && info.Size > int64(r.cfg.Files.CacheMaxSize) {
		err = fmt.Errorf("%s, over WHARFJOBS_CACHE_MAX_SIZE=%s", stepfiles.FormatSize(info.Size), stepfiles.FormatSize(int64(r.cfg.Files.CacheMaxSize)))
	}
	if err == nil {
		var rc io.ReadCloser
		if rc, info, err = r.store.Get(ctx, c.Key); err == nil {
			_, err = r.store.Put(ctx, build.CacheKey(r.req.Instance, r.req.ProjectID, key), rc, info.Size, blob.PutOptions{ContentType: "application/zstd"})
			rc.Close()
		}
	}
	if err != nil {
		r.sysf("warning: step %s/%s: cache %s not saved: %v", stage, step, key, err)
		return
	}
	r.sysf("step %s/%s: cache %s saved (%s)", stage, step, key, stepfiles.FormatSize(info.Size))
}

func (r *run) readArchive(ctx context.Context, key string, lim stepfiles.Limits, fn func(stepfiles.Entry, io.Reader) error) error {
	rc, _, err := r.store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	return stepfiles.ReadArchive(rc, lim, fn)
}

// dropStaging removes the archives steps uploaded, once the build ended:
// what they held is kept one object per file.
func (r *run) dropStaging(ctx context.Context) {
	if err := build.DeleteStaging(ctx, r.store, r.ref); err != nil {
		r.cfg.Logger.Warn("cannot remove the steps' archives", "build", r.ref, "error", err)
	}
}
