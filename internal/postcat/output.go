package postcat

import (
	"fmt"
	"io"
)

// outBufSize is the size of Postfix's stream buffer. Output reaches the
// writer in pieces of this size when more accumulates without a flush.
const outBufSize = 4096

// output is standard output as postcat has it: buffered, flushed after
// each record it prints, never flushed at exit. What was not flushed when
// the program ends is lost; Output models that by writing only at flush
// points and when the buffer overflows.
type output struct {
	w   io.Writer
	buf []byte
	err error // first write error; later writes are dropped
}

func (o *output) write(p []byte) {
	o.buf = append(o.buf, p...)
	for len(o.buf) > outBufSize {
		o.emit(o.buf[:outBufSize])
		o.buf = o.buf[outBufSize:]
	}
}

func (o *output) writeString(s string) { o.write([]byte(s)) }

func (o *output) writeByte(c byte) { o.write([]byte{c}) }

func (o *output) printf(format string, args ...any) {
	o.writeString(fmt.Sprintf(format, args...))
}

// flush writes out everything buffered.
func (o *output) flush() {
	if len(o.buf) > 0 {
		o.emit(o.buf)
		o.buf = o.buf[:0]
	}
}

func (o *output) emit(p []byte) {
	if o.err != nil {
		return
	}
	_, o.err = o.w.Write(p)
}
