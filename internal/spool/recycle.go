package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Recycle is the directory of queue files kept for new messages
// (EnableRecycling): sluice's own, beside the queues; no tool lists it.
const Recycle = "recycle"

// recycleMax bounds the files kept in recycle/, and recycleFileMax the
// size of each: together at most 16 MiB of disk.
const (
	recycleMax     = 256
	recycleFileMax = 64 << 10
)

// Recycling. A delivered message's file is moved to recycle/ rather than
// removed, and the next new message is written into it: the same inode
// and the same data blocks, overwritten and cut to the new length. A
// file system that must find a free inode and blocks for every message
// and free them again after it (with discard, a TRIM of each freed block)
// spends more on that than on the message; a relayed message costs
// about a sixth less CPU so (bench/relay/README.md). The queue ID stays
// Postfix's: the time of naming and the inode, which a file system may
// reuse at any time anyway.
//
// A kept file is never seen with its old contents under a queue ID: the
// new message is written into it while it is still in recycle/, where no
// reader looks, and it is renamed into its queue only when complete, cut
// to its new length and ready (its queue ID, made from the time and its
// inode, is known from the start, for the logs and the Received: header).
// A crash leaves it in recycle/, taken again at the next start, or
// complete in its queue.

// EnableRecycling makes s keep removed queue files for new ones (the
// daemon's cleanup and queue manager do; a tool never does). The files
// an earlier run left in recycle/ are taken over, up to recycleMax, and
// the others removed. A file that has another name too is never taken
// over, only its name here removed: a crash (on a file system without a
// journal, where a rename's two directories reach the disk apart) can
// leave a file both here and in a queue, and writing a new message into
// it would change the queued one.
func (s *Spool) EnableRecycling() error {
	dir := filepath.Join(s.Root, Recycle)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.recycle.mu.Lock()
	defer s.recycle.mu.Unlock()
	s.recycle.on = true
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		var st syscall.Stat_t
		if len(s.recycle.files) < recycleMax && syscall.Lstat(path, &st) == nil &&
			st.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Nlink == 1 {
			s.recycle.files = append(s.recycle.files, recycled{name: e.Name(), size: -1})
			continue
		}
		os.Remove(path)
	}
	return nil
}

// recycled is a file kept in recycle/: its name there, and, when it
// came with its descriptor open (Kept), that descriptor, the file's
// FileInfo as first named, and its size; size is -1 when not known.
type recycled struct {
	name string
	f    *os.File
	fi   fs.FileInfo
	size int64
	mode fs.FileMode // its permissions, when f is set
}

// Recycle moves id's file, of size bytes, out of queue into recycle/ for
// a new message, and reports whether it did; when it did not (recycling
// is off or full, the file is too big, or the move failed), the caller
// removes the file as before. k, when not nil, is the file's Kept: its
// open descriptor goes with the file when it is moved (and the caller
// still closes k either way).
func (s *Spool) Recycle(queue, id string, size int64, k *Kept) bool {
	r := &s.recycle
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on || len(r.files) >= recycleMax || size > recycleFileMax {
		return false
	}
	r.seq++
	name := strconv.FormatInt(time.Now().UnixNano(), 36) + "." + strconv.FormatUint(r.seq, 36)
	if err := syscall.Rename(s.Path(queue, id), filepath.Join(s.Root, Recycle, name)); err != nil {
		return false
	}
	e := recycled{name: name, size: -1}
	if k != nil && k.f != nil && len(k.Image) == int(size) {
		e.f, e.fi, e.size, e.mode = k.f, k.fi, size, ModeReady
		k.f = nil
		s.kept.Add(-1)
	}
	r.files = append(r.files, e)
	return true
}

// reuse takes a kept file for a new message, left where it is, with its
// path in recycle/; e's fi, size and mode are filled in when they were
// not known; ok is false when none is kept.
func (s *Spool) reuse() (e recycled, path string, ok bool) {
	r := &s.recycle
	for {
		r.mu.Lock()
		n := len(r.files)
		if !r.on || n == 0 {
			r.mu.Unlock()
			return recycled{}, "", false
		}
		e = r.files[n-1]
		r.files[n-1] = recycled{}
		r.files = r.files[:n-1]
		r.mu.Unlock()
		path = filepath.Join(s.Root, Recycle, e.name)
		if e.f != nil {
			return e, path, true
		}
		f, err := OpenFile(path, os.O_RDWR, 0)
		if err == nil {
			fi, err := f.Stat()
			if err == nil && fi.Mode().IsRegular() {
				e.f, e.fi, e.size, e.mode = f, fi, fi.Size(), fi.Mode().Perm()
				return e, path, true
			}
			f.Close()
		}
		os.Remove(path) // not usable: the next one
	}
}

// renameNoReplace renames from to to unless to exists (fs.ErrExist), as a
// link does: a queue file is never replaced.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if err != nil {
		if errors.Is(err, syscall.EEXIST) {
			return &fs.PathError{Op: "rename", Path: to, Err: err}
		}
		return fmt.Errorf("spool: rename %s: %w", from, err)
	}
	return nil
}
