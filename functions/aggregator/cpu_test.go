package aggregator_test

import (
	"syscall"

	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// cpuSeconds is this process's user and system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// rssMiB is this process's resident set size, or -1 when /proc cannot
// tell.
func rssMiB() float64 {
	n, err := testenv.RSS(0)
	if err != nil {
		return -1
	}
	return float64(n) / (1 << 20)
}
