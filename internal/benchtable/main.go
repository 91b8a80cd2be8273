// Command benchtable runs the benchmarks behind the performance table of
// README.md and prints the table: each measure beside its baseline taken
// in the same run (the machine is noisy; a ratio to something measured a
// minute earlier on the same cores says more than an absolute figure) and
// the goal. `make bench` runs it; README.md keeps its last output.
//
// Usage: go run ./internal/benchtable [-rows name,name] [-v]
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// results are benchmark metrics by benchmark name (without the -N
// GOMAXPROCS suffix) and unit.
type results map[string]map[string]float64

// get returns a metric, and whether the run reported it.
func (r results) get(bench, unit string) (float64, bool) {
	v, ok := r[bench][unit]
	return v, ok
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parse reads `go test -bench` output.
func parse(out []byte, into results) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		if into[m[1]] == nil {
			into[m[1]] = map[string]float64{}
		}
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				into[m[1]][f[i+1]] = v
			}
		}
	}
}

// row is one line of the table: the benchmarks it runs and how it reads
// their results.
type row struct {
	name string
	// pkg and bench are what `go test -bench` runs; benchtime its -benchtime.
	pkg, bench, benchtime string
	// test, when set, runs `go test -v -run test` instead and parses its log.
	test string
	// cells gives the measure, its baseline, their ratio and the goal.
	cells func(r results, log string) (measure, baseline, ratio string)
	goal  string
}

// node reads the bench line TestBuildRunsOnARealNode logs.
var nodeLine = regexp.MustCompile(`bench: node first-line ([0-9.]+) s, final ([0-9.]+) s, bare step-shaped pod ([0-9.]+) s, bare one-container pod ([0-9.]+) s`)

var rows = []row{
	{
		name: "idle", pkg: "./functions/aggregator/", bench: "^BenchmarkIdleCost$", benchtime: "1x",
		goal: "≤ 0.05 CPU-s/s and ≤ 100 store requests/s with the change stream healthy, RSS ≤ 64 MiB",
		cells: func(r results, _ string) (string, string, string) {
			cpu, ok1 := r.get("BenchmarkIdleCost/notify", "cpu-s/s")
			req, ok2 := r.get("BenchmarkIdleCost/notify", "store-req/s")
			rss, _ := r.get("BenchmarkIdleCost/notify", "rss-MiB")
			pcpu, ok3 := r.get("BenchmarkIdleCost/poll", "cpu-s/s")
			preq, ok4 := r.get("BenchmarkIdleCost/poll", "store-req/s")
			if !(ok1 && ok2 && ok3 && ok4) {
				return missing, missing, missing
			}
			return fmt.Sprintf("%.3f CPU-s/s, %.0f store req/s, RSS %.0f MiB", cpu, req, rss),
				fmt.Sprintf("polling (stream down): %.3f CPU-s/s, %.0f req/s", pcpu, preq),
				fmt.Sprintf("CPU %.2fx, requests %.2fx", cpu/pcpu, req/preq)
		},
	},
	{
		name: "latency", pkg: "./functions/aggregator/", bench: "^BenchmarkLineLatency$", benchtime: "1x",
		goal: "≤ 400 ms p99, ≤ 2 chunk PUTs/s per build under steady output",
		cells: func(r results, _ string) (string, string, string) {
			p99, ok1 := r.get("BenchmarkLineLatency/notify", "p99-ms")
			puts, ok2 := r.get("BenchmarkLineLatency/notify", "puts/s")
			sparse, ok3 := r.get("BenchmarkLineLatency/notify-sparse", "p99-ms")
			poll, ok4 := r.get("BenchmarkLineLatency/poll", "p99-ms")
			if !(ok1 && ok2 && ok3 && ok4) {
				return missing, missing, missing
			}
			return fmt.Sprintf("p99 %.0f ms at %.2f PUTs/s (steady, a line every 10 ms); p99 %.0f ms for sparse lines", p99, puts, sparse),
				fmt.Sprintf("polling only: p99 %.0f ms", poll), fmt.Sprintf("%.2fx", p99/poll)
		},
	},
	{
		name: "bytes", pkg: "./blob/build/", bench: "^BenchmarkWriterMinIO$", benchtime: "1x",
		goal: "≤ 1.0 byte stored per byte of text; chunks readable with zstd -d",
		cells: func(r results, _ string) (string, string, string) {
			stored, ok1 := r.get("BenchmarkWriterMinIO", "stored/text")
			plain, ok2 := r.get("BenchmarkWriterMinIO", "ndjson/text")
			if !(ok1 && ok2) {
				return missing, missing, missing
			}
			return fmt.Sprintf("%.3f bytes stored per byte of text", stored), fmt.Sprintf("plain NDJSON: %.2f", plain), fmt.Sprintf("%.3fx", stored/plain)
		},
	},
	{
		name: "worker", pkg: "./job/worker/", bench: "^BenchmarkWorkerMillionLines$", benchtime: "2x",
		goal: "≥ 90% of the LogWriter alone, ≥ 100 MB/s of text, peak RSS ≤ 32 MiB",
		cells: func(r results, _ string) (string, string, string) {
			// The worker benchmark runs the LogWriter alone into the same
			// MinIO between its own runs, so the ratio compares two figures
			// from the same minutes on the same cores.
			ship, ok1 := r.get("BenchmarkWorkerMillionLines/signed", "ship-MB/s")
			lw, ok2 := r.get("BenchmarkWorkerMillionLines/signed", "writer-MB/s")
			ratio, ok3 := r.get("BenchmarkWorkerMillionLines/signed", "ratio-to-writer")
			rss, _ := r.get("BenchmarkWorkerMillionLines/signed", "peak-RSS-MiB")
			if !(ok1 && ok2 && ok3) {
				return missing, missing, missing
			}
			return fmt.Sprintf("%.0f MB/s of text shipped, peak RSS %.1f MiB", ship, rss), fmt.Sprintf("LogWriter alone: %.0f MB/s", lw), fmt.Sprintf("%.2fx", ratio)
		},
	},
	{
		name: "node", test: "^TestBuildRunsOnARealNode$", pkg: "./internal/e2e/",
		goal: "trigger → first line ≤ 1.5 s, → final status ≤ 4 s (two steps)",
		cells: func(_ results, log string) (string, string, string) {
			m := nodeLine.FindStringSubmatch(log)
			if m == nil {
				return missing, missing, missing
			}
			f := make([]float64, 5)
			for i := 1; i <= 4; i++ {
				f[i], _ = strconv.ParseFloat(m[i], 64)
			}
			// Three do-nothing pods one after the other, each from create
			// to the kubelet reporting it Succeeded: what a build of two
			// sequential steps costs if each pod's end waited for that
			// report. The build's worker sees a step's end sooner (its
			// log stream ends, the pod watch), so it can beat this.
			naive := f[4] + 2*f[3]
			return fmt.Sprintf("first line %.2f s, final %.2f s", f[1], f[2]),
				fmt.Sprintf("bare pods create → Succeeded: one-container %.2f s + 2 step-shaped (init container) %.2f s = %.2f s", f[4], 2*f[3], naive),
				fmt.Sprintf("%.2fx", f[2]/naive)
		},
	},
	{
		name: "read", pkg: "./cmd/wharfjobs/", bench: "^BenchmarkLogsCommand$", benchtime: "2x",
		goal: "≥ 250 MB/s of text for `logs`, ≥ 500 MB/s for `--raw`",
		cells: func(r results, _ string) (string, string, string) {
			text, ok1 := r.get("BenchmarkLogsCommand/text", "MB/s")
			raw, ok2 := r.get("BenchmarkLogsCommand/raw", "log-MB/s")
			rawText, _ := r.get("BenchmarkLogsCommand/raw", "MB/s")
			get, ok3 := r.get("BenchmarkLogsCommand/get", "MB/s")
			getLog, _ := r.get("BenchmarkLogsCommand/get", "log-MB/s")
			if !(ok1 && ok2 && ok3) {
				return missing, missing, missing
			}
			return fmt.Sprintf("`logs`: %.0f MB/s of text; `--raw`: %.0f MB/s of log read (%.0f MB/s of text)", text, raw, rawText),
				fmt.Sprintf("GET of log.ndjson: %.0f MB/s of text (%.0f of log)", get, getLog),
				fmt.Sprintf("%.2fx / %.2fx", text/get, raw/getLog)
		},
	},
}

const missing = "(not reported)"

func main() {
	only := flag.String("rows", "", "comma-separated rows to run (idle, latency, bytes, worker, node, read); all when empty")
	verbose := flag.Bool("v", false, "copy each go test's output to stderr")
	flag.Parse()
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n != "" {
			want[n] = true
		}
	}
	r := results{}
	logs := map[string]string{}
	start := time.Now()
	for _, rw := range rows {
		if len(want) > 0 && !want[rw.name] {
			continue
		}
		args := []string{"test", "-count=1", "-timeout", "30m"}
		if rw.test != "" {
			args = append(args, "-v", "-run", rw.test, rw.pkg)
		} else {
			args = append(args, "-run", "^$", "-bench", rw.bench, "-benchtime", rw.benchtime, rw.pkg)
		}
		fmt.Fprintf(os.Stderr, "benchtable: go %s\n", strings.Join(args, " "))
		cmd := exec.Command("go", args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if *verbose {
			cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, os.Stderr), io.MultiWriter(&out, os.Stderr)
		}
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %s: %v\n%s\n", rw.name, err, tail(out.String(), 40))
		}
		parse(out.Bytes(), r)
		logs[rw.name] = out.String()
	}
	fmt.Printf("| measure | result | baseline, same run | ratio | goal |\n| --- | --- | --- | --- | --- |\n")
	for _, rw := range rows {
		if (len(want) > 0 && !want[rw.name]) || rw.goal == "" {
			continue
		}
		m, b, ratio := rw.cells(r, logs[rw.name])
		fmt.Printf("| %s | %s | %s | %s | %s |\n", rw.name, m, b, ratio, rw.goal)
	}
	fmt.Fprintf(os.Stderr, "benchtable: %v\n", time.Since(start).Round(time.Second))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
