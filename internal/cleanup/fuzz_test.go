package cleanup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"sluice/internal/spool"
)

// FuzzSubmit feeds arbitrary message text through cleanup: the queue file
// must always read back, and a body (everything after the first empty
// line of a message whose header block is well formed) must come back
// line for line.
func FuzzSubmit(f *testing.F) {
	for _, seed := range []string{
		"Subject: x\n\nbody\n",
		"Subject: x\r\nTo: a@b, c@d\r\nBcc: e@f\r\n\r\nbody\r\n.\r\n",
		"no headers at all",
		"From: a\n folded\n\tmore\n\n\n\nx",
		"X: " + strings.Repeat("y", 5000) + "\n\n" + strings.Repeat("z", 4097),
		"\r\r\n\n\x00\xff:\n \n",
		"Message-ID: <a@b>\nDate: now\nFrom: me\n\nb",
		": empty name\n\nb",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	sp := spool.New(f.TempDir())
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		f.Fatal(err)
	}
	c := New(Config{Spool: sp, MyHostname: "facts.test", MessageSizeLimit: 1 << 20})
	f.Fuzz(func(t *testing.T, content []byte, extract bool) {
		m := &Message{Sender: "a", Recipients: []Recipient{{Address: "b"}}, ExtractRecipients: extract}
		id, err := c.Submit(context.Background(), m, bytes.NewReader(content))
		if err != nil {
			if errors.Is(err, ErrTooBig) {
				return
			}
			t.Fatalf("Submit: %v", err)
		}
		path := sp.Path(spool.Incoming, id)
		defer sp.Remove(spool.Incoming, id)
		ct, err := spool.OpenContent(path)
		if err != nil {
			t.Fatalf("queue file does not read back: %v", err)
		}
		defer ct.Close()
		text, err := io.ReadAll(ct)
		if err != nil {
			t.Fatalf("content: %v", err)
		}
		if !bytes.HasPrefix(text, []byte("Received: by facts.test (sluice, from userid 0)\n")) {
			t.Fatalf("no Received: first:\n%q", text)
		}
		// The body after a well-formed header block survives unchanged.
		in := strings.ReplaceAll(string(content), "\r\n", "\n")
		head, body, ok := strings.Cut(in, "\n\n")
		if !ok || !wellFormed(head) {
			return
		}
		if !strings.HasSuffix(strings.TrimSuffix(string(text), "\n"), "\n"+strings.TrimSuffix(body, "\n")) && body != "" {
			t.Fatalf("body changed:\n in %q\nout %q", body, text)
		}
	})
}

// wellFormed reports whether every line is a plain "Name: value" header
// or a continuation.
func wellFormed(head string) bool {
	for i, l := range strings.Split(head, "\n") {
		if strings.ContainsAny(l, "\r\x00") {
			return false
		}
		if i > 0 && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) {
			continue
		}
		name, _, ok := strings.Cut(l, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") || len(l) > 1000 {
			return false
		}
		for _, r := range name {
			if r < 33 || r > 126 {
				return false
			}
		}
	}
	return true
}

func FuzzParseAddressList(f *testing.F) {
	for _, s := range []string{"a@b", "\"A B\" <a@b>, c@d", "group: a@b, c@d;", "<a@b", "=?utf-8?q?x?= <a@b>", ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, a := range ParseAddressList(s) {
			if a == "" {
				t.Fatalf("empty address from %q", s)
			}
		}
	})
}
