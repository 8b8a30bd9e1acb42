package e2e

import (
	"context"
	"testing"
	"time"

	"sluice/internal/control"
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

	c, err := control.Dial(m.spool)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m.waitFor("the model to load", func() bool {
		s, err := c.ModelSummary(ctx)
		return err == nil && !s.Loading && s.Queues[2].Messages == 1
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
