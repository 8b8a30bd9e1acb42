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
// gives (Scan), at the cost of looking at the queue directories (and
// reading again those that changed: see dirMemo).
//
// The directories give the order and the membership: showq lists each
// queue in raw directory order, which only the directory knows, and a
// file that appeared or went behind the daemon's back is then listed or
// not as a scan would. Each message's content then comes from the model,
// by ID, when the model is sure to say what its file says:
//
//   - the model holds the message, in the queue whose directory it is in;
//   - its arrival is known;
//   - and what the model gives, shown, has the digest of what the
//     message's files gave the last time they were read. The model cannot
//     say everything a file holds: the order of the defer log's entries
//     (the order deliveries ended in; the model keeps each recipient's
//     last reason, not the order), an entry the model did not match to a
//     recipient, a second sender record, a size record the model reads
//     otherwise. Each message's digest (a 64-bit hash of its listing) is
//     all the Lister keeps of it, beside its name in the directory's.
//
// The model keeps reason texts up to a bound on their bytes; a message
// with a reason past that bound is listed from the model with its defer
// log read (one small file instead of two).
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

	dirs dirMemo   // the directories' names, and the digests
	bufs sync.Pool // *[]byte: chunks' output

	mu    sync.Mutex
	epoch uint8 // the model's ListingEpoch the digests belong to

	fromModel, fromFiles atomic.Int64
}

// NewLister returns a Lister of sp's queues backed by m; with m nil every
// message is read from its file.
func NewLister(sp *spool.Spool, m *model.Model) *Lister {
	return &Lister{sp: sp, model: m, seed: maphash.MakeSeed()}
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

// chunkSize is the most directory entries one piece of work lists.
const chunkSize = 2048

// Write lists the queues of opt (Scan's default when nil) to w in the
// format f; warnings go to opt.Warn, in listing order, on the calling
// goroutine. Pieces of the listing are made in parallel and written in
// order. An error reading a directory is returned before anything is
// written; a write error stops the listing (and the protocol stream then
// lacks its final terminator).
func (l *Lister) Write(w io.Writer, opt Options, f Format) error {
	useModel := l.model != nil && !l.model.Loading()
	if useModel {
		ep := l.model.ListingEpoch()
		l.mu.Lock()
		if ep != l.epoch {
			l.dirs.forget()
			l.epoch = ep
		}
		l.mu.Unlock()
	}
	entries, err := l.list(opt)
	if err != nil {
		return err
	}
	rd := newFileReader(l.sp, &opt)
	defer rd.close()

	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// Pieces of at most chunkSize entries, and a few per worker so that
	// they share a small queue too.
	size := min(chunkSize, max(64, len(entries)/(4*workers)))
	nchunks := (len(entries) + size - 1) / size
	workers = max(1, min(workers, nchunks))
	chunks := make([]*chunk, nchunks)
	for i := range chunks {
		end := min(len(entries), (i+1)*size)
		chunks[i] = &chunk{entries: entries[i*size : end], done: make(chan struct{})}
		if b, ok := l.bufs.Get().(*[]byte); ok {
			chunks[i].out = (*b)[:0]
		}
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
		for _, p := range c.pieces {
			if p.warn != "" {
				if opt.Warn != nil {
					opt.Warn(p.warn)
				}
				continue
			}
			out := c.out[p.start:p.end]
			if len(out) == 0 {
				continue
			}
			if head != nil {
				// The first message of the listing has the heading
				// where every other one has its blank line.
				if _, err := w.Write(head); err != nil {
					return err
				}
				head, out = nil, out[1:]
			}
			if _, err := w.Write(out); err != nil {
				return err
			}
		}
		count += c.count
		bytes += c.bytes
		buf := c.out[:0]
		l.bufs.Put(&buf)
		c.out, c.pieces = nil, nil
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

// chunk is one piece of a listing: its entries, then what they gave:
// the output is pieces of out, and warnings, in listing order.
type chunk struct {
	entries      []qentry
	out          []byte
	pieces       []piece
	count, bytes int64
	done         chan struct{}
	doubts       []doubt
}

// piece is out[start:end], or a warning.
type piece struct {
	start, end int
	warn       string
}

// doubt is an entry the model did not give in the first pass over a
// chunk, and where in the output it goes.
type doubt struct {
	e     qentry
	at    int  // the length of out when it was met
	onLog bool // the model has it, but a reason only its defer log has
}

// list reads the directories of opt's queues (see dirMemo).
func (l *Lister) list(opt Options) ([]qentry, error) {
	queues := opt.Queues
	if queues == nil {
		queues = spool.MessageQueues
	}
	var entries []qentry
	for _, q := range queues {
		var err error
		if entries, err = l.dirs.list(l.sp, q, entries); err != nil {
			return nil, err
		}
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

// listChunk lists c's entries: first every one the model gives, under
// one lock, rendered in order; then the others (the doubts), from their
// defer log and the model, or from their files; their output is put in
// its place by the pieces.
func (l *Lister) listChunk(st *state, c *chunk, useModel bool) {
	c.doubts = c.doubts[:0]
	if useModel {
		n := l.fromModelPass(st, c)
		l.fromModel.Add(int64(n))
	} else {
		for _, e := range c.entries {
			c.doubts = append(c.doubts, doubt{e: e})
		}
	}
	modelEnd, at := len(c.out), 0
	for _, d := range c.doubts {
		if d.at > at {
			c.pieces = append(c.pieces, piece{start: at, end: d.at})
			at = d.at
		}
		start := len(c.out)
		if !d.onLog || !l.fromLog(st, c, d.e) {
			l.fromFile(st, c, d.e)
		}
		c.pieces = append(c.pieces, piece{start: start, end: len(c.out)})
	}
	c.pieces = append(c.pieces, piece{start: at, end: modelEnd})
}

// fromModelPass lists the chunk's entries that the model gives and notes
// the others in c.doubts; it returns how many it listed.
func (l *Lister) fromModelPass(st *state, c *chunk) int {
	n := 0
	es := c.entries
	l.model.EachListing(len(es), func(i int) string { return es[i].id() }, func(i int, v *model.ListingMessage) bool {
		e := es[i]
		d := e.dir
		want := d.items[e.i].digest.Load()
		if v == nil || v.Queue != d.queue || v.Arrival <= 0 || d.items[e.i].kind != itemFile || want == 0 {
			c.doubts = append(c.doubts, doubt{e: e, at: len(c.out)})
			return true
		}
		if st.b.onDisk(v) {
			c.doubts = append(c.doubts, doubt{e: e, at: len(c.out), onLog: true})
			return true
		}
		m := st.b.match(d.queue, e.id(), v, want, st.digest)
		if m == nil {
			c.doubts = append(c.doubts, doubt{e: e, at: len(c.out)})
			return true
		}
		st.render(c, m)
		n++
		return true
	})
	return n
}

// fromLog lists e from the model with the entries of its defer log read
// from the file (the model does not hold all their reasons); false when
// that does not give what the files gave last.
func (l *Lister) fromLog(st *state, c *chunk, e qentry) bool {
	if st.file == nil {
		st.file = st.rd.get()
	}
	logged, ok := st.file.logEntries(e.dir.queue, e.id())
	if !ok {
		return false
	}
	d := e.dir
	want := d.items[e.i].digest.Load()
	done := false
	l.model.EachListing(1, func(int) string { return e.id() }, func(_ int, v *model.ListingMessage) bool {
		if v == nil || v.Queue != d.queue || want == 0 {
			return false
		}
		if m := st.b.buildLogged(d.queue, e.id(), v, logged); st.digest(m) == want {
			st.render(c, m)
			done = true
		}
		return false
	})
	if done {
		l.fromModel.Add(1)
	}
	return done
}

// fromFile lists e from its file and keeps its digest for the next
// listing: of a message listed without warnings only, so that a damaged
// file is read, and warned about, every time.
func (l *Lister) fromFile(st *state, c *chunk, qe qentry) {
	l.fromFiles.Add(1)
	if st.file == nil {
		st.file = st.rd.get()
	}
	e := qe.entry()
	r := st.file.read(e)
	for _, w := range r.warnings {
		c.pieces = append(c.pieces, piece{warn: w})
	}
	var d uint64
	keep := r.msg != nil && len(r.warnings) == 0 && e.Queue != spool.Maildrop
	if keep {
		d = l.digest(r.msg)
	}
	qe.dir.items[qe.i].digest.Store(d)
	if r.msg != nil {
		st.render(c, r.msg)
	}
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
	return max(h, 1) // 0 means none
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

// onDisk reports whether a reason of v is one the model keeps only in
// the defer log.
func (b *builder) onDisk(v *model.ListingMessage) bool {
	for i := range v.Rcpts {
		if v.Rcpts[i].ReasonOnDisk {
			return true
		}
	}
	return false
}

// match returns the message v shows, with the defer-log entries in the
// order whose digest is want, or nil when the model cannot give it.
func (b *builder) match(queue, id string, v *model.ListingMessage, want uint64, digest func(*Message) uint64) *Message {
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
		if m := b.build(queue, id, v, b.order); digest(m) == want {
			return m
		}
		return nil
	}
	for _, order := range permutations[len(b.logged)] {
		if m := b.build(queue, id, v, order); digest(m) == want {
			return m
		}
	}
	return nil
}

// buildLogged makes the message v shows with the entries of its defer
// log as read from the file (in display form).
func (b *builder) buildLogged(queue, id string, v *model.ListingMessage, logged []Recipient) *Message {
	b.rcpts = append(b.rcpts[:0], logged...)
	b.seen.reset(len(logged) > 0, b.limit)
	for i := range logged {
		b.seen.add(logged[i].Address)
	}
	return b.finish(queue, id, v)
}

// build makes the message v shows with the defer-log entries in order
// (indexes into b.logged), as readFile and readDeferLog list a file.
func (b *builder) build(queue, id string, v *model.ListingMessage, order []int) *Message {
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
	return b.finish(queue, id, v)
}

// finish adds v's undelivered recipients that the log did not name, and
// the envelope.
func (b *builder) finish(queue, id string, v *model.ListingMessage) *Message {
	d := &b.disp
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
		Queue: queue, ID: id, Arrival: v.Arrival, Size: v.Size,
		ForcedExpire: v.Forced, Sender: d.addressString(v.Sender), Recipients: b.rcpts,
	}
	return &b.msg
}
