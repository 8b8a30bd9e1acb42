package manage

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"sluice/internal/spool"
)

// put writes a message into queue and returns its ID; reasons maps
// recipients to a deferral reason recorded in the defer log.
func put(t *testing.T, sp *spool.Spool, queue, sender string, arrival time.Time, rcpts []string, reasons map[string]string) string {
	t.Helper()
	f, err := sp.NewFile(spool.Incoming, arrival)
	if err != nil {
		t.Fatal(err)
	}
	env := &spool.NewEnvelope{Arrival: arrival, Sender: sender}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, spool.NewRecipient{Address: r})
	}
	if err := f.WriteEnvelope(env); err != nil {
		t.Fatal(err)
	}
	f.WriteLine([]byte("Subject: test"))
	f.WriteLine(nil)
	f.WriteLine([]byte("body"))
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if queue != spool.Incoming {
		if err := sp.Move(f.ID, spool.Incoming, queue); err != nil {
			t.Fatal(err)
		}
	}
	for r, why := range reasons {
		if err := sp.AppendLog(spool.Defer, f.ID, spool.LogEntry{Recipient: r, Status: "4.4.1", Action: "delayed", Reason: why}); err != nil {
			t.Fatal(err)
		}
	}
	return f.ID
}

func newQueue(t *testing.T) *Queue {
	sp := spool.New(t.TempDir())
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	return &Queue{Spool: sp, Now: func() time.Time { return now }, Warn: func(f string, a ...any) { t.Logf("warn: "+f, a...) }}
}

func TestSelectSummaryActions(t *testing.T) {
	q := newQueue(t)
	ctx := context.Background()
	refused := "connect to 127.0.0.1[127.0.0.1]:9: Connection refused"
	a := put(t, q.Spool, spool.Deferred, "alice@facts.test", now.Add(-3*time.Hour), []string{"bob@example.com"}, map[string]string{"bob@example.com": refused})
	b := put(t, q.Spool, spool.Deferred, "", now.Add(-time.Minute), []string{"x@example.com", "y@other.test"}, map[string]string{"x@example.com": refused})
	c := put(t, q.Spool, spool.Hold, "carol@facts.test", now.Add(-time.Hour), []string{"bob@example.com"}, nil)
	// The defer log names a recipient whose local part needs quoting in
	// its quoted form, as Postfix's bounce service writes it.
	d := put(t, q.Spool, spool.Deferred, "dora@facts.test", now.Add(-time.Hour), []string{"john doe@quoted.test"}, map[string]string{`"john doe"@quoted.test`: refused})
	// A corrupt file in deferred/ is warned about and skipped.
	os.MkdirAll(q.Spool.Root+"/"+q.Spool.Dir(spool.Deferred, "ABCDEF1234"), 0o700)
	if err := os.WriteFile(q.Spool.Path(spool.Deferred, "ABCDEF1234"), []byte("garbage"), 0o700); err != nil {
		t.Fatal(err)
	}

	sel, _ := ParseSelector("rcpt=bob@example.com")
	msgs, err := q.Select(ctx, sel, SelectOptions{})
	if err != nil || len(msgs) != 2 {
		t.Fatalf("select rcpt: %d messages, %v", len(msgs), err)
	}
	sel, _ = ParseSelector("class=connection-refused")
	msgs, _ = q.Select(ctx, sel, SelectOptions{})
	if len(msgs) != 3 || msgs[0].ID != d && msgs[1].ID != d && msgs[2].ID != d {
		t.Fatalf("select class: %d messages", len(msgs))
	}
	all, _ := q.Select(ctx, &Selector{}, SelectOptions{Full: true})
	sum := Summarize(all, "reason", now)
	if len(sum) != 2 || sum[0].Key != "connection-refused" || sum[0].Recipients != 3 || sum[0].Messages != 3 ||
		sum[0].Example != refused || !sum[0].Oldest.Equal(now.Add(-3*time.Hour)) || sum[1].Key != "(no reason yet)" || sum[1].Recipients != 2 {
		t.Errorf("summary by reason = %+v", sum)
	}
	if dom := Summarize(all, "domain", now); dom[0].Key != "example.com" || dom[0].Recipients != 3 || len(dom) != 3 {
		t.Errorf("summary by domain = %+v", dom)
	}

	// hold, release, expire, retry, delete.
	if out, err := q.Act(ctx, OpHold, a, nil); err != nil || out.To != spool.Hold || !out.Changed {
		t.Fatalf("hold: %+v %v", out, err)
	}
	if out, err := q.Act(ctx, OpRelease, a, nil); err != nil || out.From != spool.Hold || out.To != spool.Deferred {
		t.Fatalf("release: %+v %v", out, err)
	}
	if out, _ := q.Act(ctx, OpExpire, a, nil); !out.Changed {
		t.Fatalf("expire: %+v", out)
	}
	if out, _ := q.Act(ctx, OpExpire, a, nil); out.Changed {
		t.Fatalf("second expire changed: %+v", out)
	}
	if out, err := q.Act(ctx, OpRetry, b, nil); err != nil || out.To != spool.Incoming {
		t.Fatalf("retry: %+v %v", out, err)
	}
	if fi, _ := os.Stat(q.Spool.Path(spool.Incoming, b)); fi.Mode().Perm()&spool.ModeUnthrottle == 0 {
		t.Errorf("retry did not set the unthrottle bit: %v", fi.Mode())
	}
	if _, err := q.Act(ctx, OpRelease, b, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("release of a message not on hold: %v", err)
	}
	if _, err := q.Act(ctx, OpDelete, "bad/id", nil); err == nil {
		t.Error("delete bad/id: no error")
	}
	if out, err := q.Act(ctx, OpDelete, c, nil); err != nil || !out.Changed || out.From != spool.Hold {
		t.Fatalf("delete: %+v %v", out, err)
	}
	if _, err := q.Spool.Locate(c); err == nil {
		t.Error("deleted message still there")
	}
	if out, err := q.Act(ctx, OpRequeue, a, nil); err != nil || out.To != spool.Maildrop {
		t.Fatalf("requeue: %+v %v", out, err)
	}
	if _, err := os.Stat(q.Spool.Path(spool.Defer, a)); err != nil {
		t.Errorf("requeue removed the defer log: %v", err)
	}
}

// countingCoord stands in for the queue manager and counts the messages
// taken from it.
type countingCoord struct{ taken []string }

func (c *countingCoord) Acquire(_ context.Context, id string) (func(), error) {
	c.taken = append(c.taken, id)
	return func() {}, nil
}

func (c *countingCoord) Retry(string) {}

// TestNoOpLeavesDelivery: an action that changes nothing does not take
// the message from the queue manager, which would stop its delivery
// round (the deliveries not started dropped, the message scheduled again
// at once); one that changes it does.
func TestNoOpLeavesDelivery(t *testing.T) {
	q := newQueue(t)
	coord := &countingCoord{}
	q.Coord = coord
	ctx := context.Background()
	active := put(t, q.Spool, spool.Active, "a@facts.test", now, []string{"x@example.com"}, nil)
	held := put(t, q.Spool, spool.Hold, "b@facts.test", now, []string{"y@example.com"}, nil)
	expired := put(t, q.Spool, spool.Active, "c@facts.test", now, []string{"z@example.com"}, nil)
	if err := os.Chmod(q.Spool.Path(spool.Active, expired), spool.ModeReady|spool.ModeExpire); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		op Op
		id string
	}{{OpRetry, active}, {OpRelease, active}, {OpHold, held}, {OpExpire, expired}} {
		out, err := q.Act(ctx, c.op, c.id, nil)
		if out.Changed || (err != nil && !errors.Is(err, ErrNotFound)) {
			t.Errorf("%s %s: %+v %v", c.op, c.id, out, err)
		}
	}
	if len(coord.taken) != 0 {
		t.Errorf("no-op actions took %v from the queue manager", coord.taken)
	}
	if out, err := q.Act(ctx, OpHold, active, nil); err != nil || !out.Changed {
		t.Fatalf("hold of active mail: %+v %v", out, err)
	}
	if len(coord.taken) != 1 || coord.taken[0] != active {
		t.Errorf("hold took %v, want [%s]", coord.taken, active)
	}
}
