package smtpd

import (
	"net"
	"testing"
	"time"
)

// deadlineConn counts the deadlines set on it.
type deadlineConn struct {
	net.Conn
	reads, writes []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.reads = append(c.reads, t)
	return nil
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.writes = append(c.writes, t)
	return nil
}

func (c *deadlineConn) Read(p []byte) (int, error)  { return len(p), nil }
func (c *deadlineConn) Write(p []byte) (int, error) { return len(p), nil }

// TestTimedConnDeadlines: the deadlines are set at the first read and
// write, not moved at every one after, moved again when a request limit
// comes that ends sooner, and never end later than that limit.
func TestTimedConnDeadlines(t *testing.T) {
	dc := &deadlineConn{}
	c := &timedConn{Conn: dc, timeout: 300 * time.Second}
	buf := make([]byte, 4)
	for i := 0; i < 100; i++ {
		c.Read(buf)
		c.Write(buf)
	}
	if len(dc.reads) != 1 || len(dc.writes) != 1 {
		t.Fatalf("100 reads and writes set %d read and %d write deadlines, want 1 each", len(dc.reads), len(dc.writes))
	}
	if d := time.Until(dc.reads[0]); d < 290*time.Second || d > 300*time.Second {
		t.Fatalf("read deadline %v from now", d)
	}
	c.limit = time.Now().Add(time.Second)
	c.Read(buf)
	c.Read(buf)
	if len(dc.reads) != 2 || dc.reads[1].After(c.limit) {
		t.Fatalf("with a limit: read deadlines %v, limit %v", dc.reads, c.limit)
	}
	c.limit = time.Time{}
	c.Read(buf)
	if len(dc.reads) != 3 || time.Until(dc.reads[2]) < 290*time.Second {
		t.Fatalf("after the limit: read deadlines %v", dc.reads)
	}
}
