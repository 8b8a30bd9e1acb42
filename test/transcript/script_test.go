package transcript

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A script is one SMTP session from the client's side: what it sends and
// where it waits for a reply. Scripts live in testdata/scripts/NAME.chat,
// one per file, in this chat form (one directive a line):
//
//	# a comment (the first comment lines describe the script)
//	source 127.0.0.2      the client's bind address; the default, 127.0.0.1,
//	                      is in mynetworks (trusted), 127.0.0.2 is not
//	C: text               send text and CRLF
//	C*N: text             send the same line N times
//	C~: text              send text only, no CRLF added (bare CR, bare LF,
//	                      BDAT chunks)
//	S: anything           wait for one reply (all lines of a multi-line
//	                      reply); the rest of the line is a note for readers
//
// In text, \r \n \t \0 \\ and \xHH are escapes, and {{N*s}} stands for N
// copies of s (long lines). A client line is sent as soon as it is read,
// so several C: lines before an S: are a pipelined group. After the last
// step the client reads until the server closes the connection; every
// script ends with QUIT (or with something the server ends the session
// for), so a server that stays open has done something wrong.
type script struct {
	name   string
	about  string // the leading comment
	source string // client bind address
	steps  []step
}

// A step is what the client sends before it waits for a reply. The
// greeting is the first step, with nothing sent.
type step struct {
	send  [][]byte // client lines (each with its CRLF, if any)
	lines []int    // the script line of each send, for messages
	note  string   // the text after S:
}

// loadScripts reads every *.chat file in dir, sorted by name.
func loadScripts(dir string) ([]*script, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.chat"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []*script
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		s, err := parseScript(strings.TrimSuffix(filepath.Base(n), ".chat"), string(b))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

var sendRe = regexp.MustCompile(`^C(\*(\d+))?(~)?: ?(.*)$`)

// parseScript parses one script in chat form.
func parseScript(name, text string) (*script, error) {
	s := &script{name: name, source: "127.0.0.1"}
	var cur step
	inHeader := true
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "#"):
			if inHeader {
				s.about += strings.TrimSpace(strings.TrimPrefix(line, "#")) + " "
			}
			continue
		case strings.TrimSpace(line) == "":
			continue
		}
		inHeader = false
		switch {
		case strings.HasPrefix(line, "source "):
			s.source = strings.TrimSpace(strings.TrimPrefix(line, "source "))
			if net.ParseIP(s.source) == nil {
				return nil, fmt.Errorf("%s:%d: bad source address %q", name, n, s.source)
			}
		case strings.HasPrefix(line, "S:"):
			cur.note = strings.TrimSpace(strings.TrimPrefix(line, "S:"))
			s.steps = append(s.steps, cur)
			cur = step{}
		default:
			m := sendRe.FindStringSubmatch(line)
			if m == nil {
				return nil, fmt.Errorf("%s:%d: not a directive: %q", name, n, line)
			}
			count := 1
			if m[2] != "" {
				count, _ = strconv.Atoi(m[2])
			}
			b, err := unescape(m[4])
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", name, n, err)
			}
			if m[3] == "" {
				b = append(b, '\r', '\n')
			}
			for range count {
				cur.send = append(cur.send, b)
				cur.lines = append(cur.lines, n)
			}
		}
	}
	if len(cur.send) > 0 {
		return nil, fmt.Errorf("%s: client lines after the last S: (every send needs a reply to wait for)", name)
	}
	if len(s.steps) == 0 || len(s.steps[0].send) != 0 {
		return nil, fmt.Errorf("%s: a script starts with S: for the greeting", name)
	}
	s.about = strings.TrimSpace(s.about)
	return s, nil
}

var repeatRe = regexp.MustCompile(`\{\{(\d+)\*([^}]*)\}\}`)

// unescape turns a script's text into the bytes to send.
func unescape(text string) ([]byte, error) {
	var bad error
	text = repeatRe.ReplaceAllStringFunc(text, func(m string) string {
		sm := repeatRe.FindStringSubmatch(m)
		n, err := strconv.Atoi(sm[1])
		if err != nil || n > 1<<20 {
			bad = fmt.Errorf("bad repeat %q", m)
			return ""
		}
		return strings.Repeat(sm[2], n)
	})
	if bad != nil {
		return nil, bad
	}
	var out []byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(text) {
			return nil, errors.New("backslash at end of line")
		}
		i++
		switch text[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+2 >= len(text) {
				return nil, errors.New(`short \x escape`)
			}
			v, err := strconv.ParseUint(text[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf(`bad \x escape %q`, text[i-1:i+3])
			}
			out = append(out, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf(`unknown escape \%c`, text[i])
		}
	}
	return out, nil
}

// Pseudo-replies for what happened instead of a reply.
const (
	noReply      = "(no reply)"
	closedReply  = "(connection closed)"
	closedAtEnd  = "(server closed the connection)"
	stillOpenEnd = "(connection still open after the last step)"
)

// transcript is what one server answered to one script: one reply per
// step, then one more entry for what happened after the last step (the
// connection's close, or replies nobody waited for).
type transcript struct {
	replies []string
}

// dialer is how the client connects; the bind address decides whether
// it is in mynetworks.
func dial(addr, source string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	return d.Dial("tcp", addr)
}

// timeouts bound the waits; they are far above any reply time and only
// matter when a server fails to answer at all.
type timeouts struct {
	reply time.Duration // one reply
	close time.Duration // the server's close after the last step
}

// run plays s against the SMTP server at addr and records the replies.
func run(s *script, addr string, to timeouts) (*transcript, error) {
	c, err := dial(addr, s.source, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to %s from %s: %w", s.name, addr, s.source, err)
	}
	defer c.Close()
	r := &replyReader{c: c, br: bufio.NewReader(c)}
	tr := &transcript{}
	for _, st := range s.steps {
		for _, b := range st.send {
			if r.closed {
				break
			}
			// A write error means the server has gone; the read
			// that follows records that.
			c.SetWriteDeadline(time.Now().Add(to.reply))
			c.Write(b)
		}
		tr.replies = append(tr.replies, r.next(to.reply))
	}
	tr.replies = append(tr.replies, r.rest(to.close))
	return tr, nil
}

// replyReader splits a server's output into replies.
type replyReader struct {
	c       net.Conn
	br      *bufio.Reader
	partial []byte // a line begun before a read timed out
	closed  bool
}

// line reads one line (with its line end) before the deadline.
func (r *replyReader) line(deadline time.Time) (string, error) {
	r.c.SetReadDeadline(deadline)
	b, err := r.br.ReadBytes('\n')
	r.partial = append(r.partial, b...)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", err
		}
		r.closed = true
		if len(r.partial) > 0 {
			l := string(r.partial)
			r.partial = nil
			return l, nil // the last, unterminated line
		}
		return "", err
	}
	l := string(r.partial)
	r.partial = nil
	return l, nil
}

// next reads one whole reply: lines while they read "NNN-".
func (r *replyReader) next(wait time.Duration) string {
	if r.closed {
		return closedReply
	}
	deadline := time.Now().Add(wait)
	var b strings.Builder
	for {
		l, err := r.line(deadline)
		if err != nil {
			if b.Len() > 0 {
				return b.String()
			}
			if r.closed {
				return closedReply
			}
			return noReply
		}
		b.WriteString(l)
		if !continued(l) || r.closed {
			return b.String()
		}
	}
}

// continued reports whether a reply line says more lines follow.
func continued(l string) bool {
	return len(l) >= 4 && isDigit(l[0]) && isDigit(l[1]) && isDigit(l[2]) && l[3] == '-'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// rest reads what comes after the last step: replies nobody waited for,
// then the close.
func (r *replyReader) rest(wait time.Duration) string {
	if r.closed {
		return closedAtEnd
	}
	deadline := time.Now().Add(wait)
	var extra strings.Builder
	for {
		l, err := r.line(deadline)
		if err == nil {
			extra.WriteString(l)
			if !r.closed {
				continue
			}
		}
		if r.closed || errors.Is(err, io.EOF) {
			return extra.String() + closedAtEnd
		}
		return extra.String() + stillOpenEnd
	}
}

var queueIDRe = regexp.MustCompile(`(queued as )[0-9A-Za-z]+`)

// normalise masks what must differ between two servers configured alike:
// only the queue ID of an accepted message.
func normalise(reply string) string {
	return queueIDRe.ReplaceAllString(reply, "${1}XXXX")
}

// printable splits a reply into its lines, each shown with escape.
func printable(b []byte) []string {
	var lines []string
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if len(l) > 0 {
			lines = append(lines, escape(l))
		}
	}
	return lines
}

// escape shows one line for reading: a final CRLF is left out, other
// invisible bytes (trailing spaces too) are escaped as the scripts write
// them, and a long run of one byte (a too-long line) is shown as {{N*c}}.
func escape(l []byte) string {
	l = bytes.TrimSuffix(l, []byte("\r\n"))
	// Trailing spaces are written \x20, or nobody would see them.
	body := bytes.TrimRight(l, " ")
	trailing := len(l) - len(body)
	l = body
	var sb strings.Builder
	for i := 0; i < len(l); i++ {
		c := l[i]
		if n := runLength(l[i:]); n >= 20 {
			fmt.Fprintf(&sb, "{{%d*%s}}", n, escape([]byte{c}))
			i += n - 1
			continue
		}
		switch {
		case c == '\\':
			sb.WriteString(`\\`)
		case c >= 0x20 && c < 0x7f:
			sb.WriteByte(c)
		case c == '\r':
			sb.WriteString(`\r`)
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\t':
			sb.WriteString(`\t`)
		case c == 0:
			sb.WriteString(`\0`)
		default:
			fmt.Fprintf(&sb, `\x%02x`, c)
		}
	}
	sb.WriteString(strings.Repeat(`\x20`, trailing))
	return sb.String()
}

// runLength is how many times b's first byte repeats at its start.
func runLength(b []byte) int {
	n := 0
	for n < len(b) && b[n] == b[0] {
		n++
	}
	return n
}
