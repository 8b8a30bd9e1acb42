package postcat_test

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"sluice/internal/spool"
)

// TestAgainstPostfix runs every golden case, and more that cannot have a
// golden file, through both /usr/sbin/postcat and ours and compares them
// byte for byte. It is skipped where Postfix is not installed.
func TestAgainstPostfix(t *testing.T) {
	if _, err := os.Stat(realPostcat); err != nil {
		t.Skipf("%s not installed", realPostcat)
	}
	if testing.Short() {
		t.Skip("runs the real postcat about 1500 times")
	}
	e := setup(t)
	cases := append(goldenCases(), liveOnlyCases(t)...)

	// Postfix sleeps a second before it exits on a fatal error, so run
	// it on many cases at once; ours runs in-process, one case at a time,
	// because each case sets TZ. Postfix allocates the full claimed length
	// of a record before it reads it, 2 GB for len-huge: those cases run
	// one after another beside the rest.
	type outcome struct {
		res     result
		ok      bool
		err     error
		skipped bool
	}
	outcomes := make([]outcome, len(cases))
	var wg sync.WaitGroup
	work, heavy := make(chan int), make(chan int, len(cases))
	worker := func(queue chan int) {
		defer wg.Done()
		for i := range queue {
			o := &outcomes[i]
			o.res, o.ok, o.err = runPostfix(e, cases[i])
		}
	}
	wg.Add(9)
	go worker(heavy)
	for w := 0; w < 8; w++ {
		go worker(work)
	}
	for i, c := range cases {
		if strings.Contains(strings.Join(c.args, " "), "len-huge") {
			heavy <- i
		} else {
			work <- i
		}
	}
	close(work)
	close(heavy)
	wg.Wait()

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := runSluice(t, e, c)
			o := outcomes[i]
			if o.err != nil {
				t.Fatal(o.err)
			}
			if !o.ok {
				if bytes.Contains(got.stderr, []byte("size record makes the content skip loop")) {
					t.Skip("postcat loops for ever on this file")
				}
				t.Fatalf("postcat did not finish, but we did:\n%s", got)
			}
			compare(t, got, o.res)
		})
	}
}

// liveOnlyCases are cases whose output is too large for a golden file or
// depends on the file system (how far lseek may go), and random files.
func liveOnlyCases(t *testing.T) []tcase {
	cs := combos("ptr-loop", "-v", "-ov")
	cs = append(cs, combos("sample", "-s 18446744073709551615", "-s 9223372036854775807", "-s 4611686018427387904")...)
	dir := t.TempDir()
	huge := newQF(false).rec('T', "1795964910 0").rec('S', "s")
	huge.b = spool.AppendRecordString(huge.b, 'p', "9223372036854775807")
	path := filepath.Join(dir, "ptr-huge")
	if err := os.WriteFile(path, huge.rec('E', "").b, 0o644); err != nil {
		t.Fatal(err)
	}
	cs = append(cs, tcase{name: "ptr-huge", args: []string{"-c", "@conf", path}})

	rng := rand.New(rand.NewSource(1))
	flagSets := []string{"", "-v", "-o", "-h", "-b", "-e", "-bh", "-eh", "-rv", "-dv", "-ob", "-r"}
	for i := 0; i < 120; i++ {
		path := filepath.Join(dir, fmt.Sprintf("random%03d", i))
		if err := os.WriteFile(path, randomQueueFile(rng), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, f := range flagSets {
			args := append([]string{"-c", "@conf"}, strings.Fields(f)...)
			cs = append(cs, tcase{name: fmt.Sprintf("random%03d%s", i, strings.ReplaceAll(f, "-", "_")), args: append(args, path)})
		}
		if i%10 == 0 {
			cs = append(cs, tcase{name: fmt.Sprintf("random%03d_pipe", i), args: []string{"-c", "@conf", "-v"}, stdin: "pipe:" + path})
		}
	}
	return cs
}

// randomQueueFile makes a queue file in cleanup's layout with random
// records, text that is and is not header-like, placeholder and real
// pointers, wrong size records, and, for some, damage: a cut, flipped
// bytes or trailing junk.
func randomQueueFile(rng *rand.Rand) []byte {
	pick := func(s ...string) string { return s[rng.Intn(len(s))] }
	envelope := func(q *qf) {
		for n := rng.Intn(7); n > 0; n-- {
			typ := "TSRODAFLWcIK/<>ion fdmPreV"[rng.Intn(26)]
			q.rec(typ, pick("1795964910 322038", "a@b", "create_time=1795964910", "rewrite_context=local",
				"x", "", "-1", "99999999999", "k = v", "=x", "\x00a", "\xe9"))
		}
	}
	q := newQF(rng.Intn(10) < 7)
	envelope(q)
	if rng.Intn(10) < 3 {
		q.ptr(0)
	}
	if rng.Intn(10) < 2 {
		q.rec('w', "pad")
	}
	q.rec('M', "")
	for n := rng.Intn(9); n > 0; n-- {
		text := pick("Subject: x", "X-A : b", " cont", "\tcont", "body", "", "From foo", "a:b",
			"\xe9t\xe9", "x\x00y", "Long: "+strings.Repeat("A", rng.Intn(50)), ":", "To: <a@b>")
		switch k := rng.Intn(100); {
		case k < 70:
			q.rec('N', text)
		case k < 85:
			q.rec('L', text)
		case k < 90:
			q.rec('w', "x")
		case k < 95:
			q.ptr(0)
		default:
			q.rec("SRTA"[rng.Intn(4)], "y=z")
		}
	}
	q.rec('X', "")
	envelope(q)
	if rng.Intn(10) < 8 {
		q.rec('E', "")
	}
	b := q.done()
	if q.sizeAt >= 0 && rng.Intn(10) == 0 {
		bad := fmt.Sprintf("%95s", pick("garbage", "12", "5 9999", "-3 40", "3 99"))
		copy(b[2:], bad)
	}
	if len(q.dummyPtr) > 0 && rng.Intn(10) < 4 {
		// Fill one placeholder the way a milter edit does: point at
		// records appended at the end, which point back.
		at := q.dummyPtr[rng.Intn(len(q.dummyPtr))]
		target := len(b)
		b = spool.AppendRecordString(b, 'R', "extra@example.com")
		b = spool.AppendRecordString(b, 'N', "inserted")
		b = spool.AppendRecordString(b, 'p', fmt.Sprintf("%15d", at+17))
		copy(b[at+2:], fmt.Sprintf("%15d", target))
	}
	switch k := rng.Intn(100); {
	case k < 15:
		b = b[:rng.Intn(len(b)+1)]
	case k < 25:
		for n := 1 + rng.Intn(3); n > 0; n-- {
			b[rng.Intn(len(b))] = byte(rng.Intn(256))
		}
	case k < 30:
		for n := 1 + rng.Intn(20); n > 0; n-- {
			b = append(b, byte(rng.Intn(256)))
		}
	}
	return b
}
