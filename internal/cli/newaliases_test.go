package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewaliases(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "aliases")
	bad := filepath.Join(dir, "aliases.local")
	os.WriteFile(good, []byte("# ok\npostmaster: root\nroot: alice,\n  bob\n"), 0o644)
	os.WriteFile(bad, []byte("list: alice\nno colon here\nlist: bob\ninc: :include:relative\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("alias_database = hash:"+good+"\n"), 0o644)
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(append([]string{"newaliases"}, args...), nil, &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := run("-c", dir)
	if code != 0 || out != "newaliases: "+good+": 2 entries\n" || errs != "" {
		t.Errorf("good file: %d %q %q", code, out, errs)
	}
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("alias_database = hash:"+good+", texthash:"+bad+"\n"), 0o644)
	code, out, errs = run("-c", dir)
	wantErr := "newaliases: warning: " + bad + ", line 2: need name:value pair\n" +
		"newaliases: warning: " + bad + `, line 3: duplicate entry: "list" (first at line 1)` + "\n" +
		"newaliases: warning: " + bad + `, line 4: "inc": :include: needs an absolute path: ":include:relative"` + "\n"
	if code != 1 || errs != wantErr || !strings.Contains(out, bad+": 1 entries") {
		t.Errorf("bad file: %d\nstdout %q\nstderr %q\nwant   %q", code, out, errs, wantErr)
	}
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("alias_database = nis:mail.aliases\n"), 0o644)
	if code, _, errs = run("-c", dir); code != 1 || !strings.Contains(errs, "unsupported table type") {
		t.Errorf("nis: %d %q", code, errs)
	}
}
