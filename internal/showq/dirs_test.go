package showq

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sluice/internal/spool"
)

// TestSpans: the spans of a queue hold the entries spool.List gives, in
// its order, for a directory of hash subdirectories with files between
// them (misfiled), names that are no queue ID, and an empty subdirectory;
// a span ends only where a subdirectory gave entries, so that a run's
// key stays the same from one listing to the next.
func TestSpans(t *testing.T) {
	sp := spool.New(t.TempDir())
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(sp.Root, spool.Deferred)
	ids := []string{"A0001", "B0002", "C0003", "D0004", "E0005", "F0006", "10007", "20008", "30009", "4000A"}
	for i, id := range ids {
		path := filepath.Join(dir, id) // misfiled: deferred/ hashes by the ID's first character
		if i%3 != 0 {
			os.MkdirAll(filepath.Join(dir, id[:1]), 0o700)
			path = filepath.Join(dir, id[:1], id)
		}
		if err := os.WriteFile(path, []byte("x"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "not-an-id"), nil, 0o600)
	os.MkdirAll(filepath.Join(dir, "9"), 0o700)

	var m dirMemo
	spans, err := m.list(sp, spool.Deferred, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, s := range spans {
		n := 0
		s.each(func(e qentry) { got, n = append(got, e.id()), n+1 })
		if n != s.n || n == 0 {
			t.Errorf("span %d says %d entries, has %d", i, s.n, n)
		}
		if i > 0 && spans[i-1].dir == s.dir {
			// Only a subdirectory's entries may come between two spans
			// of one directory.
			between := false
			for k := spans[i-1].hi; k < s.lo; k++ {
				if s.dir.kind(k) == itemSubdir && s.dir.name(int(k)) != "9" {
					between = true
				}
			}
			if !between {
				t.Errorf("spans %d and %d of %s could be one", i-1, i, s.dir.rel)
			}
		}
	}
	list, err := sp.List(spool.Deferred)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range list {
		want = append(want, e.ID)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("spans give %q, spool.List %q", got, want)
	}
}
