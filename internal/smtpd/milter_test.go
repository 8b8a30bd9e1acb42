package smtpd

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gm "github.com/d--j/go-milter"

	"sluice/internal/milter"
	"sluice/internal/spool"
)

// scripted is a milter whose answers the test writes: each hook, when
// set, decides that stage; unset ones continue.
type scripted struct {
	gm.NoOpMilter
	connect func(m gm.Modifier) (*gm.Response, error)
	mail    func(from string, m gm.Modifier) (*gm.Response, error)
	rcpt    func(to string, m gm.Modifier) (*gm.Response, error)
	eom     func(m gm.Modifier) (*gm.Response, error)
	seen    *milterSeen
}

// milterSeen records what the milter was told.
type milterSeen struct {
	mu      sync.Mutex
	headers []string
	body    []byte
	macros  map[string]string
}

func (s *milterSeen) macro(m gm.Modifier, names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if v, ok := m.GetEx(n); ok {
			s.macros[n] = v
		}
	}
}

func (s *scripted) Connect(host, family string, port uint16, addr string, m gm.Modifier) (*gm.Response, error) {
	s.seen.macro(m, "j", "{daemon_name}", "{client_addr}", "{client_name}", "{client_port}", "_")
	if s.connect != nil {
		return s.connect(m)
	}
	return gm.RespContinue, nil
}

func (s *scripted) MailFrom(from, args string, m gm.Modifier) (*gm.Response, error) {
	s.seen.macro(m, "{mail_addr}")
	if s.mail != nil {
		return s.mail(from, m)
	}
	return gm.RespContinue, nil
}

func (s *scripted) RcptTo(to, args string, m gm.Modifier) (*gm.Response, error) {
	s.seen.macro(m, "{rcpt_addr}")
	if s.rcpt != nil {
		return s.rcpt(to, m)
	}
	return gm.RespContinue, nil
}

func (s *scripted) Header(name, value string, m gm.Modifier) (*gm.Response, error) {
	s.seen.mu.Lock()
	s.seen.headers = append(s.seen.headers, name+": "+value)
	s.seen.mu.Unlock()
	return gm.RespContinue, nil
}

func (s *scripted) BodyChunk(chunk []byte, m gm.Modifier) (*gm.Response, error) {
	s.seen.mu.Lock()
	s.seen.body = append(s.seen.body, chunk...)
	s.seen.mu.Unlock()
	return gm.RespContinue, nil
}

func (s *scripted) EndOfMessage(m gm.Modifier) (*gm.Response, error) {
	s.seen.macro(m, "i")
	if s.eom != nil {
		return s.eom(m)
	}
	return gm.RespAccept, nil
}

// startMilter serves a scripted milter on a unix socket and returns its
// address as Postfix writes it.
func startMilter(t *testing.T, sc scripted) (string, *milterSeen) {
	t.Helper()
	seen := &milterSeen{macros: map[string]string{}}
	sock := filepath.Join(t.TempDir(), "milter.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := gm.NewServer(
		gm.WithMilter(func() gm.Milter { c := sc; c.seen = seen; return &c }),
		gm.WithActions(gm.AllClientSupportedActionMasks),
	)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "unix:" + sock, seen
}

// milterConfig is Postfix's defaults with the given milters.
func milterConfig(t *testing.T, list, defaultAction string, content time.Duration) *milter.Config {
	t.Helper()
	specs, err := milter.ParseList(list, milter.Spec{
		DefaultAction: defaultAction, Protocol: 6,
		ConnectTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second, ContentTimeout: content,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &milter.Config{
		Milters:       specs,
		ConnectMacros: []string{"j", "{daemon_name}", "{daemon_addr}", "v", "_", "{client_addr}", "{client_name}", "{client_port}"},
		MailMacros:    []string{"i", "{auth_type}", "{auth_authen}", "{mail_addr}"},
		RcptMacros:    []string{"i", "{rcpt_addr}"},
		DataMacros:    []string{"i"}, EOHMacros: []string{"i"}, EOMMacros: []string{"i"},
		DaemonName: "smtpd-test", MyHostname: "facts.test",
	}
}

const milterMsg = "Subject: hello\r\nX-Old: one\r\nX-Old: two\r\nFrom: a@remote.test\r\n\r\nbody line 1\r\n..dotted\r\n.\r\n"

// send runs one transaction and returns the reply to the end of data.
func send(t *testing.T, h *harness, rcpts ...string) (string, string) {
	t.Helper()
	c := h.dial(t)
	c.chat("S: ^220\nC: EHLO client.test\nS: ^250\nC: MAIL FROM:<a@remote.test>\nS: ^250")
	for _, r := range rcpts {
		c.chat("C: RCPT TO:<" + r + ">\nS: ^250")
	}
	c.chat("C: DATA\nS: ^354")
	c.conn.Write([]byte(milterMsg))
	r := c.reply()
	id := ""
	if i := strings.Index(r, "queued as "); i >= 0 {
		id = r[i+len("queued as "):]
	}
	return r, id
}

func TestMilterModifications(t *testing.T) {
	addr, seen := startMilter(t, scripted{eom: func(m gm.Modifier) (*gm.Response, error) {
		steps := []error{
			m.AddHeader("X-Added", "at end"),
			// Each request counts the headers as the earlier ones left
			// them: insert at 1 first (below our Received:), then at 0.
			m.InsertHeader(1, "X-Second", "below our Received"),
			m.InsertHeader(0, "X-Top", "above our Received"),
			m.ChangeHeader(1, "Subject", "changed"),
			m.ChangeHeader(2, "X-Old", ""), // delete the second X-Old
			m.ChangeHeader(1, "X-Missing", "added by change"),
			m.ReplaceBody(strings.NewReader("new body\r\nsecond line\r\n")),
			m.AddRecipient("<added@remote.test>", ""),
			m.DeleteRecipient("<gone@remote.test>"),
			m.ChangeFrom("<changed@remote.test>", ""),
			m.Progress(),
		}
		for _, err := range steps {
			if err != nil {
				return nil, err
			}
		}
		return gm.RespAccept, nil
	}})
	h := start(t, func(c *Config) {
		c.Milters = milterConfig(t, addr, "tempfail", 5*time.Second)
		c.LocalHeaderRewrite = func(client, server netip.Addr) bool { return false }
	})
	r, id := send(t, h, "kept@remote.test", "gone@remote.test")
	if !strings.HasPrefix(r, "250 2.0.0 Ok: queued as ") {
		t.Fatalf("end of data: %q", r)
	}
	env, text := h.envelope(t, id)
	lines := strings.Split(text, "\n")
	if !strings.HasPrefix(lines[0], "X-Top: above our Received") || !strings.HasPrefix(lines[1], "Received: from client.test") {
		t.Errorf("insert at 0 is not above our Received:\n%s", text)
	}
	i := strings.Index(text, "X-Second: below our Received")
	j := strings.Index(text, "Subject: changed")
	if k := strings.Index(text, "Received: "); i < 0 || j < 0 || i > j || k > i {
		t.Errorf("insert at 1 / change:\n%s", text)
	}
	if strings.Count(text, "X-Old:") != 1 || !strings.Contains(text, "X-Old: one") {
		t.Errorf("second X-Old: not deleted:\n%s", text)
	}
	if !strings.Contains(text, "X-Added: at end\nX-Missing: added by change\n\nnew body\nsecond line\n") {
		t.Errorf("added headers or body:\n%s", text)
	}
	if strings.Contains(text, "body line 1") || strings.Contains(text, "Subject: hello") {
		t.Errorf("old body or header left:\n%s", text)
	}
	if env.Sender != "changed@remote.test" {
		t.Errorf("sender %q", env.Sender)
	}
	var got []string
	for _, rc := range env.Recipients {
		got = append(got, rc.Address)
	}
	if strings.Join(got, " ") != "kept@remote.test added@remote.test" {
		t.Errorf("recipients %v", got)
	}
	// What the milter saw: the headers as received (not our Received:),
	// the body with dot-stuffing undone and CRLF line ends, the macros.
	seen.mu.Lock()
	defer seen.mu.Unlock()
	if strings.Join(seen.headers, "|") != "Subject: hello|X-Old: one|X-Old: two|From: a@remote.test" {
		t.Errorf("milter saw headers %q", seen.headers)
	}
	if string(seen.body) != "body line 1\r\n.dotted\r\n" {
		t.Errorf("milter saw body %q", seen.body)
	}
	want := map[string]string{"j": "facts.test", "{daemon_name}": "smtpd-test", "{client_addr}": "127.0.0.1",
		"{mail_addr}": "a@remote.test", "{rcpt_addr}": "gone@remote.test", "i": id}
	for k, v := range want {
		if seen.macros[k] != v {
			t.Errorf("macro %s = %q, want %q", k, seen.macros[k], v)
		}
	}
}

func TestMilterVerdicts(t *testing.T) {
	tests := []struct {
		name  string
		eom   func(m gm.Modifier) (*gm.Response, error)
		reply string
		log   string
		queue string // where the message is; "" for nowhere
	}{
		{"reject", func(gm.Modifier) (*gm.Response, error) { return gm.RespReject, nil },
			"550 5.7.1 Command rejected", "milter-reject: END-OF-MESSAGE from unknown[127.0.0.1]: 5.7.1 Command rejected; from=<a@remote.test> to=<r@remote.test> proto=ESMTP helo=<client.test>", ""},
		{"tempfail", func(gm.Modifier) (*gm.Response, error) { return gm.RespTempFail, nil },
			"451 4.7.1 Service unavailable - try again later", "milter-reject: END-OF-MESSAGE", ""},
		{"replycode", func(gm.Modifier) (*gm.Response, error) { return gm.RejectWithCodeAndReason(554, "5.7.0 not this one") },
			"554 5.7.0 not this one", "milter-reject: END-OF-MESSAGE from unknown[127.0.0.1]: 5.7.0 not this one", ""},
		{"discard", func(gm.Modifier) (*gm.Response, error) { return gm.RespDiscard, nil },
			"250 2.0.0 Ok: queued as", "milter-discard: END-OF-MESSAGE from unknown[127.0.0.1]: milter triggers DISCARD action", ""},
		{"quarantine", func(m gm.Modifier) (*gm.Response, error) {
			if err := m.Quarantine("suspicious"); err != nil {
				return nil, err
			}
			return gm.RespAccept, nil
		}, "250 2.0.0 Ok: queued as", "milter-hold: END-OF-MESSAGE from unknown[127.0.0.1]: milter triggers HOLD action", spool.Hold},
		{"accept", nil, "250 2.0.0 Ok: queued as", "", spool.Incoming},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := startMilter(t, scripted{eom: tc.eom})
			h := start(t, func(c *Config) { c.Milters = milterConfig(t, addr, "tempfail", 5*time.Second) })
			r, id := send(t, h, "r@remote.test")
			if !strings.HasPrefix(r, tc.reply) {
				t.Fatalf("end of data: %q, want %q", r, tc.reply)
			}
			if tc.log != "" {
				h.waitLog(t, tc.log)
			}
			for _, q := range []string{spool.Incoming, spool.Hold} {
				n := countQueue(t, h.sp, q)
				if want := btoi(q == tc.queue); n != want {
					t.Errorf("%s/ holds %d files, want %d (id %s)", q, n, want, id)
				}
			}
			if tc.queue == spool.Hold {
				fi, err := os.Stat(h.sp.Path(spool.Hold, id))
				if err != nil || !spool.IsReady(fi.Mode()) {
					t.Errorf("held file %s: %v %v", id, fi, err)
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestMilterCommandStages(t *testing.T) {
	addr, _ := startMilter(t, scripted{
		mail: func(from string, m gm.Modifier) (*gm.Response, error) {
			if from == "<bad@remote.test>" {
				return gm.RespReject, nil
			}
			return gm.RespContinue, nil
		},
		rcpt: func(to string, m gm.Modifier) (*gm.Response, error) {
			if to == "<no@remote.test>" {
				return gm.RejectWithCodeAndReason(550, "5.1.1 no such user here")
			}
			return gm.RespContinue, nil
		},
	})
	h := start(t, func(c *Config) { c.Milters = milterConfig(t, addr, "tempfail", 5*time.Second) })
	c := h.dial(t)
	c.chat(`S: ^220
C: EHLO client.test
S: ^250
C: MAIL FROM:<bad@remote.test>
S: ^550 5\.7\.1 Command rejected
C: MAIL FROM:<a@remote.test>
S: ^250 2\.1\.0 Ok
C: RCPT TO:<no@remote.test>
S: ^550 5\.1\.1 no such user here
C: RCPT TO:<yes@remote.test>
S: ^250 2\.1\.5 Ok
C: DATA
S: ^354
C: Subject: x
C:
C: hi
C: .
S: ^250 2\.0\.0 Ok: queued as
C: QUIT
S: ^221`)
	h.waitLog(t, "NOQUEUE: milter-reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 no such user here; from=<a@remote.test> to=<no@remote.test> proto=ESMTP helo=<client.test>")
	h.waitLog(t, "NOQUEUE: milter-reject: MAIL from unknown[127.0.0.1]: 550 5.7.1 Command rejected; from=<bad@remote.test>")
}

func TestMilterConnectReject(t *testing.T) {
	addr, _ := startMilter(t, scripted{connect: func(gm.Modifier) (*gm.Response, error) {
		return gm.RejectWithCodeAndReason(554, "5.7.1 go away")
	}})
	h := start(t, func(c *Config) { c.Milters = milterConfig(t, addr, "tempfail", 5*time.Second) })
	c := h.dial(t)
	c.chat(`S: ^220
C: EHLO client.test
S: ^554 5\.7\.1 go away
C: MAIL FROM:<a@remote.test>
S: ^554 5\.7\.1 go away
C: NOOP
S: ^250
C: QUIT
S: ^221`)
}

// TestMilterDown: a milter that is not there follows
// milter_default_action: tempfail refuses, accept lets mail through.
func TestMilterDown(t *testing.T) {
	missing := "unix:" + filepath.Join(t.TempDir(), "nothing.sock")
	h := start(t, func(c *Config) { c.Milters = milterConfig(t, missing, "tempfail", 5*time.Second) })
	c := h.dial(t)
	c.chat(`S: ^220
C: EHLO client.test
S: ^451 4\.7\.1 Service unavailable - try again later
C: MAIL FROM:<a@remote.test>
S: ^451 4\.7\.1 Service unavailable - try again later
C: QUIT
S: ^221`)
	h.waitLog(t, "warning: connect to Milter service "+missing+": No such file or directory")

	h2 := start(t, func(c *Config) {
		c.Milters = milterConfig(t, "{ "+missing+", default_action=accept }", "tempfail", 5*time.Second)
	})
	if r, _ := send(t, h2, "r@remote.test"); !strings.HasPrefix(r, "250 2.0.0 Ok: queued as") {
		t.Fatalf("default_action=accept: %q", r)
	}
	if n := countQueue(t, h2.sp, spool.Incoming); n != 1 {
		t.Errorf("incoming/ holds %d", n)
	}
}

// TestMilterSlow: a milter slower than milter_content_timeout gets the
// default action (tempfail), and nothing is queued.
func TestMilterSlow(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr, _ := startMilter(t, scripted{eom: func(gm.Modifier) (*gm.Response, error) {
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
		return gm.RespAccept, nil
	}})
	h := start(t, func(c *Config) { c.Milters = milterConfig(t, addr, "tempfail", 300*time.Millisecond) })
	r, _ := send(t, h, "r@remote.test")
	if r != "451 4.7.1 Service unavailable - try again later" {
		t.Fatalf("slow milter: %q", r)
	}
	h.waitLog(t, "warning: milter "+addr+":")
	if n := countQueue(t, h.sp, spool.Incoming); n != 0 {
		t.Errorf("incoming/ holds %d", n)
	}
}
