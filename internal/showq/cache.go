package showq

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sluice/internal/spool"
)

// Cache lets a long-running process (the daemon) list the queue again
// without reading every file again. It keeps, for each queue file by its
// path relative to the spool, what the last listing made of the file and
// its defer log, and reuses it only when one lstat of each shows both
// unchanged.
//
// # Why a status check is enough
//
// An entry is reused only when the queue file's inode number, size, mode
// and change time (ctime, to the nanosecond) and the defer log's inode
// number, size and ctime (or its absence) are all what they were when
// the entry was read. The kernel sets a file's ctime to the current time
// on every change to its data or its inode: every write (the queue
// manager's in-place D marks, a defer-log append, the cleanup that writes
// a file), every chmod (the 0700 "complete" bit, postsuper's g+x), every
// rename and link (moves between queues, postsuper -r), and a utime (the
// next-attempt mtime). Whoever the writer is — the daemon, sluice inject,
// Postfix's own tools — there is no way to change what a listing shows
// without changing one of these values; and a file replaced by another
// under the same name has another inode. The path itself is the key, so
// a message moved to another queue is another entry.
//
// Timestamps have a granularity: on some file systems two changes within
// one clock tick leave the same ctime, and a change that falls in the
// same tick as the read would go unseen. So an entry is kept only when
// both ctimes are older than Settle before the scan began; a file changed
// more recently is read again on every listing until it settles.
//
// The directory is read afresh on every listing, so order and membership
// are always current; entries for files no longer listed are dropped when
// a listing completes. A Cache is safe for concurrent listings.
type Cache struct {
	// Settle is how old a change must be before its result is kept; 0
	// means one second, far above any timestamp granularity.
	Settle time.Duration

	mu      sync.Mutex
	opt     cacheOptions
	entries map[string]*cacheEntry
	hits    atomic.Int64
	misses  atomic.Int64
}

// cacheOptions are the Options that shape what is read from a file;
// entries read under other values are not reused.
type cacheOptions struct {
	emptyAddress string
	dupLimit     int
	utf8         bool
}

// fileKey is what lstat says of a file, as far as the cache compares it.
// The zero value stands for a file that does not exist.
type fileKey struct {
	ino   uint64
	size  int64
	mode  uint32
	ctime syscall.Timespec
}

func keyOf(st *syscall.Stat_t) fileKey {
	return fileKey{ino: st.Ino, size: st.Size, mode: st.Mode, ctime: st.Ctim}
}

// entryKey is the state of a queue file and of its defer log.
type entryKey struct{ file, log fileKey }

// cacheEntry is what one file gave: a message (nil when it is not
// listed) and its warnings. It is never changed once made.
type cacheEntry struct {
	key      entryKey
	msg      *Message
	warnings []string
}

// generation is one listing's view of the cache: the entries of the last
// complete listing (read only, shared by the workers) and the entries
// this one keeps (written on the emitting goroutine only).
type generation struct {
	c      *Cache
	opt    cacheOptions
	old    map[string]*cacheEntry
	next   map[string]*cacheEntry
	cutoff syscall.Timespec // changes at or after this are not kept
}

// Scan lists the messages as Scan does, taking unchanged files' results
// from the cache. It leaves opt.Queues to Scan's default.
func (c *Cache) Scan(sp *spool.Spool, opt Options, emit func(*Message) error) error {
	var entries []spool.Entry
	for _, q := range spool.MessageQueues {
		e, err := sp.List(q)
		if err != nil {
			return err
		}
		entries = append(entries, e...)
	}
	gen := c.begin(opt)
	if err := scanEntries(sp, entries, opt, gen, emit); err != nil {
		return err
	}
	c.commit(gen)
	return nil
}

// Stats returns how many files were taken from the cache and how many
// were read, over the cache's life.
func (c *Cache) Stats() (hits, misses int64) { return c.hits.Load(), c.misses.Load() }

func (c *Cache) begin(opt Options) *generation {
	settle := c.Settle
	if settle <= 0 {
		settle = time.Second
	}
	o := cacheOptions{opt.EmptyAddress, opt.DupFilterLimit, opt.UTF8}
	c.mu.Lock()
	defer c.mu.Unlock()
	if o != c.opt {
		c.opt, c.entries = o, nil
	}
	return &generation{
		c:      c,
		opt:    o,
		old:    c.entries,
		next:   make(map[string]*cacheEntry, len(c.entries)),
		cutoff: syscall.NsecToTimespec(time.Now().Add(-settle).UnixNano()),
	}
}

// commit makes gen's entries the cache's, unless a listing with other
// parameters came in between. Two listings with the same parameters may
// both commit: every entry carries the state it was read in.
func (c *Cache) commit(gen *generation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opt == gen.opt {
		c.entries = gen.next
	}
}

// get returns the entry for rel when it was made for key.
func (g *generation) get(rel string, key entryKey) *cacheEntry {
	if c := g.old[rel]; c != nil && c.key == key {
		g.c.hits.Add(1)
		return c
	}
	return nil
}

func (g *generation) miss() { g.c.misses.Add(1) }

// keep records rel's entry for the next listing.
func (g *generation) keep(rel string, c *cacheEntry) { g.next[rel] = c }

// settled reports whether both files last changed before the settle
// time, so that no change can hide behind an equal timestamp.
func (g *generation) settled(k entryKey) bool {
	return before(k.file.ctime, g.cutoff) && before(k.log.ctime, g.cutoff)
}

func before(a, b syscall.Timespec) bool {
	return a.Sec < b.Sec || a.Sec == b.Sec && a.Nsec < b.Nsec
}

// key returns the state of e's file (st) and of its defer log; false
// when the defer log cannot be looked at, which is then not cached.
func (w *worker) key(e spool.Entry, st *syscall.Stat_t) (entryKey, bool) {
	k := entryKey{file: keyOf(st)}
	dir := w.sp.Dir(spool.Defer, e.ID)
	dfd, err := w.dirs.fd(dir)
	if err == nil {
		var ls syscall.Stat_t
		if err = w.dirs.lstatAt(dfd, dir+"/"+e.ID, e.ID, &ls); err == nil {
			k.log = keyOf(&ls)
		}
	}
	return k, err == nil || err == syscall.ENOENT
}
