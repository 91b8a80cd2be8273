package testenv

import (
	"os"
	"testing"
)

func TestRSS(t *testing.T) {
	self, err := RSS(0)
	if err != nil || self < 1<<20 {
		t.Fatalf("RSS of this process = %d, %v; want at least 1 MiB", self, err)
	}
	byPid, err := RSS(os.Getpid())
	if err != nil || byPid < self/2 || byPid > self*2 {
		t.Fatalf("RSS by pid = %d, %v; by self %d", byPid, err, self)
	}
	if _, err := RSS(1 << 30); err == nil {
		t.Fatal("RSS of a process that does not exist: no error")
	}
}
