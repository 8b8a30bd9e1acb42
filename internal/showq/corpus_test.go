package showq

import (
	"fmt"
	"strings"
	"time"

	"sluice/internal/spool"
)

// The test spools. Each scenario is a set of messages and the parameters
// it is listed with; golden_test.go compares our listing with Postfix's,
// saved in testdata/, and oracle_test.go with a live postqueue.

type scenario struct {
	name  string
	msgs  func() []tmsg
	long  bool   // enable_long_queue_ids
	utf8  bool   // smtputf8_enable
	dup   int    // duplicate_filter_limit; 0 means 1000
	empty string // empty_address_recipient; "" means MAILER-DAEMON
	tz    string
	// hashNames and hashDepth, when set, are hash_queue_names and
	// hash_queue_depth.
	hashNames string
	hashDepth int
}

// spool returns the scenario's spool at root.
func (s scenario) spool(root string) *spool.Spool {
	sp := spool.New(root)
	sp.NoSync = true
	sp.LongIDs = s.long
	if s.hashNames != "" {
		sp.SetHashQueues(s.hashNames)
		sp.HashDepth = s.hashDepth
	}
	return sp
}

func (s scenario) options() Options {
	opt := DefaultOptions()
	opt.UTF8 = s.utf8
	if s.dup != 0 {
		opt.DupFilterLimit = s.dup
	}
	if s.empty != "" {
		opt.EmptyAddress = s.empty
	}
	return opt
}

// mainCF is the scenario as main.cf lines, for Postfix.
func (s scenario) mainCF() []string {
	yn := map[bool]string{true: "yes", false: "no"}
	opt := s.options()
	var hash []string
	if s.hashNames != "" {
		hash = []string{"hash_queue_names = " + s.hashNames, fmt.Sprintf("hash_queue_depth = %d", s.hashDepth)}
	}
	return append(hash,
		"enable_long_queue_ids = "+yn[s.long],
		"smtputf8_enable = "+yn[s.utf8],
		fmt.Sprintf("duplicate_filter_limit = %d", opt.DupFilterLimit),
		"empty_address_recipient = "+opt.EmptyAddress,
	)
}

var scenarios = []scenario{
	{name: "queue", msgs: queueCorpus, utf8: true, tz: "UTC"},
	{name: "queue-longids", msgs: queueCorpus, long: true, utf8: true, tz: "UTC"},
	{name: "queue-ascii", msgs: queueCorpus, tz: "America/New_York"},
	{name: "queue-hashed", msgs: queueCorpus, utf8: true, tz: "UTC", hashNames: "deferred, defer, hold, incoming, active", hashDepth: 2},
	{name: "empty", msgs: func() []tmsg { return nil }, utf8: true, tz: "UTC"},
	{name: "single", msgs: singleCorpus, utf8: true, tz: "Asia/Kolkata"},
	{name: "addresses", msgs: addressCorpus, utf8: true, tz: "UTC"},
	{name: "addresses-ascii", msgs: addressCorpus, long: true, tz: "UTC"},
	{name: "deferlogs", msgs: deferLogCorpus, utf8: true, dup: 3, empty: "nobody", tz: "UTC"},
	{name: "damaged", msgs: damagedCorpus, utf8: true, tz: "UTC"},
}

// arrival is the clock of the test queues: the reference instance's.
var arrival = time.Date(2026, 11, 29, 15, 8, 30, 322038000, time.UTC)

const (
	refused   = "connect to 127.0.0.1[127.0.0.1]:9: Connection refused"
	suspended = "delivery temporarily suspended: " + refused
	longWhy   = "This is a deliberately very long temporary failure explanation that exceeds the seventy-six column width"
)

// queueCorpus is a queue in every state the listing distinguishes.
func queueCorpus() []tmsg {
	at := arrival
	big := make([]string, 0, 10100)
	big = append(big, "Subject: big", "")
	line := strings.Repeat("0123456789", 99) + "abcdefgh"
	for len(big) < 10040 {
		big = append(big, line)
	}
	return []tmsg{
		// A local submission waiting for pickup: no size record.
		{queue: spool.Maildrop, id: "4jcrJR2PCmz5jtg", raw: postdropFile(at, "alice@facts.test", "bob@example.com")},
		// One without an arrival record: listed with its mtime.
		{queue: spool.Maildrop, id: "4jcrJR2PDDz5jth", mtime: at.Add(-90 * time.Minute),
			raw: rawFile("A:rewrite_context=local", "S:nodate@facts.test", "R:r@example.com", "M:", "N:x", "X:", "E:")},
		{queue: spool.Active, id: "A75D9BA063", arrival: at.Add(8 * time.Second), sender: "slow@src.test", rcpts: rcpts("u@slow.test")},
		{queue: spool.Active, id: "A8C96BA064", arrival: at.Add(8 * time.Second), sender: "slow@src.test", rcpts: rcpts("u@slow.test"), mode: 0o710},
		{queue: spool.Incoming, id: "C60C1BA070", arrival: at.Add(39 * time.Second), sender: "awk@facts.test",
			rcpts: rcpts("user@example.com", "other@example.com")},
		{queue: spool.Deferred, id: "54AB4BA048", arrival: at, sender: "alice@facts.test", rcpts: rcpts("bob@example.com"),
			log: []spool.LogEntry{deferEntry("bob@example.com", refused)}},
		{queue: spool.Deferred, id: "5D554BA046", arrival: at, sender: "carol@facts.test",
			rcpts: []trcpt{{addr: "gone@discard.test", done: true}, {addr: "keep@example.org"}},
			log:   []spool.LogEntry{deferEntry("keep@example.org", refused)}},
		// Two reasons in one message, one longer than the column.
		{queue: spool.Deferred, id: "87107BA06B", arrival: at.Add(103 * time.Second), sender: "lr@facts.test",
			rcpts: rcpts("r1@longreason.test", "r2@example.com"),
			log:   []spool.LogEntry{deferEntry("r2@example.com", refused), deferEntry("r1@longreason.test", longWhy)}},
		// Several recipients, some done, one never tried.
		{queue: spool.Deferred, id: "99240BA05B", arrival: at.Add(8 * time.Second), sender: "multi@src.test",
			rcpts: []trcpt{{addr: "x@sub.example.com"}, {addr: "done1@example.com", done: true}, {addr: "3x@sub.example.com"},
				{addr: "2x@sub.example.com"}, {addr: "done2@example.com", done: true}, {addr: "new@example.net"}},
			log: []spool.LogEntry{deferEntry("2x@sub.example.com", refused), deferEntry("3x@sub.example.com", refused), deferEntry("x@sub.example.com", refused)}},
		{queue: spool.Deferred, id: "92F34BA053", arrival: at.Add(8 * time.Second), sender: "sender@src.test", rcpts: rcpts("user@example.net"),
			mode: 0o710, log: []spool.LogEntry{deferEntry("user@example.net", suspended)}},
		// The null sender.
		{queue: spool.Deferred, id: "B0081BA066", arrival: at.Add(8 * time.Second), sender: "", rcpts: rcpts("nullsender@example.org"),
			log: []spool.LogEntry{deferEntry("nullsender@example.org", suspended)}},
		{queue: spool.Deferred, id: "BBA8DBA06A", arrival: at.Add(8 * time.Second),
			sender: "averyveryveryverylongsenderaddress.with.many.labels@some.very.long.domain.example.com",
			rcpts:  rcpts("a1@example.com", "a2@example.com", "a3@another.example.net"),
			log:    []spool.LogEntry{deferEntry("a3@another.example.net", suspended), deferEntry("a1@example.com", suspended), deferEntry("a2@example.com", suspended)}},
		// UTF-8 and 8-bit senders and recipients.
		{queue: spool.Deferred, id: "9A2D1BA05C", arrival: at.Add(8 * time.Second), sender: "jürgen@bücher.example",
			rcpts: rcpts("zoë@example.com", "plain@example.com"),
			log:   []spool.LogEntry{deferEntry("zoë@example.com", "450 4.2.0 Postfächer voll"), deferEntry("plain@example.com", "")}},
		{queue: spool.Deferred, id: "961AFBA058", arrival: at.Add(8 * time.Second), sender: "latin\xe9@example.com",
			rcpts: rcpts("caf\xe9@example.com", "john doe@example.com")},
		// Long IDs among short ones; the layout follows the setting.
		{queue: spool.Deferred, id: "4jcrGj5fZ5z5jwm", arrival: time.Unix(1795965117, 796541000), sender: "longid@facts.test",
			rcpts: rcpts("someone@example.com"), log: []spool.LogEntry{deferEntry("someone@example.com", refused)}},
		{queue: spool.Deferred, id: "4jcrHF63f9z5jwS", arrival: time.Unix(1795965145, 0), sender: "ll@facts.test",
			rcpts: rcpts("ll@example.com"), mode: 0o710},
		// Ten megabytes: the size column widens.
		{queue: spool.Deferred, id: "A3FACBA05F", arrival: at.Add(8 * time.Second), sender: "big@src.test", rcpts: rcpts("big@example.com"),
			body: big, log: []spool.LogEntry{deferEntry("big@example.com", refused)}},
		// Every recipient done, not yet removed: no recipient lines.
		{queue: spool.Deferred, id: "E3307BA071", arrival: at.Add(time.Hour), sender: "done@facts.test",
			rcpts: []trcpt{{addr: "d@example.com", done: true}}},
		{queue: spool.Hold, id: "9C162BA06C", arrival: at.Add(-48 * time.Hour), sender: "held@facts.test", rcpts: rcpts("user@example.com"),
			log: []spool.LogEntry{deferEntry("user@example.com", refused)}},
		{queue: spool.Hold, id: "BA06EBA06E", arrival: at.Add(-30 * 24 * time.Hour), sender: "", rcpts: rcpts("user@example.com"), mode: 0o750},
		// A date in the other half of the year (daylight saving time).
		{queue: spool.Hold, id: "BA07EBA06F", arrival: time.Date(2026, 7, 4, 3, 2, 1, 0, time.UTC), sender: "summer@facts.test", rcpts: rcpts("s@example.com")},
	}
}

func singleCorpus() []tmsg {
	return []tmsg{{queue: spool.Deferred, id: "54AB4BA048", arrival: arrival, sender: "alice@facts.test", rcpts: rcpts("bob@example.com"),
		log: []spool.LogEntry{deferEntry("bob@example.com", refused)}}}
}

// addressCorpus holds addresses that need quoting or replacing, each as
// sender and recipient of one held message.
func addressCorpus() []tmsg {
	addrs := []string{
		"plain@example.com", "john doe@example.com", "a.b@example.com", ".a@example.com", "a.@example.com",
		"a..b@example.com", "a(b)@x", "a<b>@x", "a,b@x", "a;b@x", "a:b@x", `a\b@x`, `a"b@x`, "a[b]@x",
		"noat", "", "@x", "@route,@r2:user@dom", "@route:us er@dom", "user@a@b", "us er@a@b", "a\tb@x",
		"a\x01b@x", "a\x7fb@x", "caf\xc3\xa9@x", "caf\xe9@x", "a\rb@x", "a\nb@x", "a%b@x", "a!b@x", "a=b@x",
		`"quoted"@x`, "a b", "é@ü", "x\xc3\xa9\xa9@x", "\xe2\x82@x", "\xf0\x9f\x98\x80@x", "\xc0\x80@x", "\xff\x80@x",
		"\xfe\x80@x", "\xc2@x", "a{b}@x", "a|b@x", "a/b@x", "a?b@x", "a#b@x", "a$b@x", "a&b@x", "a'b@x", "a*b@x",
		"a+b@x", "a^b@x", "a`b@x", "a~b@x", "@a:", "@a:b", ":x@y", "a:@b", "ab\x00cd@x", "@a:b c", "a\x80b@x",
		`""@x`, "a@", "a b@", "@", "x@@y", "a.b.c@x", "a..@x", "abc.", "-@x", "a@b c", "\xc2\x85@x", "日本語@例え.jp",
	}
	var msgs []tmsg
	for i, a := range addrs {
		msgs = append(msgs, tmsg{queue: spool.Hold, id: fmt.Sprintf("A%05dB", i), arrival: arrival, sender: a, rcpts: rcpts(a, "ok@x")})
	}
	return msgs
}

// deferLogCorpus exercises the defer log reader: formats old and new,
// missing fields, duplicates and the duplicate filter, odd bytes.
func deferLogCorpus() []tmsg {
	logs := []string{
		"\n  \n\n",
		"\n<o@x>:   spaced\n\n",
		"\n<a>: b@x>: reason\n\n",
		"\nrecipient=a@x\nreason=r1\n<c@x>: oldc\n\n",
		"\nrecipient=noeof@x\nreason=r",
		"\nrecipient=a@x\nreason=r\n\nrecipient=b@x\nreason=noblank\n",
		"recipient=noleading@x\nreason=r\n\n",
		"\nrecipient=nul\x00cut@x\nreason=re\x00son\n\n",
		"\nrecipient=cr@x\r\nreason=crlf\r\n\r\n",
		"\nfoo bar=x\nrecipient x=y\n=v\nrecipient\nreason=weird names\n\n",
		"\n<>: old empty\n\n",
		"\n<nogt: x\n\n",
		"\nrecipient=\"q u\"@x\nreason=quoted\n\n",
		"\nRECIPIENT=upper@x\nreason=upper\n\n",
		"\n\trecipient=tab@x\nreason=tab lead\n\n",
		"\nrecipient=a@x\nreason=  lead and trail  \n\n",
		"\nrecipient==eq@x\nreason=a=b\n\n",
		"\nrecipient=\nreason=empty rcpt\n\n\nrecipient=<>\nreason=angle\n\n\nreason=norcpt\n\n\nrecipient=nr@x\n\n",
		"\nrecipient=t@x\nreason=tab\there \"q\" \\ caf\xc3\xa9 \xe9 \x01\x7f end\n\n",
		"\nrecipient=a@x\nreason=first\nrecipient=b@x\nreason=second\n\n<c@x>: oldc\nrecipient=d@x\nreason=newd\n\n",
		"\nrecipient=z@x\naction=delayed\nstatus=4.4.1\nreason=" + strings.Repeat("x", 76) + "\n\n",
		"\nrecipient=z@x\nreason=" + strings.Repeat("y", 75) + "\n\n",
		"\x00\nrecipient=y@x\nreason=nul line\n\n",
		"\nrecipient=v@x\nreason =\tvalue\t\n\nrecipient\t=w@x\nreason=tab name\n\n<a\tb@x>:\ttext \n\n<u@x>: \xc3\n\n",
		"\nrecipient= \xc3\xa9t\xe9@x \nstatus=4.4.\x01\naction=delay\xc3\xa9d\nreason=\xe2\x82\xac and \xc3\n\n",
	}
	var msgs []tmsg
	for i, l := range logs {
		msgs = append(msgs, tmsg{queue: spool.Hold, id: fmt.Sprintf("L%05d", i), arrival: arrival, sender: "s@x", rcpts: rcpts("z@x", "y@x"), rawLog: l})
	}
	log := func(rs ...string) []spool.LogEntry {
		var out []spool.LogEntry
		for _, r := range rs {
			a, why, _ := strings.Cut(r, "/")
			out = append(out, deferEntry(a, why))
		}
		return out
	}
	return append(msgs,
		tmsg{queue: spool.Deferred, id: "1000A1", arrival: arrival, sender: "s@x", rcpts: rcpts("a@x", "b@x", "c@x", "d@x", "e@x"),
			log: log("c@x/"+refused, "a@x/"+longWhy, "e@x/")},
		tmsg{queue: spool.Deferred, id: "1000A2", arrival: arrival, sender: "s@x", rcpts: rcpts("john doe@x", "k@x"),
			log: log(`"john doe"@x/` + refused)},
		tmsg{queue: spool.Deferred, id: "1000A3", arrival: arrival, sender: "s@x", rcpts: rcpts("d@x", "d@x", "e@x"),
			log: log("d@x/r1", "d@x/r2", "x@x/r3")},
		tmsg{queue: spool.Deferred, id: "1000A4", arrival: arrival, sender: "", rcpts: []trcpt{{addr: "done@x", done: true}, {addr: "live@x"}, {addr: ""}},
			log: log("done@x/was deferred")},
		tmsg{queue: spool.Deferred, id: "1000A5", arrival: arrival, sender: "s@x", rcpts: rcpts("a@x", "b@x", "c@x", "d@x", "e@x", "f@x"),
			log: log("a@x/r", "a@x/r", "b@x/r", "c@x/r", "d@x/r")},
		tmsg{queue: spool.Deferred, id: "1000A6", arrival: arrival, sender: "s@x", rcpts: rcpts("a@x"), rawLog: ""},
	)
}

// damagedCorpus holds files Postfix lists partly or not at all. Files
// that make Postfix's own listing fail (a recipient before the sender, a
// second sender) are tested in scan_test.go instead.
func damagedCorpus() []tmsg {
	at := arrival
	T := "T:" + itoa(at.Unix()) + " 5"
	C := func(n int) string { return "C:" + fmt.Sprintf("%15d %15d %15d %15d %15d %15d", n, 0, 1, 0, n, 0) }
	return []tmsg{
		{queue: spool.Hold, id: "C00001", raw: rawFile(C(100), T, "S:trunc@x", "R:r1@x")},
		{queue: spool.Hold, id: "C00002", raw: rawFile(C(100), T, "S:trunc@x", "R:r1@x")[:60]},
		{queue: spool.Hold, id: "C00004", raw: rawFile("C:12 34 abc", T, "S:badsize@x", "R:r1@x", "M:", "N:hello", "X:", "E:")},
		{queue: spool.Hold, id: "C00005", raw: rawFile("S:notime@x", "R:r1@x", "M:", "N:hi", "X:", "E:"), mtime: at.Add(-time.Hour)},
		{queue: spool.Hold, id: "C00006", raw: rawFile("T:garbage", "T:"+itoa(at.Unix()-60)+" 0", "S:t2@x", "R:r1@x", "M:", "X:", "E:")},
		{queue: spool.Hold, id: "C00007", raw: []byte("this is not a queue file at all\n")},
		{queue: spool.Hold, id: "C00008", raw: []byte{}},
		{queue: spool.Hold, id: "C00009", raw: rawFile(T, "S:afterE@x", "R:r1@x", "M:", "X:", "E:", "R:after@x")},
		{queue: spool.Hold, id: "C0000A", raw: rawFile(T, "S:noend@x", "R:r1@x", "M:", "X:")},
		{queue: spool.Hold, id: "C0000C", raw: rawFile(T, "S:mode@x", "R:r1@x", "M:", "X:", "E:"), mode: 0o600},
		{queue: spool.Hold, id: "C0000D", raw: rawFile(T, "S:mode@x", "R:r1@x", "M:", "X:", "E:"), mode: 0o710},
		{queue: spool.Active, id: "C0000E", raw: rawFile(T, "S:actexp@x", "R:r1@x", "M:", "X:", "E:"), mode: 0o750},
		{queue: spool.Hold, id: "C0000F", raw: rawFile(T, "S:mode@x", "R:r1@x", "M:", "X:", "E:"), mode: 0o755},
		{queue: spool.Hold, id: "C_0010", raw: rawFile(T, "S:underscore@x", "R:r1@x", "M:", "X:", "E:")},
		{queue: spool.Hold, id: "C00011", raw: rawFile(C(5), T, "S:bigC@x", "R:r1@x", "M:", "N:hello!", "X:", "R:xr@x", "E:")},
		{queue: spool.Hold, id: "C00012", raw: rawFile(C(99999999), T, "S:hugeC@x", "R:r1@x", "M:", "N:hello!", "X:", "E:")},
		{queue: spool.Hold, id: "C00013", raw: rawFile("C:  00012", "T:-5 0", "S:neg@x", "R:r1@x", "M:", "X:", "E:"), mtime: at.Add(-2 * time.Hour)},
		{queue: spool.Hold, id: "C00014", raw: rawFile("C:", "T:0 0", "T:77 0", "S:zero@x", "R:r1@x", "M:", "X:", "E:")},
		{queue: spool.Hold, id: "C00015", raw: rawFile("C:-12", "T: 1795964910", "S:negsize@x", "R:", "M:", "X:", "E:")},
		{queue: spool.Hold, id: "C00016", raw: rawFile(T, "S:nors@x", "M:", "X:", "E:")},
		{queue: spool.Hold, id: "C00018", raw: rawFile(T, "S:ptr@x", "p:             40", "R:skipped@x", "E:")},
		{queue: spool.Hold, id: "C00019", raw: rawFile(T, "S:ptr@x", "p:             21", "R:loop@x", "E:")},
		{queue: spool.Hold, id: "C0001A", raw: rawFile(C(7), T, "S:skip@x", "R:r1@x", "M:", "N:hello", "X:", "R:ext@x", "D:extdone@x", "E:")},
		{queue: spool.Hold, id: "C0001B", raw: rawFile(T, "S:dtxt@x", "w:padding", "R:r1@x", "M:", "N:hello", "L:cont", "N:x", "X:", "R:ext@x", "E:")},
		{queue: spool.Hold, id: "C0001C", raw: rawFile("C:12 3", "C:99", T, "S:twoC@x", "R:r1@x", "E:")},
		{queue: spool.Hold, id: "C0001D", raw: rawFile("C:x", "C:99", T, "S:twoC@x", "R:r1@x", "E:")},
		{queue: spool.Hold, id: "C0001E", raw: rawFile(T, "S:late@x", "C:42", "T:5 0", "R:r1@x", "E:")},
		{queue: spool.Hold, id: "C0001F", raw: rawFile(T, "D:donefirst@x", "S:d@x", "R:r1@x", "E:")},
		{queue: spool.Deferred, id: "300001", raw: rawFile(T, "S:righthash@x", "R:r1@x", "M:", "X:", "E:")},
		{queue: spool.Incoming, id: "I00001", raw: rawFile(T, "S:inc@x", "R:r1@x", "M:", "X:", "E:")},
		{queue: spool.Maildrop, id: "M00001", raw: postdropFile(at, "drop@x", "d1@x", "d2@x")},
	}
}
