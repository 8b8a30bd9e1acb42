package smtp

import (
	"bufio"
	"errors"
	"io"
	"sync"
)

// writeBuffer is the size of a session's write buffer: a message of up
// to about this size goes to the server in one write, with its final dot.
const writeBuffer = 32 << 10

// textReaders are writeData's buffers over message texts, kept from one
// message to the next.
var textReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// writeData copies the message text src (LF line ends) to w as the body
// of DATA: CRLF line ends, a dot doubled at the start of a line (RFC 5321
// §4.5.2), lines longer than lineLimit folded with CRLF SPACE as Postfix's
// smtp_line_length_limit does, a final CRLF if the text lacks one, and the
// terminating ".\r\n". It returns the error reading src and the error
// writing w separately: the caller handles them differently.
func writeData(w *bufio.Writer, src io.Reader) (readErr, writeErr error) {
	br := textReaders.Get().(*bufio.Reader)
	br.Reset(src)
	defer func() {
		br.Reset(nil)
		textReaders.Put(br)
	}()
	col := 0 // bytes on the current output line
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			eol := chunk[len(chunk)-1] == '\n'
			if eol {
				chunk = chunk[:len(chunk)-1]
				if len(chunk) > 0 && chunk[len(chunk)-1] == '\r' {
					chunk = chunk[:len(chunk)-1]
				}
			}
			col = writeLinePart(w, chunk, col)
			if eol {
				w.WriteString("\r\n")
				col = 0
			}
			// A write error sticks in w; stop reading once there is one.
			if _, werr := w.Write(nil); werr != nil {
				return nil, werr
			}
		}
		if err == nil || errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err, nil
		}
		break
	}
	if col > 0 {
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
	return nil, w.Flush()
}

// writeLinePart writes part of a line that already has col bytes on the
// output line, folding at lineLimit, and returns the new column.
func writeLinePart(w *bufio.Writer, b []byte, col int) int {
	for len(b) > 0 {
		if col == 0 && b[0] == '.' {
			w.WriteByte('.')
			col++
		}
		room := lineLimit - col
		if room <= 0 {
			w.WriteString("\r\n ")
			col = 1
			continue
		}
		n := len(b)
		if n > room {
			n = room
		}
		w.Write(b[:n])
		col += n
		b = b[n:]
		if len(b) > 0 {
			w.WriteString("\r\n ")
			col = 1
		}
	}
	return col
}
