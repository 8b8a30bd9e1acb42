package showq

import (
	"fmt"
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
//
// What a directory rendered to is kept, while the directory and the
// model's messages in it stay the same, and taken as it is by the next
// listing in the same format (segment.go): a listing of a queue that has
// not changed renders nothing.
type Lister struct {
	sp    *spool.Spool
	model *model.Model
	seed  maphash.Seed

	dirs  dirMemo      // the directories' names, and the digests
	bufs  sync.Pool    // *chunkBufs: chunks' slices
	cache segmentCache // the directories' renderings (segment.go)

	mu    sync.Mutex
	epoch uint8 // the model's ListingEpoch the digests belong to

	// begin, when set, is called as each listing starts, and what it
	// returns as it ends (SetOnListing).
	begin func() (end func())

	fromModel, fromFiles atomic.Int64
}

// NewLister returns a Lister of sp's queues backed by m; with m nil every
// message is read from its file.
func NewLister(sp *spool.Spool, m *model.Model) *Lister {
	return &Lister{sp: sp, model: m, seed: maphash.MakeSeed()}
}

// SetOnListing has begin called as each listing starts, and the function
// it returns as that listing ends: the daemon holds its heap tighter
// while a listing of a large queue runs (server/memory.go).
func (l *Lister) SetOnListing(begin func() (end func())) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.begin = begin
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
	l.mu.Lock()
	begin := l.begin
	l.mu.Unlock()
	if begin != nil {
		defer begin()()
	}
	useModel := l.model != nil && !l.model.Loading()
	var mepoch uint8
	if useModel {
		mepoch = l.model.ListingEpoch()
		l.mu.Lock()
		if mepoch != l.epoch {
			l.dirs.forget()
			l.epoch = mepoch
		}
		l.mu.Unlock()
	}
	spans, err := l.list(opt)
	if err != nil {
		return err
	}
	runs := l.runs(spans, useModel, mepoch, f, &opt)
	defer func() {
		for i := range runs {
			if s := runs[i].seg; s != nil {
				l.cache.release(s)
			}
		}
	}()
	rd := newFileReader(l.sp, &opt)
	defer rd.close()

	// The runs without a kept rendering are rendered, in chunks.
	rendered := 0
	for i := range runs {
		if runs[i].seg == nil {
			rendered += runs[i].n
		}
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// Pieces of at most chunkSize entries, and a few per worker so that
	// they share a small queue too; a piece is of one run.
	size := min(chunkSize, max(64, rendered/(4*workers)))
	var chunks []*chunk
	for i := range runs {
		r := &runs[i]
		if r.seg != nil {
			continue
		}
		// Cut after every size entries.
		lo, n := r.lo, 0
		for k := r.lo; k < r.hi; k++ {
			if kind := r.dir.kind(k); kind != itemFile && kind != itemMisfile {
				continue
			}
			if n++; n == size || k == r.hi-1 {
				chunks = append(chunks, &chunk{span: span{dir: r.dir, lo: lo, hi: k + 1, n: n}, run: i, done: make(chan struct{})})
				lo, n = k+1, 0
			}
		}
	}
	nchunks := len(chunks)
	workers = max(1, min(workers, nchunks))
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
					// The buffer is taken when the chunk is rendered, so
					// the few in flight (ahead) go round.
					if b, ok := l.bufs.Get().(*chunkBufs); ok {
						c.out, c.pieces, c.doubts, c.entries = b.out[:0], b.pieces[:0], b.doubts[:0], b.entries[:0]
					}
					c.span.each(func(e qentry) { c.entries = append(c.entries, e) })
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
	// emit writes out, the heading first: the first message of the
	// listing has the heading where every other one has its blank line.
	emit := func(out []byte) error {
		if len(out) == 0 {
			return nil
		}
		if head != nil {
			if _, err := w.Write(head); err != nil {
				return err
			}
			head, out = nil, out[1:]
		}
		_, err := w.Write(out)
		return err
	}
	emitSeg := func(s *segment, from, to int64) error {
		if to <= from {
			return nil
		}
		if head != nil {
			if _, err := w.Write(head); err != nil {
				return err
			}
			head, from = nil, from+1
		}
		return writeSegment(w, s, from, to)
	}
	// A kept rendering's holes are read from their files again, here.
	var hst *state
	var hc chunk
	emitHole := func(h hole) error {
		if hst == nil {
			hst = l.newState(rd, &opt, f)
		}
		hc.out, hc.pieces, hc.count, hc.bytes = hc.out[:0], hc.pieces[:0], 0, 0
		l.fromFile(hst, &hc, h.e)
		for _, p := range hc.pieces {
			if p.warn != "" && opt.Warn != nil {
				opt.Warn(p.warn)
			}
		}
		count += hc.count
		bytes += hc.bytes
		return emit(hc.out)
	}
	next := 0 // the next chunk to write
	for ri := range runs {
		r := &runs[ri]
		if s := r.seg; s != nil {
			var at int64
			for _, h := range s.holes {
				if err := emitSeg(s, at, h.at); err != nil {
					return err
				}
				if err := emitHole(h); err != nil {
					return err
				}
				at = h.at
			}
			if err := emitSeg(s, at, s.size); err != nil {
				return err
			}
			count += s.count
			bytes += s.bytes
			continue
		}
		var keep *segmentFile
		if r.keepable {
			keep = newSegmentFile()
		}
		var rcount, rbytes int64
		var holes []hole
		var hcount, hbytes int64
		for ; next < nchunks && chunks[next].run == ri; next++ {
			c := chunks[next]
			<-c.done
			if next+ahead < nchunks {
				jobs <- chunks[next+ahead]
			}
			for _, p := range c.pieces {
				if p.warn != "" {
					if opt.Warn != nil {
						opt.Warn(p.warn)
					}
					continue
				}
				out := c.out[p.start:p.end]
				if keep != nil {
					if p.file {
						holes = append(holes, hole{at: keep.n, e: p.e})
						hcount += p.n
						hbytes += p.size
					} else {
						keep.write(out)
					}
				}
				if err := emit(out); err != nil {
					keep.close()
					return err
				}
			}
			rcount += c.count
			rbytes += c.bytes
			l.bufs.Put(&chunkBufs{out: c.out, pieces: c.pieces, doubts: c.doubts, entries: c.entries})
			c.out, c.pieces, c.doubts, c.entries = nil, nil, nil, nil
		}
		count += rcount
		bytes += rbytes
		if keep != nil {
			// Not kept: nothing from the model, or many messages to read
			// again each time.
			if keep.n == 0 || len(holes) > r.n/8 || keep.seal() != nil {
				keep.discard()
				continue
			}
			l.cache.put(r.key, &segment{
				f: keep.f, size: keep.n, count: rcount - hcount, bytes: rbytes - hbytes, holes: holes,
				dir: r.dir, first: r.lo, n: r.n, gen: r.gen, epoch: r.epoch, mepoch: mepoch,
			}, r.seq)
		}
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

// run is a stretch of a listing's entries from one directory reading:
// the unit whose rendering is kept (segment.go).
type run struct {
	span
	// When renderings may be kept or taken (keepable): what they are
	// checked against.
	keepable bool
	key      segKey
	gen      uint64
	epoch    uint64
	seq      uint64
	seg      *segment // the kept rendering taken, or nil
}

// runs splits entries into runs, and takes the kept rendering of each
// that has one still good. Renderings are kept only of what the model
// gives: never while it loads, nor of maildrop/.
func (l *Lister) runs(spans []span, useModel bool, mepoch uint8, f Format, opt *Options) []run {
	runs := make([]run, len(spans))
	for i, s := range spans {
		runs[i] = run{span: s, epoch: s.dir.epoch.Load()}
	}
	if !useModel || len(runs) == 0 {
		return runs
	}
	seq := l.cache.begin()
	rels := make([]string, len(runs))
	gens := make([]uint64, len(runs))
	for i := range runs {
		rels[i] = runs[i].dir.rel
	}
	l.model.DirGens(rels, gens)
	format := f.key(opt)
	room := l.cache.room()
	for i := range runs {
		r := &runs[i]
		if r.dir.queue == spool.Maildrop {
			continue
		}
		r.keepable = room
		r.key = segKey{format: format, rel: r.dir.rel, first: r.lo}
		r.gen, r.seq = gens[i], seq
		r.seg = l.cache.get(r.key, r, r.gen, mepoch, seq)
	}
	return runs
}

// key names everything a rendering in f with opt depends on besides the
// messages.
func (f Format) key(opt *Options) string {
	loc := ""
	if f.Loc != nil {
		loc = f.Loc.String()
	}
	return fmt.Sprintf("%d %t %q %q %d %t", f.Kind, f.Long, loc, opt.EmptyAddress, opt.DupFilterLimit, opt.UTF8)
}

// chunk is one piece of a listing: its entries, then what they gave:
// the output is pieces of out, and warnings, in listing order.
type chunk struct {
	span
	entries      []qentry // span's, while the chunk is listed
	run          int      // its index in the listing's runs
	files        int      // entries read from their files
	out          []byte
	pieces       []piece
	count, bytes int64
	done         chan struct{}
	doubts       []doubt
}

// chunkBufs are a chunk's slices, kept for the next chunk (Lister.bufs).
type chunkBufs struct {
	out     []byte
	pieces  []piece
	doubts  []doubt
	entries []qentry
}

// piece is out[start:end], or a warning.
type piece struct {
	start, end int
	warn       string
	// file: the output of entry e, read from its file: n messages (0
	// or 1) of size bytes.
	file    bool
	e       qentry
	n, size int64
}

// doubt is an entry the model did not give in the first pass over a
// chunk, and where in the output it goes.
type doubt struct {
	e     qentry
	at    int  // the length of out when it was met
	onLog bool // the model has it, but a reason only its defer log has
}

// list reads the directories of opt's queues (see dirMemo).
func (l *Lister) list(opt Options) ([]span, error) {
	queues := opt.Queues
	if queues == nil {
		queues = spool.MessageQueues
	}
	var spans []span
	for _, q := range queues {
		var err error
		if spans, err = l.dirs.list(l.sp, q, spans); err != nil {
			return nil, err
		}
	}
	return spans, nil
}

// state is one worker's: how it shows, renders and reads.
type state struct {
	rd     *fileReader
	file   *worker
	f      Format
	text   textFormat
	b      builder
	digest func(*Message) uint64
	v      model.ListingMessage // fromLog's
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
		if d.onLog && l.fromLog(st, c, d.e) {
			c.pieces = append(c.pieces, piece{start: start, end: len(c.out)})
			continue
		}
		n, size := c.count, c.bytes
		l.fromFile(st, c, d.e)
		c.pieces = append(c.pieces, piece{start: start, end: len(c.out), file: true, e: d.e, n: c.count - n, size: c.bytes - size})
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
		want := d.digest(e.i).Load()
		if v == nil || v.Queue != d.queue || v.Arrival <= 0 || d.kind(e.i) != itemFile || want == 0 {
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
	want := d.digest(e.i).Load()
	v := &st.v
	if want == 0 || !l.model.ListingInto(e.id(), v) || v.Queue != d.queue {
		return false
	}
	m := st.b.buildLogged(d.queue, e.id(), v, logged)
	if st.digest(m) != want {
		return false
	}
	st.render(c, m)
	l.fromModel.Add(1)
	return true
}

// fromFile lists e from its file and keeps its digest for the next
// listing: of a message listed without warnings only, so that a damaged
// file is read, and warned about, every time.
func (l *Lister) fromFile(st *state, c *chunk, qe qentry) {
	l.fromFiles.Add(1)
	c.files++
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
	qe.dir.digest(qe.i).Store(d)
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
