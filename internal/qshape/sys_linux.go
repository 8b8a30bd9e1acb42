package qshape

import (
	"strings"
	"syscall"
	"unsafe"
)

// The reads of a scan are four system calls per queue file (open, fstat,
// pread, close) on files that are nearly always in the page cache.
// Through syscall.Syscall each one tells the scheduler it may block, and
// at a hundred thousand files a second the scheduler spends more time
// handing processors between threads than the kernel spends on the
// calls. These wrappers use RawSyscall instead: a call that does wait on
// the disk holds its processor meanwhile, which costs a scan of cold
// files a little parallelism and nothing else.

const atFDCWD = -0x64 // AT_FDCWD

// openat opens name read-only without following a symbolic link; buf is
// room for the NUL-terminated name, which it returns for reuse.
func openat(dirfd int, name string, buf []byte) (int, []byte, error) {
	buf = append(append(buf[:0], name...), 0)
	if strings.IndexByte(name, 0) >= 0 {
		return -1, buf, syscall.EINVAL
	}
	p := &buf[0]
	const flags = syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	fd, _, errno := syscall.RawSyscall6(syscall.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), flags, 0, 0, 0)
	if errno != 0 {
		return -1, buf, errno
	}
	return int(fd), buf, nil
}

func fstat(fd int, st *syscall.Stat_t) error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_FSTAT, uintptr(fd), uintptr(unsafe.Pointer(st)), 0); errno != 0 {
		return errno
	}
	return nil
}

func pread(fd int, b []byte, off int64) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_PREAD64, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(off), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func closeFD(fd int) { syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0) }
