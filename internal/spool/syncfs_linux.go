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
//
// The spool's directory is opened once, on the first sync, and kept open
// for the next ones (one sync per batch of received mail).
func (s *Spool) SyncFS() error {
	if s.NoSync {
		return nil
	}
	fd, err := s.rootFD()
	if err != nil {
		return fmt.Errorf("spool: open %s for syncfs: %w", s.Root, err)
	}
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("spool: syncfs %s: %w", s.Root, err)
	}
	return nil
}

// rootFD is a descriptor of the spool's directory, opened on first use
// and kept (close-on-exec) for the process's life; a failure to open is
// not kept, so the next call tries again.
func (s *Spool) rootFD() (int, error) {
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	if s.rootOpen {
		return s.root, nil
	}
	fd, err := unix.Open(s.Root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	s.root, s.rootOpen = fd, true
	return fd, nil
}

// Close lets go of the spool directory's descriptor SyncFS keeps, if
// open (so that the file system can be unmounted); a later SyncFS opens
// it again.
func (s *Spool) Close() error {
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	if !s.rootOpen {
		return nil
	}
	s.rootOpen = false
	return unix.Close(s.root)
}
