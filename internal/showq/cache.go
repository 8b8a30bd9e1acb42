package showq

import (
	"syscall"
	"time"

	"sluice/internal/spool"
)

// Cache lets the daemon list the queue again without reading every file
// again: a spool.Memo (see there why a status check is enough) of what
// each queue file and its defer log gave. The directories are read afresh
// on every listing, so order and membership are always current; entries
// for files no longer listed are dropped when a listing completes.
type Cache struct {
	// Settle is how old a change must be before its result is kept; 0
	// means one second.
	Settle time.Duration

	memo spool.Memo[listed]
}

// listed is what one file gave: a message (nil when it is not listed)
// and its warnings. It is never changed once made.
type listed struct {
	msg      *Message
	warnings []string
}

// cacheTag is what of the Options shapes what is read from a file;
// entries read under other values are not reused.
type cacheTag struct {
	emptyAddress string
	dupLimit     int
	utf8         bool
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
	run := c.memo.Begin(cacheTag{opt.EmptyAddress, opt.DupFilterLimit, opt.UTF8}, c.Settle)
	if err := scanEntries(sp, entries, opt, run, emit); err != nil {
		return err
	}
	run.Commit(nil)
	return nil
}

// Stats returns how many files were taken from the cache and how many
// were read, over the cache's life.
func (c *Cache) Stats() (hits, misses int64) { return c.memo.Stats() }

// key returns the state of e's file (st) and of its defer log; false
// when the defer log cannot be looked at, which is then not cached.
func (w *worker) key(e spool.Entry, st *syscall.Stat_t) (spool.MemoKey, bool) {
	k := spool.MemoKey{File: spool.KeyOf(st)}
	dfd, err := w.dirs.fd(w.sp.Dir(spool.Defer, e.ID))
	if err == nil {
		var ls syscall.Stat_t
		if w.name, err = spool.Lstatat(dfd, e.ID, &ls, w.name); err == nil {
			k.Log = spool.KeyOf(&ls)
		}
	}
	return k, err == nil || err == syscall.ENOENT
}
