package spool

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCreateOwned: a spool made (or left by a root daemon) gets
// Postfix's owners and modes; queue files become mail_owner's with their
// mode bits (message state) untouched.
func TestCreateOwned(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("SLUICE_TEST_NONROOT") != "" {
			t.Skip("needs root; SLUICE_TEST_NONROOT is set")
		}
		t.Fatal("this test needs root (set SLUICE_TEST_NONROOT=1 to skip the tests that do)")
	}
	s := New(filepath.Join(t.TempDir(), "spool"))
	// An older daemon's spool: root's, with a deferred file that is
	// force-expired (g+x) and a maildrop file of a user.
	if err := s.Create(); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(s.Root, "deferred", "A"), 0o700)
	qf := filepath.Join(s.Root, "deferred", "A", "ABCDEF")
	os.WriteFile(qf, []byte("x"), 0o700)
	os.Chmod(qf, 0o710)
	os.WriteFile(filepath.Join(s.Root, "active", "BCDEF0"), []byte("x"), 0o700)
	md := filepath.Join(s.Root, "maildrop", "XYZ")
	os.WriteFile(md, []byte("x"), 0o744)
	os.Chown(md, 1234, 1234)

	o := Owners{UID: 4321, GID: 4322, SetgidGID: 4323}
	fixed, err := s.CreateOwned(o)
	if err != nil {
		t.Fatal(err)
	}
	if fixed != 1 { // active/BCDEF0; deferred/ is left for GiveLeftovers
		t.Errorf("fixed %d entries, want 1", fixed)
	}
	fixed, err = s.GiveLeftovers(o)
	if err != nil || fixed != 2 { // deferred/A and deferred/A/ABCDEF
		t.Errorf("leftovers: fixed %d entries (%v), want 2", fixed, err)
	}
	check := func(rel string, uid, gid int, mode fs.FileMode) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(s.Root, rel))
		if err != nil {
			t.Error(err)
			return
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || (gid >= 0 && int(st.Gid) != gid) || fi.Mode()&(fs.ModePerm|fs.ModeSetgid|fs.ModeSticky) != mode {
			t.Errorf("%s: %d:%d %v, want %d:%d %v", rel, st.Uid, st.Gid, fi.Mode(), uid, gid, mode)
		}
	}
	check(".", 0, 0, 0o755)
	for _, d := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		check(d, 4321, 0, 0o700)
	}
	check("maildrop", 4321, 4323, 0o730|fs.ModeSticky)
	check("public", 4321, 4323, 0o710|fs.ModeSetgid)
	check("pid", 0, 0, 0o755)
	check("pid/pickup", 4321, 0, 0o700)
	check("deferred/A/ABCDEF", 4321, -1, 0o710)
	check("active/BCDEF0", 4321, -1, 0o700)
	check("maildrop/XYZ", 1234, -1, 0o744) // the submitter's, as postdrop leaves it
	// A second run changes nothing.
	if fixed, err := s.CreateOwned(o); err != nil || fixed != 0 {
		t.Errorf("second run: %d, %v", fixed, err)
	}
	if fixed, err := s.GiveLeftovers(o); err != nil || fixed != 0 {
		t.Errorf("second run of the leftovers: %d, %v", fixed, err)
	}
}
