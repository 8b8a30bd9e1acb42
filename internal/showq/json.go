package showq

import (
	"bufio"
	"io"
	"strconv"
)

// JSONWriter renders messages as postqueue -j does (reference §4.5): one
// object per line, keys in a fixed order, ": " and ", " separators.
type JSONWriter struct {
	w   *bufio.Writer
	buf []byte
}

// NewJSONWriter returns a JSONWriter on w.
func NewJSONWriter(w io.Writer) *JSONWriter {
	return &JSONWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// Write renders one message as one line.
func (j *JSONWriter) Write(m *Message) error {
	j.buf = appendJSON(j.buf[:0], m)
	_, err := j.w.Write(j.buf)
	return err
}

// appendJSON appends m as one line of postqueue -j.
func appendJSON(b []byte, m *Message) []byte {
	b = append(b, `{"queue_name": `...)
	b = appendJSONString(b, m.Queue)
	b = append(b, `, "queue_id": `...)
	b = appendJSONString(b, m.ID)
	b = append(b, `, "arrival_time": `...)
	b = strconv.AppendInt(b, m.Arrival, 10)
	b = append(b, `, "message_size": `...)
	b = strconv.AppendInt(b, m.Size, 10)
	b = append(b, `, "forced_expire": `...)
	b = strconv.AppendBool(b, m.ForcedExpire)
	b = append(b, `, "sender": `...)
	b = appendJSONString(b, m.Sender)
	b = append(b, `, "recipients": [`...)
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, `{"address": `...)
		b = appendJSONString(b, r.Address)
		if r.Reason != "" {
			b = append(b, `, "delay_reason": `...)
			b = appendJSONString(b, r.Reason)
		}
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// Close flushes. An empty queue gives no output at all.
func (j *JSONWriter) Close() error { return j.w.Flush() }

const hexDigits = "0123456789ABCDEF"

// appendJSONString appends s as a JSON string the way Postfix quotes it:
// \b \f \n \r \t in short form, other control characters and DEL as
// \u00XX (upper-case hex), '"' and '\' with a backslash, '/' and bytes
// above 127 as they are.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != 0x7f && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
