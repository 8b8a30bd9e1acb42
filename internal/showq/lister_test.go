package showq

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"strings"
	"testing"
	"time"

	"sluice/internal/model"
	"sluice/internal/spool"
)

// The Lister must give what a scan of the files gives, byte for byte,
// warnings included, whether a message comes from the model or from its
// file. Each check lists three times: the first listing reads every file
// (the Lister knows none yet), the later ones take what they can from the
// model.

// scanOutput is the listing a scan of the files gives.
func scanOutput(t testing.TB, sp *spool.Spool, opt Options, f Format) (string, []string) {
	t.Helper()
	var warns []string
	opt.Warn = func(s string) { warns = append(warns, s) }
	var out bytes.Buffer
	switch f.Kind {
	case Protocol:
		if err := WriteProtocol(&out, func(emit func(*Message) error) error { return Scan(sp, opt, emit) }); err != nil {
			t.Fatal(err)
		}
		return out.String(), warns
	case JSON:
		w := NewJSONWriter(&out)
		if err := Scan(sp, opt, w.Write); err != nil {
			t.Fatal(err)
		}
		w.Close()
	default:
		w := NewTextWriter(&out, f.Long, f.Loc)
		if err := Scan(sp, opt, w.Write); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	return out.String(), warns
}

func listerOutput(t testing.TB, l *Lister, opt Options, f Format) (string, []string) {
	t.Helper()
	var warns []string
	opt.Warn = func(s string) { warns = append(warns, s) }
	var out bytes.Buffer
	if err := l.Write(&out, opt, f); err != nil {
		t.Fatal(err)
	}
	return out.String(), warns
}

// compareListings lists sp with l in every format, three times over,
// and wants a scan's bytes and warnings every time.
func compareListings(t *testing.T, what string, sp *spool.Spool, l *Lister, opt Options, long bool, loc *time.Location) {
	t.Helper()
	formats := []Format{{Kind: Text, Long: long, Loc: loc}, {Kind: JSON}, {Kind: Protocol}}
	for round := range 3 {
		for _, f := range formats {
			want, wantWarn := scanOutput(t, sp, opt, f)
			got, gotWarn := listerOutput(t, l, opt, f)
			if got != want {
				t.Fatalf("%s: format %d round %d: the lister differs from a scan\n--- lister\n%s--- scan\n%s", what, f.Kind, round, got, want)
			}
			if strings.Join(gotWarn, "\n") != strings.Join(wantWarn, "\n") {
				t.Fatalf("%s: format %d round %d: warnings differ\nlister: %q\nscan:   %q", what, f.Kind, round, gotWarn, wantWarn)
			}
		}
	}
}

func buildModel(t testing.TB, sp *spool.Spool) *model.Model {
	t.Helper()
	m := model.New(model.Config{Spool: sp})
	if err := m.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestListerCorpus: the scenarios the oracle and golden tests compare
// with Postfix, listed from the model.
func TestListerCorpus(t *testing.T) {
	var fromModel int64
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			sp := sc.spool(t.TempDir())
			buildSpool(t, sp, sc.msgs())
			loc, err := time.LoadLocation(sc.tz)
			if err != nil {
				t.Fatal(err)
			}
			l := NewLister(sp, buildModel(t, sp))
			compareListings(t, sc.name, sp, l, sc.options(), sc.long, loc)
			m, f := l.Stats()
			t.Logf("%d messages from the model, %d from their files", m, f)
			fromModel += m
		})
	}
	if fromModel == 0 {
		t.Error("no message was listed from the model")
	}
}

// TestListerWithoutModel: with no model (or one still loading) every
// message comes from its file.
func TestListerWithoutModel(t *testing.T) {
	sc := scenarios[0]
	sp := sc.spool(t.TempDir())
	buildSpool(t, sp, sc.msgs())
	for _, m := range []*model.Model{nil, model.New(model.Config{Spool: sp})} {
		l := NewLister(sp, m)
		compareListings(t, sc.name, sp, l, sc.options(), false, time.UTC)
		if n, _ := l.Stats(); n != 0 {
			t.Errorf("%d messages listed from a model that is not there or not loaded", n)
		}
	}
}

// randomSpool writes n random messages: recipients that repeat, are
// done, need quoting or are not printable; defer logs whose entries come
// in any order, repeat, name no recipient or lack their reason.
func randomSpool(t *testing.T, sp *spool.Spool, rng *rand.Rand, n int, base time.Time) []tmsg {
	addrs := []string{
		"a@example.com", "b@example.com", "c@example.org", "d@example.net", "e@example.net",
		"first last@example.com", "x\"y@example.com", "caf\u00e9@example.fr", "tab\there@example.com",
		"", "@route,@r2:user@example.com", "dots..here@example.com", "a@example.com",
	}
	reasons := []string{
		"connect to mx.example.com[192.0.2.1]:25: Connection refused",
		"host mx.example.org[192.0.2.2] said: 450 4.7.1 Greylisted (in reply to RCPT TO command)",
		"lost connection with mx.example.net[192.0.2.3] while receiving the initial server greeting",
		"bad\x01byte \u00e9t\u00e9",
		"",
	}
	queues := []string{spool.Deferred, spool.Deferred, spool.Deferred, spool.Hold, spool.Active, spool.Incoming, spool.Maildrop}
	var msgs []tmsg
	for i := range n {
		m := tmsg{
			queue:   queues[rng.Intn(len(queues))],
			id:      fmt.Sprintf("%05X%06X", 0x10000+i, rng.Intn(1<<24)),
			arrival: base.Add(-time.Duration(rng.Intn(5*86400)) * time.Second),
			sender:  addrs[rng.Intn(len(addrs))],
		}
		for range rng.Intn(6) {
			m.rcpts = append(m.rcpts, trcpt{addr: addrs[rng.Intn(len(addrs))], done: rng.Intn(5) == 0})
		}
		if rng.Intn(10) == 0 {
			m.mode = 0o710 // forced expiry
		}
		if m.queue == spool.Maildrop {
			var rs []string
			for _, r := range m.rcpts {
				rs = append(rs, r.addr)
			}
			m.raw = postdropFile(m.arrival, m.sender, rs...)
		} else if len(m.rcpts) > 0 && rng.Intn(4) != 0 {
			// Entries for some recipients, in a random order.
			for _, k := range rng.Perm(len(m.rcpts))[:1+rng.Intn(len(m.rcpts))] {
				e := deferEntry(m.rcpts[k].addr, reasons[rng.Intn(len(reasons))])
				switch rng.Intn(12) {
				case 0:
					e.Offset = 0 // names no recipient
				case 1:
					m.log = append(m.log, e) // twice
				}
				m.log = append(m.log, e)
			}
		}
		msgs = append(msgs, m)
	}
	buildSpool(t, sp, msgs)
	return msgs
}

// TestListerRandomSpools: random spools, listed with several settings;
// then changed behind the daemon's back and listed again, before and
// after the model catches up.
func TestListerRandomSpools(t *testing.T) {
	for seed := int64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			sp := spool.New(t.TempDir())
			sp.NoSync = true
			sp.LongIDs = true
			if seed%2 == 0 {
				sp.SetHashQueues("deferred, defer, hold")
				sp.HashDepth = 1
			}
			base := time.Date(2026, 3, 29, 3, 0, 0, 0, time.UTC) // a DST change in Europe
			msgs := randomSpool(t, sp, rng, 150, base)
			m := buildModel(t, sp)
			paris, err := time.LoadLocation("Europe/Paris")
			if err != nil {
				t.Fatal(err)
			}
			opts := []Options{DefaultOptions(), {EmptyAddress: "nobody", DupFilterLimit: 2, UTF8: false}, {EmptyAddress: "", DupFilterLimit: 0, UTF8: true}}
			for i, opt := range opts {
				l := NewLister(sp, m)
				compareListings(t, fmt.Sprintf("options %d", i), sp, l, opt, i == 1, paris)
				if n, _ := l.Stats(); n == 0 {
					t.Errorf("options %d: nothing was listed from the model", i)
				}
			}

			// Behind the daemon's back: new files, removals, moves
			// between queues, defer-log appends.
			l := NewLister(sp, m)
			compareListings(t, "before the changes", sp, l, DefaultOptions(), false, time.UTC)
			more := randomSpool(t, sp, rng, 10, base)
			for i := range msgs {
				x := &msgs[i]
				if x.queue == spool.Maildrop {
					continue
				}
				switch rng.Intn(8) {
				case 0:
					if err := sp.Remove(x.queue, x.id); err != nil {
						t.Fatal(err)
					}
					sp.RemoveLog(spool.Defer, x.id)
				case 1:
					to := spool.Hold
					if x.queue == spool.Hold {
						to = spool.Deferred
					}
					if err := sp.Move(x.id, x.queue, to); err != nil {
						t.Fatal(err)
					}
					x.queue = to
				case 2:
					if len(x.rcpts) > 0 {
						e := deferEntry(x.rcpts[0].addr, "451 4.3.0 try later")
						e.Offset = 0
						if err := sp.AppendLog(spool.Defer, x.id, e); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			for i := range 2 {
				what := []string{"after the changes", "after reconcile"}[i]
				if i == 1 {
					if _, err := m.Reconcile(context.Background(), 0); err != nil {
						t.Fatal(err)
					}
				}
				listed := func(id string) bool {
					got, _ := listerOutput(t, l, DefaultOptions(), Format{Kind: JSON})
					return strings.Contains(got, `"queue_id": "`+id+`"`)
				}
				for _, x := range more {
					if !listed(x.id) {
						t.Fatalf("%s: new file %s is not listed", what, x.id)
					}
				}
				if i == 1 {
					compareListings(t, what, sp, l, DefaultOptions(), false, time.UTC)
				}
			}
		})
	}
}

// TestListerVanishedFiles: files removed and moved behind the daemon's
// back are listed as a scan lists them, before the model knows.
func TestListerVanishedFiles(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	msgs := randomSpool(t, sp, rng, 60, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	l := NewLister(sp, buildModel(t, sp))
	compareListings(t, "start", sp, l, DefaultOptions(), false, time.UTC)
	removeAndHold(t, sp, msgs, 3)
	compareListings(t, "after removals and holds", sp, l, DefaultOptions(), false, time.UTC)
}

// removeAndHold does what Postfix's postsuper does, behind the daemon's
// back: removes the files of every k-th message, and puts the deferred
// one after each on hold.
func removeAndHold(t *testing.T, sp *spool.Spool, msgs []tmsg, k int) {
	t.Helper()
	for i := range msgs {
		x := &msgs[i]
		switch {
		case x.queue == spool.Maildrop:
		case i%k == 0:
			if err := sp.Remove(x.queue, x.id); err != nil {
				t.Fatal(err)
			}
			sp.RemoveLog(spool.Defer, x.id)
		case i%k == 1 && x.queue == spool.Deferred:
			if err := sp.Move(x.id, x.queue, spool.Hold); err != nil {
				t.Fatal(err)
			}
			x.queue = spool.Hold
		}
	}
}

// TestListerChangedInPlace: a file changed behind the daemon's back,
// whose model is then brought up to date (as by an event, or the
// reconcile pass), is listed as it now is; its old digest does not hide
// the change.
func TestListerChangedInPlace(t *testing.T) {
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	msgs := []tmsg{{
		queue: spool.Deferred, id: "ABCDEF12345", arrival: at, sender: "s@example.com",
		rcpts: rcpts("a@example.com", "b@example.com", "c@example.com"),
		log:   []spool.LogEntry{deferEntry("c@example.com", "first"), deferEntry("a@example.com", "second")},
	}}
	buildSpool(t, sp, msgs)
	m := buildModel(t, sp)
	l := NewLister(sp, m)
	compareListings(t, "start", sp, l, DefaultOptions(), false, time.UTC)
	if n, _ := l.Stats(); n == 0 {
		t.Fatal("a log out of recipient order was never listed from the model")
	}
	e := deferEntry("b@example.com", "third")
	e.Offset = -1
	env, _, err := spool.ReadFile(sp.Path(spool.Deferred, "ABCDEF12345"), spool.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.Offset = env.Recipients[1].Offset
	if err := sp.AppendLog(spool.Defer, "ABCDEF12345", e); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sp.Path(spool.Deferred, "ABCDEF12345"), 0o710); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reconcile(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	compareListings(t, "after the change", sp, l, DefaultOptions(), false, time.UTC)
}

// TestAsctimeClock: the clock's days give asctime's text at every
// second tried, across daylight-saving changes.
func TestAsctimeClock(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, zone := range []string{"UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		c := asctimeClock{loc: loc}
		base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Unix()
		for range 20000 {
			sec := base + rng.Int63n(400*86400)
			if rng.Intn(4) == 0 {
				sec = base + 28*86400 + rng.Int63n(3*86400) // around the March changes
			}
			for _, width := range []int{19, 20} {
				want := string(appendAsctime(nil, time.Unix(sec, 0).In(loc), width))
				if got := string(c.append(nil, sec, width)); got != want {
					t.Fatalf("%s %d width %d: %q, want %q", zone, sec, width, got, want)
				}
			}
		}
	}
}

// TestIsPrintable: the eight-bytes-at-a-time path agrees with the byte
// loop on every position of every byte value.
func TestIsPrintable(t *testing.T) {
	slow := func(b []byte, utf8 bool) bool {
		c := append([]byte(nil), b...)
		makePrintable(c, utf8)
		return bytes.Equal(b, c)
	}
	base := []byte("host mx.example.com[192.0.2.1] said: 450 greylisted")
	for pos := range base {
		for v := range 256 {
			b := append([]byte(nil), base...)
			b[pos] = byte(v)
			for _, utf8 := range []bool{false, true} {
				if got, want := isPrintable(b, utf8), slow(b, utf8); got != want {
					t.Fatalf("%q utf8=%v: %v, want %v", b, utf8, got, want)
				}
				if got, want := isPrintable(string(b), utf8), slow(b, utf8); got != want {
					t.Fatalf("string %q utf8=%v: %v, want %v", b, utf8, got, want)
				}
			}
		}
	}
}

// TestListerFromLog: a message whose reasons the model does not keep
// (past its cap on distinct reason texts) is listed from the model with
// its defer log read from the file; for every message of random spools
// that gives what reading its files gives.
func TestListerFromLog(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	randomSpool(t, sp, rng, 200, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	m := buildModel(t, sp)
	l := NewLister(sp, m)
	for _, opt := range []Options{DefaultOptions(), {EmptyAddress: "nobody", DupFilterLimit: 1}} {
		spans, err := l.list(opt)
		if err != nil {
			t.Fatal(err)
		}
		var entries []qentry
		for _, s := range spans {
			s.each(func(e qentry) { entries = append(entries, e) })
		}
		rd := newFileReader(sp, &opt)
		st := l.newState(rd, &opt, Format{Kind: JSON})
		file := rd.get()
		checked := 0
		for _, e := range entries {
			r := file.read(e.entry())
			if r.msg == nil || len(r.warnings) > 0 || e.dir.queue == spool.Maildrop {
				continue
			}
			want := l.digest(r.msg)
			var c chunk
			e.dir.digest(e.i).Store(want)
			ok := l.fromLog(st, &c, e)
			// The model does not know entries that name no recipient, or
			// name one twice; for the others it must match.
			if !ok {
				continue
			}
			checked++
			got := string(c.out)
			if w := string(appendJSON(nil, r.msg)); got != w {
				t.Fatalf("%s: from the log\n%s\nfrom the files\n%s", e.id(), got, w)
			}
		}
		if checked < len(entries)/2 {
			t.Errorf("only %d of %d messages could be listed from their log", checked, len(entries))
		}
		rd.close()
	}
}

// TestListerSettledDirectories: directories untouched for longer than
// settle are not read again while their status holds; changes to them
// afterwards (files that come, go or move) are listed.
func TestListerSettledDirectories(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	sp.SetHashQueues("deferred, defer")
	sp.HashDepth = 1
	msgs := randomSpool(t, sp, rng, 80, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	l := NewLister(sp, buildModel(t, sp))
	time.Sleep(settle + 100*time.Millisecond)
	compareListings(t, "settled", sp, l, DefaultOptions(), false, time.UTC)
	kept := 0
	l.dirs.mu.Lock()
	for _, d := range l.dirs.dirs {
		if d.settled {
			kept++
		}
	}
	l.dirs.mu.Unlock()
	if kept == 0 {
		t.Fatal("no directory reading was kept")
	}
	randomSpool(t, sp, rng, 5, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	removeAndHold(t, sp, msgs, 4)
	compareListings(t, "changed", sp, l, DefaultOptions(), false, time.UTC)
}

// TestListerConcurrent: listings at the same time (the control socket
// and public/showq share one Lister) give the same bytes.
func TestListerConcurrent(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	randomSpool(t, sp, rng, 300, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	l := NewLister(sp, buildModel(t, sp))
	want, _ := scanOutput(t, sp, DefaultOptions(), Format{Kind: JSON})
	errs := make(chan string, 8)
	for range 8 {
		go func() {
			var out bytes.Buffer
			opt := DefaultOptions()
			opt.Workers = 3
			if err := l.Write(&out, opt, Format{Kind: JSON}); err != nil {
				errs <- err.Error()
				return
			}
			if out.String() != want {
				errs <- "a concurrent listing differs from a scan"
				return
			}
			errs <- ""
		}()
	}
	for range 8 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}

// TestJSONStringEveryByte: the eight-bytes-at-a-time scan escapes every
// byte value at every position as the byte loop does.
func TestJSONStringEveryByte(t *testing.T) {
	slow := func(s string) string {
		var b []byte
		b = append(b, '"')
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\b':
				b = append(b, `\b`...)
			case c == '\f':
				b = append(b, `\f`...)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c < 0x20 || c == 0x7f:
				b = append(b, fmt.Sprintf(`\u%04X`, c)...)
			default:
				b = append(b, c)
			}
		}
		return string(append(b, '"'))
	}
	base := []byte("connect to mx.example.com[192.0.2.1]:25: refused")
	for pos := range base {
		for v := range 256 {
			b := append([]byte(nil), base...)
			b[pos] = byte(v)
			if got, want := string(appendJSONString(nil, string(b))), slow(string(b)); got != want {
				t.Fatalf("%q: %s, want %s", b, got, want)
			}
		}
	}
}

// TestOnListing: the hook's begin runs as a listing starts and its end
// once the listing is over, written or failed.
func TestOnListing(t *testing.T) {
	sc := scenarios[0]
	sp := sc.spool(t.TempDir())
	buildSpool(t, sp, sc.msgs())
	l := NewLister(sp, nil)
	running, begun := 0, 0
	l.SetOnListing(func() func() {
		running++
		begun++
		return func() { running-- }
	})
	var w duringWriter
	w.check = func() {
		if running != 1 {
			t.Errorf("%d listings marked running while one writes", running)
		}
	}
	if err := l.Write(&w, sc.options(), Format{Kind: Text}); err != nil {
		t.Fatal(err)
	}
	w.fail = true
	if err := l.Write(&w, sc.options(), Format{Kind: Text}); err == nil {
		t.Fatal("a failed write reported no error")
	}
	if begun != 2 || running != 0 {
		t.Errorf("begun %d, still running %d; want 2 and 0", begun, running)
	}
}

type duringWriter struct {
	check func()
	fail  bool
}

func (w *duringWriter) Write(p []byte) (int, error) {
	w.check()
	if w.fail {
		return 0, io.ErrClosedPipe
	}
	return len(p), nil
}
