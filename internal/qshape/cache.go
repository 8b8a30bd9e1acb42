package qshape

import (
	"io"
	"syscall"
	"time"

	"sluice/internal/spool"
)

// Cache lets the daemon compute the table again without reading every
// queue file again: a spool.Memo (see there why a status check is
// enough) of the envelope each file gave (arrival, sender, recipients,
// or why it is not counted). The counting itself (ages, domains) is done
// afresh on every run, at the run's own time. The directories are walked
// afresh on every run; the entries under the directories a run walked
// are replaced by what it found.
type Cache struct {
	// Settle is how old a change must be before its result is kept; 0
	// means one second.
	Settle time.Duration

	memo spool.Memo[cached]
}

// cached is what one file gave; it is never changed once made.
type cached struct {
	msg message // its own copies of the addresses
	err error   // nil, errSkip, or why the file is damaged
}

// Run is the package's Run, taking unchanged files from the cache.
func (c *Cache) Run(opt Options, queues []string, out io.Writer) error {
	return run(opt, queues, out, c.memo.Begin(nil, c.Settle))
}

// Stats returns how many files were taken from the cache and how many
// were read, over the cache's life.
func (c *Cache) Stats() (hits, misses int64) { return c.memo.Stats() }

// readCached fills m from the cache when the file at r.path (name in
// dirfd) is unchanged, else reads it; r learns what to keep. It returns
// the error readMessage would give.
func (w *worker) readCached(g *spool.MemoRun[cached], dirfd int, name string, r *result, m *message) error {
	var st syscall.Stat_t
	var err error
	if dirfd < 0 {
		dirfd = spool.AtFDCWD
	}
	w.name, err = spool.Lstatat(dirfd, name, &st, w.name)
	if err != nil || !modeOK(st.Mode) {
		return errSkip // as the open or fstat of readMessage would
	}
	key := spool.MemoKey{File: spool.KeyOf(&st)}
	if e := g.Get(r.path, key); e != nil {
		e.Value.load(m)
		r.keep = e
		return e.Value.err
	}
	err = w.readMessage(dirfd, name, m)
	if g.Settled(key) {
		r.keep = &spool.MemoEntry[cached]{Key: key, Value: cached{msg: m.clone(), err: err}}
	}
	return err
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
func (e *cached) load(m *message) {
	m.arrival, m.bogus = e.msg.arrival, e.msg.bogus
	m.sender = append(m.sender[:0], e.msg.sender...)
	m.rcpts = append(m.rcpts[:0], e.msg.rcpts...)
	m.ends = append(m.ends[:0], e.msg.ends...)
}
