package localrun

import (
	"os"
	"syscall"
)

// fSetPipeSize is Linux's F_SETPIPE_SZ, which package syscall lacks.
const fSetPipeSize = 1031

// growPipe asks for a pipe of size bytes; the kernel may refuse (a user
// over /proc/sys/fs/pipe-user-pages-soft), and the pipe keeps its size.
func growPipe(f *os.File, size int) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSize, uintptr(size))
	})
}
