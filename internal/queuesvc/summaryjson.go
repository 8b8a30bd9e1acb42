package queuesvc

import (
	"bytes"
	"encoding/json"
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

// UnmarshalJSON reads what AppendJSON writes without encoding/json's
// reflection (a client reading a summary of ten thousand groups spent
// 20 ms there); anything else — other spacing, other key order, an
// escaped character — goes to encoding/json, so the result is always
// what encoding/json would make (TestSummaryJSON checks both ways).
func (r *SummaryResult) UnmarshalJSON(b []byte) error {
	if res, ok := parseSummary(b); ok {
		*r = res
		return nil
	}
	type plain SummaryResult // without this method
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = SummaryResult(p)
	return nil
}

// summaryParser reads the fixed shape AppendJSON writes; ok turns false
// at the first byte it does not expect.
type summaryParser struct {
	b  []byte
	ok bool
}

func (p *summaryParser) lit(s string) {
	if p.ok && len(p.b) >= len(s) && string(p.b[:len(s)]) == s {
		p.b = p.b[len(s):]
		return
	}
	p.ok = false
}

// has consumes s if it comes next.
func (p *summaryParser) has(s string) bool {
	if p.ok && len(p.b) >= len(s) && string(p.b[:len(s)]) == s {
		p.b = p.b[len(s):]
		return true
	}
	return false
}

// str reads a string with nothing escaped in it.
func (p *summaryParser) str() string {
	p.lit(`"`)
	if !p.ok {
		return ""
	}
	for i, c := range p.b {
		switch {
		case c == '"':
			s := string(p.b[:i])
			p.b = p.b[i+1:]
			if !utf8.ValidString(s) {
				p.ok = false
			}
			return s
		case c == '\\' || c < 0x20:
			p.ok = false
			return ""
		}
	}
	p.ok = false
	return ""
}

func (p *summaryParser) int() int {
	i := 0
	for i < len(p.b) && (p.b[i] >= '0' && p.b[i] <= '9' || i == 0 && p.b[i] == '-') {
		i++
	}
	n, err := strconv.Atoi(string(p.b[:i]))
	if err != nil || i == 0 || (p.b[0] == '0' && i > 1) {
		p.ok = false
		return 0
	}
	p.b = p.b[i:]
	return n
}

func parseSummary(b []byte) (r SummaryResult, ok bool) {
	p := &summaryParser{b: b, ok: true}
	p.lit(`{"source":`)
	r.Source = Source(p.str())
	p.lit(`,"by":`)
	r.By = p.str()
	p.lit(`,"select":`)
	r.Select = p.str()
	p.lit(`,"messages":`)
	r.Messages = p.int()
	p.lit(`,"recipients":`)
	r.Recipients = p.int()
	p.lit(`,"groups":`)
	if !p.has("null") {
		p.lit("[")
		r.Groups = []manage.Group{}
		for p.ok && !p.has("]") {
			if len(r.Groups) > 0 {
				p.lit(",")
			}
			var g manage.Group
			p.lit(`{"key":`)
			g.Key = p.str()
			p.lit(`,"messages":`)
			g.Messages = p.int()
			p.lit(`,"recipients":`)
			g.Recipients = p.int()
			p.lit(`,"oldest":`)
			i := bytes.IndexByte(p.b[min(1, len(p.b)):], '"') + 2
			if !p.ok || i < 2 || g.Oldest.UnmarshalJSON(p.b[:i]) != nil {
				return r, false
			}
			p.b = p.b[i:]
			if p.has(`,"example":`) {
				g.Example = p.str()
			}
			if p.has(`,"example_id":`) {
				g.ExampleID = p.str()
			}
			if p.has(`,"detail":`) {
				g.Detail = p.str()
			}
			p.lit("}")
			r.Groups = append(r.Groups, g)
		}
	}
	p.lit("}")
	return r, p.ok && len(bytes.TrimSpace(p.b)) == 0
}
