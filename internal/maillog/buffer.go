package maillog

import (
	"io"
	"sync"
	"time"
)

// Buffer is the mail log's writer for a busy daemon: lines are gathered
// in memory and written out in few large writes, yet a line can be made
// to reach the file at once where it matters.
//
// The rule (from "A daemon you can put on a real host"): every line that
// a message's acceptance logged must be in the log file before the client
// is told 250, so that a kill -9 right after the reply cannot lose it. The
// daemon calls Flush between the queue file's commit and the reply; the
// lines are then written (write(2): the kernel has them, and a killed
// process cannot take them back; a power cut is what fsync is for, and
// the mail log is not fsynced, as Postfix's is not). Lines that precede
// no acknowledgement (deliveries, warnings) wait for the next flush, at
// most the interval given to NewBuffer.
//
// Concurrent Flush calls share writes: a Flush whose lines another
// caller's write already carried returns without a write of its own, so
// many sessions acknowledging at once cost about one write, not one each.
type Buffer struct {
	mu       sync.Mutex // guards buf, appended
	buf      []byte
	spare    []byte
	appended int64 // bytes ever appended to buf

	wmu     sync.Mutex // one write at a time; guards w, written
	w       io.Writer
	written int64 // bytes ever handed to w (or dropped by a failed write)

	limit int
	kick  chan struct{} // a line came into an empty buffer
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// NewBuffer returns a Buffer that writes to w. A line is written at the
// latest interval after it came, when 64 KiB are waiting, on Flush and on
// Close. An idle Buffer does not wake up at all.
func NewBuffer(w io.Writer, interval time.Duration) *Buffer {
	b := &Buffer{w: w, limit: 64 << 10, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop(interval)
	return b
}

// loop writes out, interval after a line came into an empty buffer,
// what is waiting then.
func (b *Buffer) loop(interval time.Duration) {
	defer close(b.done)
	t := time.NewTimer(interval)
	t.Stop()
	for {
		select {
		case <-b.stop:
			b.Flush()
			return
		case <-b.kick:
		}
		t.Reset(interval)
		select {
		case <-b.stop:
			t.Stop()
			b.Flush()
			return
		case <-t.C:
			b.Flush()
		}
	}
}

// Write appends p (whole lines: Logger writes one line per call). It
// never fails: the mail log must not stop mail.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	first := len(b.buf) == 0
	b.buf = append(b.buf, p...)
	b.appended += int64(len(p))
	full := len(b.buf) >= b.limit
	b.mu.Unlock()
	if full {
		b.Flush()
	} else if first {
		select {
		case b.kick <- struct{}{}:
		default: // the loop has a kick waiting already
		}
	}
	return len(p), nil
}

// Flush writes out every line appended before it was called, and returns
// once they have been written.
func (b *Buffer) Flush() {
	b.mu.Lock()
	target := b.appended
	b.mu.Unlock()

	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.written >= target {
		return // an earlier write carried our lines
	}
	b.mu.Lock()
	out := b.buf
	b.buf = b.spare[:0]
	b.spare = nil
	n := b.appended
	b.mu.Unlock()

	// A failed write of the mail log is dropped; there is no better
	// place to report it, and mail must go on.
	_, _ = b.w.Write(out)
	b.written = n

	b.mu.Lock()
	if b.spare == nil && cap(out) <= 4*b.limit {
		b.spare = out[:0]
	}
	b.mu.Unlock()
}

// SetOutput flushes what is waiting to the old writer, then writes to w
// from now on (the daemon reopens its log file on reload, after a
// rotation). It returns the old writer.
func (b *Buffer) SetOutput(w io.Writer) io.Writer {
	b.Flush()
	b.wmu.Lock()
	defer b.wmu.Unlock()
	old := b.w
	b.w = w
	return old
}

// Close flushes and stops the periodic writer. Lines written after Close
// are written by the next Flush only.
func (b *Buffer) Close() {
	b.once.Do(func() { close(b.stop) })
	<-b.done
}
