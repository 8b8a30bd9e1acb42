package postcat_test

import (
	"fmt"
	"os"
	"strings"

	"sluice/internal/spool"
)

// The queue files the golden tests print. Each is built here byte by byte
// and committed under testdata/queue, so the test reads what Postfix's
// postcat read when the goldens were made; TestQueueFilesBuild keeps the
// two in step. They cover what cleanup and postdrop write (size record or
// none, done and extracted recipients, long lines, milter pointers and
// padding) and what a damaged disk or a careless tool leaves behind.

// qf builds a queue file.
type qf struct {
	b        []byte
	sizeAt   int // offset of the C record, -1 when there is none
	mesgEnd  int // offset just after the M record
	xtraAt   int // offset of the X record
	rcptN    int
	dummyPtr []int // offsets of p records written with value 0
}

func newQF(withSize bool) *qf {
	q := &qf{sizeAt: -1}
	if withSize {
		q.sizeAt = 0
		q.b = spool.AppendRecordString(q.b, 'C', sizeText(0, 0, 0))
	}
	return q
}

func sizeText(content, dataOff, rcpts int64) string {
	return fmt.Sprintf("%15d %15d %15d %15d %15d %15d", content, dataOff, rcpts, 0, content, 0)
}

func (q *qf) rec(typ byte, data string) *qf {
	switch typ {
	case 'M':
		defer func() { q.mesgEnd = len(q.b) }()
	case 'X':
		q.xtraAt = len(q.b)
	case 'R', 'D':
		q.rcptN++
	}
	q.b = spool.AppendRecordString(q.b, typ, data)
	return q
}

// ptr writes a p record; value 0 is a placeholder a milter may fill later.
func (q *qf) ptr(target int) *qf {
	if target == 0 {
		q.dummyPtr = append(q.dummyPtr, len(q.b))
	}
	q.b = spool.AppendRecordString(q.b, 'p', fmt.Sprintf("%15d", target))
	return q
}

// patchPtr points the placeholder at offset at to target.
func (q *qf) patchPtr(at, target int) {
	copy(q.b[at+2:], fmt.Sprintf("%15d", target))
}

// lines writes text lines as cleanup does: N records, with lines longer
// than 2048 bytes split into L records of 2048.
func (q *qf) lines(text ...string) *qf {
	for _, l := range text {
		for len(l) > 2048 {
			q.rec('L', l[:2048])
			l = l[2048:]
		}
		q.rec('N', l)
	}
	return q
}

// done fills in the size record and returns the file.
func (q *qf) done() []byte {
	if q.sizeAt >= 0 {
		content := int64(q.xtraAt - q.mesgEnd)
		copy(q.b[q.sizeAt+2:], sizeText(content, int64(q.mesgEnd), int64(q.rcptN)))
	}
	return q.b
}

// standardEnvelope is what cleanup writes for a local submission.
func (q *qf) standardEnvelope(sender string, rcpts ...string) *qf {
	q.rec('T', "1795964910 322038").rec('A', "create_time=1795964910").
		rec('A', "rewrite_context=local").rec('F', "root").rec('S', sender)
	for _, r := range rcpts {
		q.rec('A', "dsn_orig_rcpt=rfc822;"+r).rec('O', r).rec('R', r)
	}
	return q
}

var stdHeaders = []string{
	"Received: by facts.test (Postfix, from userid 0)",
	"\tid 5D554BA046; Sun, 29 Nov 2026 15:08:30 +0000 (UTC)",
	"Subject: test two",
	"Message-Id: <20261129150830.5D554BA046@facts.test>",
	"Date: Sun, 29 Nov 2026 15:08:30 +0000 (UTC)",
	"From: root <carol@facts.test>",
}

// queueFiles returns every test queue file by name.
func queueFiles() (map[string][]byte, error) {
	files := map[string][]byte{}
	sample, err := os.ReadFile("../spool/testdata/queuefile-54AB4BA048.bin")
	if err != nil {
		return nil, err
	}
	files["sample"] = sample

	// A maildrop file as postdrop writes it: no size record (the bytes of
	// postfix-samples/hexdump-maildrop-4jcrJR2PCmz5jtg.txt).
	md := newQF(false)
	md.rec('T', "1795965207 338547").rec('A', "rewrite_context=local").rec('F', "Dora Example").
		rec('S', "dora@facts.test").rec('R', "drop@example.com").rec('M', "").
		lines("Subject: maildrop sample", "From: Dora <dora@facts.test>", "", "queued while down").
		rec('X', "").rec('E', "")
	files["maildrop"] = md.done()

	// One recipient delivered (R overwritten with D), one still to go.
	dv := newQF(true).standardEnvelope("carol@facts.test", "keep@example.org")
	dv.rec('A', "dsn_orig_rcpt=rfc822;gone@discard.test").rec('O', "gone@discard.test").rec('D', "gone@discard.test")
	dv.rec('M', "").lines(stdHeaders...).lines("", "body two").rec('X', "").rec('E', "")
	files["delivered"] = dv.done()

	// A 4100-byte line (two L records and an N), a delay warning time,
	// and a body line after it.
	ll := newQF(true)
	ll.rec('T', "1795965145 403217").rec('A', "create_time=1795965145").rec('A', "rewrite_context=local").
		rec('F', "root").rec('S', "ll@facts.test").rec('W', fmt.Sprintf("%15d", 1795979545)).
		rec('A', "dsn_orig_rcpt=rfc822;ll@example.com").rec('O', "ll@example.com").rec('R', "ll@example.com")
	ll.rec('M', "").lines("Subject: longline", "From: root <ll@facts.test>", "",
		strings.Repeat("A", 4100), "short").rec('X', "").rec('E', "")
	files["longline"] = ll.done()

	// Recipients extracted from the headers (sendmail -t) live after X,
	// with a content filter and other envelope records.
	ex := newQF(true)
	ex.rec('T', "1795964910 322038").rec('A', "create_time=1795964910").rec('A', "rewrite_context=local").
		rec('L', "smtp:[127.0.0.1]:10025").rec('F', "Erin").rec('S', "erin@facts.test").
		rec('V', "+=").rec('<', "1").rec('i', "ENVID-1")
	ex.rec('M', "").lines("To: a@example.com, b@example.com", "Cc: c@example.com", "Subject: extracted", "", "hi").
		rec('X', "").rec('A', "dsn_orig_rcpt=rfc822;a@example.com").rec('O', "a@example.com").
		rec('R', "a@example.com").rec('D', "b@example.com").rec('/', "c@example.com").
		rec('e', "errors@facts.test").rec('r', "rr@facts.test").rec('P', "5").rec('o', "rfc822;x@y").
		rec('n', "4").rec('>', "redir@example.com").rec('K', "").rec('E', "")
	files["extracted"] = ex.done()

	// What cleanup writes with a milter: placeholder pointers after the
	// recipients, the headers and the body, then edits appended after E
	// and reached through them; deleted text overwritten with padding.
	ml := newQF(true).standardEnvelope("mia@facts.test", "one@example.com")
	rcptPtr := len(ml.b)
	ml.ptr(0)
	ml.rec('M', "").lines("Subject: milter", "X-Old: gone")
	hdrPtr := len(ml.b)
	ml.ptr(0).lines("", "body line").rec('w', "padding where text was deleted").ptr(0).
		rec('X', "").rec('E', "")
	addRcpt := len(ml.b)
	ml.rec('A', "dsn_orig_rcpt=rfc822;two@example.com").rec('O', "two@example.com").
		rec('R', "two@example.com").ptr(rcptPtr + 17)
	addHdr := len(ml.b)
	ml.lines("X-Milter: added").rec('w', "pad").ptr(hdrPtr + 17)
	ml.patchPtr(rcptPtr, addRcpt)
	ml.patchPtr(hdrPtr, addHdr)
	files["milter"] = ml.done()

	// 8-bit text, a NUL inside records (text records print it, others
	// stop there) and non-ASCII addresses.
	eb := newQF(true)
	eb.rec('T', "1795964910 0").rec('A', "create_time=1795964910").rec('F', "J\xfcrgen").
		rec('S', "j\xfcrgen@b\xfccher.test").rec('R', "r\xe9cipient@example.com").rec('R', "nul\x00after@example.com").
		rec('A', "k=v\x00hidden").rec('M', "").
		lines("Subject: =?utf-8?q?x?= caf\xc3\xa9", "X-Bin: a\x00b", "\xe9t\xe9: not a header", "Body: after").
		rec('X', "").rec('E', "")
	files["eightbit"] = eb.done()

	// Every record type byte in the envelope, then in the content and in
	// the extracted segment.
	at := newQF(false).rec('T', "1795964910 0")
	for t := 0; t < 256; t++ {
		switch t {
		case 'C', 'E', 'M', 'X', 'T', 'p', 'A', 'W':
			continue
		}
		at.rec(byte(t), fmt.Sprintf("value %d", t))
	}
	at.rec('M', "").rec('N', "Subject: types").rec('S', "sender in header").rec('d', "1").
		rec('N', "").rec('R', "rcpt in body").rec('m', "2").rec('X', "").rec('I', "insp").rec('c', "0").rec('E', "")
	files["alltypes"] = at.done()

	// Attributes as split_nameval sees them.
	as := newQF(false).rec('T', "1795964910 0")
	for _, a := range []string{"a\tb\nc\x7fd\xe9e", " =x", "", "   ", " na me = va lue ", "n\t=\tv\t",
		"create_time", "create_time =  77  ", strings.Repeat("x", 150), "=", "k=", "\vk\v=\vv\v",
		"create_time=-86400", "create_time=junk", "log_client_name=localhost"} {
		as.rec('A', a)
	}
	files["attrs"] = as.rec('E', "").done()

	// Time stamps: atol's rules and asctime's formats, including years
	// before 1000 and after 9999.
	tm := newQF(false)
	for _, v := range []string{"0 0", "-1 5", " 12 0", "+12", "12abc", "abc", "", "1e5",
		"-62135596800 0", "-62135596801 0", "253402300800 0", "1795964910 999999", "1711846800 0"} {
		tm.rec('T', v).rec('W', v).rec('A', "create_time="+v)
	}
	files["times"] = tm.rec('E', "").done()

	// Header and body detection around L records: an L followed by text
	// joins it; with -o or -v the join is broken and the next line is
	// judged on its own.
	ce := newQF(false).rec('T', "1795964910 0").rec('S', "s").rec('M', "")
	ce.rec('N', "Subject: x").rec('L', "Long: aaa").rec('L', "bbb").rec('N', "ccc").rec('S', "inhdr").
		rec('w', "pad").rec('N', "X-Y : z").rec('N', " cont").rec('L', "body starts").rec('N', "here").
		rec('L', "unterminated-at-end").rec('X', "").rec('R', "xr").rec('L', "filt").rec('N', "nn").rec('E', "")
	files["continued"] = ce.done()

	// An L in the envelope and a message without headers.
	nh := newQF(false).rec('T', "1795964910 0").rec('L', "filt").rec('M', "").
		rec('N', "bbb").rec('N', "ccc").rec('N', "Subject: x").rec('L', "end").rec('X', "").rec('E', "")
	files["noheaders"] = nh.done()

	// Size records postcat cannot use.
	body := func(q *qf) []byte {
		return q.rec('T', "1795964910 0").rec('S', "s").rec('M', "").lines("Subject: x", "", "body").
			rec('X', "").rec('R', "xr").rec('E', "").b
	}
	for name, c := range map[string]string{"size-garbage": "garbage", "size-one": "12", "size-neg": "-5 40", "size-past": "5 9999"} {
		q := newQF(false).rec('C', c)
		files[name] = body(q)
	}
	two := newQF(true).rec('C', sizeText(1, 2, 3))
	files["size-two"] = two.rec('T', "1795964910 0").rec('M', "").lines("Subject: x").rec('X', "").rec('E', "").done()

	// Damage.
	files["trunc-data"] = sample[:300]
	files["trunc-envelope"] = sample[:100]
	files["trunc-length"] = sample[:1]
	files["trunc-noend"] = sample[:565]
	files["len-bits"] = []byte("T\xff\xff\xff\xff\xff\xff")
	files["len-illegal"] = []byte("T\x80\x80\x80\x80\x08")
	files["len-wrap"] = []byte("T\x80\x80\x80\x80\x10E\x00")
	files["len-huge"] = []byte("T\xff\xff\xff\xff\x07abc")
	files["garbled"] = append(append([]byte{}, sample[:200]...), 0xff, 0x13, 'x', 0x00, 'N', 0x85)
	files["empty"] = nil
	files["notqueue"] = []byte("From alice@example.com Sun Nov 29 15:08:30 2026\n")
	files["nulfirst"] = spool.AppendRecordString(spool.AppendRecordString(nil, 0, "zero"), 'E', "")

	// Pointer trouble.
	p := func(value string) []byte {
		q := newQF(false).rec('T', "1795964910 0").rec('S', "s").rec('R', "r1")
		q.b = spool.AppendRecordString(q.b, 'p', value)
		return q.rec('M', "").lines("Subject: a", "", "body").rec('X', "").rec('E', "").b
	}
	files["ptr-malformed"] = p("abc")
	files["ptr-negative"] = p("-5")
	files["ptr-trailing"] = p("0  ")
	files["ptr-empty"] = p("   ")
	files["ptr-pasteof"] = p(fmt.Sprintf("%15d", 99999))
	files["ptr-midrecord"] = p(fmt.Sprintf("%15d", 3))
	files["ptr-overflow"] = p("99999999999999999999")
	files["ptr-loop"] = p(fmt.Sprintf("%15d", 26))
	return files, nil
}
