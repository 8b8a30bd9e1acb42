package postcat

import (
	"errors"
	"io"
	"syscall"
)

const inputBufSize = 64 << 10

// stream is buffered input with the behaviour of Postfix's VSTREAM that
// postcat's output depends on: offsets come from the kernel position less
// what is still buffered, seeks on a pipe fail with ESPIPE (and the
// position of a pipe is unknown, -1), reaching the end or failing to read
// both look like EOF to the reader, and a read error is remembered for
// the close.
type stream struct {
	name   string
	r      io.Reader
	seeker io.Seeker // nil when the input cannot seek
	buf    []byte
	pos    int   // next unread byte in buf
	end    int   // end of valid data in buf
	off    int64 // input position just after buf[end-1]
	eof    bool  // sticky until the next seek, as VSTREAM's EOF flag is
	err    error // first read error
}

// newStream wraps r. It is seekable when it can tell its position.
func newStream(name string, r io.Reader) *stream {
	s := &stream{name: name, r: r, buf: make([]byte, inputBufSize)}
	if sk, ok := r.(io.Seeker); ok {
		if off, err := sk.Seek(0, io.SeekCurrent); err == nil {
			s.seeker, s.off = sk, off
		}
	}
	return s
}

func (s *stream) fill() bool {
	if s.eof {
		return false
	}
	for {
		n, err := s.r.Read(s.buf)
		if n > 0 {
			s.pos, s.end = 0, n
			s.off += int64(n)
			return true
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && s.err == nil {
				s.err = err
			}
			s.eof = true
			return false
		}
	}
}

// getc returns the next byte, or -1 at the end of the input.
func (s *stream) getc() int {
	if s.pos >= s.end && !s.fill() {
		return -1
	}
	c := s.buf[s.pos]
	s.pos++
	return int(c)
}

// ungetc puts back the byte getc just returned.
func (s *stream) ungetc() { s.pos-- }

// read appends up to n bytes to dst and returns it; fewer means the input
// ended. It never reserves more than it has read, so a record that claims
// to be two gigabytes long costs only what the file holds.
func (s *stream) read(dst []byte, n int64) []byte {
	for n > 0 {
		if s.pos >= s.end && !s.fill() {
			break
		}
		k := int64(s.end - s.pos)
		if k > n {
			k = n
		}
		dst = append(dst, s.buf[s.pos:s.pos+int(k)]...)
		s.pos += int(k)
		n -= k
	}
	return dst
}

// tell returns the offset of the next byte, or -1 when the input cannot
// seek.
func (s *stream) tell() int64 {
	if s.seeker == nil {
		return -1
	}
	return s.off - int64(s.end-s.pos)
}

// seek moves to off from the start. A target inside the buffer costs no
// system call; any other goes to the kernel, whose errors (EINVAL for a
// negative or impossibly large offset) postcat reports.
func (s *stream) seek(off int64) error {
	if s.seeker == nil {
		return syscall.ESPIPE
	}
	if start := s.off - int64(s.end); off >= start && off <= s.off {
		s.pos = int(off - start)
		s.eof = false
		return nil
	}
	if _, err := s.seeker.Seek(off, io.SeekStart); err != nil {
		return err
	}
	s.pos, s.end, s.off, s.eof = 0, 0, off, false
	return nil
}

// seekEnd moves to the end of the input.
func (s *stream) seekEnd() error {
	if s.seeker == nil {
		return syscall.ESPIPE
	}
	off, err := s.seeker.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	s.pos, s.end, s.off, s.eof = 0, 0, off, false
	return nil
}
