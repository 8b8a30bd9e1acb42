package model

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"sluice/internal/spool"
)

// The snapshot: the model written at a clean shutdown and read at the
// next start in place of most of the start-up scan.
//
// The scan reads every message's queue file and defer log: two small
// reads a message, which from a cold page cache is about 95 s for a
// million messages on a disk that serves 21,000 such reads a second. The
// snapshot holds what the scan would have read of each message, with the
// inode, size and change time that its queue file, defer log and history
// had when it was written. At start a message whose files still have
// them is taken from the snapshot after an lstat of each (inodes only,
// 16 to a block); any other is read from its files, as is every file the
// queues hold that the snapshot does not name. Whatever changes a file
// while the daemon is down (a write, a rename, postsuper) gives it a new
// change time, which no program can set back. But a change time is as
// fine as the kernel's clock tick (a few milliseconds): a file changed
// twice within one tick keeps its first change time. So a record is
// trusted only if its files' change times are older than the snapshot
// by more than racyWindow, as git treats its "racily clean" entries: a
// change after its stamp then came ticks later and shows. The snapshot
// is removed as it is read: it is used once.
//
// It vouches for what the model held when the daemon stopped, and the
// model may then have drifted from a file changed behind the daemon's
// back and not yet reconciled. So a start from a snapshot is followed at
// once by a reconcile pass (Run), which finds that drift as it would
// have, had the daemon not stopped.

const snapMagic = "sluice model snapshot 2\n"

// racyWindow is how much older than the snapshot a file's change time
// must be for its record to be trusted; far more than a clock tick.
const racyWindow = 50 * 1e6 // ns

// snapEnd marks the end of the records: a snapshot without it was cut
// short, and what it has of records is still good, each on its own.
const snapEnd = 0xFF

// stamp is what identifies a file's contents without reading them; the
// zero stamp is no file.
type stamp struct {
	ino         uint64
	size, ctime int64
}

// stampOf lstats path; ok is false when it cannot tell (an error other
// than no file).
func stampOf(path string) (s stamp, ok bool) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return stamp{}, errors.Is(err, syscall.ENOENT)
	}
	return stamp{ino: st.Ino, size: st.Size, ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec}, true
}

// stamps are a message's queue file, defer log and history.
type stamps [3]stamp

func (m *Model) stampsOf(queue uint8, id string) (s stamps, ok bool) {
	paths := [3]string{
		m.cfg.Spool.Path(Queues[queue], id),
		m.cfg.Spool.Path(spool.Defer, id),
		m.cfg.Spool.Path(spool.History, id),
	}
	for i, p := range paths {
		if s[i], ok = stampOf(p); !ok {
			return s, false
		}
	}
	return s, s[0] != stamp{} // a queue file must be there
}

// WriteSnapshot writes the model to its Config.Snapshot file, for the
// next start. Call it after everything that changes the spool has
// stopped; it writes nothing while the model is loading. Messages whose
// files cannot be looked at are left out (the next start reads them).
// It returns how many messages it wrote.
func (m *Model) WriteSnapshot() (int, error) {
	path := m.cfg.Snapshot
	if path == "" || m.Loading() {
		return 0, nil
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("model: snapshot: %w", err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	n, err := m.encodeSnapshot(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("model: snapshot: %w", err)
	}
	return n, nil
}

func (m *Model) encodeSnapshot(w *bufio.Writer) (n int, err error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	all := make([]*msg, 0, m.msgs.len())
	m.msgs.each(func(x *msg) { all = append(all, x) })
	w.WriteString(snapMagic)
	var buf []byte
	d := snapDict{bySym: make([]uint32, len(m.syms.strs)), byStr: map[string]uint32{}}
	const batch = 512
	st := make([]stamps, batch)
	ok := make([]bool, batch)
	for start := 0; start < len(all); start += batch {
		part := all[start:min(start+batch, len(all))]
		// The lstats in parallel: cold, they are the cost.
		var wg sync.WaitGroup
		next := make(chan int, len(part))
		for i := range part {
			next <- i
		}
		close(next)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					st[i], ok[i] = m.stampsOf(part[i].queue, part[i].id)
				}
			}()
		}
		wg.Wait()
		for i, x := range part {
			if !ok[i] {
				continue
			}
			buf = m.appendRecord(buf[:0], x, &st[i], &d)
			if _, err := w.Write(buf); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, w.WriteByte(snapEnd)
}

// appendRecord appends x as a snapshot record: its queue and ID, its
// files' stamps, and what a scan would read of it (scanned). Texts that
// messages share (senders, reasons, DSN codes, classes) go through d.
func (m *Model) appendRecord(b []byte, x *msg, st *stamps, d *snapDict) []byte {
	b = append(b, x.queue)
	b = appendStr(b, x.id)
	for _, s := range st {
		b = binary.AppendUvarint(b, s.ino)
		b = binary.AppendVarint(b, s.size)
		b = binary.AppendVarint(b, s.ctime)
	}
	var flags byte
	if x.bare {
		flags |= 1
	}
	if x.forced {
		flags |= 2
	}
	b = append(b, flags)
	if x.bare {
		return b
	}
	b = d.appendSym(b, x.sender, &m.syms)
	b = binary.AppendVarint(b, int64(x.size))
	b = binary.AppendVarint(b, int64(x.arrival))
	b = binary.AppendVarint(b, int64(x.next))
	b = binary.AppendUvarint(b, uint64(x.nr))
	for _, r := range x.rs() {
		b = appendStr(b, r.addr)
		b = binary.AppendVarint(b, int64(r.offset))
		if r.done {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = d.appendSym(b, r.reason, &m.syms)
		b = d.appendSym(b, r.dsn, &m.syms)
		b = d.appendStr(b, classNames[r.class])
		b = binary.AppendUvarint(b, uint64(r.attempts))
		b = binary.AppendVarint(b, int64(r.last))
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// A shared text is written as a reference: refEmpty, refOnDisk (a
// reason the model left in the defer log), refNew followed by the text
// (which becomes the next entry of the snapshot's dictionary), or
// refFirst+i for the dictionary's i-th entry. A million messages that
// share a few reasons then carry a few bytes each for them, not the
// texts.
const (
	refEmpty = iota
	refNew
	refOnDisk
	refFirst
)

// snapDict is the writer's dictionary: each text's entry number plus 1,
// by symbol and, for texts that are not symbols, by text.
type snapDict struct {
	bySym []uint32
	byStr map[string]uint32
	n     uint32
}

func (d *snapDict) appendSym(b []byte, v sym, syms *symbols) []byte {
	switch {
	case v == 0:
		return append(b, refEmpty)
	case v == onDisk:
		return append(b, refOnDisk)
	case d.bySym[v] != 0:
		return binary.AppendUvarint(b, uint64(refFirst+d.bySym[v]-1))
	}
	d.n++
	d.bySym[v] = d.n
	return appendStr(append(b, refNew), syms.str(v))
}

func (d *snapDict) appendStr(b []byte, s string) []byte {
	if s == "" {
		return append(b, refEmpty)
	}
	if i := d.byStr[s]; i != 0 {
		return binary.AppendUvarint(b, uint64(refFirst+i-1))
	}
	d.n++
	d.byStr[s] = d.n
	return appendStr(append(b, refNew), s)
}

// snapRecord is one message of a snapshot.
type snapRecord struct {
	id string
	st stamps
	s  scanned
}

// snapReader reads a snapshot's records.
type snapReader struct {
	r   *bufio.Reader
	err error
	// racy: a record with a file changed at or after it (ns) is not
	// trusted (racyWindow).
	racy int64
	dict []string // the shared texts read so far (refNew)
}

// next reads the next record; false at the end or at the first damage.
func (sr *snapReader) next(rec *snapRecord) bool {
	if sr.err != nil {
		return false
	}
	q, err := sr.r.ReadByte()
	if err != nil || q == snapEnd {
		sr.err = io.EOF
		if err != nil && err != io.EOF {
			sr.err = err
		}
		return false
	}
	if int(q) >= nQueues {
		sr.err = errors.New("bad queue")
		return false
	}
	*rec = snapRecord{s: scanned{queue: q}}
	rec.id = sr.str()
	for i := range rec.st {
		rec.st[i] = stamp{ino: sr.uvarint(), size: sr.varint(), ctime: sr.varint()}
	}
	flags := sr.byte()
	rec.s.bare, rec.s.forced = flags&1 != 0, flags&2 != 0
	if !rec.s.bare {
		rec.s.sender, _ = sr.ref(false)
		rec.s.size, rec.s.arrival, rec.s.next = sr.varint(), sr.varint(), sr.varint()
		n := sr.uvarint()
		if n > 1<<20 {
			sr.err = errors.New("bad recipient count")
			return false
		}
		rec.s.rcpts = make([]scannedRcpt, n)
		for i := range rec.s.rcpts {
			r := &rec.s.rcpts[i]
			r.addr = sr.str()
			r.offset = sr.varint()
			r.done = sr.byte() != 0
			r.reason, r.onDisk = sr.ref(true)
			r.dsn, _ = sr.ref(false)
			r.class, _ = sr.ref(false)
			r.attempts = int(sr.uvarint())
			r.last = sr.varint()
		}
	}
	return sr.err == nil
}

func (sr *snapReader) byte() byte {
	if sr.err != nil {
		return 0
	}
	c, err := sr.r.ReadByte()
	sr.fail(err)
	return c
}

func (sr *snapReader) uvarint() uint64 {
	if sr.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(sr.r)
	sr.fail(err)
	return v
}

func (sr *snapReader) varint() int64 {
	if sr.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(sr.r)
	sr.fail(err)
	return v
}

func (sr *snapReader) str() string {
	n := sr.uvarint()
	if sr.err != nil {
		return ""
	}
	if n > 1<<20 {
		sr.err = errors.New("bad string length")
		return ""
	}
	b := make([]byte, n)
	_, err := io.ReadFull(sr.r, b)
	sr.fail(err)
	return string(b)
}

// ref reads a shared text (refNew and the others); onDisk only where
// the caller allows it (a reason).
func (sr *snapReader) ref(allowOnDisk bool) (s string, onDisk bool) {
	v := sr.uvarint()
	if sr.err != nil {
		return "", false
	}
	switch {
	case v == refEmpty:
		return "", false
	case v == refOnDisk && allowOnDisk:
		return "", true
	case v == refNew:
		s = sr.str()
		if sr.err == nil {
			sr.dict = append(sr.dict, s)
		}
		return s, false
	case v >= refFirst && v-refFirst < uint64(len(sr.dict)):
		return sr.dict[v-refFirst], false
	}
	sr.err = errors.New("bad text reference")
	return "", false
}

func (sr *snapReader) fail(err error) {
	if err != nil && sr.err == nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		sr.err = err
	}
}

// openSnapshot opens the snapshot for the first build and removes it,
// so that it is used once; nil when there is none or it is not one.
func (m *Model) openSnapshot() (*snapReader, func()) {
	path := m.cfg.Snapshot
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil
	}
	os.Remove(path)
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, nil
	}
	r := bufio.NewReaderSize(f, 256<<10)
	magic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != snapMagic {
		f.Close()
		return nil, nil
	}
	racy := st.Mtim.Sec*1e9 + st.Mtim.Nsec - racyWindow
	return &snapReader{r: r, racy: racy}, func() { f.Close() }
}

// trusted reports whether a record's stamps are older than the racy
// bound.
func (sr *snapReader) trusted(st *stamps) bool {
	for _, s := range st {
		if s != (stamp{}) && s.ctime >= sr.racy {
			return false
		}
	}
	return true
}

// loadSnapshot is the first part of a first build from a snapshot: each
// record whose files still have its stamps is emitted as it is, any
// other read from its files where the record says they were. It returns
// how many records were taken as they were.
func (m *Model) loadSnapshot(ctx context.Context, sr *snapReader, workers int, emit func(spool.Entry, scanned) error) (int64, error) {
	var hits int64
	const batch = 512
	recs := make([]snapRecord, 0, batch)
	byID := make(map[string]*snapRecord, batch)
	entries := make([]spool.Entry, 0, batch)
	for {
		recs, entries = recs[:0], entries[:0]
		clear(byID)
		for len(recs) < batch {
			recs = append(recs, snapRecord{})
			if !sr.next(&recs[len(recs)-1]) {
				recs = recs[:len(recs)-1]
				break
			}
		}
		if len(recs) == 0 {
			return hits, nil
		}
		for i := range recs {
			r := &recs[i]
			q := Queues[r.s.queue]
			byID[r.id] = r
			entries = append(entries, spool.Entry{Queue: q, ID: r.id, Rel: m.cfg.Spool.RelPath(q, r.id)})
		}
		var hit atomic.Int64
		err := scanEach(entries, workers, func(e spool.Entry) (scanned, bool) {
			if ctx.Err() != nil {
				return scanned{}, false
			}
			r := byID[e.ID]
			if !sr.trusted(&r.st) {
				return m.read(e)
			}
			if st, ok := m.stampsOf(r.s.queue, r.id); ok && st == r.st {
				hit.Add(1)
				return r.s, true
			}
			return m.read(e)
		}, emit)
		if err != nil {
			return hits, err
		}
		hits += hit.Load()
		if err := ctx.Err(); err != nil {
			return hits, err
		}
	}
}
