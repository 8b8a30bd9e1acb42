//go:build !linux

package spool

import (
	"errors"
	"io/fs"
	"os"
)

var errNoUnnamed = errors.New("spool: no unnamed files here")

// createUnnamed: only Linux makes files without a name (O_TMPFILE).
func createUnnamed(dir string, perm fs.FileMode) (*os.File, func(string) error, bool) {
	return nil, nil, false
}
