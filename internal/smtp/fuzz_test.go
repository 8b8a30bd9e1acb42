package smtp

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

var dsnPattern = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)

// FuzzReadReply: any bytes from a server give a reply or an error, never a
// panic, and a reply's DSN code is well formed.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"250 ok\r\n", "250-a\r\n250 b\r\n", "garbage\r\n550 5.1.1 x\r\n", "25", "2500 x\r\n",
		"450 9.9.9 bad class\r\n", "550 5.1.1234 long\r\n", "250-\r\n", "\x00\xff\r\n", "999 x\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := readReply(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if d := rep.dsn(); !dsnPattern.MatchString(d) {
			t.Errorf("dsn %q from %q", d, b)
		}
		if len(rep.lines) == 0 {
			t.Errorf("reply without lines from %q", b)
		}
	})
}

// scriptServer answers the greeting with the first reply of script and
// each line the client sends with the next one ("\x00" separates replies,
// written as they are: line ends are the script's business). When the
// script runs out it closes the connection.
func scriptServer(t testing.TB, script string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	replies := strings.Split(script, "\x00")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(3 * time.Second))
				r := bufio.NewReader(c)
				for i, rep := range replies {
					if i > 0 {
						if _, err := r.ReadSlice('\n'); err != nil {
							return
						}
					}
					if _, err := c.Write([]byte(rep)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// FuzzConversation plays an arbitrary server against the client: whatever
// it says, every recipient gets exactly one well-formed result, and a
// recipient is only reported sent after a 2xx reply to the final dot.
func FuzzConversation(f *testing.F) {
	normal := []string{
		"220 hi\r\n", "250-x\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-DSN\r\n250 8BITMIME\r\n",
		"250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n",
	}
	join := func(parts ...string) string { return strings.Join(parts, "\x00") }
	f.Add(join(normal...) + "\x00\x00\x00\x00\x00\x00250 queued\r\n")
	f.Add(join(normal[:4]...) + "\x00550 5.1.1 no\r\n\x00354 go\r\n")
	f.Add(join("220 hi\r\n", "250-x\r\n250 STARTTLS\r\n", "220 go\r\n", "garbage"))
	f.Add(join("220 hi\r\n", "502 no\r\n", "250 hi\r\n", "250 ok\r\n", "354 ok\r\n"))
	f.Add(join("220 hi\r\n", "250 x\r\n", "421 bye\r\n"))
	f.Add(join("220-a\r\n220-b\r\n", "x"))
	f.Add(join("220 hi\r\n", "250 x\r\n", "250 ok\r\n250 ok\r\n250 ok\r\n354 x\r\n"))
	f.Add("\xff\xfe\r\n")
	f.Add(join("220 hi\r\n", "250 x\r\n", "250 ok", "250 ok\r\n"))
	f.Fuzz(func(t *testing.T, script string) {
		if len(script) > 4096 {
			return
		}
		addr := scriptServer(t, script)
		c := &Client{
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
			ConnectTimeout: time.Second,
			CommandTimeout: 200 * time.Millisecond,
			TLSLevel:       "may",
		}
		defer c.Close()
		m := message(testText, "a@example.test", "b@example.test", "c@example.test")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		res := c.Deliver(ctx, "[127.0.0.1]", m)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("delivery took %v", d)
		}
		if len(res) != 3 {
			t.Fatalf("%d results", len(res))
		}
		for _, r := range res {
			if r.Status < Sent || r.Status > Bounced || !dsnPattern.MatchString(r.DSN) || r.Reason == "" || r.Relay == "" {
				t.Errorf("bad result %+v", r)
			}
			if r.Status == Sent && (r.DSN[0] != '2' || !strings.HasPrefix(r.Reason, "2")) {
				t.Errorf("sent without a 2xx reply: %+v", r)
			}
		}
	})
}
