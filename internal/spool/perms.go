package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// Owners names who owns a spool that a root daemon prepared: the mail
// owner (mail_owner) owns the queues, root the queue directory itself
// and pid/, and the setgid group (setgid_group) the two directories that
// local users reach through the setgid helper: maildrop/ and public/.
type Owners struct {
	UID       int // mail_owner
	GID       int // mail_owner's primary group
	SetgidGID int // setgid_group
}

// DirPerm is one directory of a spool with its owner and mode, as
// Postfix's postfix-files and `postfix set-permissions` make them on
// Debian (maildrop gains the sticky bit, public the setgid bit).
type DirPerm struct {
	Name  string
	Owner byte // 'r' root, 'm' mail_owner
	Group byte // 'r' root, 's' setgid_group
	Mode  fs.FileMode
	// Recursive: every file and directory below belongs to mail_owner
	// too ("r" in postfix-files); modes below are message state and are
	// never changed.
	Recursive bool
}

// Layout is the spool's directories in the order they are made. history,
// recycle and pid/pickup are sluice's own: the per-message attempt
// records, the files kept for new messages and pickup's hand-over
// journal, all written by the daemon as mail_owner.
var Layout = []DirPerm{
	{Name: "", Owner: 'r', Group: 'r', Mode: 0o755},
	{Name: Active, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: Bounce, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: Corrupt, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: Defer, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: Deferred, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: Flush, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: Hold, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: Incoming, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: "private", Owner: 'm', Group: 'r', Mode: 0o700},
	{Name: Maildrop, Owner: 'm', Group: 's', Mode: 0o730 | fs.ModeSticky},
	{Name: "public", Owner: 'm', Group: 's', Mode: 0o710 | fs.ModeSetgid},
	{Name: "pid", Owner: 'r', Group: 'r', Mode: 0o755},
	{Name: Saved, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: Trace, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: History, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: Recycle, Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
	{Name: "pid/pickup", Owner: 'm', Group: 'r', Mode: 0o700, Recursive: true},
}

// CreateOwned makes every spool directory that is missing and gives each
// the owner, group and mode of Layout, as `postfix set-permissions`
// does; it must run as root. Files below the queue directories that are
// not mail_owner's — queue files a daemon or a tool running as root wrote
// before — are given to mail_owner, so the daemon can go on with them
// after it drops privileges. Their modes are left alone: they are message
// state. fixed counts the entries below the queues whose owner changed.
//
// Only the directories the daemon works in from its first moment
// (StartupDirs) are walked here; the others can hold millions of files
// (deferred/, defer/, history/), and walking them would keep SMTP closed
// for seconds: GiveLeftovers walks them while the daemon runs.
func (s *Spool) CreateOwned(o Owners) (fixed int, err error) {
	return s.createOwned(o, func(name string) bool { return slices.Contains(StartupDirs, name) })
}

// StartupDirs are the directories whose files the daemon touches as soon
// as it starts: the recovery moves active/ back to incoming/, and pickup
// reads its journal.
var StartupDirs = []string{Active, Incoming, Recycle, "pid/pickup"}

// GiveLeftovers gives mail_owner the files below the queue directories
// that CreateOwned did not walk. A root master runs it beside the daemon:
// until it reaches a file, the daemon cannot open that file, and leaves
// it where it is (see qmgr) rather than lose it.
func (s *Spool) GiveLeftovers(o Owners) (fixed int, err error) {
	for _, d := range Layout {
		if !d.Recursive || slices.Contains(StartupDirs, d.Name) {
			continue
		}
		n, err := giveTree(filepath.Join(s.Root, d.Name), o.UID)
		fixed += n
		if err != nil {
			return fixed, err
		}
	}
	return fixed, nil
}

// giveTree gives every entry below path to uid.
func giveTree(path string, uid int) (fixed int, err error) {
	err = filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // moved or removed while we walk
			}
			return err
		}
		if p == path {
			return nil
		}
		n, err := own(p, uid, -1)
		fixed += n
		return err
	})
	if err != nil {
		return fixed, fmt.Errorf("spool: give %s to mail_owner: %w", path, err)
	}
	return fixed, nil
}

func (s *Spool) createOwned(o Owners, deep func(name string) bool) (fixed int, err error) {
	for _, d := range Layout {
		path := filepath.Join(s.Root, d.Name)
		if err := os.MkdirAll(path, d.Mode.Perm()); err != nil {
			return fixed, fmt.Errorf("spool: create %s: %w", path, err)
		}
		uid, gid := 0, 0
		if d.Owner == 'm' {
			uid = o.UID
		}
		if d.Group == 's' {
			gid = o.SetgidGID
		}
		if _, err := own(path, uid, gid); err != nil {
			return fixed, err
		}
		// os.Chmod maps fs.ModeSticky and fs.ModeSetgid to the bits.
		if err := os.Chmod(path, d.Mode); err != nil {
			return fixed, fmt.Errorf("spool: chmod %s: %w", path, err)
		}
		if !d.Recursive || !deep(d.Name) {
			continue
		}
		n, err := giveTree(path, o.UID)
		fixed += n
		if err != nil {
			return fixed, err
		}
	}
	return fixed, nil
}

// own changes the owner (and, gid ≥ 0, the group) of path without
// following a symbolic link, when they differ; it reports 1 when it
// changed something.
func own(path string, uid, gid int) (int, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("spool: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("spool: %s: no owner information", path)
	}
	if int(st.Uid) == uid && (gid < 0 || int(st.Gid) == gid) {
		return 0, nil
	}
	if err := os.Lchown(path, uid, gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("spool: chown %s: %w", path, err)
	}
	// Chown clears the set-id bits of a directory on some systems; the
	// caller's chmod, for Layout's directories, puts them back.
	return 1, nil
}
