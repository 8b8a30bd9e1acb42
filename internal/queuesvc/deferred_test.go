package queuesvc

import "testing"

// TestProbeDomain: a probe target names a domain of the queue only when
// it is a host name; literals, ports and anything a selector would read
// as more than one domain name none.
func TestProbeDomain(t *testing.T) {
	for target, want := range map[string]string{
		"Example.COM.":         "example.com",
		" mx.example.org ":     "mx.example.org",
		"bücher.example":       "bücher.example",
		"[192.0.2.1]:25":       "",
		"mx.example.com:2525":  "",
		"192.0.2.1":            "",
		"2001:db8::1":          "",
		"x.example rcpt=a@b.c": "",
		"*.example.com":        "",
		"a=b":                  "",
		"x\x00y":               "",
		"":                     "",
	} {
		if got := ProbeDomain(target); got != want {
			t.Errorf("ProbeDomain(%q) = %q, want %q", target, got, want)
		}
	}
}
