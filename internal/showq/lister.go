package showq

import (
	"hash/maphash"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"sluice/internal/model"
	"sluice/internal/spool"
)

// Lister lists the queue for the running daemon from its live model of
// the queue (package model), with the same bytes a scan of the files
// gives (Scan), at the cost of reading the queue directories only.
//
// The directories give the order and the membership: showq lists each
// queue in raw directory order, which only the directory knows, and a
// file that appeared or went behind the daemon's back is then listed or
// not as a scan would. Each message's content then comes from the model,
// by ID, when the model is sure to say what its file says:
//
//   - the model holds the message, in the queue whose directory it is in;
//   - its arrival is known and every reason it names is in memory;
//   - and what the model gives, shown, has the digest of what the
//     message's files gave the last time they were read. The model cannot
//     say everything a file holds: the order of the defer log's entries
//     (the order deliveries ended in; the model keeps each recipient's
//     last reason, not the order), an entry the model did not match to a
//     recipient, a second sender record, a size record the model reads
//     otherwise. Each message's digest (a 64-bit hash of its listing) is
//     all the Lister keeps.
//
// Anything else — a message the model does not hold (yet), maildrop/
// (not in the model), a digest that differs (the message changed since
// its files were read, or the model lacks something), a file that gave
// warnings — is read from its file, as Scan reads it, and its digest is
// kept for the next listing. While the model loads, every message is
// read from its file. So the first listing after start reads every file
// once; afterwards only the messages that changed are read.
//
// A file changed in place behind the daemon's back is listed as the
// model has it until the model catches up (its reconcile pass), as
// every view of the model; files that appear, go or move are listed as
// they are. The digests are dropped when a reconcile pass starts
// (model.ListingEpoch), so that a change the model does not represent is
// seen no later than one it does.
//
// When the defer-log entries of a message are not in recipient order,
// the other orders of up to maxPermuted entries are tried against the
// digest before the file is read.
type Lister struct {
	sp    *spool.Spool
	model *model.Model
	seed  maphash.Seed

	mu      sync.RWMutex
	digests map[string]uint64
	epoch   uint8 // the model's ListingEpoch the digests belong to

	fromModel, fromFiles atomic.Int64
}

// NewLister returns a Lister of sp's queues backed by m; with m nil every
// message is read from its file.
func NewLister(sp *spool.Spool, m *model.Model) *Lister {
	return &Lister{sp: sp, model: m, seed: maphash.MakeSeed(), digests: map[string]uint64{}}
}

// Stats returns how many listed messages came from the model and how
// many from their files, over the Lister's life.
func (l *Lister) Stats() (fromModel, fromFiles int64) {
	return l.fromModel.Load(), l.fromFiles.Load()
}

// Format is a rendering of a listing.
type Format struct {
	Kind FormatKind
	Long bool           // Text: enable_long_queue_ids' layout
	Loc  *time.Location // Text: the zone arrival times are shown in
}

// FormatKind picks the rendering.
type FormatKind int

const (
	// Text is mailq's and postqueue -p's (TextWriter).
	Text FormatKind = iota
	// JSON is postqueue -j's (JSONWriter).
	JSON
	// Protocol is the showq service's stream (WriteProtocol).
	Protocol
)

// chunkSize is how many directory entries one piece of work lists.
const chunkSize = 2048

// Write lists the queues of opt (Scan's default when nil) to w in the
// format f; warnings go to opt.Warn, in listing order, on the calling
// goroutine. Pieces of the listing are made in parallel and written in
// order. An error reading a directory is returned before anything is
// written; a write error stops the listing (and the protocol stream then
// lacks its final terminator).
func (l *Lister) Write(w io.Writer, opt Options, f Format) error {
	entries, err := l.list(opt)
	if err != nil {
		return err
	}
	useModel := l.model != nil && !l.model.Loading()
	if useModel {
		ep := l.model.ListingEpoch()
		l.mu.Lock()
		if ep != l.epoch {
			clear(l.digests)
			l.epoch = ep
		}
		l.mu.Unlock()
	}
	rd := newFileReader(l.sp, &opt)
	defer rd.close()

	nchunks := (len(entries) + chunkSize - 1) / chunkSize
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, nchunks))
	chunks := make([]*chunk, nchunks)
	for i := range chunks {
		end := min(len(entries), (i+1)*chunkSize)
		chunks[i] = &chunk{entries: entries[i*chunkSize : end], done: make(chan struct{})}
	}
	// Workers run at most ahead chunks in front of the writer, so a slow
	// reader of the listing does not make the whole of it pile up here.
	ahead := 2 * workers
	jobs := make(chan *chunk, nchunks)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := l.newState(rd, &opt, f)
			for c := range jobs {
				if !stop.Load() {
					l.listChunk(st, c, useModel)
				}
				close(c.done)
			}
		}()
	}
	defer func() {
		stop.Store(true)
		close(jobs)
		wg.Wait()
	}()
	for i := range min(ahead, nchunks) {
		jobs <- chunks[i]
	}

	var head []byte
	switch f.Kind {
	case Text:
		head = []byte(newTextFormat(f.Long, nil).heading)
	case Protocol:
		if _, err := w.Write(appendProtocolStart(nil)); err != nil {
			return err
		}
	}
	var count, bytes int64
	for i, c := range chunks {
		<-c.done
		if i+ahead < nchunks {
			jobs <- chunks[i+ahead]
		}
		out := c.out
		if f.Kind == Text && count == 0 && c.count > 0 {
			// The first message of the listing has the heading where
			// every other one has its blank line.
			c.out = append(head, out[1:]...)
			for k := range c.warns {
				c.warns[k].at += len(head) - 1
			}
			out = c.out
		}
		count += c.count
		bytes += c.bytes
		at := 0
		for _, wn := range c.warns {
			if wn.at > at {
				if _, err := w.Write(out[at:wn.at]); err != nil {
					return err
				}
				at = wn.at
			}
			if opt.Warn != nil {
				opt.Warn(wn.msg)
			}
		}
		if _, err := w.Write(out[at:]); err != nil {
			return err
		}
		c.out, c.warns = nil, nil
	}
	if opt.Queues == nil {
		l.prune(entries)
	}
	var tail []byte
	switch f.Kind {
	case Text:
		tail = appendTrailer(nil, count, bytes)
	case Protocol:
		tail = []byte{0}
	}
	_, err = w.Write(tail)
	return err
}

// chunk is one piece of a listing: its entries, then what they gave.
type chunk struct {
	entries      []spool.Entry
	out          []byte
	warns        []chunkWarning
	count, bytes int64
	done         chan struct{}
}

// chunkWarning is a warning and where in the chunk's output it came.
type chunkWarning struct {
	at  int
	msg string
}

// list reads the directories of opt's queues.
func (l *Lister) list(opt Options) ([]spool.Entry, error) {
	queues := opt.Queues
	if queues == nil {
		queues = spool.MessageQueues
	}
	var entries []spool.Entry
	for _, q := range queues {
		e, err := l.sp.List(q)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e...)
	}
	return entries, nil
}

// state is one worker's: how it shows, renders and reads.
type state struct {
	rd     *fileReader
	file   *worker
	f      Format
	text   textFormat
	b      builder
	digest func(*Message) uint64
}

func (l *Lister) newState(rd *fileReader, opt *Options, f Format) *state {
	st := &state{rd: rd, f: f, digest: l.digest}
	st.text = newTextFormat(f.Long, f.Loc)
	st.b = builder{disp: newDisplayer(opt.EmptyAddress, opt.UTF8), limit: opt.DupFilterLimit}
	return st
}

// render appends m to the chunk.
func (st *state) render(c *chunk, m *Message) {
	c.count++
	c.bytes += m.Size
	switch st.f.Kind {
	case Text:
		c.out = append(c.out, '\n')
		c.out = st.text.appendMessage(c.out, m)
	case JSON:
		c.out = appendJSON(c.out, m)
	case Protocol:
		c.out = appendProtocol(c.out, m)
	}
}

// listChunk lists c's entries: runs of them from the model, under one
// lock each, and the others from their files.
func (l *Lister) listChunk(st *state, c *chunk, useModel bool) {
	es := c.entries
	for i := 0; i < len(es); {
		if useModel {
			n := l.fromModelRun(st, c, es[i:])
			l.fromModel.Add(int64(n))
			if i += n; i == len(es) {
				break
			}
		}
		l.fromFile(st, c, es[i])
		i++
	}
}

// fromModelRun lists entries from the model from the first on, until one
// the model cannot give; it returns how many it listed.
func (l *Lister) fromModelRun(st *state, c *chunk, es []spool.Entry) int {
	n := 0
	l.mu.RLock()
	defer l.mu.RUnlock()
	l.model.EachListing(len(es), func(i int) string { return es[i].ID }, func(i int, v *model.ListingMessage) bool {
		e := &es[i]
		if v == nil || v.Queue != e.Queue || v.Arrival <= 0 || !l.inPlace(e) {
			return false
		}
		want, ok := l.digests[e.ID]
		if !ok {
			return false
		}
		m := st.b.match(e, v, want, st.digest)
		if m == nil {
			return false
		}
		st.render(c, m)
		n++
		return true
	})
	return n
}

// inPlace reports whether e is where its queue and ID put it: showq
// lists no other file (see lookup).
func (l *Lister) inPlace(e *spool.Entry) bool {
	if l.sp.Hashed(e.Queue) {
		return e.Rel == l.sp.RelPath(e.Queue, e.ID)
	}
	q, id := e.Queue, e.ID
	return len(e.Rel) == len(q)+1+len(id) && e.Rel[:len(q)] == q && e.Rel[len(q)] == '/' && e.Rel[len(q)+1:] == id
}

// fromFile lists e from its file and keeps its digest for the next
// listing: of a message listed without warnings only, so that a damaged
// file is read, and warned about, every time.
func (l *Lister) fromFile(st *state, c *chunk, e spool.Entry) {
	l.fromFiles.Add(1)
	if st.file == nil {
		st.file = st.rd.get()
	}
	r := st.file.read(e)
	for _, w := range r.warnings {
		c.warns = append(c.warns, chunkWarning{at: len(c.out), msg: w})
	}
	var d uint64
	keep := r.msg != nil && len(r.warnings) == 0 && e.Queue != spool.Maildrop
	if keep {
		d = l.digest(r.msg)
	}
	l.mu.Lock()
	if keep {
		l.digests[e.ID] = d
	} else {
		delete(l.digests, e.ID)
	}
	l.mu.Unlock()
	if r.msg != nil {
		st.render(c, r.msg)
	}
}

// prune drops the digests of messages a complete listing did not list,
// once they are a good part of all.
func (l *Lister) prune(entries []spool.Entry) {
	l.mu.RLock()
	n := len(l.digests)
	l.mu.RUnlock()
	if n <= len(entries)+len(entries)/4+1024 {
		return
	}
	keep := make(map[string]uint64, len(entries))
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range entries {
		if d, ok := l.digests[e.ID]; ok {
			keep[e.ID] = d
		}
	}
	l.digests = keep
}

// digest is a 64-bit hash of everything a rendering shows of m.
func (l *Lister) digest(m *Message) uint64 {
	h := uint64(len(m.Recipients))
	mix := func(x uint64) {
		h = (h ^ x) * 0x9e3779b97f4a7c15
		h ^= h >> 31
	}
	mix(maphash.String(l.seed, m.Queue))
	mix(uint64(m.Arrival))
	mix(uint64(m.Size))
	if m.ForcedExpire {
		mix(1)
	}
	mix(maphash.String(l.seed, m.Sender))
	for i := range m.Recipients {
		r := &m.Recipients[i]
		mix(maphash.String(l.seed, r.Address))
		mix(maphash.String(l.seed, r.Reason))
	}
	return h
}

// builder makes Messages from what the model holds, in display form.
type builder struct {
	disp   displayer
	limit  int // duplicate_filter_limit
	seen   addrSet
	msg    Message
	rcpts  []Recipient
	logged []int // indexes of the model's recipients the defer log names
	order  []int
}

// maxPermuted is the most defer-log entries whose other orders are tried.
const maxPermuted = 4

// permutations lists, for k = 0 .. maxPermuted, every order of k
// entries, the identity first.
var permutations = func() (p [maxPermuted + 1][][]int) {
	var gen func(prefix []int, rest []int, k int)
	gen = func(prefix, rest []int, k int) {
		if len(rest) == 0 {
			p[k] = append(p[k], append([]int(nil), prefix...))
			return
		}
		for i, x := range rest {
			r := append(append([]int(nil), rest[:i]...), rest[i+1:]...)
			gen(append(prefix, x), r, k)
		}
	}
	for k := range p {
		ids := make([]int, k)
		for i := range ids {
			ids[i] = i
		}
		gen(nil, ids, k)
	}
	return p
}()

// match returns the message v shows, with the defer-log entries in the
// order whose digest is want, or nil when the model cannot give it.
func (b *builder) match(e *spool.Entry, v *model.ListingMessage, want uint64, digest func(*Message) uint64) *Message {
	b.logged = b.logged[:0]
	for i := range v.Rcpts {
		if r := &v.Rcpts[i]; r.Logged {
			if r.ReasonOnDisk {
				return nil
			}
			b.logged = append(b.logged, i)
		}
	}
	if len(b.logged) > maxPermuted {
		b.order = b.order[:0]
		for i := range b.logged {
			b.order = append(b.order, i)
		}
		if m := b.build(e, v, b.order); digest(m) == want {
			return m
		}
		return nil
	}
	for _, order := range permutations[len(b.logged)] {
		if m := b.build(e, v, order); digest(m) == want {
			return m
		}
	}
	return nil
}

// build makes the message v shows with the defer-log entries in order
// (indexes into b.logged), as readFile and readDeferLog list a file.
func (b *builder) build(e *spool.Entry, v *model.ListingMessage, order []int) *Message {
	d := &b.disp
	b.rcpts = b.rcpts[:0]
	b.seen.reset(false, 0)
	if len(order) > 0 {
		b.seen.reset(true, b.limit)
	}
	for _, k := range order {
		r := &v.Rcpts[b.logged[k]]
		addr := nullAddressText
		if r.Addr != "" {
			addr = d.textString(r.Addr)
		}
		reason := noReasonText
		if r.Reason != "" {
			reason = d.textString(r.Reason)
		}
		b.rcpts = append(b.rcpts, Recipient{Address: addr, Reason: reason, Logged: true})
		b.seen.add(addr)
	}
	for i := range v.Rcpts {
		r := &v.Rcpts[i]
		if r.Done {
			continue
		}
		if addr := d.addressString(r.Addr); !b.seen.hasString(addr) {
			b.rcpts = append(b.rcpts, Recipient{Address: addr})
		}
	}
	b.msg = Message{
		Queue: e.Queue, ID: e.ID, Arrival: v.Arrival, Size: v.Size,
		ForcedExpire: v.Forced, Sender: d.addressString(v.Sender), Recipients: b.rcpts,
	}
	return &b.msg
}
