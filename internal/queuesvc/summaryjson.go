package queuesvc

import (
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"sluice/internal/manage"
)

// AppendJSON appends r as encoding/json writes it (the same bytes, HTML
// characters escaped and all, without the trailing newline), with no
// allocation but b's growth: a summary by sender of a large queue has
// tens of thousands of groups, and on a daemon whose heap is most of its
// memory limit, each megabyte allocated in answering costs a share of a
// collection of the whole model (TestSummaryJSON keeps the two alike).
func (r *SummaryResult) AppendJSON(b []byte) []byte { return r.encode(b, nil) }

// WriteJSON writes r as encoding/json's Encoder does (AppendJSON and a
// newline) through a buffer of a few tens of kilobytes, not one the size
// of the answer.
func (r *SummaryResult) WriteJSON(w io.Writer) error {
	var err error
	flush := func(b []byte) []byte {
		if err == nil {
			_, err = w.Write(b)
		}
		return b[:0]
	}
	b := r.encode(make([]byte, 0, 2*flushAt), flush)
	flush(append(b, '\n'))
	return err
}

// flushAt is how full WriteJSON lets its buffer get.
const flushAt = 32 << 10

// encode appends r to b; flush, when not nil, takes b's bytes once they
// pass flushAt and returns the buffer to go on with.
func (r *SummaryResult) encode(b []byte, flush func([]byte) []byte) []byte {
	b = append(b, `{"source":`...)
	b = appendString(b, string(r.Source))
	b = append(b, `,"by":`...)
	b = appendString(b, r.By)
	b = append(b, `,"select":`...)
	b = appendString(b, r.Select)
	b = append(b, `,"messages":`...)
	b = strconv.AppendInt(b, int64(r.Messages), 10)
	b = append(b, `,"recipients":`...)
	b = strconv.AppendInt(b, int64(r.Recipients), 10)
	b = append(b, `,"groups":`...)
	if r.Groups == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Groups {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendGroup(b, &r.Groups[i])
			if flush != nil && len(b) >= flushAt {
				b = flush(b)
			}
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendGroup(b []byte, g *manage.Group) []byte {
	b = append(b, `{"key":`...)
	b = appendString(b, g.Key)
	b = append(b, `,"messages":`...)
	b = strconv.AppendInt(b, int64(g.Messages), 10)
	b = append(b, `,"recipients":`...)
	b = strconv.AppendInt(b, int64(g.Recipients), 10)
	b = append(b, `,"oldest":"`...)
	b = g.Oldest.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if g.Example != "" {
		b = append(b, `,"example":`...)
		b = appendString(b, g.Example)
	}
	if g.ExampleID != "" {
		b = append(b, `,"example_id":`...)
		b = appendString(b, g.ExampleID)
	}
	if g.Detail != "" {
		b = append(b, `,"detail":`...)
		b = appendString(b, g.Detail)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json does:
// '"' and '\\' escaped, control characters as \n, \r, \t, \b, \f or
// \u00XX, '<', '>' and '&' as \u003c, \u003e and \u0026, U+2028 and
// U+2029 escaped, and invalid UTF-8 as U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
