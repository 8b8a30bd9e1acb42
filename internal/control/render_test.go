package control_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"sluice/internal/control"
	"sluice/internal/manage"
	"sluice/internal/model"
	"sluice/internal/qshape"
	"sluice/internal/showq"
	"sluice/internal/spool"
)

// cacheFixture is a spool served by a control server that answers from
// a model of it (built when the fixture is made). Nothing publishes
// events: every change the test makes is one behind the daemon's back.
type cacheFixture struct {
	t     *testing.T
	sp    *spool.Spool
	c     *control.Client
	m     *model.Model
	ls    *showq.Lister
	now   time.Time
	n     int
	steps int
}

func newCacheFixture(t *testing.T) *cacheFixture {
	root := t.TempDir()
	sp := spool.New(root)
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	f := &cacheFixture{t: t, sp: sp, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.m = model.New(model.Config{Spool: sp, Now: func() time.Time { return f.now }})
	if err := f.m.Build(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.ls = showq.NewLister(sp, f.m)
	srv, err := control.Listen(root, control.Backend{
		Queue: &manage.Queue{Spool: sp}, Listing: f.ls, Model: f.m,
		Now: func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(t.Context()) })
	if f.c, err = control.Dial(root); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.c.Close)
	return f
}

// inject writes a message with n recipients into queue and returns its ID.
func (f *cacheFixture) inject(queue string, n int) string {
	f.t.Helper()
	f.n++
	arrival := f.now.Add(-time.Duration(f.n*7) * time.Minute)
	q, err := f.sp.NewFile(spool.Incoming, arrival)
	if err != nil {
		f.t.Fatal(err)
	}
	env := &spool.NewEnvelope{Arrival: arrival, Sender: fmt.Sprintf("s%d@Sender%d.example", f.n, f.n%3)}
	for i := 0; i < n; i++ {
		env.Recipients = append(env.Recipients, spool.NewRecipient{Address: fmt.Sprintf("u%d@h%d.D%d.example.com", i, f.n%7, i%3)})
	}
	if err := q.WriteEnvelope(env); err != nil {
		f.t.Fatal(err)
	}
	q.WriteLine([]byte("Subject: test"))
	if err := q.Commit(); err != nil {
		f.t.Fatal(err)
	}
	if queue != spool.Incoming {
		if err := f.sp.Move(q.ID, spool.Incoming, queue); err != nil {
			f.t.Fatal(err)
		}
	}
	return q.ID
}

// logDefer appends a defer-log entry for id's first recipient.
func (f *cacheFixture) logDefer(queue, id, reason string) {
	f.t.Helper()
	e, _, err := spool.ReadFile(f.sp.Path(queue, id), spool.ReadOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	r := e.Recipients[0]
	if err := f.sp.AppendLog(spool.Defer, id, spool.LogEntry{Recipient: r.Address, Offset: r.Offset, Status: "4.4.1", Action: "delayed", Reason: reason}); err != nil {
		f.t.Fatal(err)
	}
}

// markDone marks id's first recipient delivered in place.
func (f *cacheFixture) markDone(queue, id string) {
	f.t.Helper()
	path := f.sp.Path(queue, id)
	e, _, err := spool.ReadFile(path, spool.ReadOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := spool.MarkDone(path, e.Recipients[0].Offset, false); err != nil {
		f.t.Fatal(err)
	}
}

var qshapeOptionSets = []map[byte]*string{
	{},
	{'s': nil},
	{'p': nil, 'm': ptr("1")},
	{'l': nil, 't': ptr("3"), 'b': ptr("6")},
	{'w': ptr("100"), 's': nil, 'p': nil},
}

func ptr(s string) *string { return &s }

// checkListing compares the daemon's listing with fresh reads of the
// files, byte for byte, warnings included, twice: the second time the
// daemon has read the files the first one made it read.
func (f *cacheFixture) checkListing(step string) {
	f.t.Helper()
	for round := 0; round < 2; round++ {
		for _, asJSON := range []bool{false, true} {
			want, wantWarn := f.directListing(asJSON)
			got, gotWarn := f.daemonListing(asJSON)
			f.same(fmt.Sprintf("%s: listing json=%v round %d", step, asJSON, round), got, want, gotWarn, wantWarn)
		}
	}
}

// reconcile has the model catch up with the files, as the daemon's
// periodic pass does.
func (f *cacheFixture) reconcile() {
	f.t.Helper()
	if _, err := f.m.Reconcile(context.Background(), 0); err != nil {
		f.t.Fatal(err)
	}
}

// check reconciles the model and compares all the daemon's answers with
// fresh reads of the files, byte for byte, warnings included; it asks
// twice.
func (f *cacheFixture) check(step string) {
	f.t.Helper()
	f.steps++
	f.reconcile()
	for round := 0; round < 2; round++ {
		for _, asJSON := range []bool{false, true} {
			want, wantWarn := f.directListing(asJSON)
			got, gotWarn := f.daemonListing(asJSON)
			f.same(fmt.Sprintf("%s: listing json=%v round %d", step, asJSON, round), got, want, gotWarn, wantWarn)
		}
		for _, flags := range qshapeOptionSets {
			for _, queues := range [][]string{{"deferred"}, {"deferred", "hold", "incoming"}} {
				want, wantWarn := f.directQshape(flags, queues)
				got, gotWarn := f.daemonQshape(flags, queues)
				f.same(fmt.Sprintf("%s: qshape %v %v round %d", step, flagText(flags), queues, round), got, want, gotWarn, wantWarn)
			}
		}
	}
}

func flagText(flags map[byte]*string) string {
	var b strings.Builder
	for k, v := range flags {
		fmt.Fprintf(&b, "-%c", k)
		if v != nil {
			b.WriteString(" " + *v)
		}
		b.WriteByte(' ')
	}
	return b.String()
}

func (f *cacheFixture) same(what, got, want string, gotWarn, wantWarn []string) {
	f.t.Helper()
	if got != want {
		f.t.Errorf("%s: daemon output differs\n--- daemon\n%s--- files\n%s", what, got, want)
	}
	if strings.Join(gotWarn, "\n") != strings.Join(wantWarn, "\n") {
		f.t.Errorf("%s: warnings differ\ndaemon: %q\nfiles:  %q", what, gotWarn, wantWarn)
	}
}

func (f *cacheFixture) directListing(asJSON bool) (string, []string) {
	var out bytes.Buffer
	var warns []string
	opt := showq.DefaultOptions()
	opt.Warn = func(m string) { warns = append(warns, m) }
	var write func(*showq.Message) error
	var closeOut func() error
	if asJSON {
		w := showq.NewJSONWriter(&out)
		write, closeOut = w.Write, w.Close
	} else {
		w := showq.NewTextWriter(&out, f.sp.LongIDs, time.UTC)
		write, closeOut = w.Write, w.Close
	}
	if err := showq.Scan(f.sp, opt, write); err != nil {
		f.t.Fatal(err)
	}
	closeOut()
	return out.String(), warns
}

func (f *cacheFixture) daemonListing(asJSON bool) (string, []string) {
	var out bytes.Buffer
	var warns []string
	opt := showq.DefaultOptions()
	req := control.ListingRequest{JSON: asJSON, LongIDs: f.sp.LongIDs, TZ: "UTC",
		EmptyAddress: opt.EmptyAddress, DupFilterLimit: opt.DupFilterLimit, UTF8: opt.UTF8}
	if _, err := f.c.Listing(req, &out, func(m string) { warns = append(warns, m) }); err != nil {
		f.t.Fatal(err)
	}
	return out.String(), warns
}

func (f *cacheFixture) paths(queues []string) []string {
	var p []string
	for _, q := range queues {
		p = append(p, f.sp.Root+"/"+q)
	}
	return p
}

func (f *cacheFixture) directQshape(flags map[byte]*string, queues []string) (string, []string) {
	var out bytes.Buffer
	var warns []string
	opt := qshape.FromFlags(flags, false)
	opt.Now = func() time.Time { return f.now }
	opt.Warnf = func(format string, a ...any) { warns = append(warns, fmt.Sprintf(format, a...)) }
	if err := qshape.Run(opt, f.paths(queues), &out); err != nil {
		f.t.Fatal(err)
	}
	return out.String(), warns
}

func (f *cacheFixture) daemonQshape(flags map[byte]*string, queues []string) (string, []string) {
	var out bytes.Buffer
	var warns []string
	req := control.QshapeRequest{Flags: map[string]*string{}, Queues: f.paths(queues)}
	for k, v := range flags {
		req.Flags[string(rune(k))] = v
	}
	if _, err := f.c.Qshape(req, &out, func(m string) { warns = append(warns, m) }); err != nil {
		f.t.Fatal(err)
	}
	return out.String(), warns
}

// TestAnswersMatchFiles changes the spool in every way its writers do,
// behind the daemon's back, and compares, after each change, what the
// daemon answers from its model with what a fresh read of the files
// gives. Files that appear, go or move between queues are listed right
// (the directories are read every time); a file changed in place is seen
// once the model has caught up (reconcile), as every view of the model.
func TestAnswersMatchFiles(t *testing.T) {
	f := newCacheFixture(t)
	var ids []string
	for i := 0; i < 30; i++ {
		ids = append(ids, f.inject(spool.Deferred, 1+i%4))
		if i%2 == 0 {
			f.logDefer(spool.Deferred, ids[i], fmt.Sprintf("connect to mx%d: refused", i%3))
		}
	}
	f.check("start")

	for i := 0; i < 5; i++ {
		ids = append(ids, f.inject(spool.Deferred, 2))
	}
	f.inject(spool.Incoming, 3)
	f.checkListing("new files, before the model has them")
	f.check("new files")

	for _, i := range []int{0, 1, 7} {
		f.logDefer(spool.Deferred, ids[i], "451 greylisted, try again")
	}
	f.check("defer-log appends")

	for _, i := range []int{2, 3} {
		if err := os.Chmod(f.sp.Path(spool.Deferred, ids[i]), 0o710); err != nil {
			t.Fatal(err)
		}
	}
	f.check("chmod g+x")

	for _, i := range []int{4, 5, 6} {
		if err := f.sp.Move(ids[i], spool.Deferred, spool.Hold); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.sp.Move(ids[5], spool.Hold, spool.Deferred); err != nil {
		t.Fatal(err)
	}
	f.checkListing("hold and release, before the model has them")
	f.check("hold and release")

	// Postfix's postsuper -d: the files just go.
	for _, i := range []int{8, 9} {
		if err := f.sp.Remove(spool.Deferred, ids[i]); err != nil {
			t.Fatal(err)
		}
		f.sp.RemoveLog(spool.Defer, ids[i])
	}
	f.checkListing("removal, before the model knows")
	f.check("removal")

	for _, i := range []int{10, 11, 13} {
		f.markDone(spool.Deferred, ids[i])
	}
	f.check("D marks in place")

	// Another message renamed over an existing one, same name.
	other := f.inject(spool.Incoming, 4)
	if err := os.Rename(f.sp.Path(spool.Incoming, other), f.sp.Path(spool.Deferred, ids[12])); err != nil {
		t.Fatal(err)
	}
	f.check("replaced file")

	// A damaged file: listed (with its warning) from the file every
	// time. (qshape through the daemon leaves it out: the model holds
	// such a file by its ID only, where the script counts it.)
	b, err := os.ReadFile(f.sp.Path(spool.Deferred, ids[14]))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.sp.Path(spool.Deferred, ids[14]), b[:40], 0o700); err != nil {
		t.Fatal(err)
	}
	f.reconcile()
	f.checkListing("damaged file")

	fromModel, fromFiles := f.ls.Stats()
	t.Logf("listed %d messages from the model, %d from their files", fromModel, fromFiles)
	if fromModel < 2*fromFiles {
		t.Errorf("the model was hardly used: %d messages from it, %d from files", fromModel, fromFiles)
	}
}

// TestQshapeOutsideSpool: the daemon shows nothing outside its spool.
func TestQshapeOutsideSpool(t *testing.T) {
	f := newCacheFixture(t)
	var out bytes.Buffer
	started, err := f.c.Qshape(control.QshapeRequest{Queues: []string{"/etc"}}, &out, func(string) {})
	if err == nil || started || out.Len() > 0 {
		t.Fatalf("qshape /etc through the daemon: started %v, err %v, output %q", started, err, out.String())
	}
}

// TestListingPassesKeptRenderings: once the daemon keeps the rendering
// of the queue's directories (showq's segments), it passes them to the
// tool as files, which the tool copies out itself (sendfile to a file
// or a pipe, a read and write to anything else), and the listing stays
// a scan's, byte for byte.
func TestListingPassesKeptRenderings(t *testing.T) {
	f := newCacheFixture(t)
	for i := range 40 {
		id := f.inject(spool.Deferred, 1+i%3)
		if i%2 == 0 {
			f.logDefer(spool.Deferred, id, fmt.Sprintf("connect to mx%d.example.com[192.0.2.%d]:25: Connection refused", i, i))
		}
	}
	if _, err := f.m.Reconcile(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	// Directories changed in the last second are read again at each
	// listing, and their renderings not kept.
	time.Sleep(1100 * time.Millisecond)
	f.checkListing("start")
	hits, kept := f.ls.CacheStats()
	if kept == 0 {
		t.Fatal("nothing kept")
	}
	taken := control.FilesTaken()
	for _, asJSON := range []bool{false, true} {
		want, _ := f.directListing(asJSON)
		req := control.ListingRequest{JSON: asJSON, TZ: "UTC", EmptyAddress: showq.DefaultOptions().EmptyAddress, DupFilterLimit: showq.DefaultOptions().DupFilterLimit}

		file, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			t.Fatal(err)
		}
		file.WriteString("before\n")
		if _, err := f.c.Listing(req, file, func(string) {}); err != nil {
			t.Fatal(err)
		}
		file.Close()
		if got, _ := os.ReadFile(file.Name()); string(got) != "before\n"+want {
			t.Errorf("json=%v: into a file:\n%s\nwant\n%s", asJSON, got, want)
		}

		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		read := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(pr)
			read <- b
		}()
		if _, err := f.c.Listing(req, pw, func(string) {}); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		if got := <-read; string(got) != want {
			t.Errorf("json=%v: into a pipe:\n%s\nwant\n%s", asJSON, got, want)
		}
	}
	if h, _ := f.ls.CacheStats(); h <= hits {
		t.Error("the listings took no kept rendering")
	}
	if control.FilesTaken() == taken {
		t.Error("no kept rendering was passed as a file")
	}
}
