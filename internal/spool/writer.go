package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// LineLengthLimit is where content lines are split into L records
// (Postfix's line_length_limit).
const LineLengthLimit = 2048

// NewRecipient is a recipient to write into a new queue file.
type NewRecipient struct {
	Address string
	Orig    string // original recipient (O), written when not empty
	DSNOrig string // dsn_orig_rcpt, e.g. "rfc822;bob@example.com"
	Notify  int    // DSN NOTIFY flags
}

// Envelope data for a new queue file, written in cleanup's order.
type NewEnvelope struct {
	Arrival    time.Time
	CreateTime time.Time // defaults to Arrival
	Attrs      []Attr    // before the sender (rewrite_context, log_*, client_*, ...)
	FullName   string
	Sender     string
	WarnTime   time.Time // delay warning time; zero for none
	Recipients []NewRecipient
	SMTPUTF8   int64
	DSNEnvID   string
	DSNRet     int
	QmgrFlags  int64
}

// File is a queue file being written. Create one with Spool.Create*,
// write content lines, then Commit; Abort removes it. Until Commit the
// file has mode 0600, so every reader skips it.
type File struct {
	ID     string
	Queue  string
	Path   string
	sp     *Spool
	f      *os.File
	buf    *[]byte // what is not written yet; from sp.buffers
	err    error   // the first write error, reported at Commit
	off    int64
	size   SizeRecord
	inBody bool
	done   bool
	// spilled: some of the file was written before Commit, so buf does
	// not hold it whole.
	spilled bool
	// recycled: the file held another message (recycle.go), of oldSize
	// bytes, whose bytes past this one's end Commit cuts off. It is
	// written where it was kept, at spare, and renamed to Path by Commit
	// (while spare is not ""), with mode its permissions until then.
	recycled bool
	oldSize  int64
	spare    string
	mode     fs.FileMode
	fi       fs.FileInfo // as named
	// KeepImage asks Commit to keep a copy of the whole file, for Image,
	// when it is small enough to have been written in one piece, and
	// its descriptor open with it, for Kept.
	KeepImage bool
	image     []byte
	kept      *Kept
}

// spillAt is how much of a new queue file is kept in memory before it is
// written out. A file no bigger is written with one write, its size
// record already in place.
const spillAt = 64 << 10

// NewFile creates an embryonic queue file in queue and names it by its
// queue ID. The caller writes the envelope and content and then commits.
func (s *Spool) NewFile(queue string, now time.Time) (*File, error) {
	n, err := s.createNamed(queue, now, ModeEmbryonic, true)
	if err != nil {
		return nil, err
	}
	buf, _ := s.buffers.Get().(*[]byte)
	if buf == nil {
		b := make([]byte, 0, spillAt+4<<10)
		buf = &b
	}
	return &File{ID: n.id, Queue: queue, Path: s.Path(queue, n.id), sp: s, f: n.f, buf: buf,
		recycled: n.recycled, oldSize: n.oldSize, spare: n.spare, mode: n.mode, fi: n.fi}, nil
}

// CreateNamed creates a new file in queue with mode perm and names it by
// its queue ID, as Postfix does: the file is made without a valid ID's
// name (so scanners skip it), its inode gives the ID, and a link to the
// ID names it; a link never replaces an existing file. The caller writes
// the file and makes it ready. sendmail's maildrop writer uses it too.
//
// Where the system allows, the file is made with no name at all
// (O_TMPFILE) and linked once: one directory change instead of three (a
// temporary name made, linked, removed), on the path of every message.
// Elsewhere it gets a temporary name, as Postfix's files do.
func (s *Spool) CreateNamed(queue string, now time.Time, perm fs.FileMode) (*os.File, string, error) {
	n, err := s.createNamed(queue, now, perm, false)
	return n.f, n.id, err
}

// named is a new file createNamed made: open, named id in its queue.
// recycled says it was taken from recycle/ (reuse): it is still there,
// at spare, with permissions mode, to be renamed to its queue ID when it
// is complete, and cut to its new length if it is longer than oldSize.
type named struct {
	f        *os.File
	id       string
	fi       fs.FileInfo
	recycled bool
	oldSize  int64
	spare    string
	mode     fs.FileMode
}

// createNamed is CreateNamed; with reuse, a file kept in recycle/ is
// taken when there is one.
func (s *Spool) createNamed(queue string, now time.Time, perm fs.FileMode, reuse bool) (named, error) {
	if reuse && perm == ModeEmbryonic {
		if e, path, ok := s.reuse(); ok {
			// Named by its inode and the time now, as any new file;
			// no live file has its inode, so no other has its name.
			return named{f: e.f, id: s.idFor(now, e.fi), fi: e.fi, recycled: true, oldSize: e.size, spare: path, mode: e.mode}, nil
		}
	}
	dir := filepath.Join(s.Root, queue)
	if f, link, ok := createUnnamed(dir, perm); ok {
		id, fi, err := s.name(f, queue, now, link)
		if err == nil {
			return named{f: f, id: id, fi: fi}, nil
		}
		f.Close()
		if !errors.Is(err, errNoUnnamed) {
			return named{}, err
		}
	}
	f, id, fi, err := s.createTemp(queue, now, perm)
	return named{f: f, id: id, fi: fi}, err
}

// createTemp is CreateNamed through a named temporary file.
func (s *Spool) createTemp(queue string, now time.Time, perm fs.FileMode) (*os.File, string, fs.FileInfo, error) {
	dir := filepath.Join(s.Root, queue)
	tmp := filepath.Join(dir, fmt.Sprintf("%d.%d.%d", now.UnixMicro(), os.Getpid(), s.tmpSeq.Add(1)))
	f, err := OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, "", nil, fmt.Errorf("spool: create queue file in %s: %w", queue, err)
	}
	id, fi, err := s.name(f, queue, now, func(name string) error { return os.Link(tmp, name) })
	os.Remove(tmp)
	if err != nil {
		f.Close()
		return nil, "", nil, err
	}
	return f, id, fi, nil
}

// name links f, just created in queue, under its queue ID with link,
// and returns the ID. The ID comes from the time of naming and the inode,
// as Postfix's does; the inode is unique among live files, so the name is
// free unless something outside sluice made it: then the next
// microsecond is tried. f's FileInfo is returned too.
func (s *Spool) name(f *os.File, queue string, now time.Time, link func(name string) error) (string, fs.FileInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return "", nil, fmt.Errorf("spool: stat new queue file: %w", err)
	}
	var id string
	for try := 0; ; try++ {
		id = s.idFor(now.Add(time.Duration(try)*time.Microsecond), fi)
		err = link(s.Path(queue, id))
		if err == nil || !errors.Is(err, fs.ErrExist) || try > 10 {
			break
		}
	}
	if err != nil {
		if errors.Is(err, errNoUnnamed) {
			return "", nil, err
		}
		return "", nil, fmt.Errorf("spool: name new queue file: %w", err)
	}
	return id, fi, nil
}

// idFor is the queue ID of a file with fi's inode named at t.
func (s *Spool) idFor(t time.Time, fi fs.FileInfo) string {
	if s.LongIDs {
		return LongID(t, s.inodeOf(fi))
	}
	return ShortID(t, s.inodeOf(fi))
}

// MoveTo makes queue the uncommitted file's queue: a file not in a queue
// yet (a recycled one) is renamed into queue by Commit; one in its queue
// already is moved now, embryonic.
func (q *File) MoveTo(queue string) error {
	if q.done {
		return errors.New("spool: queue file already committed or aborted")
	}
	if q.spare == "" {
		if err := q.sp.Move(q.ID, q.Queue, queue); err != nil {
			return err
		}
	}
	q.Queue, q.Path = queue, q.sp.Path(queue, q.ID)
	return nil
}

// releaseBuffer gives the file's buffer back for the next new file.
func (q *File) releaseBuffer() {
	if q.buf == nil {
		return
	}
	*q.buf = (*q.buf)[:0]
	q.sp.buffers.Put(q.buf)
	q.buf = nil
}

// appended accounts for bytes appended to the buffer, and writes the
// buffer out when it is full.
func (q *File) appended(n int) {
	q.off += int64(n)
	if len(*q.buf) >= spillAt {
		q.spill()
	}
}

// spill writes out what the buffer holds.
func (q *File) spill() {
	if q.err == nil && len(*q.buf) > 0 {
		// At its offset, not the descriptor's: a recycled file's
		// descriptor may come open from its last message (Kept), its
		// position at that one's end.
		_, q.err = q.f.WriteAt(*q.buf, q.off-int64(len(*q.buf)))
	}
	q.spilled = true
	*q.buf = (*q.buf)[:0]
}

func (q *File) put(typ byte, data string) {
	n := len(*q.buf)
	*q.buf = AppendRecordString(*q.buf, typ, data)
	q.appended(len(*q.buf) - n)
}

func (q *File) putBytes(typ byte, data []byte) {
	n := len(*q.buf)
	*q.buf = AppendRecord(*q.buf, typ, data)
	q.appended(len(*q.buf) - n)
}

// WriteEnvelope writes the envelope records and the content marker.
func (q *File) WriteEnvelope(e *NewEnvelope) error {
	q.size.RcptCount = int64(len(e.Recipients))
	q.size.SMTPUTF8 = e.SMTPUTF8
	q.size.QmgrFlags = e.QmgrFlags
	q.put(RecSize, SizeRecord{}.Format())
	q.put(RecTime, fmt.Sprintf("%d %d", e.Arrival.Unix(), e.Arrival.Nanosecond()/1000))
	ct := e.CreateTime
	if ct.IsZero() {
		ct = e.Arrival
	}
	q.put(RecAttr, "create_time="+strconv.FormatInt(ct.Unix(), 10))
	for _, a := range e.Attrs {
		q.put(RecAttr, a.Name+"="+a.Value)
	}
	// DSN data as Postfix 3.x's cleanup stores it: named attributes
	// before the sender, and notify_flags before each recipient's
	// dsn_orig_rcpt.
	if e.DSNEnvID != "" {
		q.put(RecAttr, "envelope_id="+e.DSNEnvID)
	}
	if e.DSNRet != 0 {
		q.put(RecAttr, "ret_flags="+strconv.Itoa(e.DSNRet))
	}
	if e.FullName != "" {
		q.put(RecFullName, e.FullName)
	}
	q.put(RecSender, e.Sender)
	if !e.WarnTime.IsZero() {
		q.put(RecWarn, fmt.Sprintf("%15d", e.WarnTime.Unix()))
	}
	for _, r := range e.Recipients {
		if r.Notify != 0 {
			q.put(RecAttr, "notify_flags="+strconv.Itoa(r.Notify))
		}
		if r.DSNOrig != "" {
			q.put(RecAttr, "dsn_orig_rcpt="+r.DSNOrig)
		}
		if r.Orig != "" {
			q.put(RecOrigRcpt, r.Orig)
		}
		q.put(RecRcpt, r.Address)
	}
	q.put(RecMesg, "")
	q.size.DataOffset = q.off
	q.inBody = true
	return nil
}

// WriteLine writes one content line, without its line terminator,
// splitting it into L records at LineLengthLimit.
func (q *File) WriteLine(line []byte) {
	for len(line) > LineLengthLimit {
		q.putBytes(RecCont, line[:LineLengthLimit])
		line = line[LineLengthLimit:]
	}
	q.putBytes(RecNorm, line)
}

// WriteCont writes part as one continued-line record (RecCont): the
// first LineLengthLimit bytes of a line whose end has not been read yet.
// A writer that streams long lines calls it for each full piece that is
// sure not to be the line's last, then WriteLine for the rest; the
// records are those WriteLine writes for the whole line.
func (q *File) WriteCont(part []byte) {
	q.putBytes(RecCont, part)
}

// ContentLen returns the bytes of content written so far, as counted in
// the size record (record framing included, newlines not).
func (q *File) ContentLen() int64 { return q.off - q.size.DataOffset }

// Commit ends the content, writes the extracted segment (extracted
// recipients, e.g. from sendmail -t, may be given), patches the size
// record, makes the file ready (mode 0700), and syncs the file and its
// directory. Only after Commit returns nil may the message be
// acknowledged.
func (q *File) Commit(extracted ...NewRecipient) error {
	return q.commit(extracted, syncAll)
}

// CommitNoDirSync is Commit without the directory sync, for callers that
// commit several files and then sync the directory once (group commit).
// The caller must call Spool.SyncQueueDir before acknowledging any of
// them.
func (q *File) CommitNoDirSync(extracted ...NewRecipient) error {
	return q.commit(extracted, syncFile)
}

// CommitNoSync is Commit without any sync: the file is complete and
// ready but neither it nor its directory entry is known to be on disk.
// The caller must make them durable (Spool.SyncFS) before acknowledging.
func (q *File) CommitNoSync(extracted ...NewRecipient) error {
	return q.commit(extracted, syncNone)
}

// How much of a commit commit syncs.
const (
	syncNone = iota // nothing; the caller syncs the file system
	syncFile        // the file; the caller syncs the directory
	syncAll         // the file and its directory
)

func (q *File) commit(extracted []NewRecipient, how int) error {
	if q.done {
		return errors.New("spool: queue file already committed or aborted")
	}
	q.size.MessageLen = q.off - q.size.DataOffset
	q.size.ContentLen = q.size.MessageLen
	q.put(RecXtra, "")
	for _, r := range extracted {
		if r.Orig != "" {
			q.put(RecOrigRcpt, r.Orig)
		}
		q.put(RecRcpt, r.Address)
	}
	q.size.RcptCount += int64(len(extracted))
	q.put(RecEnd, "")
	hdr := AppendRecordString(nil, RecSize, q.size.Format())
	whole := !q.spilled
	if whole {
		// The whole file is in the buffer: its size record, written
		// first as a placeholder of the same length, is filled in
		// there, and the file goes out in one write.
		copy(*q.buf, hdr)
		if q.KeepImage {
			q.image = append([]byte(nil), *q.buf...)
		}
	}
	q.spill()
	q.releaseBuffer()
	if q.err != nil {
		return q.fail(q.err)
	}
	if !whole {
		if _, err := q.f.WriteAt(hdr, 0); err != nil {
			return q.fail(err)
		}
	}
	if q.recycled && (q.oldSize < 0 || q.oldSize > q.off) {
		if err := q.f.Truncate(q.off); err != nil {
			return q.fail(err)
		}
	}
	if q.spare == "" || q.mode != ModeReady {
		if err := q.f.Chmod(ModeReady); err != nil {
			return q.fail(err)
		}
	}
	if q.spare != "" {
		// Complete and ready: now it may have its name in its queue.
		if err := renameNoReplace(q.spare, q.Path); err != nil {
			return q.fail(err)
		}
		q.spare = ""
	}
	if !q.sp.NoSync && how != syncNone {
		if err := q.f.Sync(); err != nil {
			return q.fail(err)
		}
	}
	if q.image != nil {
		// Kept with its descriptor open, while not too many are.
		q.kept = &Kept{Image: q.image, sp: q.sp, fi: q.fi}
		if q.sp.kept.Add(1) <= keptMax {
			q.kept.f = q.f
		} else {
			q.sp.kept.Add(-1)
		}
	}
	if q.kept == nil || q.kept.f == nil {
		if err := q.f.Close(); err != nil {
			q.f = nil
			return q.fail(err)
		}
	}
	q.f = nil
	if how == syncAll {
		if err := q.sp.syncDir(filepath.Dir(q.Path)); err != nil {
			return q.fail(err)
		}
	}
	q.done = true
	return nil
}

// SyncQueueDir syncs a queue directory.
func (s *Spool) SyncQueueDir(queue string) error {
	return s.syncDir(filepath.Join(s.Root, queue))
}

// Image is the whole file as Commit wrote it, when KeepImage was set
// and the file was small enough to be written in one piece; else nil.
// The queue manager reads a new message from it rather than from disk.
func (q *File) Image() []byte { return q.image }

// Kept is what Commit kept of the file for its reader (the image, and the
// file left open), when KeepImage was set and the file was small enough;
// else nil. The caller owns it from then on and must close it.
func (q *File) Kept() *Kept {
	k := q.kept
	q.kept = nil
	return k
}

func (q *File) fail(err error) error {
	q.Abort()
	return fmt.Errorf("spool: write queue file %s: %w", q.ID, err)
}

// Abort removes an uncommitted queue file.
func (q *File) Abort() {
	if q.done {
		return
	}
	q.done = true
	q.image = nil
	q.kept.Close()
	q.kept = nil
	q.releaseBuffer()
	if q.f != nil {
		q.f.Close()
	}
	if q.spare != "" {
		// Never named: what is left is the kept file, half rewritten.
		os.Remove(q.spare)
		return
	}
	os.Remove(q.Path)
}
