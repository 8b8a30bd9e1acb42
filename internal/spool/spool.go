package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Queue names: the message queues and the per-message log directories.
const (
	Maildrop = "maildrop"
	Incoming = "incoming"
	Active   = "active"
	Deferred = "deferred"
	Hold     = "hold"
	Corrupt  = "corrupt"
	Saved    = "saved"
	Defer    = "defer"
	Bounce   = "bounce"
	Trace    = "trace"
	Flush    = "flush"
)

// MessageQueues are the queues that hold queue files, in the order showq
// walks them.
var MessageQueues = []string{Maildrop, Active, Incoming, Deferred, Hold}

// Mode bits that carry message state (reference §1.2).
const (
	ModeReady      fs.FileMode = 0o700 // owner rwx: the file is complete
	ModeExpire     fs.FileMode = 0o010 // g+x: forced expiry requested
	ModeUnthrottle fs.FileMode = 0o040 // g+r: unthrottle this message's destinations
	ModeEmbryonic  fs.FileMode = 0o600 // still being written
)

// IsReady reports whether a queue file with this mode is complete.
func IsReady(m fs.FileMode) bool { return m.IsRegular() && m.Perm()&0o700 == 0o700 }

// IsForcedExpire reports whether the forced-expiry bit is set.
func IsForcedExpire(m fs.FileMode) bool { return m.Perm()&ModeExpire != 0 }

// Spool is a queue directory and the parameters that shape it.
type Spool struct {
	Root       string          // queue_directory
	HashQueues map[string]bool // hash_queue_names, lower-cased
	HashDepth  int             // hash_queue_depth
	LongIDs    bool            // enable_long_queue_ids
	// NoSync skips fsync; only benchmarks that build large test spools set it.
	NoSync bool
	// Inode, when set, stands in for a new file's inode number when its
	// queue ID is made. A queue ID's length follows the inode number's
	// (a short ID is five hex digits of microseconds, then the inode in
	// hex), so tests set it to make IDs of every length on any file
	// system; it must return a number unique among the queue's live files.
	Inode func(fs.FileInfo) uint64

	tmpSeq  atomic.Uint64 // makes temporary file names unique in this process
	buffers sync.Pool     // *[]byte: new queue files' buffers, reused across files
	recycle struct {      // files kept for new messages (recycle.go)
		mu    sync.Mutex
		on    bool
		files []recycled
		seq   uint64
	}
	kept atomic.Int64 // descriptors open in Kepts (kept.go)

	rootMu   sync.Mutex
	root     int  // the spool directory's descriptor, for syncfs
	rootOpen bool // root is open
}

// New returns a Spool at root with Postfix's default layout parameters.
func New(root string) *Spool {
	return &Spool{Root: root, HashQueues: map[string]bool{Deferred: true, Defer: true}, HashDepth: 1}
}

// SetHashQueues sets hash_queue_names from its main.cf value.
func (s *Spool) SetHashQueues(value string) {
	s.HashQueues = map[string]bool{}
	for _, f := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		s.HashQueues[strings.ToLower(f)] = true
	}
}

// Hashed reports whether queue uses hash subdirectories. sluice's own
// history/ is hashed like defer/.
func (s *Spool) Hashed(queue string) bool {
	if queue == History {
		queue = Defer
	}
	return s.HashDepth > 0 && s.HashQueues[queue]
}

// Dir returns the directory, relative to the root, where id lives in queue.
func (s *Spool) Dir(queue, id string) string {
	if !s.Hashed(queue) {
		return queue
	}
	key := hashKey(id)
	var b strings.Builder
	b.WriteString(queue)
	for i := 0; i < s.HashDepth; i++ {
		b.WriteByte('/')
		if i < len(key) {
			b.WriteByte(key[i])
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// RelPath returns the path of id in queue, relative to the root, as
// postcat -q prints it.
func (s *Spool) RelPath(queue, id string) string { return s.Dir(queue, id) + "/" + id }

// Path returns the absolute path of id in queue.
func (s *Spool) Path(queue, id string) string { return filepath.Join(s.Root, s.RelPath(queue, id)) }

// AllDirs are the directories a sluice spool has.
var AllDirs = []string{Maildrop, Incoming, Active, Deferred, Hold, Corrupt, Defer, Bounce, Trace, Flush, Saved, History, Recycle, "pid", "private", "public"}

// Create makes the queue directories that are missing.
func (s *Spool) Create() error {
	for _, d := range AllDirs {
		if err := os.MkdirAll(filepath.Join(s.Root, d), 0o700); err != nil {
			return fmt.Errorf("spool: create %s: %w", d, err)
		}
	}
	return nil
}

// Locate finds id in the given queues (all message queues when none are
// named) and returns the queue it is in. fs.ErrNotExist when absent.
func (s *Spool) Locate(id string, queues ...string) (string, error) {
	if !ValidID(id) {
		return "", fmt.Errorf("spool: bad queue ID %q", id)
	}
	if len(queues) == 0 {
		queues = MessageQueues
	}
	for _, q := range queues {
		if _, err := os.Lstat(s.Path(q, id)); err == nil {
			return q, nil
		}
	}
	return "", fmt.Errorf("spool: queue file %s: %w", id, fs.ErrNotExist)
}

// Move renames id from one queue to another, creating the hash directory
// when needed, and syncs both directories so the move survives a crash.
func (s *Spool) Move(id, from, to string) error {
	src, dst := s.Path(from, id), s.Path(to, id)
	err := Rename(src, dst)
	if errors.Is(err, fs.ErrNotExist) && s.Hashed(to) {
		if _, serr := os.Lstat(src); serr == nil {
			if merr := s.MakeHashDir(to, id); merr != nil {
				return fmt.Errorf("spool: move %s to %s: %w", id, to, merr)
			}
			err = Rename(src, dst)
		}
	}
	if err != nil {
		return fmt.Errorf("spool: move %s from %s to %s: %w", id, from, to, err)
	}
	if err := s.syncDir(filepath.Dir(dst)); err != nil {
		return err
	}
	if filepath.Dir(src) != filepath.Dir(dst) {
		return s.syncDir(filepath.Dir(src))
	}
	return nil
}

// Rename is rename(2) of one queue file to another name, as os.Rename
// without the look at the new name it takes first (to refuse replacing
// a directory, which no queue ID names): one system call per move.
func Rename(src, dst string) error {
	if err := syscall.Rename(src, dst); err != nil {
		return &os.LinkError{Op: "rename", Old: src, New: dst, Err: err}
	}
	return nil
}

// MakeHashDir creates the hash directories of id in queue. When we run
// as root in a spool owned by someone else (Postfix's mail_owner), the new
// directories get the queue directory's owner, so Postfix's daemons can
// still rename files in and out of them.
func (s *Spool) MakeHashDir(queue, id string) error {
	if !s.Hashed(queue) {
		return nil
	}
	top := filepath.Join(s.Root, queue)
	dir := filepath.Join(s.Root, s.Dir(queue, id))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spool: create %s: %w", dir, err)
	}
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(top)
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	for d := dir; d != top && strings.HasPrefix(d, top+"/"); d = filepath.Dir(d) {
		if err := os.Lchown(d, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("spool: chown %s: %w", d, err)
		}
	}
	return nil
}

// SetTimes sets a queue file's access and modification time; in deferred/
// the mtime is the earliest time of the next attempt.
func (s *Spool) SetTimes(queue, id string, t time.Time) error {
	if err := os.Chtimes(s.Path(queue, id), t, t); err != nil {
		return fmt.Errorf("spool: set time of %s: %w", id, err)
	}
	return nil
}

// Remove deletes a message and its defer, bounce and trace logs, logs
// first as postsuper does, so a crash never leaves a log without a file
// being mistaken for state of a new message with the same ID.
func (s *Spool) Remove(queue, id string) error {
	for _, l := range []string{Bounce, Defer, Trace, History} {
		if err := os.Remove(s.Path(l, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: remove %s log of %s: %w", l, id, err)
		}
	}
	if err := os.Remove(s.Path(queue, id)); err != nil {
		return fmt.Errorf("spool: remove %s: %w", id, err)
	}
	return s.syncDir(filepath.Dir(s.Path(queue, id)))
}

func (s *Spool) syncDir(dir string) error {
	if s.NoSync {
		return nil
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: open directory %s for sync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync directory %s: %w", dir, err)
	}
	return nil
}

// inode returns the inode number of an open file.
// inodeOf is the inode number that names a new file: the file's own,
// unless the spool was given a stand-in.
func (s *Spool) inodeOf(fi fs.FileInfo) uint64 {
	if s.Inode != nil {
		return s.Inode(fi)
	}
	return inode(fi)
}

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

var syscallENOTDIR = syscall.ENOTDIR
