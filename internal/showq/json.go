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
		// Eight bytes at a time while none needs escaping.
		for i+8 <= len(s) && !needsEscape8(s[i:i+8]) {
			i += 8
		}
		if i >= len(s) {
			break
		}
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

// needsEscape8 reports whether one of the eight bytes of s may need
// escaping: a control character, DEL, '"' or '\'. It may say yes for
// bytes that do not (the caller then looks at each).
func needsEscape8(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	zero := func(y uint64) uint64 { return (y - ones) &^ y }
	return ((x-0x20*ones)&^x|zero(x^0x22*ones)|zero(x^0x5c*ones)|zero(x^0x7f*ones))&highs != 0
}
