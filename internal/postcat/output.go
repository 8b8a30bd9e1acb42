package postcat

import (
	"fmt"
	"io"
)

// outBufSize is the size of Postfix's stream buffer. Output reaches the
// writer in pieces of this size when more accumulates without a flush.
const outBufSize = 4096

// batchSize is how much flushed output we gather before one write.
const batchSize = 64 << 10

// output is standard output as postcat has it: buffered, flushed after
// each record it prints, never flushed at exit, so what was not flushed
// when the program ends is lost.
//
// buf holds two parts. buf[:done] is output postcat would already have
// written (flushed, or pushed out by a full buffer); buf[done:] is what
// sits in postcat's buffer. Postcat writes at every flush, which costs a
// system call per record; we gather the done part and write it in
// batches, and always before a message goes to stderr and before the
// tool ends (sync), so the bytes and their order against stderr are the
// same.
type output struct {
	w    io.Writer
	buf  []byte
	done int
	err  error // first write error; later writes are dropped
}

func (o *output) write(p []byte) {
	o.buf = append(o.buf, p...)
	o.grew()
}

func (o *output) writeString(s string) {
	o.buf = append(o.buf, s...)
	o.grew()
}

func (o *output) writeByte(c byte) {
	o.buf = append(o.buf, c)
	o.grew()
}

func (o *output) printf(format string, args ...any) {
	o.buf = fmt.Appendf(o.buf, format, args...)
	o.grew()
}

// grew accounts for a full postcat buffer, which postcat writes out.
func (o *output) grew() {
	if pending := len(o.buf) - o.done; pending > outBufSize {
		o.done += (pending - 1) / outBufSize * outBufSize
	}
}

// flush is postcat's flush: everything buffered counts as written.
func (o *output) flush() {
	o.done = len(o.buf)
	if o.done >= batchSize {
		o.sync()
	}
}

// sync writes what postcat would have written by now.
func (o *output) sync() {
	if o.done == 0 {
		return
	}
	if o.err == nil {
		_, o.err = o.w.Write(o.buf[:o.done])
	}
	n := copy(o.buf, o.buf[o.done:])
	o.buf = o.buf[:n]
	o.done = 0
}
