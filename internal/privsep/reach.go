package privsep

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Reachable checks that mail_owner can search every directory on the
// way to path and, with read, read path itself: the unprivileged child
// re-reads main.cf and works in the queue directory. A directory it
// cannot pass is named, so the start fails with a reason instead of the
// child failing later with a bare "permission denied".
func (a Accounts) Reachable(path string, read bool) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	dirs := []string{}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		dirs = append([]string{d}, dirs...)
		if d == "/" {
			break
		}
	}
	for _, d := range dirs {
		if !a.may(d, 1) {
			return fmt.Errorf("mail_owner %s cannot reach %s: the directory %s is closed to it (%s); make it searchable (chmod o+x) or choose another place", a.Owner, path, d, modeOf(d))
		}
	}
	if read && !a.may(abs, 4) {
		return fmt.Errorf("mail_owner %s cannot read %s (%s)", a.Owner, path, modeOf(abs))
	}
	return nil
}

// may reports whether mail_owner (its uid, and its gid as its only
// group) has the permission bit (4 read, 1 search/execute) on path.
func (a Accounts) may(path string, bit uint32) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return false
	}
	switch {
	case int(st.Uid) == a.UID:
		return st.Mode>>6&bit != 0
	case int(st.Gid) == a.GID:
		return st.Mode>>3&bit != 0
	}
	return st.Mode&bit != 0
}

func modeOf(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return err.Error()
	}
	var owner uint32
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner = st.Uid
	}
	return fmt.Sprintf("mode %04o, owner uid %d", fi.Mode().Perm(), owner)
}
