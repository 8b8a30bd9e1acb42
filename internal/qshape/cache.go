package qshape

import (
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Cache lets a long-running process (the daemon) compute the table again
// without reading every queue file again. It keeps, for each file by its
// path, the envelope the last run read from it (arrival, sender,
// recipients, or why it is not counted), and reuses it only when one
// lstat shows the file unchanged: same inode number, size, mode and
// change time (ctime, to the nanosecond).
//
// That is safe against every writer: the kernel sets ctime to the current
// time on every write (in-place D marks), chmod (the ready bits, g+x),
// rename and link (moves between queues) and utime, whoever makes them;
// a file replaced under the same name has another inode. As timestamps
// have a granularity, a result is kept only when the file's ctime is
// older than Settle before the run began, so that no change can hide
// behind an equal timestamp. The counting itself (ages, domains) is done
// afresh on every run, at the run's own time.
//
// The directories are walked afresh on every run, so order and membership
// are current; the entries under the directories a run walked are
// replaced by what it found. A Cache is safe for concurrent runs.
type Cache struct {
	// Settle is how old a change must be before its result is kept; 0
	// means one second.
	Settle time.Duration

	mu      sync.Mutex
	entries map[string]*cacheEntry
	hits    atomic.Int64
	misses  atomic.Int64
}

// fileKey is what lstat says of a file, as far as the cache compares it.
type fileKey struct {
	ino   uint64
	size  int64
	mode  uint32
	ctime syscall.Timespec
}

// cacheEntry is what one file gave; it is never changed once made.
type cacheEntry struct {
	key fileKey
	msg message // its own copies of the addresses
	err error   // nil, errSkip, or why the file is damaged
}

// generation is one run's view of the cache: the entries as the run
// began (read only, shared by the workers) and those it keeps (written
// on the emitting goroutine only).
type generation struct {
	c      *Cache
	old    map[string]*cacheEntry
	next   map[string]*cacheEntry
	cutoff syscall.Timespec // changes at or after this are not kept
}

// Run is the package's Run, taking unchanged files from the cache.
func (c *Cache) Run(opt Options, queues []string, out io.Writer) error {
	return run(opt, queues, out, c.begin())
}

// Stats returns how many files were taken from the cache and how many
// were read, over the cache's life.
func (c *Cache) Stats() (hits, misses int64) { return c.hits.Load(), c.misses.Load() }

func (c *Cache) begin() *generation {
	settle := c.Settle
	if settle <= 0 {
		settle = time.Second
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return &generation{
		c:      c,
		old:    c.entries,
		next:   make(map[string]*cacheEntry),
		cutoff: syscall.NsecToTimespec(time.Now().Add(-settle).UnixNano()),
	}
}

// commit keeps what gen found, and the cache's entries outside the
// directories gen walked (another run's queues).
func (c *Cache) commit(gen *generation, queues []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for path, e := range c.entries {
		if _, ok := gen.next[path]; !ok && !under(path, queues) {
			gen.next[path] = e
		}
	}
	c.entries = gen.next
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

func (g *generation) keep(path string, e *cacheEntry) { g.next[path] = e }

// readCached fills m from the cache when the file at path (name in
// dirfd) is unchanged, else reads it. It returns the entry to keep (nil
// when the file could not be looked at or changed too recently) and the
// result readMessage would give.
func (w *worker) readCached(g *generation, dirfd int, name, path string, m *message) (*cacheEntry, error) {
	var st syscall.Stat_t
	var err error
	w.name, err = lstatAt(dirfd, name, path, &st, w.name)
	if err != nil || !modeOK(st.Mode) {
		return nil, errSkip // as the open or fstat of readMessage would
	}
	key := fileKey{ino: st.Ino, size: st.Size, mode: st.Mode, ctime: st.Ctim}
	if e := g.old[path]; e != nil && e.key == key {
		g.c.hits.Add(1)
		e.load(m)
		return e, e.err
	}
	g.c.misses.Add(1)
	err = w.readMessage(dirfd, name, m)
	c := key.ctime
	if !(c.Sec < g.cutoff.Sec || c.Sec == g.cutoff.Sec && c.Nsec < g.cutoff.Nsec) {
		return nil, err
	}
	return &cacheEntry{key: key, msg: m.clone(), err: err}, err
}

// clone returns a copy of m that shares no buffer with it.
func (m *message) clone() message {
	return message{
		arrival: m.arrival,
		sender:  append([]byte(nil), m.sender...),
		rcpts:   append([]byte(nil), m.rcpts...),
		ends:    append([]int(nil), m.ends...),
		bogus:   m.bogus,
	}
}

// load copies the entry's envelope into m's buffers: counting lower-cases
// addresses in place, and the entry is shared.
func (e *cacheEntry) load(m *message) {
	m.arrival, m.bogus = e.msg.arrival, e.msg.bogus
	m.sender = append(m.sender[:0], e.msg.sender...)
	m.rcpts = append(m.rcpts[:0], e.msg.rcpts...)
	m.ends = append(m.ends[:0], e.msg.ends...)
}
