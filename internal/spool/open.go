package spool

import (
	"io/fs"
	"os"
	"syscall"
)

// OpenFile opens path as os.OpenFile does, for the regular files and
// directories of the spool. os.OpenFile offers every new descriptor to
// the runtime's network poller: it sets O_NONBLOCK, tries epoll (which
// refuses regular files and directories), and clears O_NONBLOCK again —
// five system calls wasted per open, and the queue's paths open several
// files per message. A descriptor given to os.NewFile blocking costs one
// fcntl and is never offered to the poller, which is right for files:
// their reads and writes do not wait for a peer.
func OpenFile(path string, flag int, perm fs.FileMode) (*os.File, error) {
	mode := uint32(perm.Perm())
	if perm&fs.ModeSetuid != 0 {
		mode |= syscall.S_ISUID
	}
	if perm&fs.ModeSetgid != 0 {
		mode |= syscall.S_ISGID
	}
	if perm&fs.ModeSticky != 0 {
		mode |= syscall.S_ISVTX
	}
	for {
		fd, err := syscall.Open(path, flag|syscall.O_CLOEXEC, mode)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

// Open opens path for reading, as OpenFile.
func Open(path string) (*os.File, error) { return OpenFile(path, os.O_RDONLY, 0) }
