package maillog

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingWriter records what reached it and in how many writes.
type countingWriter struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.b.Write(p)
}

func (w *countingWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *countingWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

func TestBufferHoldsLinesUntilFlush(t *testing.T) {
	var out countingWriter
	b := NewBuffer(&out, time.Hour)
	defer b.Close()
	l := New(b, "mx.example", "", nil)
	l.Log("smtpd", "ABC: client=x[1.2.3.4]")
	if got := out.String(); got != "" {
		t.Fatalf("written before Flush: %q", got)
	}
	b.Flush()
	if got := out.String(); !strings.Contains(got, " mx postfix/smtpd[") || !strings.HasSuffix(got, "]: ABC: client=x[1.2.3.4]\n") {
		t.Fatalf("after Flush: %q", got)
	}
	n := out.count()
	b.Flush() // nothing new: no write
	if out.count() != n {
		t.Errorf("an empty Flush wrote")
	}
}

func TestBufferPeriodicAndClose(t *testing.T) {
	var out countingWriter
	b := NewBuffer(&out, 10*time.Millisecond)
	b.Write([]byte("one\n"))
	deadline := time.Now().Add(5 * time.Second)
	for out.String() == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if out.String() != "one\n" {
		t.Fatalf("periodic flush: %q", out.String())
	}
	b2 := NewBuffer(&out, time.Hour)
	b2.Write([]byte("two\n"))
	b2.Close()
	b.Close()
	if out.String() != "one\ntwo\n" {
		t.Fatalf("Close did not flush: %q", out.String())
	}
}

func TestBufferLimit(t *testing.T) {
	var out countingWriter
	b := NewBuffer(&out, time.Hour)
	defer b.Close()
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for i := 0; i < 64; i++ {
		b.Write(line)
	}
	if got := len(out.String()); got != 64*1024 {
		t.Fatalf("a full buffer was not written: %d bytes out", got)
	}
}

// TestBufferConcurrentFlush: every caller's line is out when its Flush
// returns, lines stay whole, and concurrent flushes share writes.
func TestBufferConcurrentFlush(t *testing.T) {
	var out countingWriter
	b := NewBuffer(&out, time.Hour)
	defer b.Close()
	const workers, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan string, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				line := fmt.Sprintf("w%d-%d\n", w, i)
				b.Write([]byte(line))
				b.Flush()
				if !strings.Contains(out.String(), line) {
					errs <- line
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for l := range errs {
		t.Errorf("line %q not written when its Flush returned", strings.TrimSpace(l))
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != workers*each {
		t.Errorf("%d lines out, want %d", len(lines), workers*each)
	}
	t.Logf("%d flushes, %d writes", workers*each, out.count())
}

func TestBufferSetOutput(t *testing.T) {
	var a, c countingWriter
	b := NewBuffer(&a, time.Hour)
	defer b.Close()
	b.Write([]byte("old\n"))
	if old := b.SetOutput(&c); old != &a {
		t.Errorf("SetOutput returned %v", old)
	}
	b.Write([]byte("new\n"))
	b.Flush()
	if a.String() != "old\n" || c.String() != "new\n" {
		t.Errorf("old writer %q, new writer %q", a.String(), c.String())
	}
}

// TestBufferAfterIdle: a line that comes after a long quiet time is
// written within the interval, as one in a busy time is.
func TestBufferAfterIdle(t *testing.T) {
	var out countingWriter
	b := NewBuffer(&out, 10*time.Millisecond)
	defer b.Close()
	for i, line := range []string{"one\n", "two\n", "three\n"} {
		time.Sleep(30 * time.Millisecond)
		b.Write([]byte(line))
		deadline := time.Now().Add(5 * time.Second)
		for out.count() != i+1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if out.count() != i+1 {
			t.Fatalf("line %d: %d writes, want %d", i+1, out.count(), i+1)
		}
	}
	if out.String() != "one\ntwo\nthree\n" {
		t.Fatalf("out %q", out.String())
	}
}
