// Command mkspool builds a large deferred queue for benchmarks: the same
// data for sluice and Postfix, written in Postfix's format with the spool
// package (without fsync, which a benchmark fixture does not need).
//
//	go run ./bench/mkspool -dir /tmp/bench/spool -n 100000
//
// Messages have 1 to 3 recipients over a few hundred domains, deferral
// reasons of the usual kinds in defer logs, sizes from 1 to 8 KB, ages
// spread over five days; 2% are on hold and 1% force-expired. Every
// 2000th message goes to TARGET alone (user@example.com), for the
// delete-by-recipient benchmark. The output is deterministic for a given
// -n and -seed, apart from queue IDs (inode numbers).
package main

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"time"

	"sluice/internal/spool"
)

// Target is the address the delete-by-recipient benchmark removes.
const Target = "user@example.com"

var reasons = []string{
	"connect to %s[192.0.2.%d]:25: Connection refused",
	"connect to %s[192.0.2.%d]:25: Connection timed out",
	"host %s[192.0.2.%d] said: 450 4.7.1 Greylisted, please try again later (in reply to RCPT TO command)",
	"host %s[192.0.2.%d] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command)",
	"host %s[192.0.2.%d] said: 421 4.7.0 Too many connections from your IP, slow down (in reply to end of DATA command)",
}

func main() {
	dir := flag.String("dir", "", "queue directory to create (required)")
	n := flag.Int("n", 100000, "messages")
	seed := flag.Int64("seed", 1, "random seed")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "mkspool: -dir is required")
		os.Exit(2)
	}
	if err := build(*dir, *n, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mkspool:", err)
		os.Exit(1)
	}
}

func build(dir string, n int, seed int64) error {
	sp := spool.New(dir)
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		return err
	}
	now := time.Now()
	domains := make([]string, 300)
	for i := range domains {
		domains[i] = fmt.Sprintf("d%03d.example.%s", i, []string{"com", "net", "org"}[i%3])
	}
	body := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 1)[:40])
	// Messages are written by a few workers; each message draws from its
	// own generator, so the data does not depend on the interleaving.
	const workers = 4
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(w int) {
			for i := w; i < n; i += workers {
				if err := writeOne(sp, i, rand.New(rand.NewSource(seed*1000003+int64(i))), now, domains, body); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}(w)
	}
	var first error
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func writeOne(sp *spool.Spool, i int, rng *rand.Rand, now time.Time, domains []string, body []byte) error {
	arrival := now.Add(-time.Duration(rng.Int63n(int64(5 * 24 * time.Hour))))
	var rcpts []string
	if i%2000 == 0 {
		rcpts = []string{Target}
	} else {
		count := 1 + rng.Intn(3)
		for k := 0; k < count; k++ {
			rcpts = append(rcpts, fmt.Sprintf("u%d@%s", rng.Intn(1000), domains[rng.Intn(len(domains))]))
		}
	}
	env := &spool.NewEnvelope{
		Arrival: arrival,
		Sender:  fmt.Sprintf("s%d@src%d.test", rng.Intn(500), rng.Intn(20)),
		Attrs:   []spool.Attr{{Name: "rewrite_context", Value: "local"}},
	}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, spool.NewRecipient{Address: r, Orig: r, DSNOrig: "rfc822;" + r})
	}
	f, err := sp.NewFile(spool.Incoming, arrival)
	if err != nil {
		return err
	}
	if err := f.WriteEnvelope(env); err != nil {
		return err
	}
	f.WriteLine([]byte("From: sender <" + env.Sender + ">"))
	f.WriteLine([]byte("To: " + rcpts[0]))
	f.WriteLine([]byte(fmt.Sprintf("Subject: benchmark message %d", i)))
	f.WriteLine(nil)
	lines := 20 + rng.Intn(180) // about 1 to 8 KB
	for l := 0; l < lines; l++ {
		f.WriteLine(body)
	}
	if err := f.CommitNoDirSync(); err != nil {
		return err
	}
	queue := spool.Deferred
	if rng.Intn(50) == 0 {
		queue = spool.Hold
	}
	if err := sp.Move(f.ID, spool.Incoming, queue); err != nil {
		return err
	}
	envRead, _, err := spool.ReadFile(sp.Path(queue, f.ID), spool.ReadOptions{SkipContent: true})
	if err != nil {
		return err
	}
	var entries []spool.LogEntry
	for _, r := range envRead.Recipients {
		d := r.Address[strings.LastIndexByte(r.Address, '@')+1:]
		entries = append(entries, spool.LogEntry{
			Recipient: r.Address, Offset: r.Offset, DSNOrigRcpt: r.DSNOrig, Status: "4.4.1", Action: "delayed",
			Reason: fmt.Sprintf(reasons[rng.Intn(len(reasons))], "mx."+d, 1+rng.Intn(250)),
		})
	}
	if err := sp.AppendLog(spool.Defer, f.ID, entries...); err != nil {
		return err
	}
	path := sp.Path(queue, f.ID)
	if rng.Intn(100) == 0 {
		os.Chmod(path, 0o710)
	}
	// Next attempts two to three hours away, so a daemon started on the
	// spool for a benchmark leaves it alone meanwhile.
	next := now.Add(2*time.Hour + time.Duration(rng.Int63n(int64(time.Hour))))
	os.Chtimes(path, next, next)
	return nil
}
