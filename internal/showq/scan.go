package showq

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"sluice/internal/spool"
)

// Options shape a scan. DefaultOptions returns Postfix's defaults.
type Options struct {
	// Queues to list, in order; nil means maildrop, active, incoming,
	// deferred, hold (showq's order).
	Queues []string
	// EmptyAddress replaces the null sender and empty recipients
	// (empty_address_recipient).
	EmptyAddress string
	// DupFilterLimit caps how many defer-log addresses are remembered to
	// keep the queue file's recipients from being listed twice
	// (duplicate_filter_limit).
	DupFilterLimit int
	// UTF8 keeps UTF-8 text when making it printable (smtputf8_enable).
	UTF8 bool
	// Workers read files in parallel; 0 picks a number from the CPUs.
	Workers int
	// Warn receives warnings about files that cannot be listed or are
	// damaged, without a trailing newline, in scan order. May be nil.
	Warn func(msg string)
}

// DefaultOptions returns the options of a Postfix 3.7 installation with
// an empty main.cf at compatibility level 1 or higher.
func DefaultOptions() Options {
	return Options{EmptyAddress: "MAILER-DAEMON", DupFilterLimit: 1000, UTF8: true}
}

// Scan lists the messages of sp's queues in showq's order: queue by queue
// (maildrop, active, incoming, deferred, hold), each in raw directory
// order. Files are read in parallel, but emit is called on the calling
// goroutine, in order. A file that vanishes during the scan is skipped;
// a damaged one is reported through Warn and listed as far as Postfix
// would list it, or skipped. Scan stops early only when emit returns an
// error or a queue directory cannot be read.
func Scan(sp *spool.Spool, opt Options, emit func(*Message) error) error {
	queues := opt.Queues
	if queues == nil {
		queues = spool.MessageQueues
	}
	var entries []spool.Entry
	for _, q := range queues {
		e, err := sp.List(q)
		if err != nil {
			return err
		}
		entries = append(entries, e...)
	}
	return ScanEntries(sp, entries, opt, emit)
}

// ScanEntries lists the given entries, in their order, as Scan does.
func ScanEntries(sp *spool.Spool, entries []spool.Entry, opt Options, emit func(*Message) error) error {
	workers := opt.Workers
	if workers <= 0 {
		// Reading is mostly system calls; a few more goroutines than
		// CPUs keep the disk busy when the files are not cached.
		workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	rd := newFileReader(sp, &opt)
	defer rd.close()
	work := func(e spool.Entry) (result, bool) {
		w := rd.get()
		r := w.read(e)
		rd.put(w)
		return r, r.msg != nil || len(r.warnings) > 0
	}
	return spool.ForEach(entries, workers, work, func(e spool.Entry, r result) error {
		if opt.Warn != nil {
			for _, s := range r.warnings {
				opt.Warn(s)
			}
		}
		if r.msg == nil {
			return nil
		}
		return emit(r.msg)
	})
}

// fileReader reads queue files for a listing: the open directories are
// shared, the workers (with their buffers) are reused.
type fileReader struct {
	dirs *dirCache
	pool sync.Pool
}

func newFileReader(sp *spool.Spool, opt *Options) *fileReader {
	dirs := &dirCache{root: sp.Root, fds: map[string]dirFD{}}
	rd := &fileReader{dirs: dirs}
	rd.pool.New = func() any {
		return &worker{sp: sp, opt: opt, dirs: dirs, disp: newDisplayer(opt.EmptyAddress, opt.UTF8)}
	}
	return rd
}

func (rd *fileReader) get() *worker  { return rd.pool.Get().(*worker) }
func (rd *fileReader) put(w *worker) { rd.pool.Put(w) }
func (rd *fileReader) close()        { rd.dirs.close() }

// dirCache holds open queue directories, so that each file is found by
// one name relative to its directory rather than by walking its whole
// path again; with 100,000 files the path walks are a good part of the
// time spent in the kernel.
type dirCache struct {
	root string
	mu   sync.Mutex
	fds  map[string]dirFD
}

type dirFD struct {
	fd  int
	err error
}

// fd returns the descriptor of the directory rel (relative to the root).
func (d *dirCache) fd(rel string) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f, ok := d.fds[rel]; ok {
		return f.fd, f.err
	}
	fd, err := syscall.Open(d.root+"/"+rel, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		fd = -1
	}
	d.fds[rel] = dirFD{fd, err}
	return fd, err
}

func (d *dirCache) close() {
	for _, f := range d.fds {
		if f.fd >= 0 {
			syscall.Close(f.fd)
		}
	}
}

// result is what reading one entry gives: a message, warnings, or both.
type result struct {
	msg      *Message
	warnings []string
}

// worker holds the buffers one reading goroutine reuses.
type worker struct {
	sp     *spool.Spool
	opt    *Options
	dirs   *dirCache
	disp   displayer
	logBuf []byte // defer log
	file   spool.FD
	rr     spool.Reader // one per worker: its window is reused
	rcpts  []Recipient  // of the message being read
	seen   addrSet
	strs   map[string]string // interned log texts
	warns  []string
	name   []byte           // room for a NUL-terminated file name
	fields []spool.LogField // room for a defer-log entry's fields
}

func (w *worker) warnf(format string, args ...any) {
	w.warns = append(w.warns, fmt.Sprintf(format, args...))
}

// read lists one queue file the way showq does (reference §4.1).
func (w *worker) read(e spool.Entry) result {
	w.warns = nil
	var st syscall.Stat_t
	dfd, ok := w.lookup(e, &st)
	if !ok {
		return result{warnings: w.warns}
	}
	return result{msg: w.readFile(e, dfd, &st), warnings: w.warns}
}

// lookup finds e's file: it fills st (lstat) and returns the descriptor
// of its directory, or false when there is nothing to read.
func (w *worker) lookup(e spool.Entry, st *syscall.Stat_t) (int, bool) {
	// showq opens a file by the path its queue and ID map to, so a file
	// in the wrong hash directory, or in a subdirectory of an unhashed
	// queue, is not listed.
	if e.Rel != w.sp.RelPath(e.Queue, e.ID) {
		return -1, false
	}
	slash := strings.LastIndexByte(e.Rel, '/')
	dfd, err := w.dirs.fd(e.Rel[:slash])
	if err != nil {
		if err != syscall.ENOENT {
			w.warnf("%s: %v", e.Rel[:slash], err)
		}
		return -1, false
	}
	// Look before opening, as Postfix does: only a complete regular file
	// is opened (never a device or a FIFO someone left in the queue).
	if w.name, err = spool.Lstatat(dfd, e.ID, st, w.name); err != nil {
		if err != syscall.ENOENT {
			w.warnf("%s: %v", e.Rel, err)
		}
		return -1, false
	}
	return dfd, true
}

// readFile reads the file e, found in dfd with the status st.
func (w *worker) readFile(e spool.Entry, dfd int, st *syscall.Stat_t) *Message {
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		w.warnf("%s: uid %d: not a regular file", e.Rel, st.Uid)
		return nil
	}
	if st.Mode&0o700 != 0o700 {
		return nil // still being written
	}
	// O_NOATIME: a deferred file's atime and mtime are its next attempt
	// time, in the future, so under relatime every read would write its
	// inode. Only the owner (or root) may ask; others read normally.
	fd, name, err := spool.Openat(dfd, e.ID, spool.ScanOpenFlags|syscall.O_NOATIME, w.name)
	if err == syscall.EPERM {
		fd, name, err = spool.Openat(dfd, e.ID, spool.ScanOpenFlags, name)
	}
	w.name = name
	if err != nil {
		if err != syscall.ENOENT {
			w.warnf("open %s %s: %v", e.Queue, e.ID, err)
		}
		return nil
	}
	defer spool.CloseFD(fd)
	w.file.Fd = fd
	w.rr.Reset(&w.file, st.Size)

	var (
		arrival int64
		size    = st.Size
		sizeOK  bool
		m       *Message
	)
	for {
		rec, err := w.rr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if m != nil || !errors.Is(err, spool.ErrTruncated) {
				w.warnf("%s: %v", e.ID, err)
			} else {
				w.warnf("%s: %v (no sender record)", e.ID, err)
			}
			break
		}
		typ, data := rec.Type, cString(rec.Data)
		switch typ {
		case spool.RecTime:
			if arrival == 0 {
				arrival, _ = spool.Atol(data)
			}
		case spool.RecSize:
			if sizeOK {
				break
			}
			if onlyDigitsAndSpaces(data) {
				size, _ = spool.Atol(data)
				sizeOK = size >= 0
			}
			if !sizeOK {
				w.warnf("%s: malformed size record: %.100s -- using file size instead", e.ID, w.disp.text(data))
				size = st.Size
			}
		case spool.RecSender:
			if m != nil {
				w.warnf("%s: duplicate sender address: %s -- skipping remainder of this file", e.ID, w.disp.address(data))
				return w.finish(m)
			}
			m = &Message{
				Queue:        e.Queue,
				ID:           e.ID,
				Arrival:      arrival,
				Size:         size,
				ForcedExpire: st.Mode&uint32(spool.ModeExpire) != 0,
				Sender:       w.disp.address(data),
				MTime:        time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)),
				Mode:         fs.FileMode(st.Mode & 0o7777),
			}
			if arrival <= 0 {
				m.Arrival = int64(st.Mtim.Sec)
			}
			w.readDeferLog(m)
		case spool.RecRcpt:
			if m == nil {
				// Postfix's showq cannot list this either (its client
				// gives up with "malformed showq server response").
				w.warnf("%s: recipient record before sender record -- skipping this file", e.ID)
				return nil
			}
			if addr := w.disp.addressBytes(data); !w.seen.has(addr) {
				w.rcpts = append(w.rcpts, Recipient{Address: string(addr)})
			}
		case spool.RecMesg:
			if sizeOK {
				w.rr.SeekTo(w.rr.Offset() + size)
			}
		}
	}
	return w.finish(m)
}

// finish gives m the recipients collected for it, in a slice of their
// exact number.
func (w *worker) finish(m *Message) *Message {
	if m != nil && len(w.rcpts) > 0 {
		m.Recipients = append([]Recipient(nil), w.rcpts...)
	}
	clear(w.rcpts)
	w.rcpts = w.rcpts[:0]
	return m
}

// readDeferLog adds the recipients of m's defer log, if it has one, and
// remembers their addresses so the queue file's records for them are not
// listed again.
func (w *worker) readDeferLog(m *Message) {
	w.seen.reset(false, 0)
	dfd, err := w.dirs.fd(w.sp.Dir(spool.Defer, m.ID))
	var fd int
	if err == nil {
		fd, w.name, err = spool.Openat(dfd, m.ID, spool.ScanOpenFlags, w.name)
	}
	if err != nil {
		if err != syscall.ENOENT {
			w.warnf("%s: open defer log: %v", m.ID, err)
		}
		return
	}
	buf := w.logBuf[:0]
	for {
		if cap(buf)-len(buf) < 4096 {
			buf = append(buf, make([]byte, max(8192, cap(buf)))...)[:len(buf)]
		}
		want := cap(buf) - len(buf)
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			w.warnf("%s: read defer log: %v", m.ID, err)
			break
		}
		buf = buf[:len(buf)+n]
		if n < want {
			// A regular file reads short only at its end; this saves
			// the read that would return 0.
			break
		}
	}
	syscall.Close(fd)
	w.logBuf = buf[:0]
	w.seen.reset(true, w.opt.DupFilterLimit)
	w.fields = parseDeferLog(buf, w.opt.UTF8, w.fields, func(le *logEntry) {
		addr := string(le.addr)
		w.rcpts = append(w.rcpts, Recipient{
			Address: addr,
			Reason:  w.intern(le.reason),
			Status:  w.intern(le.status),
			Action:  w.intern(le.action),
			Logged:  true,
		})
		w.seen.add(addr)
	})
}

// logEntries returns the entries of the defer log of id, as readFile
// lists them, and whether they could be read without a warning. They
// are valid until the worker's next use.
func (w *worker) logEntries(queue, id string) ([]Recipient, bool) {
	w.warns = nil
	clear(w.rcpts)
	w.rcpts = w.rcpts[:0]
	w.readDeferLog(&Message{Queue: queue, ID: id})
	return w.rcpts, len(w.warns) == 0
}

// intern returns b as a string, shared with earlier equal ones: a queue
// holds a few reasons, statuses and actions many times over.
func (w *worker) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := w.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if w.strs == nil {
		w.strs = make(map[string]string)
	} else if len(w.strs) >= 4096 {
		clear(w.strs) // keeps its room: reasons that all differ come often
	}
	w.strs[s] = s
	return s
}

func onlyDigitsAndSpaces(b []byte) bool {
	for _, c := range b {
		if c != ' ' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// addrSet is showq's duplicate filter: the defer-log addresses of one
// message, at most limit of them. It is inactive (contains nothing) for a
// message without a defer log.
type addrSet struct {
	active bool
	limit  int
	small  []string
	big    map[string]struct{}
}

func (s *addrSet) reset(active bool, limit int) {
	s.active, s.limit = active, limit
	clear(s.small)
	s.small = s.small[:0]
	if s.big != nil {
		clear(s.big)
	}
}

func (s *addrSet) len() int { return len(s.small) + len(s.big) }

func (s *addrSet) has(a []byte) bool {
	if !s.active {
		return false
	}
	for _, x := range s.small {
		if x == string(a) {
			return true
		}
	}
	if len(s.big) > 0 {
		_, ok := s.big[string(a)]
		return ok
	}
	return false
}

// hasString is has for a string.

func (s *addrSet) hasString(a string) bool {
	if !s.active {
		return false
	}
	for _, x := range s.small {
		if x == a {
			return true
		}
	}
	if len(s.big) > 0 {
		_, ok := s.big[a]
		return ok
	}
	return false
}

func (s *addrSet) add(a string) {
	if s.limit > 0 && s.len() >= s.limit || s.hasString(a) {
		return
	}
	if len(s.small) < 16 {
		s.small = append(s.small, a)
		return
	}
	if s.big == nil {
		s.big = make(map[string]struct{})
	}
	s.big[a] = struct{}{}
}
