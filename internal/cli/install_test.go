package cli

import (
	"bytes"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestInstall: sluice install puts the binary, the setgid helper, the
// links and the unit under -prefix; it refuses to replace what is not
// sluice's (Postfix's mailq link here) unless --force; run again, it
// replaces only its own.
func TestInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("SLUICE_TEST_NONROOT") != "" {
			t.Skip("needs root; SLUICE_TEST_NONROOT is set")
		}
		t.Fatal("this test needs root (set SLUICE_TEST_NONROOT=1 to skip the tests that do)")
	}
	prefix := t.TempDir()
	conf := t.TempDir()
	// Existing accounts, so the test makes none.
	os.WriteFile(filepath.Join(conf, "main.cf"), []byte("mail_owner = nobody\nsetgid_group = nogroup\nqueue_directory = /nonexistent\n"), 0o644)
	os.MkdirAll(filepath.Join(prefix, "usr/bin"), 0o755)
	os.Symlink("../sbin/sendmail", filepath.Join(prefix, "usr/bin/mailq"))
	install := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(append([]string{"sluice", "install", "-prefix", prefix, "-c", conf}, args...), nil, &out, &errb)
		return code, out.String(), errb.String()
	}
	code, _, stderr := install()
	if code != 1 || !strings.Contains(stderr, "not replacing "+filepath.Join(prefix, "usr/bin/mailq")+" (a link to ../sbin/sendmail)") {
		t.Fatalf("install over Postfix's mailq: %d %q", code, stderr)
	}
	if _, err := os.Lstat(filepath.Join(prefix, "usr/sbin/sluice")); err == nil {
		t.Error("a refused install installed something")
	}
	if code, out, stderr := install("--force"); code != 0 || !strings.Contains(out, "replaced a link to ../sbin/sendmail") {
		t.Fatalf("install --force: %d %q %q", code, out, stderr)
	}
	for rel, target := range map[string]string{
		"usr/sbin/sendmail": "sluice", "usr/sbin/postqueue": "sluice", "usr/sbin/postsuper": "sluice",
		"usr/sbin/postcat": "sluice", "usr/sbin/qshape": "sluice",
		"usr/bin/mailq": "../sbin/sluice", "usr/bin/newaliases": "../sbin/sluice", "usr/lib/sendmail": "../sbin/sluice",
	} {
		if got, err := os.Readlink(filepath.Join(prefix, rel)); err != nil || got != target {
			t.Errorf("%s -> %q %v, want %q", rel, got, err, target)
		}
	}
	g, _ := user.LookupGroup("nogroup")
	gid, _ := strconv.Atoi(g.Gid)
	fi, err := os.Stat(filepath.Join(prefix, "usr/sbin/sluice-postdrop"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || int(st.Gid) != gid || fi.Mode()&(os.ModePerm|os.ModeSetgid) != 0o755|os.ModeSetgid {
		t.Errorf("helper: %d:%d %v, want root:nogroup 2755", st.Uid, st.Gid, fi.Mode())
	}
	unit, _ := os.ReadFile(filepath.Join(prefix, "etc/systemd/system/sluice.service"))
	for _, want := range []string{"ExecStart=/usr/sbin/sluice serve\n", "ExecReload=/bin/kill -HUP $MAINPID\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	// Again: everything is sluice's now.
	if code, out, stderr := install(); code != 0 || strings.Contains(out, "replaced") {
		t.Errorf("second install: %d %q %q", code, out, stderr)
	}
	// A unit someone else wrote is not sluice's.
	os.WriteFile(filepath.Join(prefix, "etc/systemd/system/sluice.service"), []byte("[Unit]\n"), 0o644)
	if code, _, stderr := install(); code != 1 || !strings.Contains(stderr, "sluice.service (a unit file)") {
		t.Errorf("install over a foreign unit: %d %q", code, stderr)
	}
}
