package showq

import (
	"bytes"
	"sort"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the scenarios' zones, whatever the machine has

	"sluice/internal/oracle"
	"sluice/internal/spool"
)

// TestAgainstPostfix builds every scenario's spool, lists it with the
// real postqueue -p and -j and with showq, and wants the same bytes. It
// is the package's own oracle check; test/oracle holds the suite-wide one.
func TestAgainstPostfix(t *testing.T) {
	oracle.Require(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			root := oracle.TempDir(t, "showq-spool-")
			sp := sc.spool(root)
			buildSpool(t, sp, sc.msgs())
			conf := oracle.PostfixConfig(t, root, sc.mainCF()...)
			t.Setenv("TZ", sc.tz)
			for _, flag := range []string{"-p", "-j"} {
				res := oracle.Run(t, conf, nil, "postqueue", "-c", conf, flag)
				if res.Status != 0 {
					t.Fatalf("postqueue %s: exit %d: %s", flag, res.Status, res.Stderr)
				}
				got, _ := listAll(t, sp, sc, flag == "-j")
				if d := oracle.Diff(string(res.Stdout), got); d != "" {
					t.Errorf("postqueue %s differs:\n%s", flag, d)
				}
			}
		})
	}
}

// listAll lists the whole spool as the scenario's configuration would.
func listAll(t testing.TB, sp *spool.Spool, sc scenario, asJSON bool) (string, []string) {
	t.Helper()
	var entries []spool.Entry
	for _, q := range spool.MessageQueues {
		e, err := sp.List(q)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e...)
	}
	return listEntries(t, sp, entries, sc, asJSON)
}

// listEntries renders the given entries in their order.
func listEntries(t testing.TB, sp *spool.Spool, entries []spool.Entry, sc scenario, asJSON bool) (string, []string) {
	t.Helper()
	loc, err := time.LoadLocation(sc.tz)
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	opt := sc.options()
	opt.Warn = func(s string) { warnings = append(warnings, s) }
	var out bytes.Buffer
	var write func(*Message) error
	var closeOut func() error
	if asJSON {
		w := NewJSONWriter(&out)
		write, closeOut = w.Write, w.Close
	} else {
		w := NewTextWriter(&out, sc.long, loc)
		write, closeOut = w.Write, w.Close
	}
	if err := ScanEntries(sp, entries, opt, write); err != nil {
		t.Fatal(err)
	}
	if err := closeOut(); err != nil {
		t.Fatal(err)
	}
	return out.String(), warnings
}

// canonical puts a listing's messages in sorted order, so listings of
// the same messages in different directory orders compare equal.
func canonical(listing string, asJSON bool) string {
	if asJSON {
		lines := strings.SplitAfter(listing, "\n")
		sort.Strings(lines)
		return strings.Join(lines, "")
	}
	head, rest, ok := strings.Cut(listing, "\n")
	if !ok || !strings.HasPrefix(head, "-") {
		return listing
	}
	body, trailer := rest, ""
	if i := strings.LastIndex(rest, "\n\n-- "); i >= 0 {
		body, trailer = rest[:i+1], rest[i+1:]
	}
	blocks := strings.Split(body, "\n\n")
	for i := range blocks {
		blocks[i] = strings.TrimSuffix(blocks[i], "\n")
	}
	sort.Strings(blocks)
	return head + "\n" + strings.Join(blocks, "\n\n") + "\n" + trailer
}
