//go:build !linux

package spool

import "errors"

// SyncFS is syncfs(2), which only Linux has; elsewhere use
// sluice_commit_method = fsync.
func (s *Spool) SyncFS() error {
	if s.NoSync {
		return nil
	}
	return errors.New("spool: syncfs is only available on Linux; set sluice_commit_method = fsync")
}

// Close does nothing here: SyncFS keeps no descriptor.
func (s *Spool) Close() error { return nil }
