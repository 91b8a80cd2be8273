//go:build unix

package stepfiles

import "syscall"

// nonblock keeps opening a FIFO that took a file's place from blocking.
const nonblock = syscall.O_NONBLOCK
