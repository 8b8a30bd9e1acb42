package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sluice/internal/control"
	"sluice/internal/manage"
	"sluice/internal/model"
	"sluice/internal/spool"
)

// TestModelThroughDaemon asks the running daemon's model, over the
// control socket, for the summary and a qshape table of mail it deferred,
// and checks that a change made behind its back is found by reconcile.
func TestModelThroughDaemon(t *testing.T) {
	m := newMTA(t)
	m.start()
	m.send("alice@src.test", []string{"x@down.test", "y@down.test"}, "to nowhere")
	id := m.queueID("x@down.test")
	m.waitFor("deferral", func() bool { q := m.queued(spool.Deferred); return len(q) == 1 && q[0] == id })

	c, ctx, done := m.modelClient()
	defer done()
	m.waitFor("the deferral in the model", func() bool {
		s, err := c.ModelSummary(ctx)
		return err == nil && s.Queues[2].Messages == 1
	})
	s, err := c.ModelSummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	q := s.Queues[2]
	if q.Queue != spool.Deferred || q.Messages != 1 || q.Recipients != 2 || q.Bytes <= 0 || q.Oldest.IsZero() {
		t.Errorf("deferred in the summary: %+v", q)
	}
	if len(s.Classes) != 1 || s.Classes[0].Class != "connection-refused" || s.Classes[0].Recipients != 2 || s.Classes[0].Messages != 1 {
		t.Errorf("classes: %+v", s.Classes)
	}

	shape, err := c.ModelQShape(ctx, model.QShapeOptions{Queues: []string{spool.Deferred}})
	if err != nil {
		t.Fatal(err)
	}
	if len(shape.Rows) != 2 || shape.Rows[0].Domain != "TOTAL" || shape.Rows[0].Total != 2 ||
		shape.Rows[1].Domain != "down.test" || shape.Rows[1].Total != 2 || shape.Rows[1].Counts[0] != 2 {
		t.Errorf("qshape rows: %+v", shape.Rows)
	}

	msg, err := c.ModelMessage(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Queue != spool.Deferred || len(msg.Recipients) != 2 || msg.Recipients[0].Class != "connection-refused" ||
		msg.Recipients[0].Attempts != 1 || msg.Recipients[0].DSN != "4.4.1" || msg.Next.IsZero() {
		t.Errorf("message: %+v", msg)
	}

	// postsuper -h on the files, behind the daemon's back.
	sp := spool.New(m.spool)
	if err := sp.Move(id, spool.Deferred, spool.Hold); err != nil {
		t.Fatal(err)
	}
	r, err := c.ModelReconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Drift != 1 || r.Total < 1 {
		t.Errorf("reconcile: %+v, want one drift", r)
	}
	if !m.logHas(id + ": drift: queue deferred, file in hold") {
		t.Errorf("the drift is not in the mail log")
	}
	s, err = c.ModelSummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Queues[2].Messages != 0 || s.Queues[3].Queue != spool.Hold || s.Queues[3].Messages != 1 {
		t.Errorf("after reconcile: %+v", s.Queues)
	}
}

// TestModelFollowsActions: an action through the daemon (hold, release,
// delete) shows in the model at once, not at the next reconcile.
func TestModelFollowsActions(t *testing.T) {
	m := newMTA(t)
	m.start()
	m.send("alice@src.test", []string{"x@down.test"}, "to nowhere")
	id := m.queueID("x@down.test")
	m.waitFor("deferral", func() bool { q := m.queued(spool.Deferred); return len(q) == 1 && q[0] == id })
	c, ctx, done := m.modelClient()
	defer done()
	queueOf := func() string {
		msg, err := c.ModelMessage(ctx, id)
		if err != nil {
			return "gone"
		}
		return msg.Queue
	}
	for _, step := range []struct {
		op   manage.Op
		want string
	}{{manage.OpHold, spool.Hold}, {manage.OpRelease, spool.Deferred}, {manage.OpDelete, "gone"}} {
		if _, err := c.Act(ctx, step.op, id, nil); err != nil {
			t.Fatalf("%s: %v", step.op, err)
		}
		if got := queueOf(); got != step.want {
			t.Errorf("after %s the model has the message in %s, want %s", step.op, got, step.want)
		}
	}
	if r, err := c.ModelReconcile(ctx); err != nil || r.Drift != 0 {
		t.Errorf("reconcile after the actions: %+v %v, want no drift", r, err)
	}
}

// TestModelSnapshotAcrossRestart: a clean stop writes the model's
// snapshot; the next start takes from it the messages whose files did
// not change while the daemon was down, reads the one that did (put on
// hold meanwhile, as postsuper -h would), and logs both.
func TestModelSnapshotAcrossRestart(t *testing.T) {
	m := newMTA(t)
	m.start()
	for _, rcpt := range []string{"a@down.test", "b@down.test", "c@down.test"} {
		m.send("alice@src.test", []string{rcpt}, "to nowhere")
	}
	held := m.queueID("b@down.test")
	m.waitFor("deferrals", func() bool { return len(m.queued(spool.Deferred)) == 3 && m.idle() })
	summary := func() model.Summary {
		c, ctx, done := m.modelClient()
		defer done()
		s, err := c.ModelSummary(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := summary(); s.Queues[2].Messages != 3 {
		t.Fatalf("before the stop: %+v", s.Queues)
	}
	time.Sleep(100 * time.Millisecond) // the files' change times, past the snapshot's racy window
	m.stop()
	snap := filepath.Join(m.spool, "private", "sluice-model-snapshot")
	if fi, err := os.Stat(snap); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after a clean stop, the snapshot: %v %v", fi, err)
	}
	if !m.logHas("wrote the queue model's snapshot of 3 messages in ") {
		t.Errorf("the stop did not log the snapshot:\n%s", m.logbuf)
	}
	sp := spool.New(m.spool)
	if err := sp.Move(held, spool.Deferred, spool.Hold); err != nil {
		t.Fatal(err)
	}

	m.start()
	s := summary()
	if s.Queues[2].Messages != 2 || s.Queues[3].Queue != spool.Hold || s.Queues[3].Messages != 1 {
		t.Errorf("after the restart: %+v", s.Queues)
	}
	if !m.logHas("loaded the queue model of 3 messages in ") || !m.logHas(" ms, 2 of them from the snapshot") {
		t.Errorf("the start did not log the load from the snapshot:\n%s", m.logbuf)
	}
	if _, err := os.Stat(snap); !os.IsNotExist(err) {
		t.Errorf("the snapshot is still there after it was read: %v", err)
	}
}

// modelClient dials the daemon's control socket and waits until its
// model has loaded; done closes the client.
func (m *mta) modelClient() (c *control.Client, ctx context.Context, done func()) {
	m.t.Helper()
	c, err := control.Dial(m.spool)
	if err != nil {
		m.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	m.waitFor("the model to load", func() bool {
		s, err := c.ModelSummary(ctx)
		return err == nil && !s.Loading
	})
	return c, ctx, func() { cancel(); c.Close() }
}
