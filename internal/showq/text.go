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
	f     textFormat
	count int64
	bytes int64
	buf   []byte
}

// NewTextWriter returns a TextWriter on w. long picks the layout for long
// queue IDs (it follows enable_long_queue_ids, not the IDs listed);
// arrival times are shown in loc.
func NewTextWriter(w io.Writer, long bool, loc *time.Location) *TextWriter {
	return &TextWriter{w: bufio.NewWriterSize(w, 64<<10), f: newTextFormat(long, loc)}
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
	b := t.buf[:0]
	if t.count == 0 {
		b = append(b, t.f.heading...)
	} else {
		b = append(b, '\n')
	}
	t.count++
	t.bytes += m.Size
	b = t.f.appendMessage(b, m)
	t.buf = b
	_, err := t.w.Write(b)
	return err
}

// textFormat lays out one message in mailq's columns. It keeps a cache of
// the days it has shown, so it belongs to one goroutine.
type textFormat struct {
	heading                       string
	idWidth, sizeWidth, timeWidth int
	clock                         asctimeClock
}

func newTextFormat(long bool, loc *time.Location) textFormat {
	if long {
		return textFormat{heading: longHeading, idWidth: 17, sizeWidth: 8, timeWidth: 19, clock: asctimeClock{loc: loc}}
	}
	return textFormat{heading: shortHeading, idWidth: 11, sizeWidth: 7, timeWidth: 20, clock: asctimeClock{loc: loc}}
}

// appendMessage appends m's lines: the one of the message, then each
// reason when it changes and each recipient.
func (f *textFormat) appendMessage(b []byte, m *Message) []byte {
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
	b = pad(b, f.idWidth-(len(b)-start))
	b = append(b, ' ')
	var num [24]byte
	n := strconv.AppendInt(num[:0], m.Size, 10)
	b = pad(b, f.sizeWidth-len(n))
	b = append(b, n...)
	b = append(b, ' ')
	b = f.clock.append(b, m.Arrival, f.timeWidth)
	b = append(b, ' ')
	b = append(b, m.Sender...)
	b = append(b, '\n')

	indent := f.idWidth + 1 + f.sizeWidth + 1 + f.timeWidth + 1
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
	return b
}

// appendTrailer appends what ends a listing of count messages of bytes
// in total: the Kbytes/Requests line, or "Mail queue is empty".
func appendTrailer(b []byte, count, bytes int64) []byte {
	if count == 0 {
		return append(b, "Mail queue is empty\n"...)
	}
	b = append(b, "\n-- "...)
	b = strconv.AppendInt(b, bytes/1024, 10)
	b = append(b, " Kbytes in "...)
	b = strconv.AppendInt(b, count, 10)
	b = append(b, " Request"...)
	if count != 1 {
		b = append(b, 's')
	}
	return append(b, ".\n"...)
}

// Close writes the trailer, or "Mail queue is empty", and flushes.
func (t *TextWriter) Close() error {
	if _, err := t.w.Write(appendTrailer(t.buf[:0], t.count, t.bytes)); err != nil {
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

// asctimeClock appends the first width characters of C's asctime() for
// a time in its zone: "Sun Nov 29 15:08:30 2026\n" cut to 20 keeps the
// space before the year, cut to 19 drops it. A listing shows a hundred
// thousand arrivals spread over a few days, so the clock remembers the
// date part of the last days it met (each with the span in which the
// zone's offset does not change) and works out only the time of day.
type asctimeClock struct {
	loc  *time.Location
	days [8]clockDay
	next int // the slot the next new day takes
}

type clockDay struct {
	from, to int64 // the seconds [from, to) of this day at one offset
	midnight int64 // local midnight of the day, in Unix seconds
	date     [11]byte
}

func (c *asctimeClock) append(b []byte, sec int64, width int) []byte {
	var d *clockDay
	for i := range c.days {
		if x := &c.days[i]; sec >= x.from && sec < x.to {
			d = x
			break
		}
	}
	if d == nil {
		d = c.load(sec)
		if d == nil {
			return appendAsctime(b, time.Unix(sec, 0).In(c.loc), width)
		}
	}
	start := len(b)
	b = append(b, d.date[:]...)
	s := sec - d.midnight
	h, m := s/3600, s/60%60
	s %= 60
	b = append(b, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+m/10), byte('0'+m%10), ':', byte('0'+s/10), byte('0'+s%10), ' ')
	return b[:start+width]
}

// load remembers the day of sec, or returns nil when it cannot (a day
// whose offset changes at a point the clock cannot place).
func (c *asctimeClock) load(sec int64) *clockDay {
	if c.loc == nil {
		c.loc = time.UTC
	}
	t := time.Unix(sec, 0).In(c.loc)
	hh, mm, ss := t.Clock()
	midnight := sec - int64(hh*3600+mm*60+ss)
	d := clockDay{from: midnight, to: midnight + 86400, midnight: midnight}
	if zs, ze := t.ZoneBounds(); !zs.IsZero() || !ze.IsZero() {
		if !zs.IsZero() {
			d.from = max(d.from, zs.Unix())
		}
		if !ze.IsZero() {
			d.to = min(d.to, ze.Unix())
		}
	}
	if sec < d.from || sec >= d.to {
		return nil
	}
	t.AppendFormat(d.date[:0], "Mon Jan _2 ")
	slot := &c.days[c.next]
	c.next = (c.next + 1) % len(c.days)
	*slot = d
	return slot
}

// appendAsctime appends the first width characters of C's asctime() for
// t (see asctimeClock).
func appendAsctime(b []byte, t time.Time, width int) []byte {
	start := len(b)
	b = t.AppendFormat(b, "Mon Jan _2 15:04:05 ")
	return b[:start+width]
}
