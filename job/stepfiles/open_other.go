//go:build !unix

package stepfiles

// nonblock is not needed where there are no FIFOs to block an open.
const nonblock = 0
