//go:build linux && (amd64 || arm64)

package showq

import (
	"syscall"
	"unsafe"
)

// lstatAt is lstat() of name in the directory dfd (fstatat with
// AT_SYMLINK_NOFOLLOW), which looks up one name instead of a whole path.
// The standard library's syscall package does not export fstatat.
func (d *dirCache) lstatAt(dfd int, rel, name string, st *syscall.Stat_t) error {
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return err
	}
	_, _, e := syscall.Syscall6(sysFstatat, uintptr(dfd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(st)), atSymlinkNoFollow, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
