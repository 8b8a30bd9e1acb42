package privsep

import (
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"strings"

	"sluice/internal/spool"
)

// Accounts are the numeric identities of mail_owner and setgid_group.
type Accounts struct {
	Owner     string // mail_owner's name
	UID       int
	GID       int // mail_owner's primary group
	Group     string
	SetgidGID int
}

// SpoolOwners returns the owners spool.CreateOwned gives the spool.
func (a Accounts) SpoolOwners() spool.Owners {
	return spool.Owners{UID: a.UID, GID: a.GID, SetgidGID: a.SetgidGID}
}

// LookupAccounts finds mail_owner and setgid_group without creating them.
func LookupAccounts(owner, group string) (Accounts, error) {
	a := Accounts{Owner: owner, Group: group}
	u, err := user.Lookup(owner)
	if err != nil {
		return a, fmt.Errorf("mail_owner %s: %w", owner, err)
	}
	if a.UID, err = strconv.Atoi(u.Uid); err != nil {
		return a, fmt.Errorf("mail_owner %s: uid %q: %w", owner, u.Uid, err)
	}
	if a.GID, err = strconv.Atoi(u.Gid); err != nil {
		return a, fmt.Errorf("mail_owner %s: gid %q: %w", owner, u.Gid, err)
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return a, fmt.Errorf("setgid_group %s: %w", group, err)
	}
	if a.SetgidGID, err = strconv.Atoi(g.Gid); err != nil {
		return a, fmt.Errorf("setgid_group %s: gid %q: %w", group, g.Gid, err)
	}
	return a, nil
}

// Check refuses identities that would defeat the separation, as
// Postfix's master does for mail_owner: it must not be root nor share a
// group with setgid_group.
func (a Accounts) Check() error {
	if a.UID == 0 {
		return fmt.Errorf("mail_owner %s has uid 0: the mail owner must not be the super-user", a.Owner)
	}
	if a.GID == a.SetgidGID {
		return fmt.Errorf("mail_owner %s's group and setgid_group %s are the same (gid %d): they must differ", a.Owner, a.Group, a.GID)
	}
	if a.SetgidGID == 0 {
		return fmt.Errorf("setgid_group %s has gid 0", a.Group)
	}
	return nil
}

// EnsureAccounts finds mail_owner and setgid_group and creates the ones
// that are missing, as Debian's postfix package does: system groups, and
// a system user in its own group with no shell, no password and home
// (not created) home. logf is told of each creation.
func EnsureAccounts(owner, group, home string, logf func(format string, args ...any)) (Accounts, error) {
	if !validName(owner) || !validName(group) {
		return Accounts{}, fmt.Errorf("mail_owner %q or setgid_group %q is not a valid user or group name", owner, group)
	}
	if _, err := user.LookupGroup(group); isUnknown(err) {
		if err := addGroup(group); err != nil {
			return Accounts{}, err
		}
		logf("created group %s (setgid_group)", group)
	}
	if _, err := user.Lookup(owner); isUnknown(err) {
		if _, err := user.LookupGroup(owner); isUnknown(err) {
			if err := addGroup(owner); err != nil {
				return Accounts{}, err
			}
			logf("created group %s (mail_owner's group)", owner)
		}
		if err := addUser(owner, owner, home); err != nil {
			return Accounts{}, err
		}
		logf("created user %s (mail_owner): system user, no login shell, no password, home %s", owner, home)
	}
	return LookupAccounts(owner, group)
}

func isUnknown(err error) bool {
	var ue user.UnknownUserError
	var ge user.UnknownGroupError
	return errors.As(err, &ue) || errors.As(err, &ge)
}

// validName accepts the names useradd accepts by default, so nothing
// from main.cf reaches a command line as an option or a path.
func validName(s string) bool {
	if s == "" || len(s) > 32 || s[0] == '-' {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

func addGroup(name string) error {
	if path, err := exec.LookPath("groupadd"); err == nil {
		return run(path, "--system", name)
	}
	if path, err := exec.LookPath("addgroup"); err == nil {
		return run(path, "--system", name)
	}
	return fmt.Errorf("create group %s: neither groupadd nor addgroup found", name)
}

func addUser(name, group, home string) error {
	const shell = "/usr/sbin/nologin"
	if path, err := exec.LookPath("useradd"); err == nil {
		// useradd leaves the password locked ("!") for a system user.
		return run(path, "--system", "--gid", group, "--home-dir", home, "--no-create-home",
			"--shell", shell, "--comment", "sluice mail owner", name)
	}
	if path, err := exec.LookPath("adduser"); err == nil {
		return run(path, "--system", "--ingroup", group, "--home", home, "--no-create-home",
			"--disabled-password", "--shell", shell, name)
	}
	return fmt.Errorf("create user %s: neither useradd nor adduser found", name)
}

func run(path string, args ...string) error {
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
