package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/spool"
)

// The attacks found against the go-smtp based server, each replayed as
// a chat script. See the package comment for the rules they check.

// smuggled is what an attacker hides in a message body, hoping the
// server reads it as commands after a data error.
const smuggled = "MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@facts.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nhidden\r\n.\r\nQUIT\r\n"

// expectClosed reads until EOF and fails if anything but EOF or a reset
// follows: after a data error the server says nothing more.
func (c *client) expectClosed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c.r)
	if len(rest) > 0 {
		c.t.Errorf("server said more after closing: %q", rest)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		c.t.Errorf("connection not closed: %v", err)
	}
}

// TestDataSlowBodyDesync: a client that sends one body line at a time,
// each well within smtpd_timeout, past the limit of the whole transfer,
// with commands hidden in the body. The server answers 421 and closes;
// nothing is queued, the hidden commands never run.
func TestDataSlowBodyDesync(t *testing.T) {
	h := start(t, func(c *Config) { c.Timeout = 2 * time.Second; c.DataTimeLimit = 600 * time.Millisecond })
	c := h.dial(t)
	c.chat(`
		S: ^220 facts.test ESMTP sluice$
		C: EHLO slow.test
		S: ^250-
		C: MAIL FROM:<a@src.test>
		S: ^250 2\.1\.0 Ok$
		C: RCPT TO:<b@facts.test>
		S: ^250 2\.1\.5 Ok$
		C: DATA
		S: ^354 End data with <CR><LF>\.<CR><LF>$
	`)
	go func() {
		for i := 0; i < 12; i++ {
			if _, err := fmt.Fprintf(c.conn, "Line-%d: slow\r\n", i); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.conn.Write([]byte(".\r\n" + smuggled))
	}()
	c.chat(`S: ^421 4\.4\.2 facts\.test Error: timeout exceeded$`)
	c.expectClosed()
	log := h.waitLog(t, "disconnect from")
	if !regexp.MustCompile(`timeout after DATA \(\d+ bytes\) from unknown\[127\.0\.0\.1\]\n`).MatchString(log) {
		t.Errorf("no timeout line:\n%s", log)
	}
	if !strings.Contains(log, "disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=0/1 commands=3/4\n") {
		t.Errorf("counts:\n%s", log)
	}
	if n := countQueue(t, h.sp, spool.Incoming); n != 0 {
		t.Errorf("%d messages queued", n)
	}
}

// TestDataSilentTimeout: a client that stops sending in DATA gets the
// same after smtpd_timeout, the per-read deadline.
func TestDataSilentTimeout(t *testing.T) {
	h := start(t, func(c *Config) { c.Timeout = 300 * time.Millisecond })
	c := h.dial(t)
	c.chat(`
		S: ^220
		C: MAIL FROM:<a@src.test>
		S: ^250
		C: RCPT TO:<b@facts.test>
		S: ^250
		C: DATA
		S: ^354
		C: Subject: x
		S: ^421 4\.4\.2 facts\.test Error: timeout exceeded$
	`)
	c.conn.Write([]byte(smuggled))
	c.expectClosed()
	h.waitLog(t, "timeout after DATA (12 bytes) from unknown[127.0.0.1]\n")
	if n := countQueue(t, h.sp, spool.Incoming); n != 0 {
		t.Errorf("%d messages queued", n)
	}
}

// TestBDATSlowDesync: the same with a BDAT chunk that arrives too slowly.
func TestBDATSlowDesync(t *testing.T) {
	h := start(t, func(c *Config) { c.Timeout = 2 * time.Second; c.DataTimeLimit = 600 * time.Millisecond })
	c := h.dial(t)
	c.chat(`
		S: ^220
		C: EHLO slow.test
		S: ^250-
		C: MAIL FROM:<a@src.test>
		S: ^250
		C: RCPT TO:<b@facts.test>
		S: ^250
		C: BDAT 1000 LAST
	`)
	go func() {
		for i := 0; i < 12; i++ {
			if _, err := c.conn.Write([]byte("0123456789")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.conn.Write([]byte(strings.Repeat("x", 880) + smuggled))
	}()
	c.chat(`S: ^421 4\.4\.2 facts\.test Error: timeout exceeded$`)
	c.expectClosed()
	log := h.waitLog(t, "disconnect from")
	if !regexp.MustCompile(`timeout after BDAT \(\d+ bytes\) from unknown\[127\.0\.0\.1\]\n`).MatchString(log) ||
		!strings.Contains(log, " bdat=0/1 commands=3/4\n") {
		t.Errorf("log:\n%s", log)
	}
	if n := countQueue(t, h.sp, spool.Incoming); n != 0 {
		t.Errorf("%d messages queued", n)
	}
}

// TestBDAT: chunks are queued as one message; errors skip the chunk's
// bytes, which are never read as commands.
func TestBDAT(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	id := c.chat(`
		S: ^220
		C: EHLO x
		S: CHUNKING
		C! BDAT 5\r\nMAIL 
		S: ^503 5\.5\.1 Error: need RCPT command$
		C: MAIL FROM:<a@src.test>
		S: ^503 5\.5\.1 Error: MAIL after BDAT$
		C: RSET
		S: ^250
		C: MAIL FROM:<a@src.test>
		S: ^250
		C: RCPT TO:<b@facts.test>
		S: ^250
		C! BDAT 19\r\nSubject: chunks\r\n\r\n
		S: ^250 2\.0\.0 Ok: 19 bytes$
		C! BDAT 0\r\n
		S: ^250 2\.0\.0 Ok: 0 bytes$
		C: DATA
		S: ^503 5\.5\.1 Error: DATA after BDAT$
		C: RCPT TO:<late@facts.test>
		S: ^503 5\.5\.1 Error: RCPT after BDAT$
		C: MAIL FROM:<again@src.test>
		S: ^503 5\.5\.1 Error: MAIL after BDAT$
		C: NOOP
		S: ^250
		C! BDAT 12 LAST\r\nRSET\r\nQUIT\r\n
		S: ^250 2\.0\.0 Ok: 31 bytes queued as ([0-9A-F]+)$
		C: QUIT
		S: ^221 2\.0\.0 Bye$
	`)[0]
	_, text := h.envelope(t, id)
	if !strings.Contains(text, "Subject: chunks\n") || !strings.HasSuffix(text, "\n\nRSET\nQUIT\n") {
		t.Errorf("content:\n%s", text)
	}
	h.waitLog(t, "disconnect from unknown[127.0.0.1] ehlo=1 mail=1/3 rcpt=1/2 data=0/1 bdat=3/4 rset=1 noop=1 quit=1 commands=9/14\n")

	// An unfinished transfer ended by RSET queues nothing.
	h2 := start(t, func(c *Config) { c.MessageSizeLimit = 100 })
	c2 := h2.dial(t)
	c2.chat(`
		S: ^220
		C: MAIL FROM:<a@src.test>
		S: ^250
		C: RCPT TO:<b@facts.test>
		S: ^250
		C! BDAT 4\r\nabcd
		S: ^250 2\.0\.0 Ok: 4 bytes$
		C: RSET
		S: ^250
		C: MAIL FROM:<a@src.test>
		S: ^250
		C: RCPT TO:<b@facts.test>
		S: ^250
		C! BDAT 101\r\n` + strings.Repeat("y", 101) + `
		S: ^552 5\.3\.4 Chunk exceeds message size limit$
		C! BDAT 3 LAST\r\nabc
		S: ^551 5\.0\.0 Discarded 3 bytes after earlier error$
		C: BDAT 2x
		S: ^521 5\.5\.4 Syntax: BDAT count \[LAST\]$
	`)
	c2.expectClosed()
	h2.waitLog(t, "warning: NOQUEUE: malformed BDAT command syntax from unknown[127.0.0.1]: BDAT 2x\n")
	h2.waitLog(t, "disconnect from")
	if n := countQueue(t, h2.sp, spool.Incoming); n != 0 {
		t.Errorf("%d messages queued", n)
	}
}

// TestFlood: 400 connections each sending 250 KB without a line end.
// The per-client limit refuses all but 50 with 421; the 50 hold at most
// a line buffer each; and a client from another address is served.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("400 connections")
	}
	h := start(t, func(c *Config) {
		c.Timeout = 5 * time.Second
		c.Limits = Limits{ConnectionCount: 50, Process: 100, Exceptions: []netip.Prefix{}}
	})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	junk := make([]byte, 250<<10)
	for i := range junk {
		junk[i] = 'a' + byte(i%26)
	}
	const flooders = 400
	var refused atomic.Int32
	var wg sync.WaitGroup
	conns := make(chan net.Conn, flooders)
	for i := 0; i < flooders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", h.addr, 10*time.Second)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			conns <- c
			c.SetDeadline(time.Now().Add(20 * time.Second))
			greeting, _ := bufio.NewReader(c).ReadString('\n')
			if strings.HasPrefix(greeting, "421 4.7.0 facts.test Error: too many connections from 127.0.0.1\r\n") {
				refused.Add(1)
				return
			}
			if !strings.HasPrefix(greeting, "220 ") {
				t.Errorf("flooder got %q", greeting)
				return
			}
			c.Write(junk)
		}()
	}
	wg.Wait()
	close(conns)
	t.Cleanup(func() {
		for c := range conns {
			c.Close()
		}
	})
	if got := refused.Load(); got != flooders-50 {
		t.Errorf("%d flooders refused, want %d", got, flooders-50)
	}

	var during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&during)
	// 50 sessions × (4 KB reader + 2 KB line + 1 KB writer + stack) is
	// well under a megabyte; go-smtp held every byte (RSS 28 → 438 MB).
	const bound = 16 << 20
	grew := int64(during.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap before %d KB, during the flood %d KB (grew %d KB)", before.HeapAlloc>>10, during.HeapAlloc>>10, grew>>10)
	if grew > bound {
		t.Errorf("heap grew by %d bytes during the flood, bound %d", grew, bound)
	}

	// A client from another loopback address is served at once.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", h.addr)
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	}
	began := time.Now()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &client{t: t, conn: nc, r: bufio.NewReader(nc)}
	c.chat(`
		S: ^220 facts\.test ESMTP sluice$
		C: EHLO normal.test
		S: ^250-
		C: MAIL FROM:<a@src.test>
		S: ^250
		C: RCPT TO:<b@facts.test>
		S: ^250
		C: DATA
		S: ^354
		C: Subject: during the flood
		C: .
		S: ^250 2\.0\.0 Ok: queued as
		C: QUIT
		S: ^221
	`)
	t.Logf("normal client served in %v during the flood", time.Since(began))
	nc.Close()
	h.waitLog(t, "warning: Connection concurrency limit exceeded: 51 from unknown[127.0.0.1] for service smtp\n")
}

// TestCommandLine: NUL cuts a command line; a bare CR or invalid UTF-8
// refuses it; a line over 2048 bytes is cut with a warning; a last line
// without its line end is never run.
func TestCommandLine(t *testing.T) {
	h := start(t, func(c *Config) { c.MyNetworks = nil })
	c := h.dial(t)
	c.chat(`
		S: ^220
		C! HELO a\0b\r\n
		S: ^250 facts\.test$
		C! EHLO a\rb\r\n
		S: ^500 5\.5\.2 Error: bad syntax$
		C! MAIL FROM:<\xc3@src.test>\r\n
		S: ^500 5\.5\.2 Error: bad UTF-8 syntax$
		C! MAIL FROM:<\xc3@src.test> SMTPUTF8\r\n
		S: ^500 5\.5\.2 Error: bad UTF-8 syntax$
		C! MAIL FROM:<a\0b@src.test>\r\n
		S: ^501 5\.1\.7 Bad sender address syntax$
		C! MAIL FROM:<\xc3\xa9@src.test> SMTPUTF8\r\n
		S: ^250 2\.1\.0 Ok$
		C! RCPT TO:<x\0y@facts.test>\r\n
		S: ^501 5\.1\.3 Bad recipient address syntax$
		C! RCPT TO:<\xffx@facts.test>\r\n
		S: ^500 5\.5\.2 Error: bad UTF-8 syntax$
		C! RCPT TO:<x\ry@facts.test>\r\n
		S: ^500 5\.5\.2 Error: bad syntax$
		C: RCPT TO:<nobody@elsewhere.test>
		S: ^554 5\.7\.1 <nobody@elsewhere\.test>: Relay access denied$
		C: NOOP ` + strings.Repeat("n", 3000) + `
		S: ^250 2\.0\.0 Ok$
		C! NOOP\r\nQUIT
	`)
	c.chat(`S: ^250 2\.0\.0 Ok$`)
	c.conn.(*net.TCPConn).CloseWrite()
	c.expectClosed()
	log := h.waitLog(t, "disconnect from")
	for _, want := range []string{
		"NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <nobody@elsewhere.test>: Relay access denied; from=<\u00e9@src.test> to=<nobody@elsewhere.test> proto=SMTP helo=<a>\n",
		"warning: unknown[127.0.0.1]: request longer than 2048: NOOP nnnnnnnnnnnnnnnnnnnnnnnnn...\n",
		"lost connection after NOOP from unknown[127.0.0.1]\n",
		"disconnect from unknown[127.0.0.1] helo=1 mail=1/2 rcpt=0/2 noop=2 commands=4/7\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestLogInjection: a HELO name with ESC, BEL and other controls reaches
// the mail log as '?'.
func TestLogInjection(t *testing.T) {
	h := start(t, func(c *Config) { c.MyNetworks = nil })
	c := h.dial(t)
	c.chat(`
		S: ^220
		C! EHLO a\x1b[31mb\x07c\x7fd\0tail\r\n
		S: ^250-
		C: MAIL FROM:<s@src.test>
		S: ^250
		C: RCPT TO:<r@elsewhere.test>
		S: ^554
		C: QUIT
		S: ^221
	`)
	log := h.waitLog(t, "disconnect from")
	if !strings.Contains(log, " proto=ESMTP helo=<a?[31mb?c?d>\n") {
		t.Errorf("helo not escaped:\n%q", log)
	}
	if strings.ContainsAny(log, "\x1b\x07\x7f\x00\r") {
		t.Errorf("raw control bytes in the log: %q", log)
	}
}

// TestPipeliningViolations: sending ahead of the replies without
// PIPELINING is logged once; with smtpd_forbid_unauth_pipelining it is
// refused and the session ends.
func TestPipeliningViolations(t *testing.T) {
	h := start(t, nil)
	c := h.dial(t)
	c.chat(`
		S: ^220
		C: HELO x
		C: MAIL FROM:<a@b.test>
		S: ^250 facts\.test$
		S: ^250 2\.1\.0 Ok$
		C: RSET
		C: NOOP
		S: ^250
		S: ^250
		C: EHLO x
		S: ^250-
		C: MAIL FROM:<a@b.test>
		C: RCPT TO:<c@facts.test>
		C: RSET
		S: ^250
		S: ^250
		S: ^250
		C: QUIT
		S: ^221
	`)
	log := h.waitLog(t, "disconnect from")
	if n := strings.Count(log, "improper command pipelining"); n != 1 ||
		!strings.Contains(log, "improper command pipelining after HELO from unknown[127.0.0.1]: MAIL FROM:<a@b.test>\\r\\n\n") {
		t.Errorf("%d pipelining lines:\n%s", n, log)
	}

	h2 := start(t, func(c *Config) {
		c.ForbidUnauthPipelining = true
		// The lookup lets the client's early bytes arrive before the
		// server looks for them.
		c.LookupAddr = func(ctx context.Context, addr string) ([]string, error) {
			time.Sleep(100 * time.Millisecond)
			return nil, errors.New("no name")
		}
	})
	c2 := h2.dial(t)
	c2.chat(`
		S: ^220
		C: HELO x
		C: MAIL FROM:<a@b.test>
		S: ^554 5\.5\.0 Error: SMTP protocol synchronization$
	`)
	c2.expectClosed()
	h2.waitLog(t, "disconnect from unknown[127.0.0.1] helo=0/1 commands=0/1\n")

	c3 := h2.dial(t)
	c3.chat(`
		C: EHLO early
		S: ^554 5\.5\.0 Error: SMTP protocol synchronization$
	`)
	c3.expectClosed()
	h2.waitLog(t, "improper command pipelining after CONNECT from unknown[127.0.0.1]: EHLO early\\r\\n\n")

	// After EHLO, pipelining is allowed up to DATA.
	c4 := h2.dial(t)
	c4.chat(`
		S: ^220
		C: EHLO x
		S: ^250-
		C: MAIL FROM:<a@b.test>
		C: RCPT TO:<c@facts.test>
		C: DATA
		S: ^250
		S: ^250
		S: ^354
		C: .
		S: ^250 2\.0\.0 Ok: queued as
	`)
}

// countingSleep records the error sleeps instead of sleeping long.
type countingSleep struct{ n atomic.Int32 }

func (s *countingSleep) sleep(time.Duration) { s.n.Add(1) }

// TestErrorLimits: Postfix's error accounting. 20 errors are answered,
// the last ten after smtpd_error_sleep_time; the next command gets 421
// (also after a sleep) and the connection is closed.
func TestErrorLimits(t *testing.T) {
	sleeps := &countingSleep{}
	h := start(t, func(c *Config) { c.Sleep = sleeps.sleep })
	c := h.dial(t)
	script := "S: ^220\n"
	for i := 0; i < 21; i++ {
		script += "C: FOO\n"
	}
	for i := 0; i < 20; i++ {
		script += "S: ^500 5\\.5\\.2 Error: command not recognized$\n"
	}
	script += "S: ^421 4\\.7\\.0 facts\\.test Error: too many errors$\n"
	c.chat(script)
	c.expectClosed()
	h.waitLog(t, "too many errors after UNKNOWN from unknown[127.0.0.1]\n")
	h.waitLog(t, "disconnect from unknown[127.0.0.1] unknown=0/20 commands=0/20\n")
	if n := sleeps.n.Load(); n != 11 {
		t.Errorf("%d error sleeps, want 11", n)
	}

	// A delivered message clears the count.
	c2 := h.dial(t)
	script = "S: ^220\n" + strings.Repeat("C: FOO\nS: ^500\n", 15) + `
		C: MAIL FROM:<a@b.test>
		S: ^250
		C: RCPT TO:<c@facts.test>
		S: ^250
		C: DATA
		S: ^354
		C: .
		S: ^250 2\.0\.0 Ok: queued as
	` + strings.Repeat("C: FOO\nS: ^500\n", 15) + "C: QUIT\nS: ^221"
	c2.chat(script)
}

// TestJunkCommands: after 100 HELO/EHLO/NOOP/VRFY/ETRN/RSET commands,
// each further one counts as an error: Postfix answers 120 NOOPs after an
// EHLO and then 421.
func TestJunkCommands(t *testing.T) {
	sleeps := &countingSleep{}
	h := start(t, func(c *Config) { c.Sleep = sleeps.sleep })
	c := h.dial(t)
	c.chat("S: ^220\nC: EHLO x\nS: ^250-")
	c.conn.Write([]byte(strings.Repeat("NOOP\r\n", 125)))
	for i := 0; i < 120; i++ {
		c.chat(`S: ^250 2\.0\.0 Ok$`)
	}
	c.chat(`S: ^421 4\.7\.0 facts\.test Error: too many errors$`)
	h.waitLog(t, "too many errors after NOOP from unknown[127.0.0.1]\n")
	h.waitLog(t, "disconnect from unknown[127.0.0.1] ehlo=1 noop=120 commands=121\n")
	if n := sleeps.n.Load(); n != 11 {
		t.Errorf("%d error sleeps, want 11", n)
	}
}

// TestPostfixSequencing: the replies and orders where go-smtp differed
// from Postfix.
func TestPostfixSequencing(t *testing.T) {
	h := start(t, func(c *Config) {
		c.MyNetworks, c.RecipientLimit = nil, 2
		c.Sleep = (&countingSleep{}).sleep // many errors here: no waiting
	})
	c := h.dial(t)
	c.chat(`
		S: ^220 facts\.test ESMTP sluice$
		C: MAIL FROM:<a@b.test>
		S: ^250 2\.1\.0 Ok$
		C: MAIL FROM:<a@b.test>
		S: ^503 5\.5\.1 Error: nested MAIL command$
		C: RCPT TO:<postmaster>
		S: ^250 2\.1\.5 Ok$
		C: RCPT TO:<Postmaster@facts.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;pm+2Bx@facts.test
		S: ^250 2\.1\.5 Ok$
		C: RCPT TO:<third@facts.test>
		S: ^452 4\.5\.3 Error: too many recipients$
		C: RCPT TO:<x@facts.test> NOTIFY=NEVER,SUCCESS
		S: ^501 5\.5\.4 Error: Bad NOTIFY parameter syntax$
		C: RCPT TO:<x@facts.test> ORCPT=bad
		S: ^501 5\.5\.4 Error: Bad ORCPT parameter syntax$
		C: RCPT TO:<x@facts.test> FOO=1
		S: ^555 5\.5\.4 Unsupported option: FOO=1$
		C: RCPT TO:<>
		S: ^501 5\.1\.3 Bad recipient address syntax$
		C: VRFY
		S: ^501 5\.5\.4 Syntax: VRFY address \[SMTPUTF8\]$
		C: VRFY postmaster
		S: ^252 2\.0\.0 postmaster$
		C: ETRN
		S: ^503 Error: MAIL transaction in progress$
		C: RSET x
		S: ^501 5\.5\.4 Syntax: RSET$
		C: HELO
		S: ^501 Syntax: HELO hostname$
		C: EHLO
		S: ^501 Syntax: EHLO hostname$
		C: STARTTLS
		S: ^502 5\.5\.1 Error: command not implemented$
		C: AUTH PLAIN
		S: ^503 5\.5\.1 Error: authentication not enabled$
		C: RSET
		S: ^250 2\.0\.0 Ok$
		C: ETRN
		S: ^500 Syntax: ETRN domain$
		C: MAIL FROM:<a@b.test> SIZE=99999999999
		S: ^552 5\.3\.4 Message size exceeds fixed limit$
		C: MAIL FROM:<a@b.test> SIZE=x
		S: ^501 5\.5\.4 Bad message size syntax$
		C: MAIL FROM:<a@b.test> BODY=FOO
		S: ^555 5\.5\.4 Unsupported option: BODY=FOO$
		C: MAIL FROM:<a@b.test> RET=FULL RET=HDRS
		S: ^501 5\.5\.4 Bad RET parameter syntax$
		C: MAIL FROM:
		S: ^501 5\.5\.4 Syntax: MAIL FROM:<address>$
		C: MAIL FROM:a@b.test SIZE=10 SIZE=20
		S: ^250 2\.1\.0 Ok$
		C: QUIT extra
		S: ^221 2\.0\.0 Bye$
	`)

	h2 := start(t, func(c *Config) {
		c.HeloRequired = true
		c.DiscardEHLOKeywords = []string{"chunking"}
		c.Banner = "facts.test ESMTP Postfix"
	})
	c2 := h2.dial(t)
	c2.chat(`
		S: ^220 facts\.test ESMTP Postfix$
		C: MAIL FROM:<a@b.test>
		S: ^503 5\.5\.1 Error: send HELO/EHLO first$
		C: EHLO x
		S: ^250-facts\.test\n250-PIPELINING\n250-SIZE 10240000\n250-VRFY\n250-ETRN\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250-DSN\n250 SMTPUTF8$
		C: MAIL FROM:<a@b.test>
		S: ^250
		C: RCPT TO:<c@facts.test>
		S: ^250
		C! BDAT 4 LAST\r\nQUIT
		S: ^502 5\.5\.1 Error: command not implemented$
		C: GET / HTTP/1.0
		S: ^221 2\.7\.0 Error: I can break rules, too\. Goodbye\.$
	`)
	c2.expectClosed()
	h2.waitLog(t, "warning: non-SMTP command from unknown[127.0.0.1]: GET / HTTP/1.0\n")
}

// TestConnectionRateLimit: past smtpd_client_connection_rate_limit a
// client is refused before the greeting; mynetworks is exempt by default.
func TestConnectionRateLimit(t *testing.T) {
	h := start(t, func(c *Config) {
		c.Limits = Limits{ConnectionRate: 2, RateTimeUnit: time.Hour, Exceptions: []netip.Prefix{}}
	})
	for i := 0; i < 2; i++ {
		c := h.dial(t)
		c.chat("S: ^220\nC: QUIT\nS: ^221")
	}
	c := h.dial(t)
	c.chat(`S: ^421 4\.7\.0 facts\.test Error: too many connections from 127\.0\.0\.1$`)
	c.expectClosed()
	h.waitLog(t, "warning: Connection rate limit exceeded: 3 from unknown[127.0.0.1] for service smtp\n")
	h.waitLog(t, "disconnect from unknown[127.0.0.1] commands=0/0\n")

	h2 := start(t, func(c *Config) { c.Limits = Limits{ConnectionRate: 1, ConnectionCount: 1} })
	for i := 0; i < 3; i++ {
		c := h2.dial(t)
		c.chat("S: ^220\nC: QUIT\nS: ^221")
	}
}

// TestProcessLimit: past default_process_limit sessions, a new client
// is refused; the sessions in progress go on.
func TestProcessLimit(t *testing.T) {
	h := start(t, func(c *Config) { c.Limits = Limits{Process: 2} })
	a, b := h.dial(t), h.dial(t)
	a.chat("S: ^220")
	b.chat("S: ^220")
	c := h.dial(t)
	c.chat(`S: ^421 4\.3\.2 All server ports are busy$`)
	a.chat("C: NOOP\nS: ^250\nC: QUIT\nS: ^221")
	b.chat("C: NOOP\nS: ^250")
	a.expectClosed()
	h.waitLog(t, "disconnect from unknown[127.0.0.1] noop=1 quit=1 commands=2\n")
	d := h.dial(t)
	d.chat("S: ^220\nC: QUIT\nS: ^221")
	h.waitLog(t, `warning: service "smtp" has reached its process limit "2": new clients are refused (first: unknown[127.0.0.1])`+"\n")
}

// TestStartTLSInjection: commands sent in plain text right after
// STARTTLS are dropped, not run under TLS (CVE-2011-0411's class).
func TestStartTLSInjection(t *testing.T) {
	cert := selfSigned(t)
	h := start(t, func(c *Config) { c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}} })
	c := h.dial(t)
	c.chat(`
		S: ^220
		C: EHLO x
		S: STARTTLS
		C: STARTTLS
		C: MAIL FROM:<injected@evil.test>
		S: ^220 2\.0\.0 Ready to start TLS$
	`)
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = &client{t: t, conn: tc, r: bufio.NewReader(tc)}
	c.chat(`
		C: EHLO x
		S: ^250-facts\.test\n250-PIPELINING\n250-SIZE 10240000\n250-VRFY\n250-ETRN\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 CHUNKING$
		C: RCPT TO:<a@facts.test>
		S: ^503 5\.5\.1 Error: need MAIL command$
		C: STARTTLS
		S: ^554 5\.5\.1 Error: TLS already active$
		C: QUIT
		S: ^221
	`)
	h.waitLog(t, "improper command pipelining after STARTTLS from unknown[127.0.0.1]: MAIL FROM:<injected@evil.test>\\r\\n\n")
	h.waitLog(t, "disconnect from unknown[127.0.0.1] ehlo=2 starttls=1/2 rcpt=0/1 quit=1 commands=4/6\n")
}

// TestRSETFlood: 20,000 pipelined RSETs (go-smtp answered them all) end
// after the junk limit and twenty errors.
func TestRSETFlood(t *testing.T) {
	sleeps := &countingSleep{}
	h := start(t, func(c *Config) { c.Sleep = sleeps.sleep })
	c := h.dial(t)
	c.chat("S: ^220")
	go c.conn.Write([]byte(strings.Repeat("RSET\r\n", 20000)))
	for i := 0; i < 121; i++ {
		c.chat(`S: ^250 2\.0\.0 Ok$`)
	}
	c.chat(`S: ^421 4\.7\.0 facts\.test Error: too many errors$`)
	h.waitLog(t, "disconnect from unknown[127.0.0.1] rset=121 commands=121\n")
}
