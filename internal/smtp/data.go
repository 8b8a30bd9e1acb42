package smtp

import (
	"bufio"
	"errors"
	"io"
)

// writeBuffer is the size of a session's write buffer: a message of up
// to about this size goes to the server in one write, with its final dot.
const writeBuffer = 32 << 10

// textReader is a buffer over the message text src, from those the
// client kept (Client.texts); give it back with doneReading.
func (c *Client) textReader(src io.Reader) *bufio.Reader {
	br, _ := c.texts.Get().(*bufio.Reader)
	if br == nil {
		return bufio.NewReaderSize(src, 32<<10)
	}
	br.Reset(src)
	return br
}

func (c *Client) doneReading(br *bufio.Reader) {
	br.Reset(nil)
	c.texts.Put(br)
}

// writeData copies the message text br reads (LF line ends) to w as the body
// of DATA: CRLF line ends, a dot doubled at the start of a line (RFC 5321
// §4.5.2), lines longer than lineLimit folded with CRLF SPACE as Postfix's
// smtp_line_length_limit does, a final CRLF if the text lacks one, and the
// terminating ".\r\n". It returns the error reading src and the error
// writing w separately: the caller handles them differently.
func writeData(w *bufio.Writer, br *bufio.Reader) (readErr, writeErr error) {
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
