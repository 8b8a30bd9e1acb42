//go:build linux

package spool

import (
	"strings"
	"syscall"
	"unsafe"
)

// The system calls of a queue scan: each file costs an open, a status, a
// read or two and a close, on files that are nearly always in the page
// cache. Through syscall.Syscall each call tells the scheduler it may
// block, and at a hundred thousand files a second the scheduler spends
// more time handing processors between threads than the kernel spends on
// the calls. These wrappers use RawSyscall instead: a call that does wait
// on the disk holds its processor meanwhile, which costs a scan of cold
// files a little parallelism and nothing else. Names are passed as
// NUL-terminated copies in a buffer the caller reuses, so a scan does not
// allocate one per file.

// AtFDCWD stands for the current directory where a directory descriptor
// is expected (AT_FDCWD).
const AtFDCWD = -0x64

// ScanOpenFlags open a queue file or log for reading during a scan:
// O_NONBLOCK so that a FIFO left in a queue cannot stall the scan, and no
// symbolic link is followed.
const ScanOpenFlags = syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC | syscall.O_NOCTTY

const atSymlinkNoFollow = 0x100 // AT_SYMLINK_NOFOLLOW

// cName returns name NUL-terminated in buf.
func cName(name string, buf []byte) ([]byte, error) {
	buf = append(append(buf[:0], name...), 0)
	if strings.IndexByte(name, 0) >= 0 {
		return buf, syscall.EINVAL
	}
	return buf, nil
}

// Openat opens name relative to the directory dirfd (AtFDCWD for the
// current one) with flags. buf is room for the NUL-terminated name, which
// it returns for reuse.
func Openat(dirfd int, name string, flags int, buf []byte) (int, []byte, error) {
	buf, err := cName(name, buf)
	if err != nil {
		return -1, buf, err
	}
	for {
		fd, _, errno := syscall.RawSyscall6(syscall.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&buf[0])), uintptr(flags), 0, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return -1, buf, errno
		}
		return int(fd), buf, nil
	}
}

// Fstat is fstat(2).
func Fstat(fd int, st *syscall.Stat_t) error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_FSTAT, uintptr(fd), uintptr(unsafe.Pointer(st)), 0); errno != 0 {
		return errno
	}
	return nil
}

// Lstatat is lstat(2) of name in the directory dirfd (fstatat with
// AT_SYMLINK_NOFOLLOW), which looks up one name instead of a whole path.
// buf is as for Openat.
func Lstatat(dirfd int, name string, st *syscall.Stat_t, buf []byte) ([]byte, error) {
	buf, err := cName(name, buf)
	if err != nil {
		return buf, err
	}
	if _, _, errno := syscall.RawSyscall6(sysFstatat, uintptr(dirfd), uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(st)), atSymlinkNoFollow, 0, 0); errno != 0 {
		return buf, errno
	}
	return buf, nil
}

// Pread is pread(2), retried on EINTR.
func Pread(fd int, b []byte, off int64) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_PREAD64, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(off), 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// CloseFD is close(2); a scan has nothing to do about its error on a
// file it only read.
func CloseFD(fd int) { syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0) }

// FD is an open file descriptor read with Pread: a ReaderAt for the
// record Reader that costs a scan no *os.File per file.
type FD struct{ Fd int }

// ReadAt reads len(b) bytes at off, or fewer at the end of the file (then
// with io.EOF's meaning: a short count and a nil error, which the Reader
// takes as the end).
func (f *FD) ReadAt(b []byte, off int64) (int, error) {
	got := 0
	for got < len(b) {
		m, err := Pread(f.Fd, b[got:], off+int64(got))
		if err != nil {
			return got, err
		}
		if m == 0 {
			break // the file shrank since it was opened
		}
		got += m
	}
	return got, nil
}
