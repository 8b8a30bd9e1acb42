package fakesmtp

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// chat runs a script against the server: lines starting with "C: " are
// sent, lines starting with "S: " are the expected start of the next reply
// (all its lines, joined with "|").
func chat(t *testing.T, conn net.Conn, script string) {
	t.Helper()
	r := bufio.NewReader(conn)
	for _, l := range strings.Split(strings.TrimSpace(script), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "closed":
			if _, err := readReply(r); err == nil {
				t.Fatal("connection still open")
			}
		case strings.HasPrefix(l, "C: "):
			if _, err := io.WriteString(conn, strings.ReplaceAll(l[3:], `\n`, "\r\n")+"\r\n"); err != nil {
				t.Fatalf("send %q: %v", l, err)
			}
		case strings.HasPrefix(l, "S: "):
			got, err := readReply(r)
			if err != nil {
				t.Fatalf("want %q: %v", l[3:], err)
			}
			if !strings.HasPrefix(got, l[3:]) {
				t.Fatalf("reply %q, want %q", got, l[3:])
			}
		}
	}
}

func readReply(r *bufio.Reader) (string, error) {
	var lines []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return strings.Join(lines, "|"), err
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "|"), nil
		}
	}
}

func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func TestRecordsSession(t *testing.T) {
	s := Start(t, Options{SizeLimit: 1000})
	s.RcptReply("busy@x.test", Reply{Text: "450 4.2.0 mailbox busy"})
	s.RcptReply("gone@x.test", Reply{Text: "550 5.1.1 no such user"})
	c := dial(t, s)
	chat(t, c, `
		S: 220 fake.test ESMTP
		C: EHLO client.test
		S: 250-fake.test|250-PIPELINING|250-SIZE 1000|250-ENHANCEDSTATUSCODES|250-8BITMIME|250-DSN|250 SMTPUTF8
		C: MAIL FROM:<a@b.test> SIZE=10 BODY=8BITMIME
		S: 250 2.1.0
		C: RCPT TO:<busy@x.test>
		S: 450 4.2.0 mailbox busy
		C: RCPT TO:<gone@x.test>
		S: 550 5.1.1
		C: RCPT TO:<ok@x.test> NOTIFY=NEVER
		S: 250 2.1.5
		C: DATA
		S: 354
		C: Subject: x\n\n..dot\nbare\n.
		S: 250 2.0.0 Ok: queued as FAKE1000
		C: QUIT
		S: 221
	`)
	ss := s.Sessions()
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	got := ss[0]
	if got.Helo != "client.test" || !got.Ehlo || got.TLS || !got.Quit || got.Pipelined || len(got.Mails) != 1 {
		t.Fatalf("session = %+v", got)
	}
	m := got.Mails[0]
	if m.From != "a@b.test" || strings.Join(m.FromParams, " ") != "SIZE=10 BODY=8BITMIME" {
		t.Errorf("MAIL = %q %q", m.From, m.FromParams)
	}
	if len(m.Rcpts) != 3 || m.Rcpts[0].Accepted || m.Rcpts[1].Accepted || !m.Rcpts[2].Accepted ||
		m.Rcpts[2].Params[0] != "NOTIFY=NEVER" || m.Rcpts[0].Reply != "450 4.2.0 mailbox busy" {
		t.Errorf("RCPTs = %+v", m.Rcpts)
	}
	if string(m.Data) != "Subject: x\r\n\r\n.dot\r\nbare\r\n" || string(m.Raw) != "Subject: x\r\n\r\n..dot\r\nbare\r\n" || m.BareLF {
		t.Errorf("data %q raw %q bareLF %v", m.Data, m.Raw, m.BareLF)
	}
	if d := s.Delivered(); len(d) != 1 {
		t.Errorf("delivered = %d", len(d))
	}
}

func TestPipeliningAndProtocolErrors(t *testing.T) {
	s := Start(t, Options{NoPipelining: true, NoDSN: true, SizeLimit: 5})
	c := dial(t, s)
	chat(t, c, `
		S: 220
		C: MAIL FROM:<a@b>
		S: 503 5.5.1 Error: send HELO/EHLO first
		C: HELO me
		S: 250 fake.test
		C: DATA
		S: 503
		C: MAIL FROM:<a@b> SIZE=6
		S: 552 5.3.4
		C: MAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA
		S: 250
		S: 250
		S: 354
		C: 123456\n.
		S: 552 5.3.4 Error: message file too big
		C: FOO
		S: 502 5.5.2
		C: QUIT
		S: 221
	`)
	got := s.Sessions()[0]
	if !got.Pipelined || got.Ehlo || got.EhloCount != 1 {
		t.Errorf("session = %+v", got)
	}
	if len(s.Delivered()) != 0 {
		t.Error("an over-size message counted as delivered")
	}
}

func TestInjectedFailures(t *testing.T) {
	tests := []struct {
		name   string
		stage  string
		reply  Reply
		script string
	}{
		{"greeting rejected", Greeting, Reply{Text: "554 5.7.1 go away"}, "S: 554 5.7.1 go away"},
		{"dropped at connect", Greeting, Reply{Drop: true}, "closed"},
		{"multi-line MAIL reply", MAIL, Reply{Text: "451-4.3.0 first\n451 4.3.0 second"},
			"S: 220\nC: EHLO x\nS: 250-\nC: MAIL FROM:<>\nS: 451-4.3.0 first|451 4.3.0 second"},
		{"drop on DATA", DATA, Reply{Drop: true},
			"S: 220\nC: EHLO x\nS: 250\nC: MAIL FROM:<>\nS: 250\nC: RCPT TO:<a@b>\nS: 250\nC: DATA\nclosed"},
		{"delayed end of data", DOT, Reply{Text: "451 4.3.0 try later", Delay: 50 * time.Millisecond},
			"S: 220\nC: EHLO x\nS: 250\nC: MAIL FROM:<>\nS: 250\nC: RCPT TO:<a@b>\nS: 250\nC: DATA\nS: 354\nC: x\\n.\nS: 451 4.3.0 try later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t, Options{})
			s.Reply(tt.stage, tt.reply)
			chat(t, dial(t, s), tt.script)
		})
	}
}

func TestSTARTTLS(t *testing.T) {
	s := Start(t, Options{TLS: true})
	c := dial(t, s)
	chat(t, c, "S: 220\nC: EHLO me\nS: 250-fake.test|250-PIPELINING|250-SIZE|250-STARTTLS\nC: STARTTLS\nS: 220 2.0.0 Ready")
	tc := tls.Client(c, &tls.Config{RootCAs: s.CertPool(), ServerName: "fake.test"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake with the server's own certificate pool: %v", err)
	}
	chat(t, tc, `
		C: MAIL FROM:<a@b>
		S: 503 5.5.1 Error: send HELO/EHLO first
		C: EHLO me
		S: 250-fake.test|250-PIPELINING|250-SIZE|250-ENHANCEDSTATUSCODES
		C: QUIT
		S: 221`)
	got := s.Sessions()[0]
	if !got.TLS || got.EhloCount != 2 {
		t.Errorf("session = %+v", got)
	}

	b := Start(t, Options{TLSBroken: true})
	c = dial(t, b)
	chat(t, c, "S: 220\nC: EHLO me\nS: 250-fake.test|250-PIPELINING|250-SIZE|250-STARTTLS\nC: STARTTLS\nS: 220")
	if err := tls.Client(c, &tls.Config{InsecureSkipVerify: true}).Handshake(); err == nil {
		t.Error("handshake with a broken STARTTLS succeeded")
	}
}
