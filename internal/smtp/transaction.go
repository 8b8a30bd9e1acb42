package smtp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Postfix's names for the stages of a mail transaction, used in "lost
// connection ... while ..." and "(in reply to ...)".
const (
	stageMail = "sending MAIL FROM"
	stageRcpt = "sending RCPT TO"
	stageData = "sending DATA command"
	stageDot  = "sending end of data -- message may be sent more than once"

	inReplyMail = "MAIL FROM command"
	inReplyRcpt = "RCPT TO command"
	inReplyData = "DATA command"
	inReplyDot  = "end of DATA command"
)

// pipelineWindow bounds how many bytes of commands go out before their
// replies are read, so neither side can block on a full socket buffer.
const pipelineWindow = 4096

// transaction sends the message to the pending recipients over s, which
// has completed its handshake, and records an outcome for each of them.
//
// A session taken from the cache is probed first with RSET (probe): with
// PIPELINING the RSET goes out together with MAIL FROM and RCPT TO, which
// saves a round trip per message. If the probe fails, transaction records
// nothing, reports the session stale, and the caller opens a new one; a
// server that failed RSET never sees DATA, so nothing is delivered twice.
func (d *delivery) transaction(s *session, probe bool) (stale bool) {
	t0 := time.Now()
	defer func() {
		if probe {
			d.setup += time.Since(t0)
		} else {
			d.xfer += time.Since(t0)
		}
	}()
	todo := d.pending()
	m := d.m
	pipelining := false
	if _, ok := s.ext["PIPELINING"]; ok && s.esmtp {
		pipelining = true
	}
	if probe && !pipelining {
		if err := s.probe(); err != nil {
			return true
		}
		probe = false
	}
	s.uses++

	if m.SMTPUTF8 {
		if _, ok := s.ext["SMTPUTF8"]; !ok {
			d.fail(todo, failure{dsn: "5.6.7", relay: s.relay,
				reason: fmt.Sprintf("SMTPUTF8 is required, but was not offered by host %s", s.namaddr())})
			return false
		}
	}
	if p, ok := s.ext["SIZE"]; ok && m.Size > 0 {
		if limit, err := strconv.ParseInt(p, 10, 64); err == nil && limit > 0 && m.Size > limit {
			d.fail(todo, failure{dsn: "5.3.4", relay: s.relay,
				reason: fmt.Sprintf("message size %d exceeds size limit %d of server %s", m.Size, limit, s.namaddr())})
			return false
		}
	}
	sender, ok := quoteAddress(m.Sender)
	if !ok {
		d.fail(todo, failure{dsn: "5.1.7", reason: fmt.Sprintf("bad sender address syntax: %q", m.Sender)})
		return false
	}

	// Recipients whose address cannot be put in a command bounce here;
	// the rest get a RCPT TO each.
	var rcpts []int
	var lines []string
	for _, i := range todo {
		addr, ok := quoteAddress(m.Recipients[i].Address)
		if !ok || addr == "" {
			d.fail([]int{i}, failure{dsn: "5.1.3", reason: fmt.Sprintf("bad recipient address syntax: %q", m.Recipients[i].Address)})
			continue
		}
		rcpts = append(rcpts, i)
		lines = append(lines, "RCPT TO:<"+addr+">"+d.rcptParams(s, m.Recipients[i]))
	}
	if len(rcpts) == 0 {
		return false
	}
	mailLine := "MAIL FROM:<" + sender + ">" + d.mailParams(s)

	// The text is opened before anything is sent, so that DATA can go
	// out with the recipients.
	if m.Open == nil {
		d.fail(rcpts, failure{soft: true, dsn: "4.3.0", reason: "error reading message: no message text"})
		return false
	}
	body, err := m.Open()
	if err == nil && body == nil {
		err = errors.New("no message text")
	}
	if err != nil {
		d.fail(rcpts, failure{soft: true, dsn: "4.3.0", reason: fmt.Sprintf("error reading message: %v", err)})
		return false
	}
	defer body.Close()

	// MAIL FROM and RCPT TO, pipelined when the server allows it.
	if probe {
		s.cmd("RSET")
	}
	s.cmd("%s", mailLine)
	sentAhead := len(mailLine) + 2
	next := 0 // next RCPT line to send
	if pipelining {
		for next < len(lines) && sentAhead < pipelineWindow {
			s.cmd("%s", lines[next])
			sentAhead += len(lines[next]) + 2
			next++
		}
	}
	// With every RCPT TO in the first group, DATA ends that group (RFC
	// 2920 §3.1, as Postfix's client does): one round trip fewer. Its
	// reply is read after the recipients'.
	dataAhead := pipelining && next == len(lines)
	if dataAhead {
		s.cmd("DATA")
	}
	err = s.flush()
	if probe {
		// The RSET reply decides whether the session is still good. On
		// a bad reply the replies to what followed are not worth reading.
		var rep reply
		if err == nil {
			rep, err = s.read()
		}
		if err != nil || rep.class() != 2 {
			s.broken = true
			return true
		}
		probe = false
		t0, d.setup = time.Now(), d.setup+time.Since(t0)
	}
	if err != nil {
		d.fail(rcpts, s.ioFailure(err, stageMail))
		return false
	}
	rep, err := s.read()
	if err != nil {
		d.fail(rcpts, s.ioFailure(err, stageMail))
		return false
	}
	if rep.class() != 2 {
		d.fail(rcpts, s.replyFailure(rep, inReplyMail))
		// Replies to RCPT commands already sent, and to DATA, still
		// have to be read.
		for k := 0; k < next; k++ {
			if _, err := s.read(); err != nil {
				s.broken = true
				return false
			}
		}
		if dataAhead {
			s.endData()
		}
		return false
	}
	var accepted []int
	for k := range rcpts {
		if k >= next {
			// Not pipelining, or past the window: send the next batch.
			s.cmd("%s", lines[k])
			next = k + 1
			if pipelining {
				n := len(lines[k]) + 2
				for next < len(lines) && n < pipelineWindow {
					s.cmd("%s", lines[next])
					n += len(lines[next]) + 2
					next++
				}
			}
			if err := s.flush(); err != nil {
				d.fail(rcpts[k:], s.ioFailure(err, stageRcpt))
				return false
			}
		}
		rep, err := s.read()
		if err != nil {
			d.fail(rcpts[k:], s.ioFailure(err, stageRcpt))
			return false
		}
		switch {
		case rep.class() == 2:
			accepted = append(accepted, rcpts[k])
		case rep.code == 421:
			// The server is closing the session: its reason stands
			// for every recipient it did not answer yet.
			d.fail(rcpts[k:], s.replyFailure(rep, inReplyRcpt))
			return false
		default:
			d.fail(rcpts[k:k+1], s.replyFailure(rep, inReplyRcpt))
		}
	}
	if len(accepted) == 0 {
		if dataAhead {
			s.endData()
		}
		return // the next use of the session starts with RSET
	}

	if dataAhead {
		rep, err = s.read()
	} else {
		rep, err = s.chat("DATA")
	}
	if err != nil {
		d.fail(accepted, s.ioFailure(err, stageData))
		return false
	}
	if rep.class() != 3 {
		d.fail(accepted, s.replyFailure(rep, inReplyData))
		return false
	}
	text := s.c.textReader(body)
	defer s.c.doneReading(text)
	if rerr, werr := writeData(s.w, text); rerr != nil || werr != nil {
		s.broken = true
		if rerr != nil {
			// The text could not be read: leave the server without
			// the final dot, so it discards what it got.
			d.fail(accepted, failure{soft: true, dsn: "4.3.0", relay: s.relay, reason: fmt.Sprintf("error reading message: %v", rerr)})
			s.close()
			return false
		}
		d.fail(accepted, s.ioFailure(werr, stageDot))
		return false
	}
	if err := s.flush(); err != nil {
		d.fail(accepted, s.ioFailure(err, stageDot))
		return false
	}
	rep, err = s.read()
	if err != nil {
		d.fail(accepted, s.ioFailure(err, stageDot))
		return false
	}
	if rep.class() != 2 {
		d.fail(accepted, s.replyFailure(rep, inReplyDot))
		return false
	}
	d.sent(accepted, rep, s)
	return false
}

// mailParams are the MAIL FROM parameters the server advertises support
// for.
func (d *delivery) mailParams(s *session) string {
	if !s.esmtp {
		return ""
	}
	m := d.m
	var b strings.Builder
	if _, ok := s.ext["SIZE"]; ok && m.Size > 0 {
		fmt.Fprintf(&b, " SIZE=%d", m.Size)
	}
	if _, ok := s.ext["8BITMIME"]; ok && m.EightBit {
		b.WriteString(" BODY=8BITMIME")
	}
	if _, ok := s.ext["SMTPUTF8"]; ok && m.SMTPUTF8 {
		b.WriteString(" SMTPUTF8")
	}
	if _, ok := s.ext["DSN"]; ok {
		switch m.Ret {
		case RetFull:
			b.WriteString(" RET=FULL")
		case RetHdrs:
			b.WriteString(" RET=HDRS")
		}
		if m.EnvID != "" {
			b.WriteString(" ENVID=" + xtext(m.EnvID))
		}
	}
	return b.String()
}

// rcptParams are the RCPT TO parameters for r: NOTIFY and ORCPT, when the
// server supports DSN.
func (d *delivery) rcptParams(s *session, r Recipient) string {
	if _, ok := s.ext["DSN"]; !ok || !s.esmtp {
		return ""
	}
	var b strings.Builder
	if r.Notify != 0 {
		if r.Notify&NotifyNever != 0 {
			b.WriteString(" NOTIFY=NEVER")
		} else {
			var words []string
			for _, f := range []struct {
				bit  int
				name string
			}{{NotifySuccess, "SUCCESS"}, {NotifyFailure, "FAILURE"}, {NotifyDelay, "DELAY"}} {
				if r.Notify&f.bit != 0 {
					words = append(words, f.name)
				}
			}
			if len(words) > 0 {
				b.WriteString(" NOTIFY=" + strings.Join(words, ","))
			}
		}
	}
	if r.ORCPT != "" {
		typ, addr, ok := strings.Cut(r.ORCPT, ";")
		if !ok {
			typ, addr = "rfc822", r.ORCPT
		}
		if typ != "" && addr != "" && !strings.ContainsAny(typ, " \t\r\n") {
			b.WriteString(" ORCPT=" + typ + ";" + xtext(addr))
		}
	}
	return b.String()
}

// xtext encodes s as RFC 3461 §4 xtext: printable ASCII but '+' and '='
// as is, everything else as +XX.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "+%02X", c)
		}
	}
	return b.String()
}

// quoteAddress renders an address for MAIL FROM or RCPT TO, quoting the
// local part when it is not a dot-atom (as Postfix's quote_821_local). It
// reports false for an address that cannot appear in a command at all.
func quoteAddress(addr string) (string, bool) {
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c < 0x20 || c == 0x7f {
			return "", false
		}
	}
	if addr == "" {
		return "", true
	}
	local, domain := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, domain = addr[:i], addr[i:]
	}
	if isDotAtom(local) || (len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"') {
		return addr, true
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if local[i] == '"' || local[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String() + domain, true
}

// isDotAtom reports whether s is an RFC 5321 dot-string (bytes above 127
// count as atext, for SMTPUTF8).
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80:
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0:
		default:
			return false
		}
	}
	return true
}
