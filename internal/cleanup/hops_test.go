package cleanup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"sluice/internal/bounce"
	"sluice/internal/spool"
)

// hopMessage has n Received: headers and, to show they do not count,
// five Delivered-To: headers.
func hopMessage(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "Received: from h%d.example by h%d.example; Mon, 1 Jan 2024 00:00:00 +0000\n", i, i+1)
	}
	for i := range 5 {
		fmt.Fprintf(&b, "Delivered-To: x%d@example\n", i)
	}
	b.WriteString("Subject: hops\n\nbody\n")
	return b.String()
}

func smtpMessage() *Message {
	return &Message{
		Sender: "s@client.test", Recipients: []Recipient{{Address: "user@facts.test"}},
		Received: ReceivedInfo{Protocol: "ESMTP", Helo: "client.test", ClientName: "localhost", ReverseName: "localhost", ClientAddr: "127.0.0.1"},
	}
}

// Postfix 3.7.11 with hopcount_limit = 50 takes 48 Received: headers
// over SMTP (its own makes 49) and refuses 49 with "554 5.4.0 Error: too
// many hops" at the end of DATA, logging only cleanup's warning.
func TestHopCountSMTP(t *testing.T) {
	fx := newFixture(t, nil)
	if _, err := fx.c.Submit(context.Background(), smtpMessage(), strings.NewReader(hopMessage(48))); err != nil {
		t.Fatalf("48 Received: headers: %v", err)
	}
	fx.log.Reset()
	_, err := fx.c.Submit(context.Background(), smtpMessage(), strings.NewReader(hopMessage(49)))
	if !errors.Is(err, ErrTooManyHops) {
		t.Fatalf("49 Received: headers: err = %v, want ErrTooManyHops", err)
	}
	var rej *Reject
	if !errors.As(err, &rej) || rej.Reply() != "554 5.4.0 Error: too many hops" {
		t.Fatalf("reject = %#v", rej)
	}
	log := fx.log.String()
	if !strings.Contains(log, "postfix/cleanup[100]: warning: ") || !strings.Contains(log, ": message rejected: hopcount exceeded\n") {
		t.Errorf("log:\n%s", log)
	}
	if strings.Contains(log, "message-id=") {
		t.Errorf("a refused message's message-id was logged:\n%s", log)
	}
	assertEmpty(t, fx.sp, spool.Incoming, 1) // only the first message
	if len(fx.notified) != 1 {
		t.Errorf("notified %v", fx.notified)
	}
}

func TestHopCountLimitSetting(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.HopcountLimit = 3 })
	if _, err := fx.c.Submit(context.Background(), smtpMessage(), strings.NewReader(hopMessage(1))); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.c.Submit(context.Background(), smtpMessage(), strings.NewReader(hopMessage(2))); !errors.Is(err, ErrTooManyHops) {
		t.Fatalf("err = %v", err)
	}
	fx = newFixture(t, func(c *Config) { c.HopcountLimit = -1 })
	if _, err := fx.c.Submit(context.Background(), smtpMessage(), strings.NewReader(hopMessage(200))); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}

type recordingNotifier struct {
	mu      sync.Mutex
	reports []*bounce.Report
	content []string
}

func (n *recordingNotifier) Send(ctx context.Context, r *bounce.Report) (string, error) {
	c, err := spool.OpenContent(r.Path)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		k, err := c.Read(buf)
		b.Write(buf[:k])
		if err != nil {
			break
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.reports = append(n.reports, r)
	n.content = append(n.content, b.String())
	return "BOUNCEID", nil
}

// A local submission over the limit is bounced, as Postfix's pickup path
// does: one status=bounced line per recipient, a notification with the
// message, and nothing left in the queue.
func TestHopCountLocalBounces(t *testing.T) {
	notes := &recordingNotifier{}
	fx := newFixture(t, func(c *Config) { c.Notifier = notes })
	m := &Message{Sender: "sender@client.test", Recipients: []Recipient{{Address: "user@outside.example"}, {Address: "b@outside.example"}}, Received: ReceivedInfo{UID: 0}}
	id, err := fx.c.Submit(context.Background(), m, strings.NewReader(hopMessage(49)))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	log := fx.log.String()
	for _, want := range []string{
		id + ": message rejected: hopcount exceeded",
		id + ": message-id=<",
		id + ": to=<user@outside.example>, relay=none, delay=0, delays=0/0/0/0, dsn=5.4.0, status=bounced (too many hops)",
		id + ": to=<b@outside.example>, relay=none, delay=0, delays=0/0/0/0, dsn=5.4.0, status=bounced (too many hops)",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if len(notes.reports) != 1 {
		t.Fatalf("%d notifications", len(notes.reports))
	}
	r := notes.reports[0]
	if r.QueueID != id || r.Kind != bounce.Failure || len(r.Entries) != 2 || r.Entries[0].Status != "5.4.0" || r.Entries[0].Reason != "too many hops" || r.Entries[0].Action != "failed" {
		t.Errorf("report %+v", r)
	}
	if !strings.Contains(notes.content[0], "Received: from h48.example") {
		t.Errorf("the notification's original lacks the message:\n%.300s", notes.content[0])
	}
	assertEmpty(t, fx.sp, spool.Incoming, 0)
	if len(fx.notified) != 0 {
		t.Errorf("the queue manager was told of %v", fx.notified)
	}
	// 48 Received: headers and pickup's own are 49: queued.
	if _, err := fx.c.Submit(context.Background(), m, strings.NewReader(hopMessage(48))); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, fx.sp, spool.Incoming, 1)
}
