// Package qshapetest builds queue directories for qshape's tests and
// benchmarks: a sample spool with one message for each case the counting
// rules distinguish, and a bulk spool of many deferred messages. Every
// message's age is measured back from a given now, so the same spool
// built at a fixed time (for golden files) and at the real time (for
// Postfix's qshape, which reads the system clock) gives the same table.
package qshapetest

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sluice/internal/spool"
)

// Msg is one message of a test spool.
type Msg struct {
	Queue     string  // incoming, active, deferred, hold, or a directory path under the root
	Age       float64 // minutes before now (T record)
	Sender    string
	Rcpts     []string
	Done      []int    // indexes of Rcpts marked done (D)
	Extracted []string // recipients in the extracted segment
	Mode      os.FileMode
	Body      string // one content line; empty means a 2500-byte line
}

// Sample is the sample spool's ordinary messages.
var Sample = []Msg{
	{Queue: "deferred", Age: 1.3, Sender: "alice@src.test", Rcpts: []string{"bob@example.com", "carol@example.com"}},
	{Queue: "deferred", Age: 6.8, Sender: "x@facts.test", Rcpts: []string{"u1@sub.example.com"}},
	{Queue: "deferred", Age: 27, Sender: "x@facts.test", Rcpts: []string{
		"a@a.example.com", "b@b.example.com", "c@c.example.com", "d@d.example.com", "e@e.example.com", "f@f.example.com", "g@deep.sub.example.com"}},
	{Queue: "deferred", Age: 230, Sender: "", Rcpts: []string{"postmaster@example.net"}},
	{Queue: "deferred", Age: 1900, Sender: "", Rcpts: []string{"postmaster@example.org"}},
	{Queue: "deferred", Age: 900, Sender: "Big@Example.ORG", Rcpts: []string{"User@EXAMPLE.org", "second@Sub.Example.COM"}},
	{Queue: "deferred", Age: 3100, Sender: "someone@some.very.long.domain.example.com",
		Rcpts: []string{"x@a.very.long.destination.domain.that.does.not.fit.example.net", "y@another.very.long.destination.domain.that.does.not.fit.example.net"}},
	{Queue: "deferred", Age: 70, Sender: "alice@src.test", Rcpts: []string{"r1@done.test", "r2@example.net"}, Done: []int{0}},
	{Queue: "deferred", Age: 14, Sender: "alice@src.test", Rcpts: []string{"r@alldone.test"}, Done: []int{0}},
	{Queue: "deferred", Age: 450, Sender: "bob@src.test", Rcpts: []string{"x@example.org"}, Extracted: []string{"y@extracted.test", "z@example.org"}},
	{Queue: "deferred", Age: 11, Sender: "localuser", Rcpts: []string{"localuser", "u@trailing.example.net."}},
	{Queue: "deferred", Age: 50, Sender: "x@facts.test", Rcpts: []string{"u@double..dots.test", "v@.leading.test", "w@", "quoted\"@\"x@example.com"}},
	{Queue: "deferred", Age: 100, Sender: "x@facts.test", Rcpts: []string{"bob@expired.test"}, Mode: 0o710},
	{Queue: "deferred", Age: 310, Sender: "x@facts.test", Rcpts: []string{"z@unthrottle.test"}, Mode: 0o740},
	{Queue: "deferred", Age: 19000, Sender: "old@src.test", Rcpts: []string{"a@example.com", "b@example.com", "c@example.net"}, Mode: 0o704},
	{Queue: "deferred", Age: 41000, Sender: "old@src.test", Rcpts: []string{"q@example.com"}},
	{Queue: "deferred", Age: 4500, Sender: "x@facts.test", Rcpts: []string{"group@writable.test"}, Mode: 0o720},
	{Queue: "deferred", Age: 9000, Sender: "x@facts.test", Rcpts: []string{"a@tie1.test", "a@tie2.test", "a@tie3.test", "a@tie4.test"}},
	{Queue: "deferred", Age: 2.8, Sender: "x@facts.test", Rcpts: []string{"b@tie3.test", "b@tie2.test", "b@tie1.test", "b@tie4.test", "c@tie9.test"}},
	{Queue: "hold", Age: 42, Sender: "held@src.test", Rcpts: []string{"held@example.com"}},
	{Queue: "hold", Age: 150, Sender: "held@src.test", Rcpts: []string{"x@held.example.org", "y@held.example.org"}},
	{Queue: "incoming", Age: 2.8, Sender: "x@facts.test", Rcpts: []string{"a@slow.test"}},
	{Queue: "active", Age: 1.3, Sender: "x@facts.test", Rcpts: []string{"b@slow.test", "c@other.test"}},
	{Queue: "active", Age: 55, Sender: "x@facts.test", Rcpts: []string{"d@slow.test"}},
	// A copy of a queue outside the spool's layout, with a nested
	// directory whose name is not a hash directory's.
	{Queue: "copy", Age: 110, Sender: "x@facts.test", Rcpts: []string{"a@copy.test"}},
	{Queue: "copy/older/deeper", Age: 1700, Sender: "x@facts.test", Rcpts: []string{"b@copy.test", "c@deep.copy.test"}},
}

// Weird is the "weird" queue: addresses that exercise every step of the
// domain rules, each with its own number of messages so no two rows tie.
var Weird = []string{
	"user@dom.test.\n",
	"x@a\n.b.c.",
	"@",
	"foo@.",
	"...",
	".a.b.c@",
	"a@...x.y.z",
	"@@x..y",
	"a@b@c.d",
	"first@line\nsecond@line.two",
	"\nleading.newline",
	"trailing.dots..",
	"UPPER@CASE.TEST",
	"a@b.c.d.e.f.g.h",
	"a@x\ny.z.w",
	"a@p\n",
	"\n",
	"a@.b",
	"MAILER-DAEMON",
	"x@tab\tinside.test",
	"x@\xe9t\xc9.test",
}

// Ages returns the ages of the sample spool's messages (minutes), so
// tests can check that none lies near a bucket boundary.
func Ages() []float64 {
	var out []float64
	for _, m := range Sample {
		out = append(out, m.Age)
	}
	for i := range Weird {
		out = append(out, weirdAge(i))
	}
	return append(out, rawAges...)
}

func weirdAge(i int) float64 { return []float64{1.3, 27, 230, 1900, 50, 6.8, 900}[i%7] }

var rawAges = []float64{55, 110, 230, 14, 3100, 9000}

// Build writes the sample spool under root (created if needed).
func Build(root string, now time.Time) error {
	s := spool.New(root)
	s.NoSync = true
	if err := s.Create(); err != nil {
		return err
	}
	for _, m := range Sample {
		if _, err := Write(s, m, now); err != nil {
			return err
		}
	}
	for i, a := range Weird {
		for k := 0; k <= i; k++ {
			m := Msg{Queue: "weird", Age: weirdAge(i), Sender: a, Rcpts: []string{a}}
			if _, err := Write(s, m, now); err != nil {
				return err
			}
		}
	}
	return writeRaw(s, now)
}

// Write writes one message and returns its path.
func Write(s *spool.Spool, m Msg, now time.Time) (string, error) {
	arrival := now.Add(-time.Duration(m.Age * float64(time.Minute)))
	f, err := s.NewFile(spool.Incoming, arrival)
	if err != nil {
		return "", err
	}
	env := &spool.NewEnvelope{Arrival: arrival, Sender: m.Sender,
		Attrs: []spool.Attr{{Name: "rewrite_context", Value: "remote"}}}
	for _, r := range m.Rcpts {
		env.Recipients = append(env.Recipients, spool.NewRecipient{Address: r, Orig: r})
	}
	if err := f.WriteEnvelope(env); err != nil {
		return "", err
	}
	f.WriteLine([]byte("Subject: test"))
	f.WriteLine(nil)
	body := m.Body
	if body == "" {
		body = strings.Repeat("body ", 500)
	}
	f.WriteLine([]byte(body))
	var extra []spool.NewRecipient
	for _, r := range m.Extracted {
		extra = append(extra, spool.NewRecipient{Address: r})
	}
	if err := f.Commit(extra...); err != nil {
		return "", err
	}
	path := f.Path
	if len(m.Done) > 0 {
		e, _, err := spool.ReadFile(path, spool.ReadOptions{})
		if err != nil {
			return "", err
		}
		for _, i := range m.Done {
			if err := spool.MarkDone(path, e.Recipients[i].Offset, false); err != nil {
				return "", err
			}
		}
	}
	switch m.Queue {
	case spool.Incoming:
	case spool.Active, spool.Deferred, spool.Hold:
		if err := s.Move(f.ID, spool.Incoming, m.Queue); err != nil {
			return "", err
		}
		path = s.Path(m.Queue, f.ID)
	default:
		dir := filepath.Join(s.Root, m.Queue)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		np := filepath.Join(dir, f.ID)
		if err := os.Rename(path, np); err != nil {
			return "", err
		}
		path = np
	}
	if m.Mode != 0 {
		if err := os.Chmod(path, m.Mode); err != nil {
			return "", err
		}
	}
	return path, nil
}

// writeRaw adds hand-made files to deferred/R/ (the hash directory of
// no real ID): pointer records, old maildrop formats, damaged files,
// files with names or types qshape skips.
func writeRaw(s *spool.Spool, now time.Time) error {
	dir := filepath.Join(s.Root, spool.Deferred, "R")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tRec := func(age float64) string {
		return fmt.Sprintf("%d %d", now.Add(-time.Duration(age*float64(time.Minute))).Unix(), 0)
	}
	rec := spool.AppendRecordString
	// Pointer records, as cleanup writes them for milter edits: a
	// placeholder (0), then a jump past E to appended recipients and
	// back. The size record's content length is 0 (empty content).
	var b []byte
	b = rec(b, 'C', fmt.Sprintf("%15d %15d %15d %15d %15d %15d", 0, 0, 1, 0, 0, 0))
	b = rec(b, 'T', tRec(rawAges[0]))
	b = rec(b, 'S', "ptr@src.test")
	b = rec(b, 'R', "a@ptr.test")
	b = rec(b, 'p', fmt.Sprintf("%15d", 0))
	jump := len(b)
	b = rec(b, 'p', fmt.Sprintf("%15d", 0)) // patched below
	back := len(b)
	b = rec(b, 'M', "")
	b = rec(b, 'X', "")
	b = rec(b, 'E', "")
	target := len(b)
	b = rec(b, 'R', "b@ptr.test")
	b = rec(b, 'D', "done@ptr.test")
	b = rec(b, 'R', "c@ptr.test")
	b = rec(b, 'p', fmt.Sprintf("%15d", back))
	copy(b[jump:], rec(nil, 'p', fmt.Sprintf("%15d", target)))
	if err := raw(dir, "RPTR0001", b, 0o700, time.Time{}); err != nil {
		return err
	}

	// Old maildrop format: S first, no T, age from the modification
	// time; the content is walked record by record (no size record).
	b = nil
	b = rec(b, 'S', "oldstyle@src.test")
	b = rec(b, 'R', "a@mtime.test")
	b = rec(b, 'M', "")
	b = rec(b, 'N', "Subject: old")
	b = rec(b, 'L', strings.Repeat("x", 100))
	b = rec(b, 'N', "tail")
	b = rec(b, 'X', "")
	b = rec(b, 'R', "b@mtime.test")
	b = rec(b, 'E', "")
	if err := raw(dir, "RSFIRST1", b, 0o700, now.Add(-time.Duration(rawAges[1]*float64(time.Minute)))); err != nil {
		return err
	}
	// F then S first.
	c := rec(nil, 'F', "Full Name")
	c = append(c, b...)
	if err := raw(dir, "RFFIRST1", c, 0o700, now.Add(-time.Duration(rawAges[2]*float64(time.Minute)))); err != nil {
		return err
	}

	// A postdrop file (T first): the script counts it as a message with
	// no time and no sender, which -s shows as MAILER-DAEMON.
	b = nil
	b = rec(b, 'T', tRec(rawAges[3]))
	b = rec(b, 'S', "drop@src.test")
	b = rec(b, 'R', "a@postdrop.test")
	b = rec(b, 'M', "")
	b = rec(b, 'X', "")
	b = rec(b, 'E', "")
	if err := raw(dir, "RTFIRST1", b, 0o700, time.Time{}); err != nil {
		return err
	}
	// An empty file: the same.
	if err := raw(dir, "REMPTY01", nil, 0o700, time.Time{}); err != nil {
		return err
	}

	// A good file, then damaged copies of it.
	b = nil
	clen := len(rec(nil, 'N', "Subject:"))
	b = rec(b, 'C', fmt.Sprintf("%15d %15d %15d %15d %15d %15d", clen, 0, 1, 0, clen, 0))
	b = rec(b, 'T', " "+tRec(rawAges[4])) // leading space: arrival reads as 0
	b = rec(b, 'S', "good@src.test")
	b = rec(b, 'R', "a@good.test")
	b = rec(b, 'M', "")
	b = rec(b, 'N', "Subject:")
	b = rec(b, 'X', "")
	b = rec(b, 'E', "")
	good := b
	if err := raw(dir, "RGOOD001", good, 0o700, time.Time{}); err != nil {
		return err
	}
	if err := raw(dir, "RTRUNC01", good[:len(good)-10], 0o700, time.Time{}); err != nil {
		return err
	}
	bad := append([]byte(nil), good...)
	bad[len(bad)-4] = 'Q' // the X record's type: content not followed by X
	if err := raw(dir, "RNOXREC1", bad, 0o700, time.Time{}); err != nil {
		return err
	}
	// Cut right after the E type byte: the script reads a length of 0
	// at end of file and takes the record.
	if err := raw(dir, "RCUTEND1", good[:len(good)-1], 0o700, time.Time{}); err != nil {
		return err
	}
	// A '0' type byte reads as end of file.
	zero := append([]byte(nil), good[:len(good)-2]...)
	zero = append(zero, '0', 0, 'E', 0)
	if err := raw(dir, "RZERO001", zero, 0o700, time.Time{}); err != nil {
		return err
	}
	// Names and types the script skips.
	for _, name := range []string{"R1234", "RGOOD_01", ".RGOOD002"} {
		if err := raw(dir, name, good, 0o700, time.Time{}); err != nil {
			return err
		}
	}
	if err := raw(dir, "RMODE600", good, 0o600, time.Time{}); err != nil {
		return err
	}
	if err := os.Symlink("RGOOD001", filepath.Join(dir, "RSYMLINK1")); err != nil {
		return err
	}
	// A T record with no value: no arrival time, not counted; one of
	// blanks: arrival 0, counted.
	for name, tv := range map[string]string{"RNOTIME1": "", "RBLANKT1": "  "} {
		b = nil
		b = rec(b, 'C', fmt.Sprintf("%15d %15d %15d %15d %15d %15d", 0, 0, 1, 0, 0, 0))
		b = rec(b, 'T', tv)
		b = rec(b, 'S', "s@src.test")
		b = rec(b, 'R', "a@"+strings.ToLower(name[1:7])+".test")
		b = rec(b, 'M', "")
		b = rec(b, 'X', "")
		b = rec(b, 'E', "")
		if err := raw(dir, name, b, 0o700, time.Time{}); err != nil {
			return err
		}
	}
	// A bare size record with fewer than three fields: the content is
	// walked instead of skipped.
	b = nil
	b = rec(b, 'C', "12 34")
	b = rec(b, 'T', tRec(rawAges[5]))
	b = rec(b, 'S', "s@src.test")
	b = rec(b, 'R', "a@walked.test")
	b = rec(b, 'M', "")
	b = rec(b, 'N', "line")
	b = rec(b, 'X', "")
	b = rec(b, 'E', "")
	return raw(dir, "RSHORTC1", b, 0o700, time.Time{})
}

func raw(dir, name string, b []byte, mode os.FileMode, mtime time.Time) error {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(p, mode); err != nil {
		return err
	}
	if !mtime.IsZero() {
		return os.Chtimes(p, mtime, mtime)
	}
	return nil
}

// Bulk writes n deferred messages with 1 to 3 recipients each, spread
// over domains and over ages up to ten days, the same for the same seed.
func Bulk(root string, n int, seed int64, now time.Time) error {
	s := spool.New(root)
	s.NoSync = true
	if err := s.Create(); err != nil {
		return err
	}
	rnd := rand.New(rand.NewSource(seed))
	tlds := []string{"com", "net", "org", "de", "test"}
	for i := 0; i < n; i++ {
		// Whole minutes plus 30 s keep ages off the default buckets'
		// bounds, so Postfix's qshape, which reads the clock a little
		// later, counts the same.
		m := Msg{Queue: spool.Deferred, Age: float64(rnd.Intn(14400)) + 0.5, Body: "A short body line.", Sender: fmt.Sprintf("s%d@sender%d.example", i, rnd.Intn(50))}
		if rnd.Intn(20) == 0 {
			m.Sender = ""
		}
		for k := rnd.Intn(3); k >= 0; k-- {
			d := fmt.Sprintf("d%d.example.%s", rnd.Intn(400), tlds[rnd.Intn(len(tlds))])
			if rnd.Intn(4) == 0 {
				d = fmt.Sprintf("mx%d.%s", rnd.Intn(9), d)
			}
			m.Rcpts = append(m.Rcpts, fmt.Sprintf("u%d@%s", rnd.Intn(1000), d))
		}
		if _, err := Write(s, m, now); err != nil {
			return err
		}
	}
	return nil
}
