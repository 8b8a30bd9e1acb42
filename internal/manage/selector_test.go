package manage

import (
	"strings"
	"testing"
	"time"
)

var now = time.Unix(1795964910, 0)

func testMessages() []*Message {
	return []*Message{
		{Queue: "deferred", ID: "54AB4BA048", Arrival: now.Add(-3 * time.Hour), Size: 302, Sender: "alice@facts.test", Attempts: 4,
			Recipients: []Recipient{{Address: "bob@example.com", Reason: "connect to 127.0.0.1[127.0.0.1]:9: Connection refused", Status: "4.4.1"}}},
		{Queue: "deferred", ID: "99240BA05B", Arrival: now.Add(-10 * time.Minute), Size: 5000, Sender: "", Attempts: 1,
			Recipients: []Recipient{
				{Address: "x@sub.example.com", Reason: "host mx.sub.example.com[1.2.3.4] said: 450 4.7.1 Greylisted, try again later (in reply to RCPT TO command)", Status: "4.7.1"},
				{Address: "USER@Example.ORG", Done: true}}},
		{Queue: "hold", ID: "A3FACBA05F", Arrival: now.Add(-26 * time.Hour), Size: 2 << 20, Sender: "Big@Src.Test",
			Recipients: []Recipient{{Address: "user@example.org"}}},
	}
}

func TestSelector(t *testing.T) {
	cases := []struct {
		sel  string
		want string // IDs selected, in order
	}{
		{"", "54AB4BA048 99240BA05B A3FACBA05F"},
		{"54AB4BA048", "54AB4BA048"},
		{"id=54AB4BA048 id=A3FACBA05F", "54AB4BA048 A3FACBA05F"},
		{"queue=hold", "A3FACBA05F"},
		{"queue=deferred age>1h", "54AB4BA048"},
		{"rcpt=bob@example.com", "54AB4BA048"},
		// The local part compares exactly, as the man page's pipeline
		// does; the domain without regard to case; rcpt_ci ignores both.
		{"rcpt=BOB@EXAMPLE.COM", ""},
		{"rcpt=bob@EXAMPLE.COM", "54AB4BA048"},
		{"rcpt_ci=BOB@EXAMPLE.COM", "54AB4BA048"},
		{"rcpt=user@example.org", "A3FACBA05F"}, // not USER@Example.ORG (done anyway)
		{"rcpt=USER@*", ""},
		// Comparisons on one key AND (a range); = terms OR.
		{"age>1h age<1d", "54AB4BA048"},
		{"age>1d age<2d", "A3FACBA05F"},
		{"age>2d age<3d", ""},
		{"size>300 size<1M", "54AB4BA048 99240BA05B"},
		{"queue=deferred queue=hold", "54AB4BA048 99240BA05B A3FACBA05F"},
		{"class!=connection-refused class!=greylisting", "A3FACBA05F"},
		{"rcpt=*@example.org", "A3FACBA05F"}, // the done recipient of 99240BA05B does not count
		{"domain=*.example.com", "99240BA05B"},
		{"domain=example.com", "54AB4BA048"},
		{"sender=<>", "99240BA05B"},
		{"sender=big@src.test", ""},
		{"sender=Big@SRC.test", "A3FACBA05F"},
		{"sender_ci=big@src.test", "A3FACBA05F"},
		{"sender_domain=src.test", "A3FACBA05F"},
		{"reason=refused", "54AB4BA048"},
		{"reason~greylist(ed)?", "99240BA05B"},
		{"class=connection-refused", "54AB4BA048"},
		{"class=greylisting", "99240BA05B"},
		{"class!=connection-refused queue=deferred", "99240BA05B"},
		{"age<1h", "99240BA05B"},
		{"age>=1d", "A3FACBA05F"},
		{"size>1M", "A3FACBA05F"},
		{"size<=302", "54AB4BA048"},
		{"attempts>=2", "54AB4BA048"},
		{"rcpts=1", "54AB4BA048 99240BA05B A3FACBA05F"},
		{"domain=example.com rcpts>1", ""},
		{"from=alice@facts.test to=bob@example.com", "54AB4BA048"},
		{`reason="Connection refused"`, "54AB4BA048"},
	}
	for _, c := range cases {
		s, err := ParseSelector(c.sel)
		if err != nil {
			t.Errorf("%q: %v", c.sel, err)
			continue
		}
		var got []string
		for _, m := range testMessages() {
			if s.Match(m, now) {
				got = append(got, m.ID)
			}
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%q selected %v, want %s", c.sel, got, c.want)
		}
	}
}

func TestSelectorErrors(t *testing.T) {
	cases := map[string]string{
		"bogus=1":       `unknown key "bogus"`,
		"age>yesterday": `bad term "age>yesterday"`,
		"reason~(":      "bad regular expression",
		"queue=nosuch":  "no such queue",
		"class=nosuch":  "no such reason class",
		"size>big":      "not a number",
		"id=bad/id":     "invalid queue ID",
		"not-an-id!":    `bad term "not-an-id!"`,
		"rcpt>x":        "takes =, != or ~",
		"attempts~3":    "takes",
	}
	for sel, want := range cases {
		_, err := ParseSelector(sel)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to contain %q", sel, err, want)
		}
	}
}

func TestClassify(t *testing.T) {
	cases := map[string]string{
		"connect to 127.0.0.1[127.0.0.1]:9: Connection refused":                                                         "connection-refused",
		"delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:9: Connection refused":                         "delivery-suspended",
		"connect to mx.example.com[1.2.3.4]:25: Connection timed out":                                                   "timeout",
		"Host or domain name not found. Name service error for name=example.invalid type=MX: Host not found, try again": "dns-failure",
		"host mx.example.com[1.2.3.4] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command)":                       "mailbox-full",
		"host mx.example.com[1.2.3.4] said: 421 4.7.28 Our system has detected an unusual rate of mail, rate limited":   "rate-limited",
		"TLS is required, but was not offered by host mx.example.com[1.2.3.4]":                                          "tls-failure",
		"host mx.example.com[1.2.3.4] said: 451 4.7.1 Greylisted, please retry in 5 minutes":                            "greylisting",
		"something nobody has seen before":                                                                              "other",
	}
	for reason, want := range cases {
		r := Recipient{Reason: reason}
		if got := r.ReasonClass(); got != want {
			t.Errorf("class of %q = %s, want %s", reason, got, want)
		}
	}
}

// TestBareWord: a bare word that is not a queue ID is an error, and one
// that names a queue or a key says what to write instead.
func TestBareWord(t *testing.T) {
	for word, want := range map[string]string{
		"hold":     "did you mean queue=hold?",
		"Deferred": "did you mean queue=deferred?",
		"rcpt":     "rcpt=VALUE",
		"xyz":      "e.g. queue=hold",
	} {
		_, err := ParseSelector(word)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one that says %q", word, err, want)
		}
	}
	if s, err := ParseSelector("54AB4BA048"); err != nil || s.Terms[0].Key != "id" {
		t.Errorf("a queue ID: %v %+v", err, s)
	}
}

// TestSelectorString: a selector rendered as text parses back to the same
// terms (the CLI sends selectors to the daemon as text).
func TestSelectorString(t *testing.T) {
	sel, err := ParseSelector(`reason="Connection refused"`, "rcpt=a@b", "age>1d")
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseSelector(sel.String())
	if err != nil {
		t.Fatalf("%q: %v", sel.String(), err)
	}
	if len(again.Terms) != 3 || again.Terms[0].Value != "Connection refused" {
		t.Errorf("%q parsed back as %+v", sel.String(), again.Terms)
	}
}
