//go:build !(linux && (amd64 || arm64))

package showq

import "syscall"

// lstatAt is lstat() of rel, the path of name relative to the root.
func (d *dirCache) lstatAt(dfd int, rel, name string, st *syscall.Stat_t) error {
	return syscall.Lstat(d.root+"/"+rel, st)
}
