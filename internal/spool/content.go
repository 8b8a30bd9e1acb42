package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Content is an open queue file seen the way a delivery agent sees it: the
// envelope, and the message text as the peer should receive it. Reading a
// Content yields the text with LF-terminated lines: an N record is a line,
// L records continue a line that the next N ends (reference §2.4), pointer
// records are followed and padding is skipped, and the text ends at the X
// record. Line endings on the wire (CRLF, dot-stuffing) are the SMTP
// client's business, not this one's.
//
// A Content is an io.ReadCloser, so a delivery agent that needs the text
// twice (a second connection after a failed one) opens it again.
type Content struct {
	Envelope *Envelope
	// Size is the number of bytes Read returns in total: every line's
	// data plus one newline per N record.
	Size int64

	f       *os.File
	shared  bool // ReadContent's: Close leaves f open
	r       *Reader
	pending []byte // rest of the current record's data, owned by r
	newline bool   // a newline is owed after pending
	err     error  // sticky: io.EOF at X, or the first failure
}

// OpenContent opens the queue file at path, reads its envelope and
// measures its text. The caller must Close it.
func OpenContent(path string) (*Content, error) {
	f, err := Open(path)
	if err != nil {
		return nil, fmt.Errorf("spool: open content: %w", err)
	}
	c, err := newContent(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: open content %s: %w", path, err)
	}
	return c, nil
}

// ReadContent is OpenContent for a queue file that is already open (the
// descriptor the daemon passed to sluice local-deliver): it reads f only
// at explicit offsets (pread), so it may be called again for another pass
// over the same f, and Close leaves f open for the caller to close.
func ReadContent(f *os.File) (*Content, error) {
	c, err := newContent(f)
	if err != nil {
		return nil, fmt.Errorf("spool: read content of %s: %w", f.Name(), err)
	}
	c.shared = true
	return c, nil
}

// wholeRead is the size up to which a Content reads its file at once:
// the envelope, the measuring and the text then come from memory, one
// pread instead of one per pass. Most mail is far smaller.
const wholeRead = 128 << 10

// ContentOf is a Content over a queue file's bytes in memory (as
// spool.File.Image keeps them); Close has nothing to release.
func ContentOf(image []byte) (*Content, error) {
	c, err := contentFrom(nil, func() *Reader { return NewBytesReader(image) })
	if err != nil {
		return nil, fmt.Errorf("spool: read content: %w", err)
	}
	return c, nil
}

// ContentWith is ContentOf for an image whose envelope env was read
// already (the queue manager reads it when it takes the message): the
// envelope is not read again.
func ContentWith(image []byte, env *Envelope) (*Content, error) {
	if env == nil || env.ContentOffset < 0 || env.ContentOffset >= int64(len(image)) {
		return ContentOf(image)
	}
	r := NewBytesReader(image)
	size, err := measureContent(r, env.ContentOffset)
	if err != nil {
		return nil, fmt.Errorf("spool: read content: %w", err)
	}
	r = NewBytesReader(image)
	r.SeekTo(env.ContentOffset)
	return &Content{Envelope: env, Size: size, r: r}, nil
}

func newContent(f *os.File) (*Content, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	reader := func() *Reader { return NewReader(f, fi.Size()) }
	if fi.Size() <= wholeRead {
		b := make([]byte, fi.Size())
		if _, err := f.ReadAt(b, 0); err != nil {
			return nil, err
		}
		reader = func() *Reader { return NewBytesReader(b) }
	}
	return contentFrom(f, reader)
}

// contentFrom reads the envelope and measures the text through readers
// of one file, f (nil for one in memory).
func contentFrom(f *os.File, reader func() *Reader) (*Content, error) {
	env, err := ReadEnvelope(reader(), ReadOptions{SkipContent: true})
	if err != nil {
		return nil, err
	}
	if env.ContentOffset < 0 {
		return nil, fmt.Errorf("%w: no message content record", ErrCorrupt)
	}
	size, err := measureContent(reader(), env.ContentOffset)
	if err != nil {
		return nil, err
	}
	r := reader()
	r.SeekTo(env.ContentOffset)
	return &Content{Envelope: env, Size: size, f: f, r: r}, nil
}

// measureContent walks the content records from off to the X record and
// returns the length of the text they make.
func measureContent(r *Reader, off int64) (int64, error) {
	r.SeekTo(off)
	var n int64
	for {
		rec, err := r.Next()
		if err != nil {
			return 0, contentErr(err)
		}
		switch rec.Type {
		case RecNorm:
			n += int64(len(rec.Data)) + 1
		case RecCont:
			n += int64(len(rec.Data))
		case RecXtra:
			return n, nil
		default:
			return 0, fmt.Errorf("%w: record type %d at offset %d inside message content", ErrCorrupt, rec.Type, rec.Offset)
		}
	}
}

// contentErr turns an early end of records into a corrupt-file error: the
// content must end with an X record, not with E or the end of the file.
func contentErr(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: message content ends without an extracted-info record", ErrCorrupt)
	}
	return err
}

// Read implements io.Reader over the message text.
func (c *Content) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(c.pending) > 0 {
			m := copy(p[n:], c.pending)
			c.pending = c.pending[m:]
			n += m
			continue
		}
		if c.newline {
			p[n] = '\n'
			n++
			c.newline = false
			continue
		}
		if c.err != nil {
			break
		}
		c.next()
	}
	if n > 0 {
		return n, nil
	}
	return 0, c.err
}

// next loads the next content record into pending, or sets err.
func (c *Content) next() {
	if c.r == nil {
		c.err = errors.New("spool: read from closed content")
		return
	}
	rec, err := c.r.Next()
	if err != nil {
		c.err = contentErr(err)
		return
	}
	switch rec.Type {
	case RecNorm:
		c.pending, c.newline = rec.Data, true
	case RecCont:
		c.pending = rec.Data
	case RecXtra:
		c.err = io.EOF
	default:
		c.err = fmt.Errorf("%w: record type %d at offset %d inside message content", ErrCorrupt, rec.Type, rec.Offset)
	}
}

// Close closes the queue file (ReadContent's: only ends the reading).
func (c *Content) Close() error {
	var err error
	if c.f != nil && !c.shared {
		err = c.f.Close()
	}
	c.f, c.r, c.pending, c.newline = nil, nil, nil, false
	return err
}
