package rewrite

import (
	"bufio"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// factsConfig is the configuration of the Postfix instance the golden
// file was recorded from (see its header).
func factsConfig(settings string) Config {
	cfg := DefaultConfig("facts.test", []string{"facts.test", "localhost"})
	cfg.RelayDomains = []string{"relay.test"}
	cfg.OwnAddrs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	if settings == "alt" {
		cfg.AllowPercentHack = false
		cfg.SwapBangPath = false
		cfg.ResolveDequoted = false
		cfg.ResolveNullDomain = true
		cfg.ResolveNumericDomain = true
	}
	return cfg
}

// postfixCase is one line of the golden file.
type postfixCase struct {
	settings, path, internal, rcpt, flags, class, reply string
}

func readGolden(t testing.TB) []postfixCase {
	t.Helper()
	f, err := os.Open("testdata/postfix-3.7.11-resolve.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []postfixCase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 7 {
			t.Fatalf("golden line %q: %d columns", line, len(c))
		}
		out = append(out, postfixCase{c[0], c[1], c[2], c[3], c[4], c[5], c[6]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 200 {
		t.Fatalf("golden file has only %d cases", len(out))
	}
	return out
}

// TestResolveLikePostfix checks every recorded answer of Postfix 3.7.11:
// smtpd's internal form, trivial-rewrite's resolved address, flags and
// class, and the reply to an untrusted client; and that a trusted client
// is refused only bad syntax.
func TestResolveLikePostfix(t *testing.T) {
	resolvers := map[string]*Resolver{"default": New(factsConfig("default")), "alt": New(factsConfig("alt"))}
	for _, c := range readGolden(t) {
		r := resolvers[c.settings]
		internal, err := ParsePath(c.path)
		if err != nil {
			t.Errorf("%s %s: ParsePath: %v", c.settings, c.path, err)
			continue
		}
		if internal != c.internal {
			t.Errorf("%s %s: internal form %q, Postfix %q", c.settings, c.path, internal, c.internal)
		}
		res := r.Resolve(c.internal)
		flags := "-"
		switch {
		case res.Invalid:
			flags = "error"
		case res.Routed:
			flags = "routed"
		}
		class := res.Class.String()
		if res.Invalid {
			class = "default"
		}
		if res.Address != c.rcpt || flags != c.flags || class != c.class {
			t.Errorf("%s %s: resolved %q %s %s, Postfix %q %s %s", c.settings, c.path, res.Address, flags, class, c.rcpt, c.flags, c.class)
		}
		want := c.reply
		if strings.HasPrefix(want, "250 ") {
			want = ""
		}
		if got := r.Check(c.internal, false).Reply(); got != want {
			t.Errorf("%s %s: untrusted reply %q, Postfix %q", c.settings, c.path, got, want)
		}
		trusted := r.Check(c.internal, true)
		if trusted.OK == (flags == "error") {
			t.Errorf("%s %s: trusted verdict %+v", c.settings, c.path, trusted)
		}
	}
}
