package smtp

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startSink runs Postfix's smtp-sink on a free loopback port with extra
// options, dumping each message into a directory. It returns the port and
// the dump directory.
func startSink(t *testing.T, opts ...string) (int, string) {
	t.Helper()
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		for _, p := range []string{"/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		t.Skip("Postfix's smtp-sink is not installed")
	}
	// smtp-sink drops root privileges, so its dump directory must be
	// reachable by its user: not under the test's private temp dir.
	dir, err := os.MkdirTemp("", "sluice-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args := []string{"-d", filepath.Join(dir, "%Y%m%d%H%M%S.")}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "postfix")
	}
	args = append(args, opts...)
	args = append(args, "127.0.0.1:"+strconv.Itoa(port), "100")
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("smtp-sink: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return port, dir
}

// dumps returns the messages smtp-sink wrote.
func dumps(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // smtp-sink removes the dump of a transaction cut short
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func sinkClient(port int) *Client {
	return &Client{
		RelayHost:      "[127.0.0.1]:" + strconv.Itoa(port),
		HeloName:       "sluice.test",
		ConnectTimeout: 2 * time.Second,
		CommandTimeout: 10 * time.Second,
	}
}

// TestSmtpSink delivers into Postfix's own test server, with its soft and
// hard reject options, and checks what it received.
func TestSmtpSink(t *testing.T) {
	const relay = "127.0.0.1[127.0.0.1]:"
	said := func(reply, cmd string) string {
		return "host 127.0.0.1[127.0.0.1] said: " + reply + " (in reply to " + cmd + " command)"
	}
	tests := []struct {
		name  string
		opts  []string
		want  want
		dumps int
	}{
		{"accepts", nil, want{Sent, "2.0.0", "250 2.0.0 Ok", relay}, 1},
		{"soft reject of RCPT (-r)", []string{"-r", "RCPT"},
			want{Deferred, "4.3.0", said("450 4.3.0 Error: command failed", "RCPT TO"), relay}, 0},
		{"hard reject of RCPT (-f)", []string{"-f", "RCPT"},
			want{Bounced, "5.3.0", said("500 5.3.0 Error: command failed", "RCPT TO"), relay}, 0},
		{"hard reject of MAIL (-f)", []string{"-f", "MAIL"},
			want{Bounced, "5.3.0", said("500 5.3.0 Error: command failed", "MAIL FROM"), relay}, 0},
		{"soft reject at the end of data (-r .)", []string{"-r", "."},
			want{Deferred, "4.3.0", said("450 4.3.0 Error: command failed", "end of DATA"), relay}, 0},
		{"custom soft reply (-b)", []string{"-r", "DATA", "-b", "451 4.7.1 Please try again later"},
			want{Deferred, "4.7.1", said("451 4.7.1 Please try again later", "DATA"), relay}, 0},
		{"421 and disconnect at RCPT (-Q)", []string{"-Q", "RCPT"},
			want{Deferred, "4.0.0", said("421 4.0.0 Server closing connection", "RCPT TO"), relay}, 0},
		{"disconnect at DATA (-q)", []string{"-q", "DATA"},
			want{Deferred, "4.4.2", "lost connection with 127.0.0.1[127.0.0.1] while sending DATA command", relay}, 0},
		{"no ESMTP (-e)", []string{"-e"}, want{Sent, "2.0.0", "", relay}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port, dir := startSink(t, tt.opts...)
			c := sinkClient(port)
			m := message(testText, "bob@example.test", "carol@example.test")
			m.EightBit = true
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res := c.Deliver(ctx, "example.test", m)
			w := tt.want
			w.relay += strconv.Itoa(port)
			for _, r := range res {
				if r.Status != w.status || r.DSN != w.dsn || !strings.HasPrefix(r.Reason, w.reason) || r.Relay != w.relay {
					t.Errorf("%s: got %s %s %q %s, want %s %s %q… %s", r.Recipient.Address,
						r.Status, r.DSN, r.Reason, r.Relay, w.status, w.dsn, w.reason, w.relay)
				}
			}
			// smtp-sink writes its dump after replying; give it a moment.
			var got []string
			for i := 0; i < 50; i++ {
				if got = dumps(t, dir); len(got) >= tt.dumps {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if tt.dumps == 0 {
				// smtp-sink opens its dump file at MAIL FROM, so a
				// rejected transaction leaves one too; nothing to check.
				return
			}
			if len(got) != tt.dumps {
				t.Fatalf("%d messages dumped, want %d", len(got), tt.dumps)
			}
			d := got[0]
			for _, want := range []string{
				"X-Helo-Args: sluice.test\n",
				"X-Rcpt-Args: <bob@example.test>\n",
				"X-Rcpt-Args: <carol@example.test>\n",
				"\n" + testText, // unstuffed, LF line ends as smtp-sink stores them
			} {
				if !strings.Contains(d, want) {
					t.Errorf("dump lacks %q:\n%s", want, d)
				}
			}
			// smtp-sink advertises no SIZE, so there is none.
			mailArgs := "X-Mail-Args: <a@src.test> BODY=8BITMIME\n"
			if tt.name == "no ESMTP (-e)" {
				mailArgs = "X-Mail-Args: <a@src.test>\n"
			}
			if !strings.Contains(d, mailArgs) {
				t.Errorf("dump lacks %q:\n%s", mailArgs, d)
			}
		})
	}
}

func TestSmtpSinkConnectionReuse(t *testing.T) {
	port, dir := startSink(t)
	c := sinkClient(port)
	c.MaxIdle = 5 * time.Second
	defer c.Close()
	for i := 1; i <= 3; i++ {
		res := c.Deliver(context.Background(), "example.test", message(testText, "bob@example.test"))
		if res[0].Status != Sent || res[0].ConnUse != i {
			t.Errorf("delivery %d: %+v", i, res[0])
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(dumps(t, dir)) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(dumps(t, dir)); n != 3 {
		t.Errorf("%d messages dumped, want 3", n)
	}
}

// BenchmarkSmtpSink delivers 4 KB messages into smtp-sink from 20
// concurrent senders over cached connections, and reports messages per
// second and the client's CPU time per message.
func BenchmarkSmtpSink(b *testing.B) {
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		bin = "/usr/sbin/smtp-sink"
		if _, err := os.Stat(bin); err != nil {
			b.Skip("Postfix's smtp-sink is not installed")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args := []string{}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "postfix")
	}
	cmd := exec.Command(bin, append(args, "127.0.0.1:"+strconv.Itoa(port), "100")...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			break
		}
		if i > 200 {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := sinkClient(port)
	c.MaxIdle = 5 * time.Second
	defer c.Close()
	text := "Subject: bench\n\n" + strings.Repeat(strings.Repeat("x", 63)+"\n", 64)
	b.SetParallelism(10) // 20 senders on 2 cores
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res := c.Deliver(context.Background(), "example.test", message(text, "bob@example.test"))
			if res[0].Status != Sent {
				b.Errorf("%+v", res[0])
				return
			}
		}
	})
	b.StopTimer()
	elapsed := time.Since(start)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime)-syscall.TimevalToNsec(ru0.Utime)) +
		time.Duration(syscall.TimevalToNsec(ru1.Stime)-syscall.TimevalToNsec(ru0.Stime))
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
}
