package bounce

import (
	"bytes"
	"context"
	"flag"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/maillog"
	"sluice/internal/spool"
)

var update = flag.Bool("update", false, "rewrite golden files")

var now = time.Date(2026, 11, 29, 16, 0, 0, 0, time.UTC)

// queueFile writes a small queue file and returns its path and envelope.
func queueFile(t *testing.T, ret int, body ...string) (string, *spool.Envelope) {
	t.Helper()
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	f, err := sp.NewFile(spool.Incoming, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.WriteEnvelope(&spool.NewEnvelope{
		Arrival: now.Add(-time.Hour), Sender: "alice@src.example", DSNRet: ret, DSNEnvID: "env-1",
		Recipients: []spool.NewRecipient{{Address: "bob@dst.example", Orig: "bob@dst.example", DSNOrig: "rfc822;bob@dst.example"}},
	}); err != nil {
		t.Fatal(err)
	}
	lines := append([]string{"Subject: hello", "From: alice@src.example", "Message-Id: <m1@src.example>", ""}, body...)
	for _, l := range lines {
		f.WriteLine([]byte(l))
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	env, _, err := spool.ReadFile(f.Path, spool.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return f.Path, env
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

var failedEntry = spool.LogEntry{
	Recipient: "bob@dst.example", OrigRcpt: "bob@dst.example", DSNOrigRcpt: "rfc822;bob@dst.example",
	Status: "5.1.1", Action: "failed", DiagType: "smtp", DiagText: "550 5.1.1 <bob@dst.example>: no such user",
	MTAType: "dns", MTAName: "mx.dst.example",
	Reason: "host mx.dst.example[127.0.0.1] said: 550 5.1.1 <bob@dst.example>: no such user (in reply to RCPT TO command)",
}

var expiredEntry = spool.LogEntry{
	Recipient: "bob@dst.example", Status: "4.4.1", Action: "failed",
	Reason: "connect to mx.dst.example[127.0.0.1]:25: Connection refused",
}

func TestCompose(t *testing.T) {
	for _, c := range []struct {
		name   string
		kind   Kind
		ret    int
		limit  int
		entry  spool.LogEntry
		golden string
		part3  string
	}{
		{"failure full", Failure, 0, 0, failedEntry, "failure-full.eml", "message/rfc822"},
		{"failure RET=HDRS", Failure, RetHdrs, 0, failedEntry, "failure-hdrs.eml", "text/rfc822-headers"},
		{"failure too big", Failure, 0, 20, expiredEntry, "failure-big.eml", "text/rfc822-headers"},
		{"delay", Delay, 0, 0, spool.LogEntry{Recipient: "bob@dst.example", Status: "4.4.1", Action: "delayed", Reason: expiredEntry.Reason}, "delay.eml", "text/rfc822-headers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, env := queueFile(t, c.ret, "Hello Bob.", "Second line.")
			b := New(Config{MyHostname: "mx.sluice.test", Now: func() time.Time { return now }, Location: time.UTC,
				SizeLimit: c.limit, MaxLifetime: 5 * 24 * time.Hour, DelayWarning: 4 * time.Hour})
			got, err := b.Compose(&Report{Kind: c.kind, QueueID: "ABC123", Path: path, Envelope: env, Entries: []spool.LogEntry{c.entry}})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.golden, got)
			checkStructure(t, got, c.kind, c.part3)
		})
	}
}

// checkStructure parses a notice as a mail reader would: a
// multipart/report with report-type delivery-status and three parts.
func checkStructure(t *testing.T, text []byte, kind Kind, part3 string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	wantSubj := "Undelivered Mail Returned to Sender"
	if kind == Delay {
		wantSubj = "Delayed Mail (still being retried)"
	}
	if s := msg.Header.Get("Subject"); s != wantSubj {
		t.Errorf("Subject = %q", s)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var status string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, p.Header.Get("Content-Type"))
		body, _ := io.ReadAll(p)
		if strings.HasPrefix(p.Header.Get("Content-Type"), "message/delivery-status") {
			status = string(body)
		}
	}
	if len(types) != 3 || types[1] != "message/delivery-status" || types[2] != part3 {
		t.Errorf("parts = %q", types)
	}
	for _, f := range []string{"Reporting-MTA: dns; mx.sluice.test", "Arrival-Date: ", "Final-Recipient: rfc822; bob@dst.example", "Action: ", "Status: "} {
		if !strings.Contains(status, f) {
			t.Errorf("delivery-status lacks %q:\n%s", f, status)
		}
	}
}

func TestSendRefusesNullSenderAndLogs(t *testing.T) {
	path, env := queueFile(t, 0, "x")
	var log bytes.Buffer
	var gotRcpt string
	b := New(Config{MyHostname: "mx.sluice.test", Log: maillog.New(&log, "mx", "postfix", func() time.Time { return now }),
		Submit: func(ctx context.Context, rcpt string, text []byte) (string, error) {
			gotRcpt = rcpt
			return "NEWID1", nil
		}})
	id, err := b.Send(context.Background(), &Report{Kind: Failure, QueueID: "ABC123", Path: path, Envelope: env, Entries: []spool.LogEntry{failedEntry}})
	if err != nil || id != "NEWID1" || gotRcpt != "alice@src.example" {
		t.Fatalf("Send = %q, %v (to %q)", id, err, gotRcpt)
	}
	if !strings.Contains(log.String(), "postfix/bounce[") || !strings.Contains(log.String(), "ABC123: sender non-delivery notification: NEWID1") {
		t.Errorf("log = %q", log.String())
	}
	env.Sender = ""
	if _, err := b.Send(context.Background(), &Report{QueueID: "ABC123", Path: path, Envelope: env}); err != ErrNullSender {
		t.Errorf("Send for <> = %v, want ErrNullSender", err)
	}
}
