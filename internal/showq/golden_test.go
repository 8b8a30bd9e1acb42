package showq

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sluice/internal/oracle"
	"sluice/internal/spool"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the output of the real postqueue")

// TestGolden compares showq's listing of every scenario with Postfix's,
// saved in testdata/ (go test -update regenerates them with the real
// postqueue). Postfix lists a directory in raw readdir order, which
// differs from one file system to another, so the comparison lists the
// messages in the order the golden file has them; a second check lists
// the spool in this machine's order and compares the sorted messages,
// which also proves that the files Postfix skips are skipped.
func TestGolden(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "spool")
			if *update {
				root = oracle.TempDir(t, "showq-golden-")
			}
			sp := sc.spool(root)
			buildSpool(t, sp, sc.msgs())
			if *update {
				oracle.Require(t)
				conf := oracle.PostfixConfig(t, root, sc.mainCF()...)
				t.Setenv("TZ", sc.tz)
				for _, f := range []string{"p", "j"} {
					res := oracle.Run(t, conf, nil, "postqueue", "-c", conf, "-"+f)
					if res.Status != 0 {
						t.Fatalf("postqueue -%s: exit %d: %s", f, res.Status, res.Stderr)
					}
					if err := os.WriteFile(goldenPath(sc.name, f), res.Stdout, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, f := range []string{"p", "j"} {
				want, err := os.ReadFile(goldenPath(sc.name, f))
				if err != nil {
					t.Fatal(err)
				}
				entries := entriesInOrder(t, sp, goldenIDs(string(want), f == "j"))
				got, _ := listEntries(t, sp, entries, sc, f == "j")
				if d := oracle.Diff(string(want), got); d != "" {
					t.Errorf("-%s, in the golden file's order:\n%s", f, d)
				}
				all, _ := listAll(t, sp, sc, f == "j")
				if d := oracle.Diff(canonical(string(want), f == "j"), canonical(all, f == "j")); d != "" {
					t.Errorf("-%s, sorted:\n%s", f, d)
				}
			}
		})
	}
}

func goldenPath(name, flag string) string {
	return filepath.Join("testdata", name+"."+flag+".golden")
}

var (
	jsonID = regexp.MustCompile(`"queue_id": "([^"]*)"`)
	textID = regexp.MustCompile(`(?m)^([A-Za-z0-9_]+)[*!#]* +[0-9]+ `)
)

// goldenIDs returns the queue IDs of a listing, in order.
func goldenIDs(listing string, asJSON bool) []string {
	re := textID
	if asJSON {
		re = jsonID
	}
	var ids []string
	for _, m := range re.FindAllStringSubmatch(listing, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// entriesInOrder returns the spool entries of the given IDs, in that order.
func entriesInOrder(t testing.TB, sp *spool.Spool, ids []string) []spool.Entry {
	t.Helper()
	byID := map[string]spool.Entry{}
	for _, q := range spool.MessageQueues {
		es, err := sp.List(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if _, dup := byID[e.ID]; dup {
				t.Fatalf("ID %s twice in the test spool", e.ID)
			}
			byID[e.ID] = e
		}
	}
	var out []spool.Entry
	for _, id := range ids {
		e, ok := byID[id]
		if !ok {
			t.Fatalf("golden file lists %s, which the spool does not have", id)
		}
		out = append(out, e)
	}
	_ = strings.Cut
	return out
}
