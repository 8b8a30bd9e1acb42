package local

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseAliases(t *testing.T) {
	text := `# See man 5 aliases for format
postmaster:    root
Root: alice, bob@example.org
"with space": alice
list: alice,
	bob,
  # a comment inside an entry
	"|/usr/bin/prog arg"
files: /var/log/all, /srv/maildir/
inc: :include:/etc/mail/list
quoted: "|cmd with, comma", \alice, Alice Person <alice@x.test> (comment, here)

bad line without colon
empty:
postmaster: dup
 orphan
`
	got, errs := ParseAliases(strings.NewReader(text), "/etc/aliases")
	want := []Alias{
		{Name: "postmaster", Value: "root", Line: 2},
		{Name: "root", Value: "alice, bob@example.org", Line: 3},
		{Name: "with space", Value: "alice", Line: 4},
		{Name: "list", Value: `alice, bob, "|/usr/bin/prog arg"`, Line: 5},
		{Name: "files", Value: "/var/log/all, /srv/maildir/", Line: 9},
		{Name: "inc", Value: ":include:/etc/mail/list", Line: 10},
		{Name: "quoted", Value: `"|cmd with, comma", \alice, Alice Person <alice@x.test> (comment, here)`, Line: 11},
	}
	for i := range want {
		want[i].File = "/etc/aliases"
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", got, want)
	}
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	wantErrs := []string{
		"/etc/aliases, line 13: need name:value pair",
		`/etc/aliases, line 14: empty right-hand side for "empty"`,
		`/etc/aliases, line 15: duplicate entry: "postmaster" (first at line 2)`,
	}
	// The orphan continuation after "postmaster: dup" continues that
	// (rejected) entry, as in Postfix, so it is not an error of its own.
	if !reflect.DeepEqual(msgs, wantErrs) {
		t.Errorf("errors:\n got %q\nwant %q", msgs, wantErrs)
	}
}

func TestSplitValue(t *testing.T) {
	tests := []struct {
		in   string
		want []Item
		err  bool
	}{
		{in: "root", want: []Item{{KindAddress, "root"}}},
		{in: "a, b@x.test ,c", want: []Item{{KindAddress, "a"}, {KindAddress, "b@x.test"}, {KindAddress, "c"}}},
		{in: `"|cmd with, comma", \alice`, want: []Item{{KindCommand, "cmd with, comma"}, {KindAddress, "alice"}}},
		{in: `|/usr/bin/vacation alice`, want: []Item{{KindCommand, "/usr/bin/vacation alice"}}},
		{in: `/var/mail/archive, /srv/md/`, want: []Item{{KindFile, "/var/mail/archive"}, {KindFile, "/srv/md/"}}},
		{in: `:include:/etc/list, :INCLUDE: /etc/other`, want: []Item{{KindInclude, "/etc/list"}, {KindInclude, "/etc/other"}}},
		{in: `Alice Person <alice@x.test> (the boss, really)`, want: []Item{{KindAddress, "alice@x.test"}}},
		{in: `"a b"@x.test`, want: []Item{{KindAddress, "a b@x.test"}}},
		{in: `"<a,b>" <c@d>`, want: []Item{{KindAddress, "c@d"}}},
		{in: `:include:relative`, err: true},
		{in: `"unterminated`, err: true},
		{in: `a (comment`, err: true},
		{in: `a) b`, err: true},
		{in: `|`, err: true},
		{in: ` , `, err: true},
	}
	for _, tc := range tests {
		got, err := splitValue(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("splitValue(%q) error = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitValue(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseItems(t *testing.T) {
	got, errs := ParseItems(strings.NewReader("# forward\nalice@x.test\n\"|/bin/cat > /dev/null\"\n\n\\me, /tmp/f\n\"broken\n"), "/home/me/.forward")
	want := []Item{{KindAddress, "alice@x.test"}, {KindCommand, "/bin/cat > /dev/null"}, {KindAddress, "me"}, {KindFile, "/tmp/f"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("items = %+v, want %+v", got, want)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "/home/me/.forward, line 6: missing closing quote") {
		t.Errorf("errors = %v", errs)
	}
}

func TestParseMapSpec(t *testing.T) {
	for in, want := range map[string]string{
		"hash:/etc/aliases": "/etc/aliases", "texthash:/x/a": "/x/a", "/etc/aliases": "/etc/aliases", "lmdb:/e/a": "/e/a",
	} {
		if got, err := ParseMapSpec(in); err != nil || got != want {
			t.Errorf("ParseMapSpec(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"nis:mail.aliases", "hash:relative", "aliases", "regexp:/etc/x"} {
		if _, err := ParseMapSpec(in); err == nil {
			t.Errorf("ParseMapSpec(%q) accepted", in)
		}
	}
}

// FuzzParseAliases checks that any text parses without a panic, and that
// every entry it keeps has a lower-case name and a value splitValue
// accepts, on the line it says.
func FuzzParseAliases(f *testing.F) {
	for _, s := range []string{
		"postmaster: root\n",
		"a: b,\n c\n#x\n\"q:x\": |cmd\n",
		"l: :include:/x, /f, \"|a, b\" (c) <d@e>\n",
		"x\n y: z\n",
		"\"\\\"\": a\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		entries, _ := ParseAliases(strings.NewReader(s), "f")
		lines := strings.Split(s, "\n")
		for _, e := range entries {
			if e.Name != strings.ToLower(e.Name) {
				t.Fatalf("name %q not lower case", e.Name)
			}
			if _, err := splitValue(e.Value); err != nil {
				t.Fatalf("kept %q with bad value %q: %v", e.Name, e.Value, err)
			}
			if e.Line < 1 || e.Line > len(lines) {
				t.Fatalf("line %d out of range", e.Line)
			}
		}
	})
}
