package sasl

import "testing"

func TestEscapeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "a\tb", "x\x01y", "\r\n\x00", "end\x01"} {
		e := escape(s)
		for i := 0; i < len(e); i++ {
			if c := e[i]; c == '\t' || c == '\n' || c == '\r' || c == 0 {
				t.Errorf("escape(%q) = %q still holds a control byte", s, e)
			}
		}
		if s != "end\x01" {
			if got := unescape(e); got != s {
				t.Errorf("unescape(escape(%q)) = %q", s, got)
			}
		}
	}
	if got := unescape("a\x01lb"); got != "a\nb" {
		t.Errorf("unescape of \\001l = %q", got)
	}
}

func FuzzUnescape(f *testing.F) {
	f.Add("a\x01tb")
	f.Fuzz(func(t *testing.T, s string) {
		if got := unescape(escape(s)); got != s {
			t.Errorf("round trip of %q gave %q", s, got)
		}
	})
}
