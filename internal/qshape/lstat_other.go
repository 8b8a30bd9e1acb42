//go:build !(linux && (amd64 || arm64))

package qshape

import "syscall"

// lstatAt is lstat() of path (the directory descriptor is not used).
func lstatAt(dirfd int, name, path string, st *syscall.Stat_t, buf []byte) ([]byte, error) {
	return buf, syscall.Lstat(path, st)
}
