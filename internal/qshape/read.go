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

// scriptReading is how the script reads records: its length rule, and
// pointers followed where its walk follows them, the target read as a
// Perl number.
var scriptReading = spool.ReaderOptions{
	Length:       spool.LengthScript,
	Pointers:     spool.PointersScript,
	PointerValue: pointerValue,
}

// pointerValue is the script's use of a pointer record's data as a
// number: Perl's conversion, positive targets only, far past any file's
// end when huge.
func pointerValue(data []byte) (int64, bool) {
	n := ParseNumber(string(data)).F
	if !(n > 0) {
		return 0, false
	}
	if n >= 1<<62 {
		return 1 << 62, true
	}
	return int64(n), true
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
		dirfd = spool.AtFDCWD
	}
	fd, nameBuf, err := spool.Openat(dirfd, name, spool.ScanOpenFlags, w.name)
	w.name = nameBuf
	if err != nil {
		// Gone, a symbolic link, unreadable: the script's lstat or
		// open fails the same way and it moves on silently.
		return errSkip
	}
	defer spool.CloseFD(fd)
	var st syscall.Stat_t
	if err := spool.Fstat(fd, &st); err != nil || !modeOK(st.Mode) {
		return errSkip
	}
	w.file.Fd = fd
	w.rr.SetOptions(scriptReading)
	w.rr.Reset(&w.file, st.Size)
	return envelope(&w.rr, st.Mtim.Sec, m)
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", spool.ErrCorrupt, fmt.Sprintf(format, args...))
}

// next is the script's rec_get: the next record, or false where its walk
// ends (see spool.LengthScript).
func next(r *spool.Reader) (byte, []byte, bool) {
	rec, err := r.Next()
	if err != nil {
		return 0, nil, false
	}
	return rec.Type, rec.Data, true
}

// envelope is the script's walk over a queue file.
func envelope(r *spool.Reader, mtime int64, m *message) error {
	*m = message{sender: m.sender[:0], rcpts: m.rcpts[:0], ends: m.ends[:0]}
	typ, data, ok := next(r)
	if !ok {
		m.bogus = true
		return corrupt("empty or unreadable first record")
	}
	var haveTime, haveSender bool
	var contentLen int64 = -1
	switch typ {
	case spool.RecSize:
		contentLen = sizeField(data)
		typ, data, ok = next(r)
		if !ok || typ != spool.RecTime {
			return corrupt("size record not followed by an arrival time")
		}
		m.arrival, haveTime = arrivalField(data)
	case spool.RecSender, spool.RecFullName:
		// A maildrop file of old: no T record, the age comes from
		// the file's modification time.
		m.arrival, haveTime = float64(mtime), true
		if typ != spool.RecSender {
			typ, data, ok = next(r)
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
		typ, data, ok := next(r)
		if !ok {
			return corrupt("no end record")
		}
		if typ == spool.RecPtr {
			if err := r.Follow(data); err != nil {
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
			if err := skipContent(r, contentLen); err != nil {
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
func skipContent(r *spool.Reader, contentLen int64) error {
	var typ byte
	var ok bool
	if contentLen >= 0 {
		r.SeekTo(r.Offset() + contentLen)
		typ, _, ok = next(r)
	} else {
		for {
			var data []byte
			typ, data, ok = next(r)
			if !ok || (typ != spool.RecNorm && typ != spool.RecCont && typ != spool.RecPtr) {
				break
			}
			if typ == spool.RecPtr {
				if err := r.Follow(data); err != nil {
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
