package steer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sluice/internal/testutil"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// sink is a receiving SMTP server that is slow to accept each message
// (so deliveries are in flight when actions come) and records, per queue
// ID found in the Received header, when it said 250 to the message.
type sink struct {
	ln     net.Listener
	delay  time.Duration
	reject atomic.Bool // answer RCPT with 450
	mu     sync.Mutex
	got    map[string][]time.Time
}

// startDaemon runs sluice serve relaying to the sink and returns its
// configuration directory and SMTP address; it is stopped with SIGTERM
// when the test ends.
func startDaemon(t *testing.T, bin string, sk *sink, extra ...string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	testutil.Reachable(t, dir) // sluice serve as root runs as mail_owner
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := append([]string{
		"queue_directory = " + filepath.Join(dir, "spool"),
		"maillog_file = " + filepath.Join(dir, "mail.log"),
		"myhostname = sluice.test",
		fmt.Sprintf("smtpd_listen = 127.0.0.1:%d", port),
		"relayhost = [127.0.0.1]:" + fmt.Sprint(sk.ln.Addr().(*net.TCPAddr).Port),
		"minimal_backoff_time = 1s", "maximal_backoff_time = 2s", "queue_run_delay = 1s",
	}, extra...)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(strings.Join(conf, "\n")+"\n"), 0o644)
	daemon := exec.Command(filepath.Join(bin, "sluice"), "serve", "-c", dir)
	var derr strings.Builder
	daemon.Stderr = &derr
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 250 {
			t.Fatalf("daemon did not start:\n%s", derr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return dir, addr
}

var receivedID = regexp.MustCompile(`\bid ([0-9A-Za-z]+)[;\s]`)

func startSink(t *testing.T, delay time.Duration) *sink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{ln: ln, delay: delay, got: map[string][]time.Time{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *sink) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	r := bufio.NewReader(c)
	fmt.Fprintf(c, "220 sink.test ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			fmt.Fprintf(c, "250-sink.test\r\n250 8BITMIME\r\n")
		case strings.HasPrefix(cmd, "DATA"):
			fmt.Fprintf(c, "354 go on\r\n")
			var msg strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				msg.WriteString(l)
			}
			time.Sleep(s.delay)
			id := ""
			if m := receivedID.FindStringSubmatch(msg.String()); m != nil {
				id = m[1]
			}
			s.mu.Lock()
			s.got[id] = append(s.got[id], time.Now())
			s.mu.Unlock()
			fmt.Fprintf(c, "250 2.0.0 accepted\r\n")
		case strings.HasPrefix(cmd, "RCPT") && s.reject.Load():
			fmt.Fprintf(c, "450 4.2.0 Mailbox busy, try again later\r\n")
		case strings.HasPrefix(cmd, "QUIT"):
			fmt.Fprintf(c, "221 bye\r\n")
			return
		default:
			fmt.Fprintf(c, "250 ok\r\n")
		}
	}
}

func (s *sink) deliveries(id string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.got[id]...)
}

// TestActionsRaceDelivery deletes and holds messages while the daemon is
// delivering them, many rounds over, and checks that an acknowledged
// delete is never followed by a delivery (or reports the recipients
// already delivered) and that nothing is delivered after a hold was
// acknowledged.
func TestActionsRaceDelivery(t *testing.T) {
	bin := binaries(t)
	sk := startSink(t, 150*time.Millisecond)
	dir, addr := startDaemon(t, bin, sk,
		// Few deliveries at a time, so some mail waits its turn and some is
		// in flight when the actions come.
		"default_destination_concurrency_limit = 2")

	type acted struct {
		op    string
		acked time.Time
		res   actResult
	}
	var all []acted
	var mu sync.Mutex
	const rounds, perRound = 6, 24
	for round := 0; round < rounds; round++ {
		ids := submit(t, addr, perRound, round)
		// Half to delete, a quarter to hold; the rest is delivered.
		del, hold := ids[:perRound/2], ids[perRound/2:perRound*3/4]
		var wg sync.WaitGroup
		for _, job := range []struct {
			op  string
			ids []string
		}{{"delete", del}, {"hold", hold}} {
			wg.Add(1)
			go func(op string, ids []string) {
				defer wg.Done()
				out, errs, err := sluice(t, "", append([]string{"queue", op, "-c", dir, "--yes", "--json"}, ids...)...)
				acked := time.Now()
				if err != nil {
					t.Errorf("queue %s: %v\n%s", op, err, errs)
					return
				}
				var resp struct {
					Results []actResult `json:"results"`
				}
				if err := json.Unmarshal([]byte(out), &resp); err != nil {
					t.Errorf("queue %s --json: %v: %s", op, err, out)
					return
				}
				mu.Lock()
				for _, r := range resp.Results {
					all = append(all, acted{op, acked, r})
				}
				mu.Unlock()
			}(job.op, job.ids)
		}
		wg.Wait()
	}
	// Let every delivery that could still happen happen.
	time.Sleep(3 * time.Second)

	counts := map[string]int{}
	for _, a := range all {
		got := sk.deliveries(a.res.ID)
		switch {
		case a.op == "delete" && a.res.Changed && len(a.res.Delivered) == 0:
			counts["deleted before delivery"]++
			if len(got) > 0 {
				t.Errorf("%s: delete acknowledged with nothing delivered, but the sink got it at %v (ack %v)", a.res.ID, got, a.acked)
			}
		case a.op == "delete" && a.res.Changed:
			counts["delivered while the delete waited (reported)"]++
		case a.op == "delete":
			counts["already delivered when the delete came"]++
			if len(got) == 0 {
				t.Errorf("%s: delete found it gone (%s), but it was never delivered", a.res.ID, a.res.Error)
			}
		case a.op == "hold" && a.res.Changed:
			counts["held"]++
			for _, at := range got {
				if at.After(a.acked) {
					t.Errorf("%s: delivered at %v, after the hold was acknowledged at %v", a.res.ID, at, a.acked)
				}
			}
		default:
			counts["hold found it delivered"]++
		}
		for _, at := range got[min(1, len(got)):] {
			t.Errorf("%s: delivered twice (again at %v)", a.res.ID, at)
		}
	}
	t.Logf("outcomes over %d rounds: %v", rounds, counts)
	if counts["deleted before delivery"] == 0 || counts["held"] == 0 {
		t.Errorf("the race was not exercised: %v", counts)
	}
}

type actResult struct {
	ID        string   `json:"queue_id"`
	Changed   bool     `json:"changed"`
	Delivered []string `json:"delivered"`
	Error     string   `json:"error"`
}

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// submit sends n messages over SMTP and returns their queue IDs, taken
// from the "250 2.0.0 Ok: queued as ID" replies.
func submit(t *testing.T, addr string, n, round int) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	reply := func() string {
		var last string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			last = l
			if len(l) < 4 || l[3] != '-' {
				break
			}
		}
		if last[0] != '2' && last[0] != '3' {
			t.Fatalf("submit: %s", last)
		}
		return last
	}
	say := func(format string, args ...any) string {
		fmt.Fprintf(c, format+"\r\n", args...)
		return reply()
	}
	reply()
	say("EHLO race.test")
	var ids []string
	for i := 0; i < n; i++ {
		say("MAIL FROM:<race@src.test>")
		say("RCPT TO:<r%d-%d@dest.test>", round, i)
		say("DATA")
		m := queuedAs.FindStringSubmatch(say("Subject: race %d/%d\r\n\r\nbody\r\n.", round, i))
		if m == nil {
			t.Fatal("submit: no queue ID in the reply")
		}
		ids = append(ids, m[1])
	}
	say("QUIT")
	return ids
}
