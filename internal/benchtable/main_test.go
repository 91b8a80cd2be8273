package main

import (
	"os"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	out := []byte(`goos: linux
BenchmarkIdleCost/notify-2         	       1	30012345678 ns/op	         0.028 cpu-s/s	        69.0 store-req/s	        46.2 rss-MiB
BenchmarkWriterMinIO               	       2	 901234567 ns/op	 112.50 MB/s	         0.069 stored/text
BenchmarkWorkerMillionLines/signed 	       2	 1234 ns/op	  80.1 ship-MB/s	  0.95 ratio-to-writer
PASS
`)
	r := results{}
	parse(out, r)
	for _, c := range []struct {
		bench, unit string
		want        float64
	}{
		{"BenchmarkIdleCost/notify", "cpu-s/s", 0.028},
		{"BenchmarkIdleCost/notify", "store-req/s", 69},
		{"BenchmarkIdleCost/notify", "rss-MiB", 46.2},
		{"BenchmarkWriterMinIO", "MB/s", 112.5},
		{"BenchmarkWriterMinIO", "stored/text", 0.069},
		{"BenchmarkWorkerMillionLines/signed", "ratio-to-writer", 0.95},
	} {
		got, ok := r.get(c.bench, c.unit)
		if !ok || got != c.want {
			t.Errorf("%s %s = %v, %v; want %v", c.bench, c.unit, got, ok, c.want)
		}
	}
	if _, ok := r.get("BenchmarkIdleCost/notify-2", "cpu-s/s"); ok {
		t.Error("the GOMAXPROCS suffix was kept in the benchmark's name")
	}
}

// TestREADMEKeepsTheTable checks that README.md holds a table this command
// printed: its header, and one line per row that has a goal, each with
// that goal, so a row added here without a new `make bench` run into the
// README, or a goal changed on one side only, fails.
func TestREADMEKeepsTheTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	const header = "| measure | result | baseline, same run | ratio | goal |"
	if !strings.Contains(readme, header) {
		t.Fatalf("README.md lacks the benchmark table's header %q", header)
	}
	for _, rw := range rows {
		if rw.goal == "" {
			continue
		}
		var line string
		for _, l := range strings.Split(readme, "\n") {
			if strings.HasPrefix(l, "| "+rw.name+" | ") {
				line = l
				break
			}
		}
		if line == "" {
			t.Errorf("README.md's benchmark table has no %q row", rw.name)
			continue
		}
		if !strings.HasSuffix(line, "| "+rw.goal+" |") {
			t.Errorf("README.md's %q row does not end with its goal %q:\n%s", rw.name, rw.goal, line)
		}
		if strings.Contains(line, missing) {
			t.Errorf("README.md's %q row was printed from a run that did not report it:\n%s", rw.name, line)
		}
	}
}
