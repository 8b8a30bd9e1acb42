package privsep

import (
	"fmt"
	"os/user"
	"strconv"
	"strings"

	"sluice/internal/config"
)

// Policy decides who may list and flush the queue and who may change it.
type Policy struct {
	MailOwnerUID int // -1 when mail_owner does not exist
	mailq, flush userList
}

// NewPolicy reads authorized_mailq_users, authorized_flush_users and
// mail_owner from cfg.
func NewPolicy(cfg *config.Config) (*Policy, error) {
	p := &Policy{MailOwnerUID: -1}
	if u, err := user.Lookup(cfg.Get("mail_owner")); err == nil {
		if uid, err := strconv.Atoi(u.Uid); err == nil {
			p.MailOwnerUID = uid
		}
	}
	var err error
	if p.mailq, err = parseUserList("authorized_mailq_users", cfg.Get("authorized_mailq_users")); err != nil {
		return nil, err
	}
	if p.flush, err = parseUserList("authorized_flush_users", cfg.Get("authorized_flush_users")); err != nil {
		return nil, err
	}
	return p, nil
}

// MayChange reports whether uid may delete, hold, release, expire or
// requeue mail: root and mail_owner only.
func (p *Policy) MayChange(uid int) bool {
	return uid == 0 || (p.MailOwnerUID > 0 && uid == p.MailOwnerUID)
}

// MayList reports whether uid may see the queue.
func (p *Policy) MayList(uid int) bool { return p.MayChange(uid) || p.mailq.match(uid) }

// MayFlush reports whether uid may flush the queue.
func (p *Policy) MayFlush(uid int) bool { return p.MayChange(uid) || p.flush.match(uid) }

// ListRefusal and FlushRefusal are Postfix's postqueue words for a user
// that the lists leave out (exit status 69).
func ListRefusal(uid int) string {
	return fmt.Sprintf("User %s(%d) is not allowed to view the mail queue", userName(uid), uid)
}

// FlushRefusal: see ListRefusal.
func FlushRefusal(uid int) string {
	return fmt.Sprintf("User %s(%d) is not allowed to flush the mail queue", userName(uid), uid)
}

// ChangeRefusal is postsuper's refusal of a non-root caller (exit 1).
const ChangeRefusal = "use of this command is reserved for the superuser"

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "unknown"
}

// userList is a Postfix user access list: login names, "!name" to
// exclude (the first match decides), and lookup tables. Only static:
// tables are supported; a static table answers every lookup, so it
// matches every user.
type userList []userItem

type userItem struct {
	name   string
	negate bool
	all    bool
}

func parseUserList(param, v string) (userList, error) {
	var l userList
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		it := userItem{}
		if strings.HasPrefix(f, "!") {
			it.negate, f = true, f[1:]
		}
		switch {
		case strings.HasPrefix(f, "static:"):
			it.all = true
		case strings.Contains(f, ":"):
			return nil, fmt.Errorf("%s: lookup table %q is not supported (user names and static: are)", param, f)
		default:
			it.name = f
		}
		l = append(l, it)
	}
	return l, nil
}

func (l userList) match(uid int) bool {
	name := ""
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		name = u.Username
	}
	for _, it := range l {
		if it.all || (name != "" && it.name == name) {
			return !it.negate
		}
	}
	return false
}
