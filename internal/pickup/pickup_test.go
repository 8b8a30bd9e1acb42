package pickup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sluice/internal/cleanup"
	"sluice/internal/maillog"
	"sluice/internal/manage"
	"sluice/internal/spool"
	"sluice/internal/testutil"
)

type fixture struct {
	sp  *spool.Spool
	p   *Pickup
	log *testutil.SyncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	sp := spool.New(t.TempDir())
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	lb := &testutil.SyncBuffer{}
	lg := maillog.New(lb, "facts.test", "postfix", nil)
	cl := cleanup.New(cleanup.Config{Spool: sp, MyHostname: "facts.test", MyOrigin: "facts.test", Log: lg})
	return &fixture{sp: sp, log: lb, p: New(Config{Spool: sp, Cleanup: cl, Log: lg, Interval: time.Hour})}
}

func drop(t *testing.T, sp *spool.Spool, env *DropEnvelope, lines []string, extracted []string) string {
	t.Helper()
	d, err := NewDrop(sp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	d.WriteEnvelope(env)
	for _, l := range lines {
		d.WriteLine([]byte(l))
	}
	if err := d.Commit(extracted); err != nil {
		t.Fatal(err)
	}
	return d.ID
}

// TestDropFormat writes the maildrop file that Postfix's postdrop wrote
// for the captured sample and compares the bytes.
func TestDropFormat(t *testing.T) {
	want, err := os.ReadFile("testdata/maildrop-4jcrJR2PCmz5jtg.bin")
	if err != nil {
		t.Fatal(err)
	}
	sp := spool.New(t.TempDir())
	id := drop(t, sp, &DropEnvelope{
		Arrival:  time.Unix(1795965207, 338547000),
		FullName: "Dora Example", Sender: "dora@facts.test",
		Recipients: []DropRecipient{{Address: "drop@example.com"}},
	}, []string{"Subject: maildrop sample", "From: Dora <dora@facts.test>", "", "queued while down"}, nil)
	path := filepath.Join(sp.Root, spool.Maildrop, id)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("maildrop file differs from postdrop's:\n got %q\nwant %q", got, want)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o744 {
		t.Errorf("mode %v, want 0744", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(filepath.Join(sp.Root, spool.Maildrop))
	if len(ents) != 1 {
		t.Errorf("maildrop holds %d files (temporary name left?)", len(ents))
	}
}

func TestPickupQueues(t *testing.T) {
	// Queue IDs of every length, on both ID code paths: nothing below may
	// depend on the file system's inode numbers.
	for _, tc := range []struct {
		name  string
		long  bool
		inode uint64 // 0: the file's real inode
	}{
		{"short, real inode", false, 0},
		{"short, 6 characters", false, 0x1},
		{"short, 10 characters", false, 0xABCDE},
		{"short, 15 characters", false, 0x123456789A},
		{"long, real inode", true, 0},
		{"long, small inode", true, 0x2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			fx.sp.LongIDs = tc.long
			if tc.inode != 0 {
				// Each new file (maildrop, then incoming) gets its own number.
				var n atomic.Uint64
				fx.sp.Inode = func(fs.FileInfo) uint64 { return tc.inode + n.Add(1) - 1 }
			}
			testPickupQueues(t, fx)
		})
	}
}

func testPickupQueues(t *testing.T, fx *fixture) {
	arrival := time.Unix(1795965207, 338547000)
	id := drop(t, fx.sp, &DropEnvelope{
		Arrival: arrival, FullName: "Full, Name", Sender: "a@b.c", EnvID: "envid1", Ret: cleanup.RetHdrs,
		Recipients: []DropRecipient{{Address: "extra@example.com", Notify: cleanup.NotifySuccess | cleanup.NotifyDelay}},
	}, []string{"Subject: t5", "To: x@example.com", "Bcc: h@example.com", "", "body5", strings.Repeat("L", 5000)}, []string{"x@example.com", "h@example.com"})
	n, err := fx.p.Scan(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Scan = %d, %v", n, err)
	}
	if _, err := os.Lstat(filepath.Join(fx.sp.Root, spool.Maildrop, id)); !errors.Is(err, os.ErrNotExist) {
		t.Error("maildrop file still there")
	}
	ents, _ := os.ReadDir(filepath.Join(fx.sp.Root, spool.Incoming))
	if len(ents) != 1 {
		t.Fatalf("incoming holds %d files", len(ents))
	}
	newID := ents[0].Name()
	if spool.IsLongID(newID) != fx.sp.LongIDs {
		t.Errorf("queue ID %s: long=%v, want %v", newID, spool.IsLongID(newID), fx.sp.LongIDs)
	}
	c, err := spool.OpenContent(fx.sp.Path(spool.Incoming, newID))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	text, _ := io.ReadAll(c)
	env := c.Envelope
	if !env.Arrival.Equal(arrival) || env.Sender != "a@b.c" || env.FullName != "Full, Name" || env.DSNEnvID != "envid1" || env.DSNRet != cleanup.RetHdrs {
		t.Errorf("envelope %+v", env)
	}
	var rc []string
	for _, r := range env.Recipients {
		rc = append(rc, r.Address+map[bool]string{true: "(x)", false: ""}[r.Extracted])
	}
	if strings.Join(rc, " ") != "extra@example.com x@example.com(x) h@example.com(x)" || env.Recipients[0].Notify != 10 {
		t.Errorf("recipients %v %+v", rc, env.Recipients)
	}
	for _, want := range []string{"Received: by facts.test (sluice, from userid 0)\n\tid " + newID + "; ", "From: \"Full, Name\" <a@b.c>\n", "\nbody5\n" + strings.Repeat("L", 5000) + "\n"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("content lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(string(text), "Bcc") {
		t.Error("Bcc kept")
	}
	if !strings.Contains(fx.log.String(), "postfix/pickup[") || !strings.Contains(fx.log.String(), newID+": uid=0 from=<a@b.c>\n") {
		t.Errorf("log:\n%s", fx.log.String())
	}
	if _, err := os.ReadDir(fx.p.journalDir()); err == nil {
		if ents, _ := os.ReadDir(fx.p.journalDir()); len(ents) != 0 {
			t.Errorf("journal not cleared: %d entries", len(ents))
		}
	}
}

// TestPostfixMaildropFile queues a maildrop file that Postfix's postdrop
// wrote.
func TestPostfixMaildropFile(t *testing.T) {
	fx := newFixture(t)
	data, _ := os.ReadFile("testdata/maildrop-4jcrJR2PCmz5jtg.bin")
	path := filepath.Join(fx.sp.Root, spool.Maildrop, "4jcrJR2PCmz5jtg")
	os.WriteFile(path, data, 0o744)
	os.Chmod(path, 0o744)
	if n, err := fx.p.Scan(context.Background()); n != 1 || err != nil {
		t.Fatalf("Scan = %d, %v\n%s", n, err, fx.log.String())
	}
	if !strings.Contains(fx.log.String(), "uid=0 from=<dora@facts.test>") {
		t.Errorf("log:\n%s", fx.log.String())
	}
}

func TestSkipAndSetAside(t *testing.T) {
	fx := newFixture(t)
	md := filepath.Join(fx.sp.Root, spool.Maildrop)
	// Still being written: mode 0600.
	os.WriteFile(filepath.Join(md, "ABCDEF123"), []byte("T\x011"), 0o600)
	// Garbage that is marked ready.
	os.WriteFile(filepath.Join(md, "BCDEF1234"), []byte("not a queue file"), 0o744)
	// A complete file with no recipients at all.
	drop(t, fx.sp, &DropEnvelope{Arrival: time.Now(), Sender: "a@b"}, []string{"Subject: nobody", "", "x"}, nil)
	// A name that is no queue ID.
	os.WriteFile(filepath.Join(md, "tmp.123"), []byte("x"), 0o744)
	n, err := fx.p.Scan(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("Scan = %d, %v", n, err)
	}
	ents, _ := os.ReadDir(md)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != "ABCDEF123 tmp.123" {
		t.Errorf("maildrop holds %v", left)
	}
	ents, _ = os.ReadDir(filepath.Join(fx.sp.Root, spool.Corrupt))
	if len(ents) != 2 {
		t.Errorf("corrupt holds %d files, want 2", len(ents))
	}
	if c := strings.Count(fx.log.String(), "to queue \"corrupt\""); c != 2 {
		t.Errorf("%d corrupt warnings:\n%s", c, fx.log.String())
	}
}

func TestQueueUnwritableKeepsMaildrop(t *testing.T) {
	fx := newFixture(t)
	id := drop(t, fx.sp, &DropEnvelope{Arrival: time.Now(), Sender: "a@b", Recipients: []DropRecipient{{Address: "c@d"}}}, []string{"x"}, nil)
	os.RemoveAll(filepath.Join(fx.sp.Root, spool.Incoming))
	if n, _ := fx.p.Scan(context.Background()); n != 0 {
		t.Fatal("queued without an incoming directory")
	}
	if _, err := os.Lstat(filepath.Join(fx.sp.Root, spool.Maildrop, id)); err != nil {
		t.Fatalf("maildrop file lost: %v", err)
	}
	os.Mkdir(filepath.Join(fx.sp.Root, spool.Incoming), 0o700)
	if n, _ := fx.p.Scan(context.Background()); n != 1 {
		t.Fatal("not queued once the queue works again")
	}
}

func TestRecover(t *testing.T) {
	fx := newFixture(t)
	env := &DropEnvelope{Arrival: time.Now(), Sender: "a@b", Recipients: []DropRecipient{{Address: "c@d"}}}
	// Crash after cleanup committed, before the maildrop file was removed.
	done := drop(t, fx.sp, env, []string{"one"}, nil)
	cl := cleanup.New(cleanup.Config{Spool: fx.sp, MyHostname: "h"})
	newID, err := cl.Submit(context.Background(), &cleanup.Message{Sender: "a@b", Recipients: []cleanup.Recipient{{Address: "c@d"}}}, strings.NewReader("one\n"))
	if err != nil {
		t.Fatal(err)
	}
	writeJournal(fx.sp, fx.p.journalPath(done), newID)
	// Crash before cleanup committed: the journal names a file that is
	// embryonic.
	undone := drop(t, fx.sp, env, []string{"two"}, nil)
	embryo, err := fx.sp.NewFile(spool.Incoming, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	writeJournal(fx.sp, fx.p.journalPath(undone), embryo.ID)

	if err := fx.p.Recover(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(fx.sp.Root, spool.Maildrop, done)); !errors.Is(err, os.ErrNotExist) {
		t.Error("finished hand-over: maildrop file kept, it would be queued twice")
	}
	if _, err := os.Lstat(filepath.Join(fx.sp.Root, spool.Maildrop, undone)); err != nil {
		t.Error("unfinished hand-over: maildrop file lost")
	}
	if _, err := os.Lstat(fx.sp.Path(spool.Incoming, embryo.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Error("embryonic file left")
	}
	if ents, _ := os.ReadDir(fx.p.journalDir()); len(ents) != 0 {
		t.Errorf("%d journal entries left", len(ents))
	}
	if n, _ := fx.p.Scan(context.Background()); n != 1 {
		t.Errorf("Scan queued %d, want 1", n)
	}
	ents, _ := os.ReadDir(filepath.Join(fx.sp.Root, spool.Incoming))
	if len(ents) != 2 {
		t.Errorf("incoming holds %d, want 2 (one per message)", len(ents))
	}
}

func TestRunWakeAndSocket(t *testing.T) {
	fx := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- fx.p.Run(ctx) }()
	// Wait for the socket.
	deadline := time.Now().Add(5 * time.Second)
	for WakeDaemon(fx.sp) != nil {
		if time.Now().After(deadline) {
			t.Fatal("pickup socket never appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
	drop(t, fx.sp, &DropEnvelope{Arrival: time.Now(), Sender: "a@b", Recipients: []DropRecipient{{Address: "c@d"}}}, []string{"woken"}, nil)
	start := time.Now()
	if err := WakeDaemon(fx.sp); err != nil {
		t.Fatal(err)
	}
	for {
		ents, _ := os.ReadDir(filepath.Join(fx.sp.Root, spool.Incoming))
		if len(ents) == 1 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("not picked up after a wake (the interval is an hour)")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("picked up %v after the wake", time.Since(start))
	// A second pickup on the same spool refuses the socket but scans.
	p2 := New(Config{Spool: fx.sp, Cleanup: fx.p.cfg.Cleanup, Log: fx.p.cfg.Log, Interval: time.Hour})
	if _, err := p2.listen(); err == nil {
		t.Error("two pickups listen on one socket")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := WakeDaemon(fx.sp); err == nil {
		t.Error("socket still answers after Run returned")
	}
}

// TestPostcatReadsDrop runs Postfix's postcat, when installed, on a
// maildrop file we wrote.
func TestPostcatReadsDrop(t *testing.T) {
	pc, err := exec.LookPath("postcat")
	if err != nil {
		pc = "/usr/sbin/postcat"
		if _, err := os.Stat(pc); err != nil {
			t.Skip("postcat not installed")
		}
	}
	sp := spool.New(t.TempDir())
	id := drop(t, sp, &DropEnvelope{Arrival: time.Now(), Sender: "a@b", EnvID: "e1",
		Recipients: []DropRecipient{{Address: "c@d", Notify: 6, ORCPT: "rfc822;c@d"}}}, []string{"Subject: x", "", "body"}, []string{"x@y"})
	cfg := t.TempDir()
	os.WriteFile(filepath.Join(cfg, "main.cf"), nil, 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(cfg, "main.cf"), old, old)
	out, err := exec.Command(pc, "-c", cfg, filepath.Join(sp.Root, spool.Maildrop, id)).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("postcat: warning")) {
		t.Fatalf("postcat: %v\n%s", err, out)
	}
	for _, want := range []string{"named_attribute: envelope_id=e1", "named_attribute: notify_flags=6", "recipient: c@d", "*** HEADER EXTRACTED", "recipient: x@y"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("postcat output lacks %q:\n%s", want, out)
		}
	}
}

// TestRequeue: a queue file that requeue moved to maildrop/ (as postsuper
// -r does) comes back through pickup under a new ID with the recipients
// still pending, not in corrupt/; and requeue brings a file that parses
// back out of corrupt/.
func TestRequeue(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	submit := func() string {
		id, err := fx.p.cfg.Cleanup.Submit(ctx, &cleanup.Message{
			Sender:     "a@facts.test",
			Recipients: []cleanup.Recipient{{Address: "one@example.com"}, {Address: "two@example.com"}, {Address: "three@example.com"}},
			Received:   cleanup.ReceivedInfo{UID: 0},
		}, strings.NewReader("Subject: requeue\n\nbody\n"))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// Every queue file has O records; mark one recipient done.
	id := submit()
	path := fx.sp.Path(spool.Incoming, id)
	env, _, err := spool.ReadFile(path, spool.ReadOptions{})
	if err != nil || env.Recipients[0].Orig == "" {
		t.Fatalf("queue file: %+v %v", env, err)
	}
	if err := spool.MarkDone(path, env.Recipients[1].Offset, false); err != nil {
		t.Fatal(err)
	}
	if err := fx.sp.Move(id, spool.Incoming, spool.Deferred); err != nil {
		t.Fatal(err)
	}
	q := &manage.Queue{Spool: fx.sp}
	if out, err := q.Act(ctx, manage.OpRequeue, id, nil); err != nil || out.To != spool.Maildrop {
		t.Fatalf("requeue: %+v %v", out, err)
	}
	if n, err := fx.p.Scan(ctx); err != nil || n != 1 {
		t.Fatalf("Scan = %d, %v\n%s", n, err, fx.log.String())
	}
	if ents, _ := os.ReadDir(filepath.Join(fx.sp.Root, spool.Corrupt)); len(ents) != 0 {
		t.Fatalf("requeued mail went to corrupt/:\n%s", fx.log.String())
	}
	newID := onlyFile(t, fx.sp, spool.Incoming)
	if newID == id {
		t.Errorf("requeued mail kept its ID %s", id)
	}
	env, _, err = spool.ReadFile(fx.sp.Path(spool.Incoming, newID), spool.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range env.Pending() {
		got = append(got, r.Address)
	}
	if strings.Join(got, " ") != "one@example.com three@example.com" || env.Sender != "a@facts.test" {
		t.Errorf("requeued: sender %q, pending %v", env.Sender, got)
	}

	// Out of corrupt/: a file that parses is requeued; one that does not
	// stays, with a reason.
	if err := fx.sp.Move(newID, spool.Incoming, spool.Corrupt); err != nil {
		t.Fatal(err)
	}
	sel, _ := manage.ParseSelector("queue=corrupt")
	msgs, err := q.Select(ctx, sel, manage.SelectOptions{})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("select queue=corrupt: %d, %v", len(msgs), err)
	}
	if out, err := q.Act(ctx, manage.OpRequeue, newID, nil); err != nil || out.From != spool.Corrupt || out.To != spool.Maildrop {
		t.Fatalf("requeue from corrupt: %+v %v", out, err)
	}
	if n, err := fx.p.Scan(ctx); err != nil || n != 1 {
		t.Fatalf("Scan = %d, %v", n, err)
	}
	onlyFile(t, fx.sp, spool.Incoming)
	bad := "ABCDEF12345"
	os.WriteFile(fx.sp.Path(spool.Corrupt, bad), []byte("garbage"), 0o700)
	if _, err := q.Act(ctx, manage.OpRequeue, bad, nil); err == nil || !strings.Contains(err.Error(), "left in corrupt/") {
		t.Errorf("requeue of garbage: %v", err)
	}
}

func onlyFile(t *testing.T, sp *spool.Spool, queue string) string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(sp.Root, queue))
	if len(ents) != 1 {
		t.Fatalf("%s holds %d files", queue, len(ents))
	}
	return ents[0].Name()
}
