//go:build linux && (amd64 || arm64)

package qshape

import (
	"syscall"
	"unsafe"
)

// lstatAt is lstat() of name in the directory dirfd (fstatat with
// AT_SYMLINK_NOFOLLOW), or of path when dirfd is -1; buf is room for the
// NUL-terminated name, which it returns for reuse. Like the reads (see
// sys_linux.go) it is a raw system call.
func lstatAt(dirfd int, name, path string, st *syscall.Stat_t, buf []byte) ([]byte, error) {
	if dirfd < 0 {
		dirfd, name = atFDCWD, path
	}
	buf = append(append(buf[:0], name...), 0)
	const noFollow = 0x100 // AT_SYMLINK_NOFOLLOW
	_, _, errno := syscall.RawSyscall6(sysFstatat, uintptr(dirfd), uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(st)), noFollow, 0, 0)
	if errno != 0 {
		return buf, errno
	}
	return buf, nil
}
