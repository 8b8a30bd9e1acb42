package local

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Config is what an Agent delivers with. FromConfig fills it from
// main.cf; tests build it directly.
type Config struct {
	MyHostname    string
	MyOrigin      string   // qualifies addresses without a domain
	MyDestination []string // the domains delivered here (lower case)

	AliasMaps []string // alias table source files, in lookup order
	// LocalRecipientMaps says who KnownRecipient knows: "passwd" for
	// the user table, and alias file paths. Nil (local_recipient_maps
	// empty) knows everybody.
	LocalRecipientMaps []string

	RecipientDelimiter string // recipient_delimiter: each byte separates user from extension
	SpoolDir           string // mail_spool_directory
	HomeMailbox        string // home_mailbox: relative to $home; ending in / means Maildir
	ForwardPath        []string
	CommandsFrom       map[string]bool // allow_mail_to_commands: alias, forward, include
	FilesFrom          map[string]bool // allow_mail_to_files: alias, forward, include
	DefaultPrivs       string          // default_privs
	Lock               Locking
	DeliveredTo        map[string]bool // prepend_delivered_header: command, file, forward
	MailboxSizeLimit   int64
	CommandTimeLimit   time.Duration // command_time_limit
	CommandDir         string        // commands' working directory (Postfix: the queue directory); / when empty
	// Propagate is propagate_unmatched_extensions: for which of alias,
	// forward and include an extension the lookup did not match is
	// carried on to the resulting addresses.
	Propagate map[string]bool
	Shell     string // /bin/sh when empty

	Users Users // PasswdFiles{} when nil
	// Forward queues a new message, for addresses outside
	// mydestination found in aliases and .forward files; it returns
	// the new queue ID. Nil: such addresses defer.
	Forward func(ctx context.Context, sender string, rcpts []string, content io.Reader) (string, error)
	Now     func() time.Time                 // time.Now when nil
	Sleep   func(time.Duration)              // between lock attempts; time.Sleep when nil
	Warn    func(format string, args ...any) // the mail log's warnings; nil for none
	Getenv  func(string) string              // os.Getenv when nil
}

// Agent is the local delivery agent. It is safe for concurrent use.
type Agent struct {
	cfg     Config
	aliases *aliasMaps
	known   *aliasMaps // the alias files of local_recipient_maps
	euid    int
	seq     atomic.Uint64 // Maildir tmp/ names
}

// New returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Users == nil {
		cfg.Users = PasswdFiles{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = time.Sleep
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.Shell == "" {
		cfg.Shell = "/bin/sh"
	}
	if cfg.CommandTimeLimit <= 0 {
		cfg.CommandTimeLimit = 1000 * time.Second
	}
	if cfg.SpoolDir == "" && cfg.HomeMailbox == "" {
		return nil, errors.New("local: mail_spool_directory and home_mailbox are both empty")
	}
	if cfg.MyOrigin == "" {
		cfg.MyOrigin = cfg.MyHostname
	}
	for i, d := range cfg.MyDestination {
		cfg.MyDestination[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	a := &Agent{cfg: cfg, euid: os.Geteuid()}
	a.aliases = newAliasMaps(cfg.AliasMaps, cfg.Warn)
	var knownFiles []string
	for _, m := range cfg.LocalRecipientMaps {
		if m != "passwd" {
			knownFiles = append(knownFiles, m)
		}
	}
	a.known = newAliasMaps(knownFiles, cfg.Warn)
	return a, nil
}

func (a *Agent) now() time.Time         { return a.cfg.Now() }
func (a *Agent) sleep(d time.Duration)  { a.cfg.Sleep(d) }
func (a *Agent) getenv(k string) string { return a.cfg.Getenv(k) }
func (a *Agent) warn(format string, args ...any) {
	if a.cfg.Warn != nil {
		a.cfg.Warn(format, args...)
	}
}

// IsLocal reports whether mail for addr is delivered here: its domain
// is in mydestination (case-insensitively, a trailing dot ignored), or
// it has none.
func (a *Agent) IsLocal(addr string) bool {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return true
	}
	dom := strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
	for _, d := range a.cfg.MyDestination {
		if d == dom {
			return true
		}
	}
	return false
}

// KnownRecipient is local_recipient_maps for smtpd's RCPT check: it
// reports whether addr, an address in a mydestination domain, names a
// user in the passwd table or an alias (the whole local part, or the
// part before the recipient delimiter). With local_recipient_maps empty
// every address is known, as in Postfix. Addresses outside
// mydestination are not this check's business and are known. An error
// means the tables could not be read: smtpd should answer 451 4.3.0
// (Postfix's "temporary lookup failure"), not reject.
//
// smtpd rejects an unknown address with
// "550 5.1.1 <addr>: Recipient address rejected: User unknown in local recipient table".
func (a *Agent) KnownRecipient(addr string) (bool, error) {
	if a.cfg.LocalRecipientMaps == nil || !a.IsLocal(addr) {
		return true, nil
	}
	lp := strings.ToLower(localPart(addr))
	base, _ := a.splitExtension(lp)
	for _, m := range a.cfg.LocalRecipientMaps {
		if m != "passwd" {
			continue
		}
		for _, name := range uniq(lp, base) {
			_, err := a.cfg.Users.Lookup(name)
			if err == nil {
				return true, nil
			}
			if !errors.Is(err, ErrNoUser) {
				return false, err
			}
		}
	}
	for _, name := range uniq(lp, base) {
		_, _, ok, err := a.known.lookup(name)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func uniq(a, b string) []string {
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}

// localPart returns the part of addr before the last '@' (all of it
// when there is none).
func localPart(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[:i]
	}
	return addr
}

func domainPart(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// splitExtension cuts a local part at the first recipient delimiter:
// "user+ext" is user "user" with extension "ext". Names that begin with
// the delimiter are not split.
func (a *Agent) splitExtension(lp string) (base, ext string) {
	if a.cfg.RecipientDelimiter == "" {
		return lp, ""
	}
	i := strings.IndexAny(lp, a.cfg.RecipientDelimiter)
	if i <= 0 {
		return lp, ""
	}
	return lp[:i], lp[i+1:]
}

// Status is what became of a recipient or one of its final deliveries.
type Status int

// The outcomes.
const (
	Sent Status = iota
	Deferred
	Bounced
)

func (s Status) String() string { return [...]string{"sent", "deferred", "bounced"}[s] }

// Message is one delivery request: a queued message and its recipients
// in mydestination.
type Message struct {
	QueueID    string
	Sender     string
	Recipients []Recipient
	// Open returns the message text (headers and body, lines ending in
	// "\n"), from the start, each time it is called.
	Open func() (io.ReadCloser, error)
}

// Recipient is one envelope recipient.
type Recipient struct {
	Address string // as queued (qualified)
	Orig    string // the original recipient (O record); Address when empty
}

// Final is one final delivery that a recipient came to after aliases,
// :include: files and .forward files: a mailbox, a file, a command or a
// forwarded address. The mail log has one line per Final.
type Final struct {
	To     string // the address delivered to, e.g. root@host for postmaster@host
	Status Status
	DSN    string
	Text   string // "delivered to mailbox", "forwarded as ID", or the reason
}

// Result is the outcome for Message.Recipients[i]: deferred when any of
// its final deliveries deferred (it is tried again as a whole, as Postfix
// does), else bounced when any bounced, else sent; DSN and Reason are
// those of the final delivery that decided it.
type Result struct {
	Status Status
	DSN    string
	Reason string
	Finals []Final
}
