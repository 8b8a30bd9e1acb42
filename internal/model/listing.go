package model

// This file is what a queue listing (package showq: mailq, postqueue -p
// and -j) reads of the model. It only reads: the listing decides per
// message whether what the model holds is enough, and reads the file when
// it is not. It is the one place outside the model's own files that
// knows the msg and rcpt structs' fields.

// ListingMessage is one message as a listing sees it in the model: the
// raw strings of the queue file (no display form yet).
type ListingMessage struct {
	Queue   string
	Arrival int64 // seconds, from the T record
	Size    int64
	Forced  bool
	Sender  string
	Rcpts   []ListingRcpt // in queue-file order

	touched byte // keeps the compiler from dropping EachListing's reads
}

// ListingRcpt is one recipient of a ListingMessage.
type ListingRcpt struct {
	Addr string
	Done bool // a D record: not listed
	// Logged: the message's defer log names this recipient (by its
	// offset), with Reason (empty when the entry has none).
	Logged bool
	Reason string
	// ReasonOnDisk: the entry's reason is one the model does not keep in
	// memory (see maxReasonBytes); only the defer log has it.
	ReasonOnDisk bool
}

// EachListing looks up ids(i) for i = 0, 1, ... n-1, under the read
// lock, and calls fn with what the model holds of each, until fn returns
// false: v is nil for a message the model does not hold, or holds by its
// ID only (corrupt/, unreadable). v and its Rcpts are reused from call to
// call: fn must neither keep them nor call the model, and should not
// wait (writers wait for the lock meanwhile). The lock is let go every
// listingBatch messages, so two messages may be seen at different
// moments, as a scan of the files sees them.
func (m *Model) EachListing(n int, ids func(i int) string, fn func(i int, v *ListingMessage) bool) {
	var v ListingMessage
	var batch [listingBatch]*msg
	for start := 0; start < n; start += listingBatch {
		if !m.eachListingBatch(&v, batch[:min(n, start+listingBatch)-start], start, ids, fn) {
			return
		}
	}
}

// eachListingBatch is EachListing for the ids from start on, as many as xs
// holds, under the read lock (taken once a batch, so that writers wait
// for one batch at most); false when fn said stop.
func (m *Model) eachListingBatch(v *ListingMessage, xs []*msg, start int, ids func(int) string, fn func(int, *ListingMessage) bool) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	// The messages of a listing come in directory order, which is
	// not the order they sit in memory: nearly every one is a
	// cache miss, and so are its recipients and their strings.
	// Looking them all up first, then touching what the listing
	// will read, lets the processor wait for many at once.
	for i := range xs {
		xs[i] = m.msgs.get(ids(start + i))
	}
	var sink byte
	for _, x := range xs {
		if x == nil || x.bare {
			continue
		}
		if s := m.syms.str(x.sender); s != "" {
			sink += s[0]
		}
		for k := range x.rs() {
			r := &x.rs()[k]
			if r.addr != "" {
				sink += r.addr[0]
			}
			if s := m.syms.str(r.reason); s != "" {
				sink += s[0] + s[len(s)/2] + s[len(s)-1] // a reason spans cache lines
			}
		}
	}
	v.touched = sink
	for i, x := range xs {
		if !fn(start+i, m.listing(v, x)) {
			return false
		}
	}
	return true
}

// ListingInto fills v with what the model holds of id, as EachListing
// gives it, reusing v's recipients; false when the model does not hold
// id (or holds its ID only).
func (m *Model) ListingInto(id string, v *ListingMessage) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.listing(v, m.msgs.get(id)) != nil
}

// listingBatch is how many messages EachListing looks up at once.
const listingBatch = 32

// listing fills v from x; nil when x is nil or bare.
func (m *Model) listing(v *ListingMessage, x *msg) *ListingMessage {
	if x == nil || x.bare {
		return nil
	}
	rs := v.Rcpts[:0]
	*v = ListingMessage{
		Queue: Queues[x.queue], Arrival: int64(x.arrival), Size: int64(x.size),
		Forced: x.forced, Sender: m.syms.str(x.sender), touched: v.touched,
	}
	for k := range x.rs() {
		r := &x.rs()[k]
		lr := ListingRcpt{Addr: r.addr, Done: r.done}
		if !r.done && (r.reason != 0 || r.dsn != 0) {
			lr.Logged = true
			lr.ReasonOnDisk = r.reason == onDisk
			lr.Reason = m.syms.str(r.reason)
		}
		rs = append(rs, lr)
	}
	v.Rcpts = rs
	return v
}

// ListingEpoch changes whenever a scan pass (Build, Reconcile) starts. A
// listing that keeps what it read of files to check the model against
// drops it then: a change behind the daemon's back that the model does
// not represent (say, a defer-log entry that names none of the
// message's recipients) is then seen at the same time as the changes the
// pass brings into the model.
func (m *Model) ListingEpoch() uint8 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.epoch
}

// DirGens sets gens[i] to the generation of the queue directory rels[i]
// (a path relative to the spool root, such as "deferred/A"): a number
// that changes whenever a message the model holds in that directory is
// added, changed or taken away, after the first Build has loaded. A
// listing that keeps what it rendered of a directory uses it again only
// while the directory's generation (and the directory) stays the same.
func (m *Model) DirGens(rels []string, gens []uint64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for i, rel := range rels {
		gens[i] = m.dirGens[rel]
	}
}

// bumpDir marks a change to x in its directory (see DirGens); the
// caller holds the write lock.
func (m *Model) bumpDir(x *msg) {
	if m.cfg.Spool == nil || int(x.queue) >= len(Queues) {
		return
	}
	m.dirGens[m.cfg.Spool.Dir(Queues[x.queue], x.id)]++
}
