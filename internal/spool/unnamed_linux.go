package spool

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// errNoUnnamed says that a file without a name cannot be made or linked
// here (an old kernel, a file system without O_TMPFILE, no /proc): the
// caller makes a named temporary file instead.
var errNoUnnamed = errors.New("spool: no unnamed files here")

// createUnnamed makes a file in dir with no name (O_TMPFILE) and returns
// it with the function that gives it a name. The link goes through
// /proc/self/fd with AT_SYMLINK_FOLLOW, which needs no privilege (linkat's
// AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH, which sendmail run by a
// user lacks). ok is false when the system cannot make such a file.
func createUnnamed(dir string, perm fs.FileMode) (f *os.File, link func(name string) error, ok bool) {
	f, err := OpenFile(dir, unix.O_TMPFILE|os.O_RDWR, perm)
	if err != nil {
		return nil, nil, false
	}
	proc := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	return f, func(name string) error {
		err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW)
		switch {
		case err == nil:
			return nil
		case err == syscall.EEXIST:
			return &fs.PathError{Op: "link", Path: name, Err: err}
		case err == syscall.ENOENT && !procMounted():
			return errNoUnnamed
		}
		return &fs.PathError{Op: "link", Path: name, Err: err}
	}, true
}

// procMounted tells a missing /proc from a missing queue directory.
func procMounted() bool {
	_, err := os.Stat("/proc/self/fd")
	return err == nil
}
