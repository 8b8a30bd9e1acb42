package showq

import (
	"bufio"
	"io"
	"strconv"
	"time"
)

// TextWriter renders messages as Postfix's mailq and postqueue -p do
// (reference §4.2). Write each message in scan order, then Close.
type TextWriter struct {
	w     *bufio.Writer
	long  bool // enable_long_queue_ids: the wider layout
	loc   *time.Location
	count int64
	bytes int64
	buf   []byte
}

// NewTextWriter returns a TextWriter on w. long picks the layout for long
// queue IDs (it follows enable_long_queue_ids, not the IDs listed);
// arrival times are shown in loc.
func NewTextWriter(w io.Writer, long bool, loc *time.Location) *TextWriter {
	return &TextWriter{w: bufio.NewWriterSize(w, 64<<10), long: long, loc: loc}
}

// Column layouts: "%-11s %7s %-20s %s" for short IDs and
// "%-17s %8s %-19s %s" for long ones; the arrival column is the first 20
// (19) characters of asctime().
const (
	shortHeading = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
	longHeading  = "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n"
	// reasonColumn is where a reason's closing parenthesis ends up.
	reasonColumn = 76
)

// Write renders one message.
func (t *TextWriter) Write(m *Message) error {
	idWidth, sizeWidth, timeWidth := 11, 7, 20
	heading := shortHeading
	if t.long {
		idWidth, sizeWidth, timeWidth = 17, 8, 19
		heading = longHeading
	}
	b := t.buf[:0]
	if t.count == 0 {
		b = append(b, heading...)
	} else {
		b = append(b, '\n')
	}
	t.count++
	t.bytes += m.Size

	start := len(b)
	b = append(b, m.ID...)
	switch m.Queue {
	case "active":
		b = append(b, '*')
	case "hold":
		b = append(b, '!')
	}
	if m.ForcedExpire {
		b = append(b, '#')
	}
	b = pad(b, idWidth-(len(b)-start))
	b = append(b, ' ')
	var num [24]byte
	n := strconv.AppendInt(num[:0], m.Size, 10)
	b = pad(b, sizeWidth-len(n))
	b = append(b, n...)
	b = append(b, ' ')
	b = appendAsctime(b, time.Unix(m.Arrival, 0).In(t.loc), timeWidth)
	b = append(b, ' ')
	b = append(b, m.Sender...)
	b = append(b, '\n')

	indent := idWidth + 1 + sizeWidth + 1 + timeWidth + 1
	prev := ""
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if r.Reason != prev {
			why := r.Reason
			if why == "" {
				why = "reason unavailable"
			}
			b = pad(b, reasonColumn-len(why))
			b = append(b, '(')
			b = append(b, why...)
			b = append(b, ")\n"...)
			prev = r.Reason
		}
		b = pad(b, indent)
		b = append(b, r.Address...)
		b = append(b, '\n')
	}
	t.buf = b
	_, err := t.w.Write(b)
	return err
}

// Close writes the trailer, or "Mail queue is empty", and flushes.
func (t *TextWriter) Close() error {
	b := t.buf[:0]
	if t.count == 0 {
		b = append(b, "Mail queue is empty\n"...)
	} else {
		b = append(b, "\n-- "...)
		b = strconv.AppendInt(b, t.bytes/1024, 10)
		b = append(b, " Kbytes in "...)
		b = strconv.AppendInt(b, t.count, 10)
		b = append(b, " Request"...)
		if t.count != 1 {
			b = append(b, 's')
		}
		b = append(b, ".\n"...)
	}
	if _, err := t.w.Write(b); err != nil {
		return err
	}
	return t.w.Flush()
}

const spaces = "                                                                                "

// pad appends n spaces (none when n <= 0).
func pad(b []byte, n int) []byte {
	for n > 0 {
		k := min(n, len(spaces))
		b = append(b, spaces[:k]...)
		n -= k
	}
	return b
}

// appendAsctime appends the first width characters of C's asctime() for
// t: "Sun Nov 29 15:08:30 2026\n" cut to 20 keeps the space before the
// year, cut to 19 drops it.
func appendAsctime(b []byte, t time.Time, width int) []byte {
	start := len(b)
	b = t.AppendFormat(b, "Mon Jan _2 15:04:05 ")
	return b[:start+width]
}
