package spool

import (
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Memo lets a long-running process (the daemon) render a view of the
// queue again without reading every file again. It keeps, for each queue
// file by its path, what a view made of the file (and of its defer log,
// when the view reads one), and hands it back only when one lstat of
// each shows them unchanged. Each view keeps its own Memo of its own
// value type; the rule that makes reuse safe is here, once.
//
// # Why a status check is enough
//
// A value is reused only when the file's inode number, size, mode and
// change time (ctime, to the nanosecond), and the same of its log (or its
// absence), are what they were when the value was made. The kernel sets
// ctime on every change to a file's data or inode: every write (in-place
// D marks, a defer-log append), every chmod (the 0700 "complete" bit,
// postsuper's g+x), every rename and link (moves between queues,
// postsuper -r) and utime (the next-attempt mtime). Whoever the writer is
// — the daemon, sluice inject, Postfix's own tools — a change to what a
// view shows changes one of these values; a file replaced under the same
// name has another inode. A message moved to another queue has another
// path, so another entry.
//
// Timestamps have a granularity: two changes within one clock tick can
// leave the same ctime. So a value is kept only when the ctimes are older
// than a settle time before the run began; a file changed more recently is read
// again on every run until it settles.
//
// The directories are read afresh on every run, so order and membership
// are always current. A Memo is safe for concurrent runs.
type Memo[V any] struct {
	mu      sync.Mutex
	tag     any // what the values were made under (a view's options)
	entries map[string]*MemoEntry[V]
	hits    atomic.Int64
	misses  atomic.Int64
}

// FileKey is what lstat says of a file, as far as a Memo compares it. The
// zero value stands for a file that does not exist.
type FileKey struct {
	ino   uint64
	size  int64
	mode  uint32
	ctime syscall.Timespec
}

// KeyOf returns the key of a file's status.
func KeyOf(st *syscall.Stat_t) FileKey {
	return FileKey{ino: st.Ino, size: st.Size, mode: st.Mode, ctime: st.Ctim}
}

// MemoKey is the state of a queue file and of its log (zero when the view
// reads none, or there is none).
type MemoKey struct{ File, Log FileKey }

// MemoEntry is a value and the state of the files it was made from. It
// is never changed once kept: runs share it.
type MemoEntry[V any] struct {
	Key   MemoKey
	Value V
}

// MemoRun is one run's view of a Memo: the entries as the run began (read
// only, shared by the workers) and those it keeps (written by one
// goroutine: the one that emits results in order).
type MemoRun[V any] struct {
	m      *Memo[V]
	tag    any
	old    map[string]*MemoEntry[V]
	next   map[string]*MemoEntry[V]
	cutoff syscall.Timespec // changes at or after this are not kept
}

// Begin starts a run whose values are made under tag, a comparable value
// (a view's options): entries made under another tag are not reused.
// settle is how old a change must be before its value is kept; 0 means
// one second, far above any timestamp granularity.
func (m *Memo[V]) Begin(tag any, settle time.Duration) *MemoRun[V] {
	if settle <= 0 {
		settle = time.Second
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tag != tag {
		m.tag, m.entries = tag, nil
	}
	return &MemoRun[V]{
		m:      m,
		tag:    tag,
		old:    m.entries,
		next:   make(map[string]*MemoEntry[V], len(m.entries)),
		cutoff: syscall.NsecToTimespec(time.Now().Add(-settle).UnixNano()),
	}
}

// Get returns the entry kept for path when it was made for key, or nil.
func (r *MemoRun[V]) Get(path string, key MemoKey) *MemoEntry[V] {
	if e := r.old[path]; e != nil && e.Key == key {
		r.m.hits.Add(1)
		return e
	}
	r.m.misses.Add(1)
	return nil
}

// Settled reports whether both files last changed before the run's
// cutoff, so that no change can hide behind an equal timestamp.
func (r *MemoRun[V]) Settled(key MemoKey) bool {
	return before(key.File.ctime, r.cutoff) && before(key.Log.ctime, r.cutoff)
}

// Keep records path's entry for later runs: one Get returned, or a new
// one for a file whose key is Settled.
func (r *MemoRun[V]) Keep(path string, e *MemoEntry[V]) {
	r.next[path] = e
}

// Commit makes the run's entries the Memo's. Entries of files the run did
// not look at are kept when they lie outside every directory in walked
// (another run's queues); pass nil when the run saw every queue. Nothing
// is committed when a run under another tag came in between.
func (r *MemoRun[V]) Commit(walked []string) {
	m := r.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tag != r.tag {
		return
	}
	if walked != nil {
		for path, e := range m.entries {
			if _, ok := r.next[path]; !ok && !under(path, walked) {
				r.next[path] = e
			}
		}
	}
	m.entries = r.next
}

// Stats returns how many values were reused and how many were made, over
// the Memo's life.
func (m *Memo[V]) Stats() (hits, misses int64) { return m.hits.Load(), m.misses.Load() }

func before(a, b syscall.Timespec) bool {
	return a.Sec < b.Sec || a.Sec == b.Sec && a.Nsec < b.Nsec
}

// under reports whether path lies in one of the directories dirs.
func under(path string, dirs []string) bool {
	for _, d := range dirs {
		if strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}
