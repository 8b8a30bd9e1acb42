// Package maillog writes the mail log: one line per event, in the format
// Postfix writes to its maillog_file, so tail -f, grep by queue ID and
// existing log tools (pflogsumm, postfix exporters, mtail programs) work
// on sluice's log unchanged:
//
//	Mon DD HH:MM:SS HOST SYSLOGNAME/SERVICE[PID]: text
//
// The day is zero-padded ("Nov 04"), as Postfix 3.7's own log writer does
// (checked against postsuper writing maillog_file directly); syslog daemons
// pad it with a space instead, and log tools accept both. SYSLOGNAME is the
// syslog_name parameter, default "postfix", because log tools select lines
// by "postfix/". SERVICE is the part of sluice that speaks (smtpd, cleanup,
// pickup, qmgr, smtp, bounce, ...), the names Postfix's programs have.
//
// Queue-related lines begin with "ID: ". Delivery results have their own
// formatter, Delivery, which renders Postfix's fields and number format.
// This is the mail log, for operators; debugging output does not go here.
package maillog

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Logger writes mail log lines to one writer. It is safe for concurrent
// use: each line is formatted apart and written with a single Write call
// under a lock, so lines from concurrent sessions never interleave.
type Logger struct {
	w          io.Writer
	hostname   string
	syslogName string
	now        func() time.Time
	pid        int

	mu  sync.Mutex
	buf []byte
}

// New returns a Logger that writes to w. hostname is the short host name
// printed in each line (Postfix prints the first label of myhostname);
// syslogName is the syslog_name parameter ("postfix" when empty); now is
// the clock (time.Now when nil). A nil w discards everything.
func New(w io.Writer, hostname, syslogName string, now func() time.Time) *Logger {
	if syslogName == "" {
		syslogName = "postfix"
	}
	if now == nil {
		now = time.Now
	}
	if w == nil {
		w = io.Discard
	}
	if i := strings.IndexByte(hostname, '.'); i > 0 {
		hostname = hostname[:i]
	}
	return &Logger{w: w, hostname: hostname, syslogName: syslogName, now: now, pid: os.Getpid()}
}

// SetPID sets the process ID printed in brackets; for tests that compare
// whole lines. Call it before the Logger is shared.
func (l *Logger) SetPID(pid int) { l.pid = pid }

// Log writes one line for service; format and args make its text. The
// text is escaped as every line is (see Escape): one event, one line, so
// a crafted HELO or address can neither forge a log line nor send
// terminal control sequences to whoever reads the log.
func (l *Logger) Log(service, format string, args ...any) {
	if l == nil {
		return
	}
	text := format
	if len(args) > 0 {
		text = fmt.Sprintf(format, args...)
	}
	l.write(service, text)
}

// Warn writes "warning: text", as Postfix's daemons do.
func (l *Logger) Warn(service, format string, args ...any) {
	if l == nil {
		return
	}
	l.write(service, "warning: "+fmt.Sprintf(format, args...))
}

func (l *Logger) write(service, text string) {
	t := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf[:0]
	b = t.AppendFormat(b, "Jan 02 15:04:05")
	b = append(b, ' ')
	b = append(b, l.hostname...)
	b = append(b, ' ')
	b = append(b, l.syslogName...)
	b = append(b, '/')
	b = append(b, service...)
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(l.pid), 10)
	b = append(b, "]: "...)
	b = AppendEscaped(b, text)
	b = append(b, '\n')
	l.buf = b
	// A failed write of the mail log must not stop mail; there is no
	// better place to report it.
	_, _ = l.w.Write(b)
}

// Escape returns s as it appears in a mail log line: every byte that is
// not printable is replaced by '?', as Postfix's smtpd does with the
// strings a client supplies (HELO names, addresses). Not printable are
// the ASCII control characters (NUL to US, including CR, LF, TAB and
// ESC), DEL, the C1 controls U+0080 to U+009F, and every byte that is
// not part of valid UTF-8; printable UTF-8 (é, 中) is kept, since
// Postfix with smtputf8_enable keeps it too. The rule is applied to
// every line the Logger writes, whatever its source, so no caller can
// forget it.
func Escape(s string) string {
	if isPlain(s) {
		return s
	}
	return string(AppendEscaped(nil, s))
}

// AppendEscaped appends Escape(s) to b.
func AppendEscaped(b []byte, s string) []byte {
	if isPlain(s) {
		return append(b, s...)
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			b = append(b, c)
			i++
			continue
		}
		if c < 0x80 { // C0 control or DEL
			b = append(b, '?')
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || r < 0xa0 {
			// Invalid UTF-8 (one '?' per bad byte) or a C1 control.
			b = append(b, '?')
			i += n
			continue
		}
		b = append(b, s[i:i+n]...)
		i += n
	}
	return b
}

// isPlain reports whether s is printable ASCII only, the common case.
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// Delivery is one recipient's delivery result, as the delivery agents log
// it (reference §9).
type Delivery struct {
	QueueID string
	To      string // the recipient
	OrigTo  string // original recipient; printed only when it differs from To
	Relay   string // "host[addr]:port", "none", "local", ...
	ConnUse int    // how many times the connection has been used; printed when > 1
	Delay   time.Duration
	// Delays are: before the active queue, in the active queue,
	// connection setup (DNS, HELO, TLS), transmission.
	Delays [4]time.Duration
	DSN    string // X.Y.Z
	Status string // sent, deferred, bounced, expired, ...
	Text   string // the reason or the peer's reply, printed in parentheses
}

// Format renders the line's text (without the prefix):
//
//	ID: to=<rcpt>, [orig_to=<orig>, ]relay=R, [conn_use=N, ]delay=D, delays=a/b/c/d, dsn=X.Y.Z, status=S (text)
func (d Delivery) Format() string {
	var b strings.Builder
	b.Grow(160 + len(d.Text))
	b.WriteString(d.QueueID)
	b.WriteString(": to=<")
	b.WriteString(d.To)
	b.WriteString(">")
	if d.OrigTo != "" && !strings.EqualFold(d.OrigTo, d.To) {
		b.WriteString(", orig_to=<")
		b.WriteString(d.OrigTo)
		b.WriteString(">")
	}
	b.WriteString(", relay=")
	if d.Relay == "" {
		b.WriteString("none")
	} else {
		b.WriteString(d.Relay)
	}
	if d.ConnUse > 1 {
		b.WriteString(", conn_use=")
		b.WriteString(strconv.Itoa(d.ConnUse))
	}
	b.WriteString(", delay=")
	b.WriteString(FormatDelay(d.Delay))
	b.WriteString(", delays=")
	for i, x := range d.Delays {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(FormatDelay(x))
	}
	b.WriteString(", dsn=")
	b.WriteString(d.DSN)
	b.WriteString(", status=")
	b.WriteString(d.Status)
	if d.Text != "" {
		b.WriteString(" (")
		b.WriteString(d.Text)
		b.WriteString(")")
	}
	return b.String()
}

// Delivery writes a delivery result line for service.
func (l *Logger) Delivery(service string, d Delivery) {
	if l == nil {
		return
	}
	l.write(service, d.Format())
}

// FormatDelay renders a delay the way Postfix logs it with its default
// delay_logging_resolution_limit of 2: the value is first rounded half-up
// to 0.01 s; then at most two significant digits are shown, so 10 s and
// more print as whole seconds ("191"), 1 to 10 s with one decimal ("1.1"),
// and less than a second with up to two decimals ("0.47", "0.05");
// trailing zeros and a bare point are dropped, and anything that rounds
// to 0.00 prints "0".
func FormatDelay(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	const res = 10 * time.Millisecond
	hundredths := int64((d + res/2) / res) // rounded at the resolution
	sec, frac := hundredths/100, hundredths%100
	switch {
	case sec >= 10:
		return strconv.FormatInt(sec, 10)
	case sec >= 1:
		if tenth := frac / 10; tenth != 0 {
			return strconv.FormatInt(sec, 10) + "." + strconv.FormatInt(tenth, 10)
		}
		return strconv.FormatInt(sec, 10)
	case frac == 0:
		return "0"
	case frac%10 == 0:
		return "0." + strconv.FormatInt(frac/10, 10)
	default:
		return fmt.Sprintf("0.%02d", frac)
	}
}
