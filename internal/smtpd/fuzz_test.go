package smtpd

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"strings"
	"testing"
	"time"

	"sluice/internal/cleanup"
	"sluice/internal/spool"
)

// FuzzSession sends arbitrary bytes as a client's side of a session: the
// server must answer and end the session without a panic (go-smtp turns
// a panic into "421 Internal server error" and logs it; the log must stay
// clean).
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n",
		"HELO x\r\nMAIL FROM:<> SIZE=99999999999\r\n",
		"EHLO x\r\nMAIL FROM:<a@b> RET=HDRS ENVID=+2B+ SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<c@d> NOTIFY=NEVER ORCPT=rfc822;+41\r\nDATA\r\n\r\n.\r\n",
		"EHLO x\r\nBDAT 5 LAST\r\nhello",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3\r\nabcBDAT 0 LAST\r\n",
		"\x00\xff\r\n\r\n\r\nSTARTTLS\r\nAUTH PLAIN\r\nVRFY x\r\nRSET\r\nNOOP\r\n",
		"EHLO " + strings.Repeat("a", 3000) + "\r\n",
	} {
		f.Add([]byte(s))
	}
	sp := spool.New(f.TempDir())
	sp.NoSync = true
	sp.Create()
	errLog := &syncBuffer{}
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
	})
}
