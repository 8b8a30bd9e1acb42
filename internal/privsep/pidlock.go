package privsep

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrRunning refuses a second daemon on one spool.
var ErrRunning = errors.New("the sluice mail system is already running")

// PIDLock is pid/master.pid held by the root master with an exclusive
// flock(2) for the daemon's life: the pid in it is the master's, which
// signals are sent to (it forwards them), and the file stays in root's
// pid/ where the unprivileged child could not write it.
type PIDLock struct {
	path string
	f    *os.File
}

// LockPID takes pid/master.pid under root and writes our pid into it
// (ten columns, right-aligned, and a newline, as Postfix's master).
func LockPID(root string) (*PIDLock, error) {
	path := filepath.Join(root, "pid", "master.pid")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(fmt.Sprintf("%10d\n", os.Getpid())), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &PIDLock{path: path, f: f}, nil
}

// Release removes the file, then drops the lock.
func (l *PIDLock) Release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path)
	l.f.Close()
	l.f = nil
}
