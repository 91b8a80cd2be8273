package worker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job/worker"
)

// goProjectImports are the packages of goProject's main: minio-go and the
// AWS SDK's S3 client, a few dozen modules between them.
var goProjectImports = []string{"github.com/minio/minio-go/v7", "github.com/aws/aws-sdk-go-v2/config", "github.com/aws/aws-sdk-go-v2/service/s3"}

// goProject is a small service importing goProjectImports; its go.mod is
// written by goMod.
var goProject = map[string]string{
	"main.go": `package main

import (
	"fmt"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/minio/minio-go/v7"
)

func main() { fmt.Println(minio.MaxJitter, s3.ServiceID, config.DefaultSharedConfigProfile) }
`,
}

// cachePipeline downloads the project's modules from a module proxy and
// builds it, with the module and build caches in the workspace: what a Go
// project's CI step does. -trimpath because every step's workspace is at
// a path of its own, which go's build cache keys hold otherwise (a warm
// build then compiled everything again: 1.6x instead of 5.9x). @PROXY@ is the module proxy.
const cachePipeline = `build:
  go:
    container:
      image: golang:1.26
      cmds:
        - export GOMODCACHE=$PWD/.cache/gomod GOCACHE=$PWD/.cache/gobuild GOFLAGS="-mod=mod -modcacherw" GOPROXY=@PROXY@ GOSUMDB=off GOTOOLCHAIN=local
        - 'start=$(date +%s%N); go mod download && echo "download: $(( ($(date +%s%N) - start) / 1000000 )) ms"'
        - 'start=$(date +%s%N); go build -trimpath -o /dev/null . && echo "build: $(( ($(date +%s%N) - start) / 1000000 )) ms"'
      cache: {key: go, files: [go.mod], paths: [.cache]}
`

// BenchmarkCacheGoModules runs the same step twice per iteration, the
// first time with no cache (cold) and then restoring the cache the first
// one saved (warm), and reports both step durations, the time of `go mod
// download` alone in each, and the cold/warm ratio (the goal of #15: warm
// at least 3× faster). The module proxy is this machine's module cache
// served as a file:// proxy, so "cold" has no network time in it: on a
// real network a cold download costs more, and the ratio is a floor.
//
//	go test -run '^$' -bench CacheGoModules -benchtime 1x ./job/worker/
func BenchmarkCacheGoModules(b *testing.B) {
	if _, err := exec.LookPath("go"); err != nil {
		b.Fatal("go not found")
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		b.Fatal(err)
	}
	proxy := "file://" + filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
	root, err := testenv.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		b.Fatal(err)
	}
	// Every module at the version this repository builds with: those are
	// the ones in the local module cache the proxy serves.
	list := exec.Command("go", append([]string{"list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}}{{end}}{{end}}"}, goProjectImports...)...)
	list.Dir = root
	mods, err := list.Output()
	if err != nil {
		b.Fatal(err)
	}
	var gomod strings.Builder
	gomod.WriteString("module example.com/svc\n\ngo 1.26\n\nrequire (\n")
	seen := map[string]bool{}
	for _, m := range strings.Split(strings.TrimSpace(string(mods)), "\n") {
		if m != "" && !seen[m] {
			seen[m] = true
			gomod.WriteString("\t" + m + "\n")
		}
	}
	gomod.WriteString(")\n")
	b.Logf("%d modules", len(seen))
	files := map[string]string{".wharf-ci.yml": strings.ReplaceAll(cachePipeline, "@PROXY@", proxy), "go.sum": string(sum), "go.mod": gomod.String()}
	for k, v := range goProject {
		files[k] = v
	}
	s := newMinIO(b)
	ms := regexp.MustCompile(`(download|build): (\d+) ms`)
	var cold, warm, coldDL, warmDL time.Duration
	for range b.N {
		// A new project per iteration: its first build finds no cache,
		// the second the first one's.
		project := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		for j, phase := range []string{"cold", "warm"} {
			code, st, log := runFilesAs(b, s, project+"-"+phase, project, files, nil)
			if code != worker.ExitCompleted {
				b.Fatalf("%s build ended %d: %s\n%s", phase, code, st.Reason, log)
			}
			step := st.Steps[0]
			d := step.FinishedAt.Sub(*step.StartedAt)
			var dl time.Duration
			for _, m := range ms.FindAllStringSubmatch(log, -1) {
				if m[1] == "download" {
					dl, _ = time.ParseDuration(m[2] + "ms")
				}
			}
			if j == 0 {
				cold, coldDL = cold+d, coldDL+dl
				if !strings.Contains(log, "none saved yet") {
					b.Fatalf("the cold build found a cache:\n%s", log)
				}
			} else {
				warm, warmDL = warm+d, warmDL+dl
				if !strings.Contains(log, "restored cache go-") {
					b.Fatalf("the warm build did not restore the cache:\n%s", log)
				}
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(cold.Seconds()/n, "cold-s")
	b.ReportMetric(warm.Seconds()/n, "warm-s")
	b.ReportMetric(cold.Seconds()/warm.Seconds(), "cold/warm")
	b.ReportMetric(coldDL.Seconds()/n, "cold-download-s")
	b.ReportMetric(warmDL.Seconds()/n, "warm-download-s")
}
