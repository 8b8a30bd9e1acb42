package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrRunning is the refusal of a second daemon on one spool, in the
// words of Postfix's master ("the Postfix mail system is already
// running").
var ErrRunning = errors.New("the sluice mail system is already running")

// PIDLock is pid/master.pid held with an exclusive flock(2) for the
// daemon's life, as Postfix's master holds its pid file: the lock, not
// the number in the file, says whether a daemon runs. The kernel drops
// the lock when the process dies however it dies, so a file left by a
// kill -9 never blocks a start, and neither does its pid being reused by
// another process (or being a zombie).
type PIDLock struct {
	path string
	f    *os.File
}

// LockPID takes the lock and writes our pid into the file (ten columns,
// right-aligned, and a newline, as Postfix writes it). It returns
// ErrRunning when another process holds the lock.
func LockPID(root string) (*PIDLock, error) {
	path := filepath.Join(root, "pid", "master.pid")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	for try := 0; ; try++ {
		// Not O_TRUNC: the file may be a running daemon's. Not a link:
		// root must not be led to write elsewhere.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open lock file %s: %w", path, err)
		}
		if err := flock(f); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, ErrRunning
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// A daemon that was stopping may have removed the file between
		// our open and our lock: then we hold a lock on a file nobody
		// else can find, and a third daemon could lock a new one. Lock
		// only the file that is at the path.
		if same, err := samePath(f, path); err != nil || !same {
			f.Close()
			if try < 10 {
				continue
			}
			return nil, fmt.Errorf("lock %s: the file keeps changing under us", path)
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
}

func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// samePath reports whether path still names the open file f.
func samePath(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}

// Release removes the file (tools then see no daemon at once) and drops
// the lock. The file goes first, while the lock still keeps any other
// daemon from starting.
func (l *PIDLock) Release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path)
	l.f.Close()
	l.f = nil
}
