package queuesvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice/internal/manage"
	"sluice/internal/model"
	"sluice/internal/spool"
)

var now = time.Unix(1795964910, 0).UTC()

const refused = "connect to 127.0.0.1[127.0.0.1]:9: Connection refused"

// put writes a message into queue and returns its ID; reasons maps
// recipients to a deferral reason in the defer log.
func put(t *testing.T, sp *spool.Spool, queue, sender string, arrival time.Time, rcpts []string, reasons map[string]string) string {
	t.Helper()
	f, err := sp.NewFile(spool.Incoming, arrival)
	if err != nil {
		t.Fatal(err)
	}
	env := &spool.NewEnvelope{Arrival: arrival, Sender: sender}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, spool.NewRecipient{Address: r})
	}
	if err := f.WriteEnvelope(env); err != nil {
		t.Fatal(err)
	}
	f.WriteLine([]byte("Subject: a test"))
	f.WriteLine([]byte("X-Folded: one"))
	f.WriteLine([]byte("\ttwo"))
	f.WriteLine(nil)
	f.WriteLine([]byte("body"))
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if queue != spool.Incoming {
		if err := sp.Move(f.ID, spool.Incoming, queue); err != nil {
			t.Fatal(err)
		}
	}
	// Entries name their recipient by its record's offset, as the
	// daemon's (and Postfix's) defer logs do.
	env2, _, err := spool.ReadFile(sp.Path(queue, f.ID), spool.ReadOptions{SkipContent: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range env2.Recipients {
		if why, ok := reasons[r.Address]; ok {
			if err := sp.AppendLog(spool.Defer, f.ID, spool.LogEntry{Recipient: r.Address, Offset: r.Offset, Status: "4.4.1", Action: "delayed", Reason: why}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f.ID
}

type fixture struct {
	sp         *spool.Spool
	files      *Service // reads the files
	live       *Service // answers from a model of the same spool
	a, b, c, d string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	sp := spool.New(t.TempDir())
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	f := &fixture{sp: sp}
	f.a = put(t, sp, spool.Deferred, "alice@facts.test", now.Add(-3*time.Hour), []string{"bob@example.com"}, map[string]string{"bob@example.com": refused})
	f.b = put(t, sp, spool.Deferred, "", now.Add(-time.Minute), []string{"x@example.com", "y@other.test"}, map[string]string{"x@example.com": refused})
	f.c = put(t, sp, spool.Hold, "carol@facts.test", now.Add(-time.Hour), []string{"bob@example.com"}, nil)
	f.d = put(t, sp, spool.Incoming, "dora@facts.test", now.Add(-26*time.Hour), []string{"z@example.org"}, nil)
	clock := func() time.Time { return now }
	q := &manage.Queue{Spool: sp, Now: clock}
	f.files = &Service{Queue: q, Now: clock, MaxLifetime: 5 * 24 * time.Hour, BounceLifetime: 24 * time.Hour}
	m := model.New(model.Config{Spool: sp, Now: clock})
	if err := m.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	lq := &manage.Queue{Spool: sp, Now: clock, Events: m}
	f.live = &Service{Queue: lq, Model: m, Now: clock, MaxLifetime: 5 * 24 * time.Hour, BounceLifetime: 24 * time.Hour}
	return f
}

func mustSel(t *testing.T, s string) *manage.Selector {
	t.Helper()
	sel, err := ParseSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

// TestModelAgreesWithFiles: every view answers the same from the model
// as from the files.
func TestModelAgreesWithFiles(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, s := range []string{"", "queue=deferred", "rcpt=bob@example.com", "class=connection-refused", "age>1h age<2d", "domain=example.com", "sender=<>"} {
		sel := mustSel(t, s)
		for _, by := range manage.SummaryBy {
			a, err1 := f.files.Summary(ctx, sel, by)
			b, err2 := f.live.Summary(ctx, sel, by)
			if err1 != nil || err2 != nil {
				t.Fatalf("%q by %s: %v %v", s, by, err1, err2)
			}
			if a.Source != SourceFiles || b.Source != SourceModel {
				t.Errorf("sources %s %s", a.Source, b.Source)
			}
			a.Source, b.Source = "", ""
			if !reflect.DeepEqual(a, b) {
				t.Errorf("summary %q by %s:\nfiles %+v\nmodel %+v", s, by, a, b)
			}
		}
		ca, _ := f.files.Count(ctx, sel)
		cb, _ := f.live.Count(ctx, sel)
		if ca.Messages != cb.Messages || ca.Recipients != cb.Recipients {
			t.Errorf("count %q: files %+v model %+v", s, ca, cb)
		}
		la, _ := f.files.List(ctx, sel, 0, "")
		lb, _ := f.live.List(ctx, sel, 0, "")
		ja, _ := json.Marshal(la.Messages)
		jb, _ := json.Marshal(lb.Messages)
		if string(ja) != string(jb) {
			t.Errorf("list %q:\nfiles %s\nmodel %s", s, ja, jb)
		}
	}
	for _, id := range []string{f.a, f.b, f.c, f.d} {
		da, err1 := f.files.Show(ctx, id)
		db, err2 := f.live.Show(ctx, id)
		if err1 != nil || err2 != nil {
			t.Fatalf("show %s: %v %v", id, err1, err2)
		}
		da.Source, db.Source = "", ""
		if !reflect.DeepEqual(da, db) {
			t.Errorf("show %s:\nfiles %+v\nmodel %+v", id, da, db)
		}
	}
}

func TestList(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, svc := range []*Service{f.files, f.live} {
		var got []string
		after := ""
		for pages := 0; pages < 10; pages++ {
			res, err := svc.List(ctx, mustSel(t, ""), 3, after)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range res.Messages {
				got = append(got, m.ID)
			}
			if res.Next == "" {
				break
			}
			after = res.Next
		}
		if len(got) != 4 || !sortedUnique(got) {
			t.Errorf("%s: pages gave %v", svc.source(mustSel(t, "")), got)
		}
	}
	if _, err := ParseSelector("hold"); err == nil || !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "queue=hold") {
		t.Errorf("bare word: %v", err)
	}
}

func sortedUnique(ids []string) bool {
	for i := 1; i < len(ids); i++ {
		if ids[i-1] >= ids[i] {
			return false
		}
	}
	return true
}

func TestShow(t *testing.T) {
	f := newFixture(t)
	d, err := f.live.Show(context.Background(), f.a)
	if err != nil {
		t.Fatal(err)
	}
	if d.Queue != spool.Deferred || d.NextState != "scheduled" || d.NextAttempt.IsZero() || !d.Expires.Equal(d.CreateTime.Add(5*24*time.Hour)) {
		t.Errorf("times: %+v", d)
	}
	if len(d.Recipients) != 1 || d.Recipients[0].State != "deferred" || d.Recipients[0].Class != "connection-refused" || d.Recipients[0].Reason != refused {
		t.Errorf("recipients: %+v", d.Recipients)
	}
	want := []Header{{"Subject", "a test"}, {"X-Folded", "one two"}}
	if !reflect.DeepEqual(d.Headers, want) {
		t.Errorf("headers %+v, want %+v", d.Headers, want)
	}
	// A bounce expires after bounce_queue_lifetime; held mail not at all.
	if d, _ := f.live.Show(context.Background(), f.b); !d.Expires.Equal(d.CreateTime.Add(24 * time.Hour)) {
		t.Errorf("bounce expiry %v (created %v)", d.Expires, d.CreateTime)
	}
	if d, _ := f.live.Show(context.Background(), f.c); !d.Expires.IsZero() || d.NextState != "hold" {
		t.Errorf("held: %+v", d)
	}
	if _, err := f.live.Show(context.Background(), "ABCDEF1234"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing message: %v", err)
	}
}

// TestAct: a dry run says what the real run then does; the skipped are
// counted by reason; the model follows the action's events.
func TestAct(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	req := ActRequest{Action: manage.OpHold, Select: "rcpt=bob@example.com", DryRun: true}
	plan, err := f.live.Act(ctx, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Matched != 2 || plan.Changed != 1 || plan.Skipped != 1 || len(plan.SkippedReasons) != 1 {
		t.Errorf("dry run: %+v", plan)
	}
	if m, _ := f.live.Model.Message(f.a); m.Queue != spool.Deferred {
		t.Errorf("the dry run changed %s: %s", f.a, m.Queue)
	}
	req.DryRun = false
	res, err := f.live.Act(ctx, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Matched != 2 || res.Changed != 1 || res.Skipped != 1 {
		t.Errorf("real run: %+v", res)
	}
	if m, _ := f.live.Model.Message(f.a); m.Queue != spool.Hold {
		t.Errorf("the model has %s in %s after hold", f.a, m.Queue)
	}
	if _, err := f.files.Queue.Spool.Locate(f.a, spool.Hold); err != nil {
		t.Errorf("%s not in hold/: %v", f.a, err)
	}
	// Nothing left to hold: the second run changes nothing.
	res, _ = f.live.Act(ctx, req, nil)
	if res.Changed != 0 || res.Skipped != 2 {
		t.Errorf("second run: %+v", res)
	}
	// Expire twice: the second is skipped as already so.
	ex := ActRequest{Action: manage.OpExpire, Select: "id=" + f.b}
	if res, _ := f.live.Act(ctx, ex, nil); res.Changed != 1 {
		t.Errorf("expire: %+v", res)
	}
	if res, _ := f.live.Act(ctx, ex, nil); res.Changed != 0 || res.SkippedReasons[SkipAlready] != 1 {
		t.Errorf("expire again: %+v", res)
	}
	// A delete is seen by the model at once.
	if res, _ := f.live.Act(ctx, ActRequest{Action: manage.OpDelete, Select: "id=" + f.d}, nil); res.Changed != 1 {
		t.Errorf("delete: %+v", res)
	}
	if _, ok := f.live.Model.Message(f.d); ok {
		t.Errorf("the model still has deleted %s", f.d)
	}
	for _, bad := range []ActRequest{{Action: "nuke", Select: "id=" + f.a}, {Action: manage.OpHold, Select: ""}, {Action: manage.OpHold, Select: "age>soon"}} {
		if _, err := f.live.Act(ctx, bad, nil); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// TestActIDs: with IDs the action takes only those messages, and only
// if the selector still matches them.
func TestActIDs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, svc := range []*Service{f.files, f.live} {
		res, err := svc.Act(ctx, ActRequest{Action: manage.OpExpire, Select: "sender=alice@facts.test", IDs: []string{f.a, f.c}, DryRun: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Matched != 1 || res.Changed != 1 || res.Results[0].ID != f.a {
			t.Errorf("%+v", res)
		}
		if _, err := svc.Act(ctx, ActRequest{Action: manage.OpExpire, Select: "sender=x@y", IDs: []string{"../x"}}, nil); !errors.Is(err, ErrBadRequest) {
			t.Errorf("bad ID: %v", err)
		}
	}
}

// TestSummaryOfAllAgrees: the summary of every message, which the model
// answers from its own records, is the summary the views give for the
// same messages (asked through a selector that picks them all), on a
// random spool: several recipients, domains in mixed case, senders in
// mixed case and null, reasons of several classes, every queue, and an
// unreadable file.
func TestSummaryOfAllAgrees(t *testing.T) {
	sp := spool.New(t.TempDir())
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(7, 11))
	domains := []string{"example.com", "Example.COM", "other.test", "grey.test", "x.test"}
	senders := []string{"", "alice@facts.test", "ALICE@facts.test", "bob@src.test"}
	reasons := []string{refused, "host mx.grey.test[192.0.2.1] said: 450 4.7.1 Greylisted, try again later (in reply to RCPT TO command)",
		"conversation with mx.x.test[192.0.2.2] timed out while receiving the initial server greeting", ""}
	queues := []string{spool.Deferred, spool.Deferred, spool.Deferred, spool.Hold, spool.Incoming}
	for i := 0; i < 150; i++ {
		var rcpts []string
		why := map[string]string{}
		for j := 0; j <= rnd.IntN(4); j++ {
			r := fmt.Sprintf("u%d@%s", rnd.IntN(6), domains[rnd.IntN(len(domains))])
			if slices.Contains(rcpts, r) {
				continue
			}
			rcpts = append(rcpts, r)
			if w := reasons[rnd.IntN(len(reasons))]; w != "" {
				why[r] = w
			}
		}
		age := time.Duration(rnd.IntN(7*24*3600)) * time.Second
		put(t, sp, queues[rnd.IntN(len(queues))], senders[rnd.IntN(len(senders))], now.Add(-age), rcpts, why)
	}
	if err := os.WriteFile(sp.Path(spool.Corrupt, "ABCDEF012345"), []byte("not a queue file"), 0o700); err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return now }
	m := model.New(model.Config{Spool: sp, Now: clock})
	if err := m.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	svc := &Service{Queue: &manage.Queue{Spool: sp, Now: clock}, Model: m, Now: clock}
	ctx := context.Background()
	for _, by := range manage.SummaryBy {
		fast, err := svc.Summary(ctx, mustSel(t, ""), by)
		if err != nil || fast.Source != SourceModel {
			t.Fatalf("by %s: %v %s", by, err, fast.Source)
		}
		slow, err := svc.Summary(ctx, mustSel(t, "size>=0"), by)
		if err != nil || slow.Source != SourceModel {
			t.Fatalf("by %s through the views: %v %s", by, err, slow.Source)
		}
		if fast.Messages != slow.Messages || fast.Recipients != slow.Recipients || !reflect.DeepEqual(fast.Groups, slow.Groups) {
			t.Errorf("by %s: %d/%d vs %d/%d\nfast %+v\nviews %+v", by, fast.Messages, fast.Recipients, slow.Messages, slow.Recipients, fast.Groups, slow.Groups)
		}
		if len(fast.Groups) < 2 {
			t.Errorf("by %s: only %d groups; the spool is not random enough", by, len(fast.Groups))
		}
	}
}
