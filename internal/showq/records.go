package showq

import (
	"errors"
	"fmt"
	"syscall"

	"sluice/internal/spool"
)

// recReader reads the records of one queue file through a window that the
// worker owns and reuses from file to file, so listing 100,000 messages
// does not allocate a read buffer per message. It follows the framing of
// spool.Reader (reference §2.1): type byte, little-endian base-128
// length, data; p records are followed, w records skipped, and nothing
// after E is read. Unlike spool.Reader it never allocates per file, and a
// seek (the jump over the content) costs no read until data is needed.
type recReader struct {
	fd        int
	size      int64
	buf       []byte // window: file bytes from bufOff
	bufOff    int64
	off       int64 // offset of the next record
	backJumps int
	done      bool
}

// errTruncated marks a record that runs past the end of the file.
var errTruncated = errors.New("premature end of file")

func (r *recReader) reset(fd int, size int64, buf []byte) {
	*r = recReader{fd: fd, size: size, buf: buf[:0]}
}

// window returns the n bytes at off, reading them into the window when it
// does not hold them. It returns fewer than n bytes only at the end of
// the file.
func (r *recReader) window(off int64, n int) ([]byte, error) {
	if rem := r.size - off; int64(n) > rem {
		n = int(max(rem, 0)) // near the end: ask only for what is there
	}
	if off >= r.bufOff && off+int64(n) <= r.bufOff+int64(len(r.buf)) {
		s := off - r.bufOff
		return r.buf[s : s+int64(n)], nil
	}
	// Read 16 KB at a time, more only for a record that needs it: the
	// whole of a typical queue file, the envelope of a large one.
	want := max(n, 16<<10)
	if rem := r.size - off; int64(want) > rem {
		want = int(max(rem, 0))
	}
	if cap(r.buf) < want {
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	got := 0
	for got < want {
		m, err := syscall.Pread(r.fd, r.buf[got:], off+int64(got))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			r.buf, r.bufOff = r.buf[:0], 0
			return nil, fmt.Errorf("read at offset %d: %w", off+int64(got), err)
		}
		if m == 0 {
			break // the file shrank since it was opened
		}
		got += m
	}
	r.buf, r.bufOff = r.buf[:got], off
	return r.buf[:min(n, got)], nil
}

// next returns the next record's type and data; the data is valid until
// the next call. At the end (after E, or at the end of the file when
// there is no E) it returns type 0 and a nil error only after E; a file
// that ends without E, or a damaged record, gives an error.
func (r *recReader) next() (byte, []byte, error) {
	for {
		if r.done {
			return 0, nil, nil
		}
		off := r.off
		if off >= r.size {
			return 0, nil, errTruncated
		}
		hdr, err := r.window(off, 6)
		if err != nil {
			return 0, nil, err
		}
		if len(hdr) < 2 {
			return 0, nil, errTruncated
		}
		typ := hdr[0]
		var length uint64
		var shift uint
		i := 1
		for ; ; i++ {
			if i >= len(hdr) {
				return 0, nil, errTruncated
			}
			b := hdr[i]
			length |= uint64(b&0x7f) << shift
			if b&0x80 == 0 {
				break
			}
			if shift += 7; shift > 28 {
				return 0, nil, fmt.Errorf("record length too long at offset %d", off)
			}
		}
		dataOff := off + int64(i) + 1
		if length > spool.MaxRecordLen || dataOff+int64(length) > r.size {
			return 0, nil, fmt.Errorf("record at offset %d (type %d, length %d) runs past the end of the file", off, typ, length)
		}
		data, err := r.window(dataOff, int(length))
		if err != nil {
			return 0, nil, err
		}
		if len(data) < int(length) {
			return 0, nil, errTruncated
		}
		r.off = dataOff + int64(length)
		switch typ {
		case spool.RecDTXT:
			continue
		case spool.RecPtr:
			target, ok := atol(data)
			if !ok || target < 0 {
				return 0, nil, fmt.Errorf("bad pointer record at offset %d", off)
			}
			if target == 0 {
				continue // a placeholder that was never used
			}
			if target < r.off {
				// Postfix allows this many backward jumps, so a loop of
				// pointers ends with an error.
				if r.backJumps++; r.backJumps > 10000 {
					return 0, nil, fmt.Errorf("too many pointer jumps")
				}
			}
			r.off = target
			continue
		case spool.RecEnd:
			r.done = true
		}
		return typ, data, nil
	}
}

// skip moves the next read n bytes forward, as showq does to jump over
// the message content.
func (r *recReader) skip(n int64) {
	if n > r.size-r.off {
		r.off = r.size // the next read reports the end of the file
		return
	}
	r.off += n
}

// atol parses a decimal number the way C's atol/sscanf("%ld") do: leading
// white space, an optional sign, then digits up to the first non-digit.
// ok is false when there are no digits. Values beyond int64 saturate.
func atol(b []byte) (int64, bool) {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	start := i
	var n int64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := int64(b[i] - '0')
		if n > (1<<63-1-d)/10 {
			if neg {
				return -1 << 63, true
			}
			return 1<<63 - 1, true
		}
		n = n*10 + d
	}
	if neg {
		n = -n
	}
	return n, i > start
}

// isSpace is C's isspace() in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
