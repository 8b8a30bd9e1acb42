package maillog

import (
	"bufio"
	"bytes"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sluice/internal/event"
)

var (
	activeRE  = regexp.MustCompile(`^(\w+): from=<([^>]*)>, size=(\d+), nrcpt=(\d+) \(queue active\)$`)
	expiredRE = regexp.MustCompile(`^(\w+): from=<([^>]*)>, status=(expired|force-expired), returned to sender$`)
	noticeRE  = regexp.MustCompile(`^(\w+): sender ([a-z-]+) notification: (\w+)$`)
	simpleRE  = regexp.MustCompile(`^(\w+): (removed|placed on hold|released from hold|requeued)$`)
)

// TestObserverSampleLines rebuilds the lines of the Postfix 3.7.11 log
// sample that events stand for — delivery results, the qmgr's queue
// active, expiry and removal lines, bounce's notices, postsuper's
// actions — from the events alone, through the Logger as a subscriber,
// and requires the same bytes.
func TestObserverSampleLines(t *testing.T) {
	f, err := os.Open("testdata/maillog-instance.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	kinds := map[string]int{}
	for sc.Scan() {
		line := sc.Text()
		m := prefixRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("sample line does not parse: %q", line)
		}
		ts, err := time.ParseInLocation("Jan 02 15:04:05 2006", m[1]+" 2026", time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		service, text := m[3], m[5]
		var ev event.Event
		if d := deliveryRE.FindStringSubmatch(text); d != nil {
			cu, _ := strconv.Atoi(d[5])
			a := event.Attempt{
				ID: d[1], Service: service, To: d[2], OrigTo: d[3], Relay: d[4], ConnUse: cu,
				Delay:  parseDelay(t, d[6]),
				Delays: [4]time.Duration{parseDelay(t, d[7]), parseDelay(t, d[8]), parseDelay(t, d[9]), parseDelay(t, d[10])},
				DSN:    d[11], Reason: d[13],
			}
			switch d[12] {
			case "sent":
				ev = &event.Sent{Attempt: a}
			case "deferred":
				ev = &event.Deferred{Attempt: a}
			case "bounced":
				ev = &event.Bounced{Attempt: a}
			}
			if ev != nil {
				kinds["delivery "+d[12]]++
			}
		} else if d := activeRE.FindStringSubmatch(text); d != nil && service == "qmgr" {
			size, _ := strconv.ParseInt(d[3], 10, 64)
			n, _ := strconv.ParseInt(d[4], 10, 64)
			ev = &event.Activated{ID: d[1], Sender: d[2], Size: size, Nrcpt: n}
			kinds["active"]++
		} else if d := expiredRE.FindStringSubmatch(text); d != nil {
			ev = &event.Expired{ID: d[1], Sender: d[2], Forced: d[3] == "force-expired"}
			kinds["expired"]++
		} else if d := noticeRE.FindStringSubmatch(text); d != nil {
			ev = &event.Notified{ID: d[1], Kind: d[2], NoticeID: d[3]}
			kinds["notice"]++
		} else if d := simpleRE.FindStringSubmatch(text); d != nil {
			switch d[2] {
			case "removed":
				ev = &event.Deleted{ID: d[1], Service: service}
			case "placed on hold":
				ev = &event.Held{ID: d[1], Service: service}
			case "released from hold":
				ev = &event.Released{ID: d[1], Service: service}
			case "requeued":
				ev = &event.Requeued{ID: d[1], Service: service}
			}
			kinds[d[2]]++
		}
		if ev == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[4])
		var buf bytes.Buffer
		l := New(&buf, m[2]+".example", "", func() time.Time { return ts })
		l.SetPID(pid)
		l.Observe(ev)
		if got := strings.TrimSuffix(buf.String(), "\n"); got != line {
			t.Errorf("line differs\n got %q\nwant %q", got, line)
		}
	}
	for _, k := range []string{"delivery sent", "delivery deferred", "active", "expired", "notice", "removed", "placed on hold"} {
		if kinds[k] == 0 {
			t.Errorf("no %q line was checked (%v)", k, kinds)
		}
	}
}

// TestObserverFinals checks the lines of an expanded recipient: one per
// final delivery, each with the recipient as orig_to.
func TestObserverFinals(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, "h", "", func() time.Time { return time.Date(2026, 11, 4, 1, 2, 3, 0, time.UTC) })
	l.SetPID(7)
	l.Observe(&event.Sent{Attempt: event.Attempt{ID: "ABC", Service: "local", To: "postmaster@h.test", Relay: "local", DSN: "2.0.0",
		Finals: []event.Final{{To: "root@h.test", Status: "sent", DSN: "2.0.0", Reason: "delivered to mailbox"}, {To: "bob@h.test", Status: "deferred", DSN: "4.2.2", Reason: "quota"}}}})
	want := "Nov 04 01:02:03 h postfix/local[7]: ABC: to=<root@h.test>, orig_to=<postmaster@h.test>, relay=local, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (delivered to mailbox)\n" +
		"Nov 04 01:02:03 h postfix/local[7]: ABC: to=<bob@h.test>, orig_to=<postmaster@h.test>, relay=local, delay=0, delays=0/0/0/0, dsn=4.2.2, status=deferred (quota)\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
	buf.Reset()
	l.Observe(&event.Received{ID: "X"})
	l.Observe(&event.Moved{ID: "X"})
	l.Observe(&event.Corrupt{ID: "X"})
	if buf.Len() != 0 {
		t.Errorf("events without a line wrote %q", buf.String())
	}
}
