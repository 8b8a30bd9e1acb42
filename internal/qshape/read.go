package qshape

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"

	"sluice/internal/spool"
)

// message is what qshape takes from one queue file. The addresses live
// in the reading worker's buffers until the next file.
type message struct {
	arrival float64 // seconds since the epoch
	sender  []byte  // the last S record
	rcpts   []byte  // the R records (not D), envelope and extracted, one after another
	ends    []int   // where each recipient ends in rcpts
	// bogus marks a file that passed the name and mode checks but does
	// not begin with C, S or F. The script still counts it as a message,
	// with no arrival time (age: since 1970) and no sender, so with -s it
	// adds a MAILER-DAEMON row.
	bogus bool
}

// recipient returns the i-th recipient.
func (m *message) recipient(i int) []byte {
	start := 0
	if i > 0 {
		start = m.ends[i-1]
	}
	return m.rcpts[start:m.ends[i]]
}

// errSkip marks a file that is not counted and is not damaged either
// (not a queue file name, not ready, vanished, no recipient left).
var errSkip = errors.New("skip")

// maxJumps bounds pointer records followed in one file. The script has
// no bound and loops forever on a pointer cycle; we call the file corrupt.
const maxJumps = 10000

// nameOK is the script's (^|/)[A-Za-z0-9]{6,}$ on a base name: six or
// more letters and digits; like Perl's $, it allows one final newline.
func nameOK(name string) bool {
	if n := len(name); n > 0 && name[n-1] == '\n' {
		name = name[:n-1]
	}
	if len(name) < 6 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// modeOK is the script's ready test: owner rwx, and no write or execute
// bit for group or others. A force-expired file (g+x) fails it.
func modeOK(mode uint32) bool {
	return mode&syscall.S_IFMT == syscall.S_IFREG && mode&0o733 == 0o700
}

// readMessage reads the queue file with the script's acceptance rules
// (reference §5.2) into m, whose buffers it reuses. It returns errSkip
// for files that are not counted for an ordinary reason, and an error
// wrapping spool.ErrCorrupt for files that cannot be parsed (m.bogus
// tells which of those still count).
//
// dirfd, when not -1, is an open descriptor of the file's directory and
// name its name there; otherwise name is the file's path.
func (w *worker) readMessage(dirfd int, name string, m *message) error {
	if dirfd < 0 {
		dirfd = atFDCWD
	}
	fd, nameBuf, err := openat(dirfd, name, w.name)
	w.name = nameBuf
	if err != nil {
		// Gone, a symbolic link, unreadable: the script's lstat or
		// open fails the same way and it moves on silently.
		return errSkip
	}
	defer closeFD(fd)
	var st syscall.Stat_t
	if err := fstat(fd, &st); err != nil || !modeOK(st.Mode) {
		return errSkip
	}
	r := fileReader{fd: fd, size: st.Size, buf: w.buf[:0]}
	err = r.envelope(st.Mtim.Sec, m)
	w.buf = r.buf // keep a window that had to grow
	return err
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", spool.ErrCorrupt, fmt.Sprintf(format, args...))
}

// envelope is the script's walk over a queue file.
func (r *fileReader) envelope(mtime int64, m *message) error {
	*m = message{sender: m.sender[:0], rcpts: m.rcpts[:0], ends: m.ends[:0]}
	typ, data, ok := r.next()
	if !ok {
		m.bogus = true
		return corrupt("empty or unreadable first record")
	}
	var haveTime, haveSender bool
	var contentLen int64 = -1
	switch typ {
	case spool.RecSize:
		contentLen = sizeField(data)
		typ, data, ok = r.next()
		if !ok || typ != spool.RecTime {
			return corrupt("size record not followed by an arrival time")
		}
		m.arrival, haveTime = arrivalField(data)
	case spool.RecSender, spool.RecFullName:
		// A maildrop file of old: no T record, the age comes from
		// the file's modification time.
		m.arrival, haveTime = float64(mtime), true
		if typ != spool.RecSender {
			typ, data, ok = r.next()
			if !ok || typ != spool.RecSender {
				return corrupt("full name not followed by a sender")
			}
		}
		m.sender, haveSender = append(m.sender[:0], data...), true
	default:
		m.bogus = true
		return corrupt("first record type %q is not C, S or F", typ)
	}
	for {
		typ, data, ok := r.next()
		if !ok {
			return corrupt("no end record")
		}
		if typ == spool.RecPtr {
			if err := r.follow(data); err != nil {
				return err
			}
		}
		switch typ {
		case spool.RecRcpt:
			m.rcpts = append(m.rcpts, data...)
			m.ends = append(m.ends, len(m.rcpts))
		case spool.RecSender:
			m.sender, haveSender = append(m.sender[:0], data...), true
		case spool.RecMesg:
			if !haveSender {
				return corrupt("no sender before the content")
			}
			if err := r.skipContent(contentLen); err != nil {
				return err
			}
		case spool.RecEnd:
			if !haveTime || !haveSender {
				return corrupt("no arrival time or no sender")
			}
			if len(m.ends) == 0 {
				return errSkip // every recipient is done
			}
			return nil
		}
	}
}

// skipContent moves past the message content and its X record: by the
// size record's content length when there is one (counted from here, as
// the script seeks relative to the M record), else record by record.
func (r *fileReader) skipContent(contentLen int64) error {
	var typ byte
	var ok bool
	if contentLen >= 0 {
		r.seek(r.pos + contentLen)
		typ, _, ok = r.next()
	} else {
		for {
			var data []byte
			typ, data, ok = r.next()
			if !ok || (typ != spool.RecNorm && typ != spool.RecCont && typ != spool.RecPtr) {
				break
			}
			if typ == spool.RecPtr {
				if err := r.follow(data); err != nil {
					return err
				}
			}
		}
	}
	if !ok || typ != spool.RecXtra {
		return corrupt("content not followed by the extracted segment")
	}
	return nil
}

// follow jumps to the offset of a pointer record when it is positive.
func (r *fileReader) follow(data []byte) error {
	n := ParseNumber(string(data)).F
	if !(n > 0) {
		return nil
	}
	r.jumps++
	if r.jumps > maxJumps {
		return corrupt("more than %d pointer records followed", maxJumps)
	}
	if n >= float64(r.size) {
		r.seek(r.size)
	} else {
		r.seek(int64(n))
	}
	return nil
}

// sizeField is the script's /^\s*(\d+)\s+\d+\s+\d+/ on the size record:
// the first field when at least three numeric fields lead; -1 otherwise.
func sizeField(data []byte) int64 {
	i := 0
	var first int64 = -1
	for f := 0; f < 3; f++ {
		if f > 0 {
			j := i
			for i < len(data) && perlSpace(data[i]) {
				i++
			}
			if i == j {
				return -1
			}
		} else {
			for i < len(data) && perlSpace(data[i]) {
				i++
			}
		}
		j := i
		var v int64
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			if v <= (1<<62)/10 {
				v = v*10 + int64(data[i]-'0')
			} else {
				v = 1 << 62 // far past any file's end
			}
			i++
		}
		if i == j {
			return -1
		}
		if f == 0 {
			first = v
		}
	}
	return first
}

// arrivalField is the script's ($t) = split(/\s+/, $d) used as a number:
// the text up to the first white space, which is "" (the number 0) when
// the data starts with white space. Only empty data gives no time: split
// into a one-element list keeps an empty leading field.
func arrivalField(data []byte) (float64, bool) {
	if len(data) == 0 {
		return 0, false
	}
	i := 0
	for i < len(data) && !perlSpace(data[i]) {
		i++
	}
	if v, err := strconv.ParseInt(string(data[:i]), 10, 64); err == nil {
		return float64(v), true
	}
	return ParseNumber(string(data[:i])).F, true
}

// fileReader reads records the way the script's rec_get does, through a
// window of the file read with pread.
type fileReader struct {
	fd     int
	size   int64
	pos    int64
	buf    []byte // file bytes from bufOff
	bufOff int64
	jumps  int
}

func (r *fileReader) seek(off int64) { r.pos = off }

// fill makes the window hold n bytes at off, or as many as the file has.
func (r *fileReader) fill(off int64, n int) []byte {
	if off >= r.bufOff && off+int64(n) <= r.bufOff+int64(len(r.buf)) {
		s := off - r.bufOff
		return r.buf[s : s+int64(n)]
	}
	if off >= r.size {
		return nil
	}
	want := max(n, 8192)
	if rem := r.size - off; int64(want) > rem {
		want = int(rem)
	}
	if cap(r.buf) < want {
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	got := 0
	for got < want {
		m, err := pread(r.fd, r.buf[got:], off+int64(got))
		if err == syscall.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			break
		}
		got += m
	}
	r.buf, r.bufOff = r.buf[:got], off
	if got < n {
		return r.buf
	}
	return r.buf[:n]
}

func (r *fileReader) getc() (byte, bool) {
	b := r.fill(r.pos, 1)
	if len(b) == 0 {
		return 0, false
	}
	r.pos++
	return b[0], true
}

// next returns the next record. As in the script, a type byte of '0'
// reads as the end, a length that needs more than three varint bytes ends
// the walk, end of file inside the length leaves the length read so far,
// and a short data read ends the walk. The data is valid until the next
// call.
func (r *fileReader) next() (byte, []byte, bool) {
	typ, ok := r.getc()
	if !ok || typ == '0' {
		return 0, nil, false
	}
	l, shift := 0, 0
	for {
		b, ok := r.getc()
		if !ok {
			break
		}
		l |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
		if shift > 14 {
			return 0, nil, false
		}
	}
	if l == 0 {
		return typ, nil, true
	}
	data := r.fill(r.pos, l)
	if len(data) < l {
		r.pos = r.size
		return 0, nil, false
	}
	r.pos += int64(l)
	return typ, data, true
}
