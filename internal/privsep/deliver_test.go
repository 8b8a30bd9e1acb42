package privsep

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary play `sluice local-deliver` for the
// channel's tests: it reads its job, reports (as each recipient's
// reason) who it runs as, its arguments, its environment and the
// message on descriptor 3, and writes the results as the real one does.
// Recipients named fail@ and sleep@ make it fail and hang.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_FAKE_LOCAL_DELIVER") == "1" && len(os.Args) > 1 && os.Args[1] == "local-deliver" {
		os.Exit(fakeLocalDeliver())
	}
	os.Exit(m.Run())
}

func fakeLocalDeliver() int {
	var job LocalJob
	if err := json.NewDecoder(os.Stdin).Decode(&job); err != nil {
		fmt.Fprintln(os.Stderr, "bad job:", err)
		return 75
	}
	msg, err := io.ReadAll(io.NewSectionReader(os.NewFile(3, "message"), 0, 1<<20))
	if err != nil {
		fmt.Fprintln(os.Stderr, "no message:", err)
		return 75
	}
	env := os.Environ()
	sort.Strings(env)
	var out LocalOutcome
	for _, rc := range job.Recipients {
		switch rc.Address {
		case "fail@example.com":
			fmt.Fprintln(os.Stderr, "first complaint\nlast complaint")
			return 75
		case "sleep@example.com":
			time.Sleep(time.Minute)
		}
		out.Results = append(out.Results, LocalResult{Status: "sent", DSN: "2.0.0",
			Reason: fmt.Sprintf("euid=%d args=%q env=%q to=%s orig=%s sender=%s limit=%v msg=%q", os.Geteuid(), os.Args[2:], env, rc.Address, rc.Orig, job.Sender, job.TimeLimit, msg),
			Finals: []LocalFinal{{To: rc.Address, Status: "sent", DSN: "2.0.0", Text: "delivered to mailbox"}}})
	}
	out.Warnings = []string{"a warning for " + job.QueueID}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

// syncLog collects a DeliveryServer's log lines.
type syncLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *syncLog) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *syncLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

// channel starts a DeliveryServer that takes requests from peer only
// and returns the child's end.
func channel(t *testing.T, peer int, log *syncLog) (*DeliveryClient, *net.UnixConn) {
	t.Helper()
	mconn, cfile, err := DeliveryPair()
	if err != nil {
		t.Fatal(err)
	}
	srv := &DeliveryServer{Conn: mconn, Exe: "/proc/self/exe", Argv0: "sluice", Args: []string{"-c", "/etc/the-masters-config"},
		Env: []string{"SLUICE_FAKE_LOCAL_DELIVER=1"}, PeerPID: peer, Logf: log.logf}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	cconn, err := DeliveryConn(cfile)
	if err != nil {
		t.Fatal(err)
	}
	cfile.Close()
	t.Cleanup(func() {
		cconn.Close()
		select {
		case <-served:
		case <-time.After(20 * time.Second):
			t.Error("the server did not end when the child closed its end")
		}
		mconn.Close()
	})
	return NewDeliveryClient(cconn), cconn
}

func messageFile(t *testing.T, text string, flag int) *os.File {
	t.Helper()
	path := t.TempDir() + "/msg"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestDeliveryChannel: the child hands the queue file and a request to
// the master, which runs local-deliver (here the test binary) with the
// master's arguments and environment, and the results come back to the
// child.
func TestDeliveryChannel(t *testing.T) {
	t.Setenv("SLUICE_CHILDS_OWN", "not for local-deliver")
	log := &syncLog{}
	c, _ := channel(t, os.Getpid(), log)
	msg := messageFile(t, "Subject: hi\n\nbody\n", os.O_RDONLY)
	req := DeliveryRequest{QueueID: "4ABC123", Sender: "carol@example.org", Timeout: 30 * time.Second,
		Recipients: []DeliveryRecipient{{Address: "alice@here.test", Orig: "postmaster"}, {Address: "bob@here.test"}}}
	out, err := c.Deliver(context.Background(), req, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 2 || len(out.Warnings) != 1 || out.Warnings[0] != "a warning for 4ABC123" {
		t.Fatalf("outcome %+v", out)
	}
	want := fmt.Sprintf(`euid=%d args=["-c" "/etc/the-masters-config"] env=["PATH=/usr/sbin:/usr/bin:/sbin:/bin" "SLUICE_FAKE_LOCAL_DELIVER=1"] to=alice@here.test orig=postmaster sender=carol@example.org limit=30s msg="Subject: hi\n\nbody\n"`, os.Geteuid())
	if got := out.Results[0].Reason; got != want {
		t.Errorf("local-deliver saw\n%s\nwant\n%s", got, want)
	}
	if r := out.Results[1]; !strings.Contains(r.Reason, "to=bob@here.test orig= ") || r.Finals[0].Text != "delivered to mailbox" {
		t.Errorf("second result %+v", r)
	}

	// Concurrent requests each get their own answer.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := messageFile(t, fmt.Sprintf("Subject: %d\n", i), os.O_RDONLY)
			r := DeliveryRequest{QueueID: fmt.Sprintf("Q%d", i), Recipients: []DeliveryRecipient{{Address: fmt.Sprintf("u%d@here.test", i)}}}
			out, err := c.Deliver(context.Background(), r, m)
			if err != nil || !strings.Contains(out.Results[0].Reason, fmt.Sprintf("to=u%d@here.test", i)) || !strings.Contains(out.Results[0].Reason, fmt.Sprintf(`msg="Subject: %d\n"`, i)) {
				t.Errorf("request %d: %+v %v", i, out, err)
			}
		}()
	}
	wg.Wait()

	// A failing local-deliver: its exit status and last complaint; the
	// master logs what it said.
	_, err = c.Deliver(context.Background(), DeliveryRequest{QueueID: "F1", Recipients: []DeliveryRecipient{{Address: "fail@example.com"}}}, msg)
	if err == nil || err.Error() != "local-deliver exit status 75: last complaint" {
		t.Errorf("failing helper: %v", err)
	}
	if !log.has("warning: local-deliver F1: first complaint") {
		t.Errorf("master's log: %q", log.lines)
	}
	// One that runs past its time limit is killed.
	_, err = c.Deliver(context.Background(), DeliveryRequest{QueueID: "S1", Timeout: time.Second, Recipients: []DeliveryRecipient{{Address: "sleep@example.com"}}}, msg)
	if err == nil || !strings.Contains(err.Error(), "exit status 137: time limit (1s) exceeded") {
		t.Errorf("hanging helper: %v", err)
	}
}

// TestDeliveryRefused: what the master will not run local-deliver for,
// and that it goes on serving after each.
func TestDeliveryRefused(t *testing.T) {
	log := &syncLog{}
	c, conn := channel(t, os.Getpid(), log)
	ro := messageFile(t, "Subject: x\n", os.O_RDONLY)
	rw := messageFile(t, "Subject: x\n", os.O_RDWR)
	good := DeliveryRequest{QueueID: "G1", Recipients: []DeliveryRecipient{{Address: "a@here.test"}}}

	if _, err := c.Deliver(context.Background(), good, rw); err == nil || !strings.Contains(err.Error(), "request refused: the message is not open read-only") {
		t.Errorf("writable message: %v", err)
	}
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if _, err := c.Deliver(context.Background(), good, dir); err == nil || !strings.Contains(err.Error(), "request refused: the message is not a regular file") {
		t.Errorf("a directory as the message: %v", err)
	}

	// Requests the client would not send, written to the socket as a
	// compromised child could.
	raw := func(body string, fds ...int) {
		t.Helper()
		var oob []byte
		if len(fds) > 0 {
			oob = syscall.UnixRights(fds...)
		}
		if _, _, err := conn.WriteMsgUnix([]byte(body), oob, nil); err != nil {
			t.Fatal(err)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	raw("{not json", int(ro.Fd()), int(w.Fd()))
	raw(`{"id":901,"queue_id":"../../etc","recipients":[{"address":"a@here.test"}]}`, int(ro.Fd()), int(w.Fd()))
	raw(`{"id":902,"queue_id":"Q2","recipients":[]}`, int(ro.Fd()), int(w.Fd()))
	raw(`{"id":903,"queue_id":"Q3","recipients":[{"address":"a@here.test\nFake: log line"}]}`, int(ro.Fd()), int(w.Fd()))
	raw(`{"id":904,"queue_id":"Q4","recipients":[{"address":"a@here.test"}]}`, int(ro.Fd()))
	raw(`{"id":905,"queue_id":"Q5","recipients":[{"address":"a@here.test"}]}`, int(ro.Fd()), int(r.Fd()))
	for _, want := range []string{
		"local delivery request refused: malformed: invalid character",
		`local delivery request refused: bad queue ID "../../etc"`,
		"local delivery request refused: 0 recipients (1 to 1000)",
		"local delivery request refused: recipient \"a@here.test\\nFake: log line\" has control characters",
		"local delivery request refused: 1 descriptors, want 2",
		"local delivery request refused: the results pipe is not open for writing only",
	} {
		deadline := time.Now().Add(10 * time.Second)
		for !log.has(want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !log.has(want) {
			t.Errorf("no %q in the master's log: %q", want, log.lines)
		}
	}
	// Still serving.
	if out, err := c.Deliver(context.Background(), good, ro); err != nil || out.Results[0].Status != "sent" {
		t.Errorf("after the refusals: %+v %v", out, err)
	}

	// Only the child's process may ask.
	other, _ := channel(t, os.Getpid()+100000, &syncLog{})
	if _, err := other.Deliver(context.Background(), good, ro); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("request refused: from pid %d, not from the mail system (pid %d)", os.Getpid(), os.Getpid()+100000)) {
		t.Errorf("request from another process: %v", err)
	}
}

// TestRequestBatches: a delivery to many long addresses goes out in
// requests that each fit in a packet, all recipients in order.
func TestRequestBatches(t *testing.T) {
	var rcpts []DeliveryRecipient
	for i := range 700 {
		a := fmt.Sprintf("%s%d@example.com", strings.Repeat("x", i%300), i)
		rcpts = append(rcpts, DeliveryRecipient{Address: a, Orig: strings.ToUpper(a)})
	}
	batches := RequestBatches(rcpts)
	var all []DeliveryRecipient
	for _, b := range batches {
		req := DeliveryRequest{ID: 1 << 60, QueueID: strings.Repeat("Q", 32), Sender: strings.Repeat("s", maxAddress), Recipients: b, Timeout: time.Hour}
		enc, _ := json.Marshal(req)
		if len(enc) > MaxRequestSize {
			t.Errorf("request of %d bytes", len(enc))
		}
		all = append(all, b...)
	}
	if len(batches) < 2 || len(all) != len(rcpts) {
		t.Fatalf("%d batches, %d recipients", len(batches), len(all))
	}
	for i := range all {
		if all[i] != rcpts[i] {
			t.Fatalf("recipient %d: %+v, want %+v", i, all[i], rcpts[i])
		}
	}
	if b := RequestBatches(rcpts[:3]); len(b) != 1 || len(b[0]) != 3 {
		t.Errorf("small delivery: %v", b)
	}
}
