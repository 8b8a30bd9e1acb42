package rewrite

import (
	"strings"
	"testing"
)

// FuzzResolve feeds arbitrary RCPT arguments through ParsePath, Resolve
// and Check: nothing may panic or loop, and the results must agree with
// one another.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"<user%outside.example@facts.test>", "<outside.example!user@facts.test>",
		`<"user@outside.example"@facts.test>`, "<user@outside.example@facts.test>",
		"<@a,@b:user@facts.test>", "<user@[127.0.0.1]>", "<user@[IPv6:::1]>", "<USER@FACTS.TEST.>",
		"<@facts.test>", "<postmaster>", "<user@>", "<a!b!c!user>", "<user%a%b>", "<user@@>",
		"<user@facts.test@>", "<user@1.2.3.4>", `<"a\"b"@x.example>`, "<u@(c)x.example>",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, path string, alt bool) {
		settings := "default"
		if alt {
			settings = "alt"
		}
		r := New(factsConfig(settings))
		addr, err := ParsePath(path)
		if err != nil {
			return
		}
		res := r.Resolve(addr)
		if !res.Invalid && res.Address == "" {
			t.Fatalf("%q: valid result without an address: %+v", addr, res)
		}
		if !res.Invalid && !strings.Contains(res.Address, "@") {
			t.Fatalf("%q: resolved without a domain: %+v", addr, res)
		}
		if res.Domain != strings.ToLower(res.Domain) {
			t.Fatalf("%q: domain not in lower case: %+v", addr, res)
		}
		trusted, untrusted := r.Check(addr, true), r.Check(addr, false)
		if trusted.OK == res.Invalid {
			t.Fatalf("%q: trusted verdict %+v for %+v", addr, trusted, res)
		}
		wantOK := !res.Invalid && !res.Routed && (res.Class == Local || res.Class == Relay)
		if untrusted.OK != wantOK {
			t.Fatalf("%q: untrusted verdict %+v for %+v", addr, untrusted, res)
		}
		if !untrusted.OK && !strings.HasPrefix(untrusted.Reply(), "501 5.1.3 ") && !strings.HasPrefix(untrusted.Reply(), "554 5.7.1 <"+addr+">: ") {
			t.Fatalf("%q: reply %q", addr, untrusted.Reply())
		}
		// A destination elsewhere is final: resolving it again changes
		// nothing.
		if !res.Invalid && !res.Routed && res.Class != Local && !needsQuotes(localPart(res.Address)) {
			if again := r.Resolve(res.Address); again != res {
				t.Fatalf("%q: resolved %+v, then %+v", addr, res, again)
			}
		}
	})
}

func localPart(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[:i]
	}
	return addr
}
