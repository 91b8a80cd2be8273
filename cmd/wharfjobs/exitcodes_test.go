package main

import (
	"os"
	"path/filepath"
	"testing"
)

// Every exit code a script may branch on, through run(): 0 a completed
// build, 1 an error, 2 a failed build, 3 a build that could not start, 64
// a usage error. (4, the store failed, is the worker's ExitInternal:
// job/worker's TestStoreFailureIsExitInternal; `worker` passes it on.)
func TestExitCodes(t *testing.T) {
	pipeline := func(yml string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ".wharf-ci.yml"), []byte(yml), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Setenv("WHARFJOBS_STORE_FS_ROOT", t.TempDir())
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"completed", []string{"run", pipeline("s:\n  x:\n    container:\n      image: alpine\n      cmds: [true]\n")}, 0},
		{"error", []string{"logs", "--fs-root", t.TempDir(), "no-such-build"}, 1},
		{"failed", []string{"run", pipeline("s:\n  x:\n    container:\n      image: alpine\n      cmds: ['exit 5']\n")}, 2},
		{"could not start", []string{"run", pipeline("s:\n  x:\n    nope: {}\n")}, 3},
		{"usage", []string{"logs", "--no-such-flag", "1"}, ExitUsage},
		{"usage: extra argument", []string{"version", "extra"}, ExitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, out, errOut := runCLI(t, tc.args...); code != tc.want {
				t.Fatalf("%q: exit %d, want %d\n%s%s", tc.args, code, tc.want, out, errOut)
			}
		})
	}
}
