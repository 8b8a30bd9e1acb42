package model

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sluice/internal/event"
	"sluice/internal/spool"
)

// scanned is what a scan read of one queue file, before interning (the
// scan's workers do not touch the model).
type scanned struct {
	queue   uint8
	bare    bool
	forced  bool
	sender  string
	size    int64
	arrival int64
	next    int64
	rcpts   []scannedRcpt
}

type scannedRcpt struct {
	addr        string
	offset      int64
	done        bool
	reason, dsn string
	onDisk      bool // the reason is in the defer log only (a snapshot's refOnDisk)
	class       string
	attempts    int
	last        int64
}

// read reads one queue file and its defer and history logs. ok is false
// for a file that is gone or not yet complete.
func (m *Model) read(e spool.Entry) (s scanned, ok bool) {
	q, known := queueIndex(e.Queue)
	if !known {
		return s, false
	}
	s.queue = q
	path := filepath.Join(m.cfg.Spool.Root, e.Rel)
	if q == queueCorrupt {
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			return s, false
		}
		s.bare = true
		return s, true
	}
	b := m.bufs.Get().(*readBuf)
	defer m.bufs.Put(b)
	env, fi, present, err := b.envelope(path)
	if !present || !spool.IsReady(fi.mode) {
		return s, false // gone, not a file, or still being written
	}
	s.forced = spool.IsForcedExpire(fi.mode)
	if q == queueDeferred {
		s.next = fi.mtime
	}
	if err != nil {
		s.bare = true
		return s, true
	}
	s.sender, s.size, s.arrival = env.Sender, envSize(env), env.Arrival.Unix()
	s.rcpts = make([]scannedRcpt, len(env.Recipients))
	pending := 0
	for i, r := range env.Recipients {
		s.rcpts[i] = scannedRcpt{addr: r.Address, offset: r.Offset, done: r.Done}
		if !r.Done {
			pending++
		}
	}
	if pending == 0 {
		return s, true
	}
	for _, le := range b.log(m.cfg.Spool.Path(spool.Defer, e.ID)) {
		for i := range s.rcpts {
			r := &s.rcpts[i]
			if r.offset == le.offset && !r.done {
				r.reason, r.dsn = le.reason, le.status
				r.class = event.Classify(event.LogFailure(le.status, le.diagType, le.diagText, le.reason))
			}
		}
	}
	hist := b.history(m.cfg.Spool.Path(spool.History, e.ID), s.arrival)
	for _, a := range hist {
		if a.Status != "deferred" {
			continue
		}
		// The entry is one attempt of one recipient: with the same
		// address twice, of the one with fewer attempts so far.
		var r *scannedRcpt
		for i := range s.rcpts {
			c := &s.rcpts[i]
			if c.addr == a.Recipient && !c.done && (r == nil || c.attempts < r.attempts) {
				r = c
			}
		}
		if r != nil {
			r.attempts++
			r.last = max(r.last, a.Time.Unix())
		}
	}
	return s, true
}

// envSize is the size the queue manager logs: the C record's content
// length, or its message length when that is 0.
func envSize(env *spool.Envelope) int64 {
	if env.Size.ContentLen > 0 {
		return env.Size.ContentLen
	}
	return env.Size.MessageLen
}

// toMsg interns a scanned file; the caller holds the write lock.
func (m *Model) toMsg(id string, s *scanned) *msg {
	if s.bare {
		return &msg{id: id, queue: s.queue, bare: true}
	}
	var x *msg
	if m.bulk {
		x = m.slab.takeMsg()
		*x = m.makeMsg(m.slab.copyStr(id), s.queue, s.sender, s.size, s.arrival)
		x.setRcpts(m.slab.takeRcpts(len(s.rcpts)))
	} else {
		x = m.newMsg(id, s.queue, s.sender, s.size, s.arrival)
		x.setRcpts(make([]rcpt, len(s.rcpts)))
	}
	x.forced, x.next = s.forced, clampSeconds(s.next)
	for i, r := range s.rcpts {
		addr := r.addr
		if m.bulk {
			addr = m.slab.copyStr(addr)
		}
		x.rs()[i] = m.newRcpt(addr, r.offset, r.done)
		if r.reason != "" || r.dsn != "" || r.onDisk {
			x.rs()[i].class = classIndex(r.class)
			x.rs()[i].reason, x.rs()[i].dsn = m.syms.getCapped(r.reason), m.syms.get(r.dsn)
			if r.onDisk {
				x.rs()[i].reason = onDisk
			}
		}
		x.rs()[i].attempts = uint16(min(r.attempts, 1<<16-1))
		x.rs()[i].last = clampSeconds(r.last)
	}
	return x
}

// Build fills the model from the spool: one parallel scan. Events that
// arrive meanwhile are applied, and win. Loading is false afterwards.
//
// While the first Build runs, the aggregates are not kept (bulk): the
// scan meets messages in queue-ID order, which is no order of time, and
// keeping a dozen histograms sorted by arrival through a million random
// insertions was a quarter of the scan. They are counted once at the
// end, the messages taken in arrival order, so that every insertion is
// an append. Until then the aggregates are empty; Loading says why.
func (m *Model) Build(ctx context.Context) error {
	m.mu.Lock()
	first := m.loading.Load() && !m.bulk
	if first {
		// Messages that events brought before the scan are counted
		// again at the end with the others.
		m.bulk = true
		m.agg = aggregates{}
		m.agg.init()
	}
	m.mu.Unlock()
	_, err := m.pass(ctx, false, m.cfg.Workers)
	m.mu.Lock()
	if first {
		m.bulk = false
		m.slab = slab{}
		m.recount()
		m.syms.compact()
	}
	m.agg.trim()
	m.mu.Unlock()
	if m.loading.CompareAndSwap(true, false) {
		close(m.loaded)
	}
	return err
}

// recount counts every message into the aggregates, in arrival order;
// the caller holds the write lock and the aggregates are empty.
func (m *Model) recount() {
	all := make([]*msg, 0, m.msgs.len())
	m.msgs.each(func(x *msg) { all = append(all, x) })
	slices.SortFunc(all, func(a, b *msg) int { return cmp.Compare(a.arrival, b.arrival) })
	for _, x := range all {
		m.agg.sum.index(x)
		m.count(x, 1)
	}
}

// Reconcile compares the model with a fresh scan of the spool, fixes
// what differs, logs each difference and returns how many there were
// (they are added to Drift). workers bounds the scan's readers (0: one
// per CPU; the periodic pass uses 1, to stay in the background).
func (m *Model) Reconcile(ctx context.Context, workers int) (int, error) {
	return m.pass(ctx, true, workers)
}

// pass is a scan that makes the model match the files, except for the
// messages that events changed while it ran. A difference found by a
// reconcile pass is looked at once more after the scan (the queue
// manager renames a file first and publishes the event afterwards, so a
// scan can catch a file between the two): only one that is still there
// counts as drift.
func (m *Model) pass(ctx context.Context, report bool, workers int) (int, error) {
	m.passMu.Lock()
	defer m.passMu.Unlock()
	m.mu.Lock()
	if m.scanning == 0 {
		m.touched = map[string]bool{}
	}
	m.scanning++
	m.epoch++
	epoch := m.epoch
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.scanning--
		if m.scanning == 0 {
			m.touched = nil
		}
		m.mu.Unlock()
	}()
	var suspects []string
	emit := func(e spool.Entry, s scanned) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if old := m.msgs.get(e.ID); old != nil {
			old.epoch = epoch
		}
		if m.touched[e.ID] {
			return nil
		}
		x := m.toMsg(e.ID, &s)
		x.epoch = epoch
		if !report {
			m.put(e.ID, x)
			return nil
		}
		if m.diff(m.msgs.get(e.ID), x) != "" {
			suspects = append(suspects, e.ID)
		} else {
			m.keepOffsets(e.ID, x)
		}
		m.drop(x)
		return nil
	}
	// The first build starts from the snapshot when there is one; the
	// queues are then listed for the files it does not have.
	fromSnap := false
	if !report {
		if sr, done := m.openSnapshot(); sr != nil {
			hits, err := m.loadSnapshot(ctx, sr, workers, emit)
			done()
			if err != nil {
				return 0, fmt.Errorf("model: snapshot: %w", err)
			}
			m.snapHits.Store(hits)
			fromSnap = true
		}
	}
	seen := func(id string) bool {
		m.mu.RLock()
		defer m.mu.RUnlock()
		x := m.msgs.get(id)
		return x != nil && x.epoch == epoch
	}
	// The queues are listed in parts (ListEach), so that a scan never
	// holds the entries of a million files at once.
	for _, q := range Queues {
		err := m.cfg.Spool.ListEach(q, scanPart, func(entries []spool.Entry) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return scanEach(entries, workers, func(e spool.Entry) (scanned, bool) {
				if ctx.Err() != nil || fromSnap && seen(e.ID) {
					return scanned{}, false
				}
				return m.read(e)
			}, emit)
		})
		if err == nil {
			err = ctx.Err() // a read skipped for it is not a file gone
		}
		if err != nil {
			return 0, fmt.Errorf("model: scan %s: %w", q, err)
		}
	}
	m.mu.RLock()
	m.msgs.each(func(x *msg) {
		if x.epoch != epoch && !m.touched[x.id] {
			suspects = append(suspects, x.id)
		}
	})
	m.mu.RUnlock()
	if !report {
		// The first build: what the scan did not see is not there.
		m.mu.Lock()
		for _, id := range suspects {
			if !m.touched[id] {
				m.put(id, nil)
			}
		}
		m.mu.Unlock()
		return 0, nil
	}
	if len(suspects) > 0 {
		time.Sleep(settle)
	}
	drift := 0
	for _, id := range suspects {
		var x *msg
		s, ok := m.readID(id)
		m.mu.Lock()
		if !m.touched[id] {
			if ok {
				x = m.toMsg(id, &s)
			}
			if what := m.diff(m.msgs.get(id), x); what != "" {
				drift++
				m.cfg.Log.Warn("model", "%s: drift: %s", id, what)
				m.put(id, x)
			} else {
				m.drop(x)
			}
		}
		m.mu.Unlock()
	}
	m.drift.Add(int64(drift))
	return drift, nil
}

// scanEach is spool.ForEach with the emits overlapped with the reads:
// workers read batch k+1 while emit applies batch k, in entry order, in
// the calling goroutine. The model's emit takes its write lock for each
// file; run after each batch's reads, as ForEach does, they were a
// quarter of a start-up scan on two cores.
func scanEach[T any](entries []spool.Entry, workers int, work func(spool.Entry) (T, bool), emit func(spool.Entry, T) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers == 1 || len(entries) < 64 {
		return spool.ForEach(entries, workers, work, emit)
	}
	type slot struct {
		v  T
		ok bool
	}
	const batch = 512
	free := make(chan []slot, 2)
	free <- make([]slot, batch)
	free <- make([]slot, batch)
	full := make(chan []slot, 2)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(full)
		for start := 0; start < len(entries); start += batch {
			var res []slot
			select {
			case res = <-free:
			case <-stop:
				return
			}
			res = res[:min(batch, len(entries)-start)]
			var wg sync.WaitGroup
			var next atomic.Int64
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1) - 1)
						if i >= len(res) {
							return
						}
						v, ok := work(entries[start+i])
						res[i] = slot{v, ok}
					}
				}()
			}
			wg.Wait()
			select {
			case full <- res:
			case <-stop:
				return
			}
		}
	}()
	start := 0
	for res := range full {
		for i := range res {
			if res[i].ok {
				if err := emit(entries[start+i], res[i].v); err != nil {
					return err
				}
			}
			res[i] = slot{}
		}
		start += len(res)
		free <- res[:cap(res)]
	}
	return nil
}

// scanPart is how many entries of a queue a scan lists at a time.
const scanPart = 8192

// settle is how long a reconcile pass waits before it looks at a
// difference again.
const settle = 50 * time.Millisecond

// readID reads the file id wherever it is; ok is false when it is in no
// queue.
func (m *Model) readID(id string) (scanned, bool) {
	for _, q := range Queues {
		if s, ok := m.read(spool.Entry{Queue: q, ID: id, Rel: m.cfg.Spool.RelPath(q, id)}); ok {
			return s, true
		}
	}
	return scanned{}, false
}

// keepOffsets takes the recipient offsets of the file for a message that
// agrees with it otherwise: cleanup's event cannot know them.
func (m *Model) keepOffsets(id string, x *msg) {
	old := m.msgs.get(id)
	if old == nil || len(old.rs()) != len(x.rs()) {
		return
	}
	for i := range old.rs() {
		old.rs()[i].offset = x.rs()[i].offset
	}
}

// diff describes the first difference between the model's message a
// and the file's b, "" when they agree. Recipient offsets are not
// compared: cleanup's event does not know them.
func (m *Model) diff(a, b *msg) string {
	switch {
	case a == nil && b == nil:
		return ""
	case b == nil:
		return "gone from " + Queues[a.queue]
	case a == nil:
		return "not in the model, found in " + Queues[b.queue]
	case a.queue != b.queue:
		return "queue " + Queues[a.queue] + ", file in " + Queues[b.queue]
	case a.bare != b.bare:
		return "readability changed"
	case a.bare:
		return ""
	case a.forced != b.forced:
		return "force-expiry flag changed"
	case a.sender != b.sender, a.size != b.size, a.arrival != b.arrival:
		return "envelope changed"
	case a.queue == queueDeferred && a.next != b.next:
		return fmt.Sprintf("next attempt %s, file says %s", time.Unix(int64(a.next), 0).UTC().Format(time.RFC3339), time.Unix(int64(b.next), 0).UTC().Format(time.RFC3339))
	case len(a.rs()) != len(b.rs()):
		return "recipients changed"
	}
	for i := range a.rs() {
		ra, rb := &a.rs()[i], &b.rs()[i]
		if ra.addr != rb.addr || ra.done != rb.done {
			return "recipient " + rb.addr + " changed"
		}
		if ra.done {
			continue
		}
		if ra.class != rb.class || ra.dsn != rb.dsn || (ra.reason != rb.reason && ra.reason != onDisk && rb.reason != onDisk) {
			return "reason of " + rb.addr + " changed"
		}
		if ra.attempts != rb.attempts || ra.last != rb.last {
			return "attempts of " + rb.addr + " changed"
		}
	}
	return ""
}

// Run reconciles every interval until ctx ends, with one reader, so the
// pass stays in the background.
func (m *Model) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	if m.snapHits.Load() > 0 {
		// Messages came from a snapshot: it vouched for what the model
		// held when the daemon stopped, drift included.
		if _, err := m.Reconcile(ctx, 1); err != nil && ctx.Err() == nil {
			m.cfg.Log.Warn("model", "reconcile: %v", err)
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := m.Reconcile(ctx, 1); err != nil && ctx.Err() == nil {
				m.cfg.Log.Warn("model", "reconcile: %v", err)
			}
		}
	}
}

// readBuf is one scan worker's buffers: a file is read with one read
// call into them (queue files are small), instead of a read per record
// window, since a scan of a million files is bound by system calls; and
// a defer log is parsed where it lies (ScanLog), keeping only the fields
// the model uses, since the garbage of a scan is what makes the daemon's
// heap grow while it loads.
type readBuf struct {
	file    []byte
	name    []byte // the NUL-terminated path for spool.Openat
	fd      spool.FD
	rd      spool.Reader
	fields  []spool.LogField
	entries []logEntry
}

// logEntry is what the model takes of a defer log entry.
type logEntry struct {
	offset                             int64
	status, diagType, diagText, reason string
}

// wholeFileMax is the largest file read whole; larger ones are read
// through the record reader's windows.
const wholeFileMax = 256 << 10

// fileInfo is what a scan takes of a file's status.
type fileInfo struct {
	mode  fs.FileMode // permission bits, fs.ModeIrregular when not a regular file
	mtime int64
	size  int64
}

// open opens path for a scan without updating its access time when the
// daemon owns it (O_NOATIME is for the owner only; otherwise it opens it
// plainly), with spool's raw system calls (one open, status, read and
// close per file: through os.File a scan paid a poller registration and
// a finalizer for each of a million files). With relatime, a file whose
// mtime is ahead of its atime — every deferred file, whose mtime is its
// next attempt — had its inode written back at each read: a million
// journal writes for a start-up scan.
func (b *readBuf) open(path string) (fd int, fi fileInfo, err error) {
	fd, b.name, err = spool.Openat(spool.AtFDCWD, path, spool.ScanOpenFlags|syscall.O_NOATIME, b.name)
	if err == syscall.EPERM {
		fd, b.name, err = spool.Openat(spool.AtFDCWD, path, spool.ScanOpenFlags, b.name)
	}
	if err != nil {
		return -1, fi, err
	}
	var st syscall.Stat_t
	if err := spool.Fstat(fd, &st); err != nil {
		spool.CloseFD(fd)
		return -1, fi, err
	}
	fi = fileInfo{mode: fs.FileMode(st.Mode & 0o777), mtime: st.Mtim.Sec, size: st.Size}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		fi.mode |= fs.ModeIrregular
	}
	return fd, fi, nil
}

// readAll reads the size bytes of fd into b.file (or a buffer of its
// own past wholeFileMax).
func (b *readBuf) readAll(fd int, size int64) ([]byte, error) {
	var data []byte
	if size > wholeFileMax {
		data = make([]byte, size)
	} else {
		if int64(cap(b.file)) < size {
			b.file = make([]byte, size)
		}
		data = b.file[:size]
	}
	got := 0
	for got < len(data) {
		n, err := spool.Pread(fd, data[got:], int64(got))
		if err != nil {
			return nil, err
		}
		if n == 0 {
			break // the file shrank since its status
		}
		got += n
	}
	return data[:got], nil
}

// envelope reads the envelope of the queue file at path. ok is false
// when the file cannot be opened (gone) or is a symbolic link.
func (b *readBuf) envelope(path string) (env *spool.Envelope, fi fileInfo, ok bool, err error) {
	fd, fi, err := b.open(path)
	if err != nil {
		return nil, fi, false, err
	}
	defer spool.CloseFD(fd)
	if !spool.IsReady(fi.mode) {
		return nil, fi, true, nil
	}
	opt := spool.ReadOptions{SkipContent: true}
	if fi.size > wholeFileMax {
		b.fd = spool.FD{Fd: fd}
		b.rd.Reset(&b.fd, fi.size)
		env, err := spool.ReadEnvelope(&b.rd, opt)
		return env, fi, true, err
	}
	data, err := b.readAll(fd, fi.size)
	if err != nil {
		return nil, fi, true, err
	}
	env, err = spool.ReadEnvelope(spool.NewBytesReader(data), opt)
	return env, fi, true, err
}

// history reads a message's history (spool.ReadHistory's answer); most
// messages of a queue scanned at start have none, and a raw open that
// fails costs one system call.
func (b *readBuf) history(path string, arrival int64) []spool.Attempt {
	fd, fi, err := b.open(path)
	if err != nil {
		return nil
	}
	data, err := b.readAll(fd, fi.size)
	spool.CloseFD(fd)
	if err != nil || fi.mode&fs.ModeIrregular != 0 {
		return nil
	}
	return spool.ParseHistory(data, arrival)
}

// log reads a defer log; a missing or unreadable one has no entries.
// The entries are b's until the next call.
func (b *readBuf) log(path string) []logEntry {
	fd, fi, err := b.open(path)
	if err != nil {
		return nil
	}
	data, err := b.readAll(fd, fi.size)
	spool.CloseFD(fd)
	if err != nil || fi.mode&fs.ModeIrregular != 0 {
		return nil
	}
	b.entries = b.entries[:0]
	b.fields = spool.ScanLog(data, b.fields, func(fields []spool.LogField, _ bool) {
		var e logEntry
		have := false
		for _, f := range fields {
			switch string(f.Name) {
			case "recipient":
				have = true
			case "offset":
				e.offset, _ = strconv.ParseInt(string(f.Value), 10, 64)
			case "status":
				e.status = string(f.Value)
			case "diag_type":
				e.diagType = string(f.Value)
			case "diag_text":
				e.diagText = string(f.Value)
			case "reason":
				e.reason = string(f.Value)
			}
		}
		if have {
			b.entries = append(b.entries, e)
		}
	})
	return b.entries
}
