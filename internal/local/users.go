package local

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// User is a local account: what delivery needs of a passwd entry.
type User struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
	Home   string
	Shell  string
}

// Users looks up local accounts by name (Postfix's passwd.byname, which
// local(8) and local_recipient_maps use). Lookup returns ErrNoUser when
// there is no such user; any other error is a temporary failure.
// Tests inject their own.
type Users interface {
	Lookup(name string) (*User, error)
}

// ErrNoUser is Users.Lookup's answer for a name with no account.
var ErrNoUser = errors.New("no such user")

// PasswdFiles reads accounts from passwd(5) and group(5) files at each
// lookup, so a user added while the daemon runs is found (Postfix asks
// getpwnam each time). sluice reads the files, not NSS: accounts that
// live only in LDAP or NIS are not seen.
type PasswdFiles struct {
	Passwd string // "/etc/passwd" when empty
	Group  string // "/etc/group" when empty
}

// Lookup implements Users.
func (p PasswdFiles) Lookup(name string) (*User, error) {
	path := p.Passwd
	if path == "" {
		path = "/etc/passwd"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("passwd lookup %s: %w", name, err)
	}
	defer f.Close()
	var u *User
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 7 || fields[0] != name {
			continue
		}
		uid, err1 := strconv.ParseUint(fields[2], 10, 32)
		gid, err2 := strconv.ParseUint(fields[3], 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("passwd lookup %s: bad uid or gid in %s", name, path)
		}
		u = &User{Name: name, UID: uint32(uid), GID: uint32(gid), Home: fields[5], Shell: fields[6]}
		break
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("passwd lookup %s: %w", name, err)
	}
	if u == nil {
		return nil, ErrNoUser
	}
	u.Groups, err = p.groups(name, u.GID)
	if err != nil {
		return nil, err
	}
	return u, nil
}

// groups lists the supplementary groups of name (initgroups(3)).
func (p PasswdFiles) groups(name string, primary uint32) ([]uint32, error) {
	path := p.Group
	if path == "" {
		path = "/etc/group"
	}
	out := []uint32{primary}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return out, nil
		}
		return nil, fmt.Errorf("group lookup %s: %w", name, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 4 {
			continue
		}
		for _, m := range strings.Split(fields[3], ",") {
			if m == name {
				if gid, err := strconv.ParseUint(fields[2], 10, 32); err == nil && uint32(gid) != primary {
					out = append(out, uint32(gid))
				}
				break
			}
		}
	}
	return out, sc.Err()
}

// StaticUsers is a fixed user table, for tests and for development.
type StaticUsers map[string]*User

// Lookup implements Users.
func (s StaticUsers) Lookup(name string) (*User, error) {
	if u, ok := s[name]; ok {
		return u, nil
	}
	return nil, ErrNoUser
}
