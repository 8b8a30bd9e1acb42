package smtp

import (
	"bufio"
	"errors"
	"strings"
)

// Reply limits, as Postfix's line_length_limit: longer lines are cut, and
// a multi-line reply stops growing once this much text is stored.
const (
	replyLineLimit = 2048
	replyTextLimit = 2048
	replyMaxLines  = 1000
)

// reply is a server reply: its code (0 when the last line had none) and
// its lines, with non-printable bytes shown as '?'.
type reply struct {
	code  int
	lines []string
}

// text joins the lines with spaces, as Postfix logs a multi-line reply.
func (r reply) text() string { return strings.Join(r.lines, " ") }

func (r reply) class() int { return r.code / 100 }

// dsn is the reply's enhanced status code when the first line carries one,
// with its class digit set to the reply's class, else X.0.0. Codes that are
// neither 2xx, 4xx nor 5xx count as 4.0.0: an unexpected reply is worth a
// retry, not a bounce.
func (r reply) dsn() string {
	cls := byte('0' + r.class())
	if cls != '2' && cls != '5' {
		cls = '4'
	}
	if len(r.lines) > 0 && len(r.lines[0]) > 4 {
		if d, ok := enhancedCode(r.lines[0][4:]); ok {
			return string(cls) + d[1:]
		}
	}
	return string(cls) + ".0.0"
}

// soft reports whether a failure reply should defer rather than bounce.
func (r reply) soft() bool { return r.class() != 5 }

// enhancedCode reads an RFC 3463 status code at the start of s.
func enhancedCode(s string) (string, bool) {
	end := strings.IndexAny(s, " \t")
	if end < 0 {
		end = len(s)
	}
	code := s[:end]
	parts := strings.Split(code, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return "", false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 {
			return "", false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return "", false
			}
		}
	}
	return code, true
}

var errReplyTooLong = errors.New("reply too long")

// readReply reads one reply. A line that does not start with three digits
// and a space or hyphen is kept as text and reading goes on, as Postfix
// does, up to replyMaxLines lines.
func readReply(r *bufio.Reader) (reply, error) {
	var rep reply
	stored := 0
	for n := 0; ; n++ {
		if n >= replyMaxLines {
			return rep, errReplyTooLong
		}
		line, err := readLine(r)
		if err != nil {
			return rep, err
		}
		if stored < replyTextLimit {
			rep.lines = append(rep.lines, line)
			stored += len(line) + 1
		}
		if len(line) >= 3 && isDigits(line[:3]) {
			if len(line) == 3 || line[3] == ' ' {
				rep.code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
				return rep, nil
			}
			if line[3] == '-' {
				continue
			}
		}
	}
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// readLine reads one line without its line end, cutting it at
// replyLineLimit and replacing non-printable bytes with '?'.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(b) < replyLineLimit {
			room := replyLineLimit - len(b)
			if len(frag) > room {
				b = append(b, frag[:room]...)
			} else {
				b = append(b, frag...)
			}
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	for i, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b), nil
}
