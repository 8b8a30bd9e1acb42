package showq

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"sluice/internal/spool"
)

// buildDeferredSpool writes n deferred messages as the queue manager
// leaves them after a failed attempt: one to three recipients, a defer
// log entry for each, about 1.5 KB of content, hashed directories.
func buildDeferredSpool(tb testing.TB, root string, n int) {
	tb.Helper()
	sp := spool.New(root)
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		tb.Fatal(err)
	}
	body := make([][]byte, 0, 30)
	body = append(body, []byte("Subject: a deferred message"), []byte("From: sender@src.test"), []byte(""))
	for len(body) < 30 {
		body = append(body, []byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor."))
	}
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	workers := 4
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := writeDeferred(sp, start.Add(time.Duration(i)*time.Second+time.Duration(i*7919%1000000)*time.Microsecond), i, body); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
}

func writeDeferred(sp *spool.Spool, at time.Time, i int, body [][]byte) error {
	f, err := sp.NewFile(spool.Incoming, at)
	if err != nil {
		return err
	}
	rc := 1 + i%3
	env := &spool.NewEnvelope{Arrival: at, Sender: "sender" + strconv.Itoa(i%97) + "@src.test",
		Attrs: []spool.Attr{{Name: "rewrite_context", Value: "local"}}}
	for r := 0; r < rc; r++ {
		a := fmt.Sprintf("user%d@dest%d.example.com", i%1000+r, (i+r)%50)
		env.Recipients = append(env.Recipients, spool.NewRecipient{Address: a, Orig: a, DSNOrig: "rfc822;" + a})
	}
	if err := f.WriteEnvelope(env); err != nil {
		return err
	}
	for _, l := range body {
		f.WriteLine(l)
	}
	if err := f.Commit(); err != nil {
		return err
	}
	if err := sp.Move(f.ID, spool.Incoming, spool.Deferred); err != nil {
		return err
	}
	var entries []spool.LogEntry
	for _, r := range env.Recipients {
		entries = append(entries, spool.LogEntry{Recipient: r.Address, DSNOrigRcpt: r.DSNOrig, Status: "4.4.1", Action: "delayed",
			Reason: "connect to dest.example.com[192.0.2.1]:25: Connection timed out"})
	}
	if err := sp.AppendLog(spool.Defer, f.ID, entries...); err != nil {
		return err
	}
	return sp.SetTimes(spool.Deferred, f.ID, at.Add(time.Hour))
}

// TestBuildBenchSpool builds a large spool for timing the commands
// against Postfix (hyperfine); it runs only when asked:
//
//	SHOWQ_BENCH_SPOOL=/var/tmp/bench SHOWQ_BENCH_N=100000 go test -run TestBuildBenchSpool ./internal/showq
func TestBuildBenchSpool(t *testing.T) {
	root := os.Getenv("SHOWQ_BENCH_SPOOL")
	if root == "" {
		t.Skip("set SHOWQ_BENCH_SPOOL to build a benchmark spool")
	}
	n, err := strconv.Atoi(os.Getenv("SHOWQ_BENCH_N"))
	if err != nil {
		n = 100000
	}
	buildDeferredSpool(t, root, n)
}

func benchmarkList(b *testing.B, asJSON bool) {
	root := filepath.Join(b.TempDir(), "spool")
	buildDeferredSpool(b, root, 5000)
	sp := spool.New(root)
	opt := DefaultOptions()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		if asJSON {
			w := NewJSONWriter(io.Discard)
			err = Scan(sp, opt, w.Write)
			w.Close()
		} else {
			w := NewTextWriter(io.Discard, false, time.UTC)
			err = Scan(sp, opt, w.Write)
			w.Close()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/5000, "ns/message")
}

func BenchmarkText(b *testing.B) { benchmarkList(b, false) }
func BenchmarkJSON(b *testing.B) { benchmarkList(b, true) }
