package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"sluice/internal/cleanup"
	"sluice/internal/spool"
	"sluice/internal/testutil"
)

// FuzzSession sends arbitrary bytes as a client's side of a session: the
// server must answer and end the session without a panic (a session
// recovers a panic and reports it on ErrorLog; that log must stay
// clean), every reply line must be a well-formed reply, and no message
// may be queued unless the server said "queued as".
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n",
		"HELO x\r\nMAIL FROM:<> SIZE=99999999999\r\n",
		"EHLO x\r\nMAIL FROM:<a@b> RET=HDRS ENVID=+2B+ SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<c@d> NOTIFY=NEVER ORCPT=rfc822;+41\r\nDATA\r\n\r\n.\r\n",
		"EHLO x\r\nBDAT 5 LAST\r\nhello",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3\r\nabcBDAT 0 LAST\r\n",
		"\x00\xff\r\n\r\n\r\nSTARTTLS\r\nAUTH PLAIN\r\nVRFY x\r\nRSET\r\nNOOP\r\n",
		"EHLO " + strings.Repeat("a", 3000) + "\r\n",
		"HELO a\x00b\r\nMAIL FROM:<\xc3@x>\r\nMAIL FROM:<a\rb@x>\r\n",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<postmaster>\r\nDATA\r\nx\n.\nMAIL FROM:<e@f>\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 2x\r\nRSET\r\n",
		"GET / HTTP/1.0\r\n",
		"QUIT",
	} {
		f.Add([]byte(s))
	}
	sp := spool.New(f.TempDir())
	sp.NoSync = true
	sp.Create()
	errLog := &testutil.SyncBuffer{}
	cl := cleanup.New(cleanup.Config{Spool: sp, MyHostname: "facts.test", MessageSizeLimit: 100000})
	srv, err := New(Config{Hostname: "facts.test", MyNetworks: loopbackOnly(), Cleanup: cl, MessageSizeLimit: 100000,
		Timeout: 2 * time.Second, ErrorLog: log.New(errLog, "", 0)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		client, server := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- srv.ServeConn(context.Background(), server) }()
		go func() {
			client.Write(input)
			client.Write([]byte("\r\n.\r\nQUIT\r\n"))
		}()
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		out, _ := io.ReadAll(client)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session did not end; server said %q", out)
		}
		if !bytes.HasPrefix(out, []byte("220 ")) {
			t.Fatalf("no greeting: %q", out)
		}
		if strings.Contains(errLog.String(), "panic") {
			t.Fatalf("panic: %s", errLog.String())
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n") {
			if !replyLine.MatchString(l) {
				t.Fatalf("malformed reply line %q in %q", l, out)
			}
		}
	})
}

// replyLine is a reply line: code, separator, printable text (UTF-8
// from the client may be echoed).
var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -][^\x00-\x1f\x7f]*$`)

// FuzzParsePath: MAIL/RCPT arguments. Whatever is accepted has no
// control characters, angle brackets or white space outside quotes, and
// parsing is deterministic.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"FROM:<a@b.test>", "FROM:<> SIZE=10", "TO:<postmaster>", "TO:<\"a b\"@x> NOTIFY=NEVER",
		"TO:<@r1,@r2:u@d>", "FROM:a@b", "TO: <x@y>", "TO:<a\x00b>", "FROM:<unterminated", "TO:<a>b>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) {
		for _, kw := range []string{"FROM:", "TO:", ""} {
			addr, params, st := parsePath(args, kw)
			a2, p2, st2 := parsePath(args, kw)
			if addr != a2 || st != st2 || strings.Join(params, " ") != strings.Join(p2, " ") {
				t.Fatalf("not deterministic: %q", args)
			}
			if st != pathOK {
				continue
			}
			for i := 0; i < len(addr); i++ {
				if c := addr[i]; c < 0x20 || c == 0x7f || c == '<' || c == '>' {
					t.Fatalf("parsePath(%q, %q) accepted %q", args, kw, addr)
				}
			}
			for _, p := range params {
				if p == "" || strings.ContainsAny(p, " \t") {
					t.Fatalf("bad parameter %q from %q", p, args)
				}
			}
		}
	})
}

// FuzzDataReader: DATA content. The reader never returns more than it
// got, ends only at CRLF "." CRLF, and undoes dot-stuffing.
func FuzzDataReader(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n.\r\n",
		"..dot\r\n.\r\nMAIL FROM:<x>\r\n",
		"a\n.\nb\r\n.\r\n",
		"no end",
		strings.Repeat("x", 5000) + "\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := newDataReader(bufio.NewReaderSize(bytes.NewReader(in), 4096), 0)
		out, err := io.ReadAll(r)
		end := bytes.Index(append([]byte("\r\n"), in...), []byte("\r\n.\r\n"))
		if end < 0 {
			if err == nil {
				t.Fatalf("no terminator in %q, but the reader ended cleanly", in)
			}
			return
		}
		if err != nil {
			t.Fatalf("terminator at %d in %q, but %v", end, in, err)
		}
		if len(out) > end {
			t.Fatalf("read %d bytes, more than the %d before the terminator", len(out), end)
		}
	})
}
