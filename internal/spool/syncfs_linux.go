package spool

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// SyncFS flushes every dirty page and all metadata of the file system the
// spool is on (syncfs(2)): every queue file written so far, and its
// directory entry, is on disk when it returns nil. Linux 5.8 and later
// report writeback errors from it, so a file whose data could not be
// written makes it fail. It flushes other programs' data on the same file
// system too.
func (s *Spool) SyncFS() error {
	if s.NoSync {
		return nil
	}
	d, err := Open(s.Root)
	if err != nil {
		return fmt.Errorf("spool: open %s for syncfs: %w", s.Root, err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("spool: syncfs %s: %w", s.Root, err)
	}
	return nil
}
