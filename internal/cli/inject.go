package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sluice/internal/pickup"
	"sluice/internal/spool"
)

// injectHelp is inject's manual; the usage line and every option are
// documented here and nowhere else (a test checks it names each option).
const injectHelp = `usage: sluice inject [-c config_dir] [-q queue] -f sender [-F full_name]
                     [-T arrival_time] [-e] [-r reason] [-R recipient=reason]...
                     [-s dsn_status] [-d recipient]... [-n count] recipient... < message

Writes a queue file from an envelope (the options and arguments) and a
message (standard input, lines ending in LF or CRLF), without the daemon,
and prints the new queue ID. Files, modes and placement are Postfix's:
a complete file has mode 0700 and a size record; deferred files live in
their hash subdirectory with the next attempt time as mtime; a maildrop
file is written as postdrop writes it (no size record, mode 0744). The
message is stored as given: no Received, Date or Message-ID is added.

  -c config_dir   configuration directory (default $MAIL_CONFIG, else /etc/sluice);
                  its queue_directory, hash_queue_names, hash_queue_depth,
                  enable_long_queue_ids, minimal_backoff_time and
                  maximal_backoff_time apply
  -f sender       envelope sender (required); "" or "<>" is the null sender
  -F full_name    sender full name (the F record)
  -q queue        incoming, deferred, hold, active or maildrop; the default is
                  deferred when a reason (-r, -R) is given, else incoming
  -T time         arrival time: Unix seconds, with an optional fraction
                  (1795964910.322038), or an age before now as a negative
                  duration (-90m, -2h30m); default now
  -e              set the forced-expiry bit (as postsuper -e does)
  -r reason       record a deferral with this reason for every recipient that is
                  not done: a defer log entry with the R record's offset,
                  status (see -s), action=delayed and reason=
  -R rcpt=reason  record a deferral for one recipient (repeatable; wins over -r)
  -s dsn_status   DSN status of the deferrals (default 4.0.0; must be 4.X.Y)
  -d recipient    mark this recipient done (its R record becomes D), as after a
                  successful delivery (repeatable)
  -n count        write count copies, each with its own queue ID (default 1);
                  they are synced to disk together at the end
  -h              print this help

Deferrals go with queues that hold scheduled mail (deferred, hold, active,
incoming); a maildrop file takes none of -e, -r, -R or -d. When run as root,
new files, logs and hash directories get the owner of the queue directory
(the mail_owner of a Postfix spool); a maildrop file keeps the caller as owner
and gets the maildrop directory's group, as postdrop's setgid does.
`

// injectSpec is inject's getopt string.
const injectSpec = "c:d:eF:f:hn:q:R:r:s:T:"

func runInject(env *Env) int { return injectMain(env, time.Now) }

// injectRequest is a parsed inject command line.
type injectRequest struct {
	configDir  string
	queue      string
	sender     string
	haveSender bool
	fullName   string
	arrival    time.Time
	expire     bool
	reason     string
	rcptReason map[string]string
	status     string
	done       map[string]bool
	count      int
	recipients []string
}

func injectMain(env *Env, now func() time.Time) int {
	req, help, err := parseInject(env.Args, now())
	if help {
		fmt.Fprint(env.Stdout, injectHelp)
		return 0
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: fatal: %v\n", env.Name, err)
		fmt.Fprint(env.Stderr, strings.SplitN(injectHelp, "\n\n", 2)[0]+"\n")
		return 64
	}
	cfg, err := env.LoadConfig(req.configDir)
	if err != nil {
		return env.Fatalf(75, "%v", err)
	}
	sp, err := OpenSpool(cfg)
	if err != nil {
		return env.Fatalf(75, "%v", err)
	}
	if err := sp.Create(); err != nil {
		return env.Fatalf(75, "%v", err)
	}
	minBackoff, err := cfg.Duration("minimal_backoff_time")
	if err != nil {
		return env.Fatalf(75, "%v", err)
	}
	maxBackoff, err := cfg.Duration("maximal_backoff_time")
	if err != nil {
		return env.Fatalf(75, "%v", err)
	}
	msg, err := io.ReadAll(env.Stdin)
	if err != nil {
		return env.Fatalf(75, "read message: %v", err)
	}
	inj := &injector{sp: sp, req: req, lines: splitLines(msg), now: now, minBackoff: minBackoff, maxBackoff: maxBackoff}
	if req.count == 1 {
		id, err := inj.write()
		if err != nil {
			return env.Fatalf(75, "%v", err)
		}
		fmt.Fprintln(env.Stdout, id)
		return 0
	}
	// Many copies: one sync of everything at the end instead of three
	// per file (a thousand files take a second, not fifteen); the IDs
	// are printed once they are durable.
	sp.NoSync = true
	ids := make([]string, 0, req.count)
	for i := 0; i < req.count; i++ {
		id, err := inj.write()
		if err != nil {
			syscall.Sync()
			fmt.Fprint(env.Stdout, strings.Join(append(ids, ""), "\n"))
			return env.Fatalf(75, "%v", err)
		}
		ids = append(ids, id)
	}
	syscall.Sync()
	fmt.Fprint(env.Stdout, strings.Join(append(ids, ""), "\n"))
	return 0
}

func parseInject(args []string, now time.Time) (*injectRequest, bool, error) {
	opts, operands, err := Getopt(args, injectSpec)
	if err != nil {
		return nil, false, err
	}
	var rawReasons []string
	req := &injectRequest{arrival: now, status: "4.0.0", count: 1, rcptReason: map[string]string{}, done: map[string]bool{}}
	for _, o := range opts {
		switch o.Name {
		case 'h':
			return nil, true, nil
		case 'c':
			req.configDir = o.Arg
		case 'q':
			req.queue = o.Arg
		case 'f':
			req.sender, req.haveSender = o.Arg, true
			if req.sender == "<>" {
				req.sender = ""
			}
		case 'F':
			req.fullName = o.Arg
		case 'T':
			t, err := parseArrival(o.Arg, now)
			if err != nil {
				return nil, false, err
			}
			req.arrival = t
		case 'e':
			req.expire = true
		case 'r':
			req.reason = o.Arg
		case 'R':
			rawReasons = append(rawReasons, o.Arg)
		case 's':
			if !validDeferStatus(o.Arg) {
				return nil, false, fmt.Errorf("-s wants a DSN status 4.X.Y, not %q", o.Arg)
			}
			req.status = o.Arg
		case 'd':
			req.done[o.Arg] = true
		case 'n':
			n, err := strconv.Atoi(o.Arg)
			if err != nil || n < 1 {
				return nil, false, fmt.Errorf("-n wants a count of at least 1, not %q", o.Arg)
			}
			req.count = n
		}
	}
	req.recipients = operands
	if !req.haveSender {
		return nil, false, errors.New("no sender: give -f sender (-f '' for the null sender)")
	}
	if len(req.recipients) == 0 {
		return nil, false, errors.New("no recipients")
	}
	listed := map[string]bool{}
	for _, r := range req.recipients {
		if r == "" {
			return nil, false, errors.New("empty recipient address")
		}
		listed[r] = true
	}
	for _, arg := range rawReasons {
		rcpt, reason, ok := cutRecipientReason(arg, req.recipients)
		if !ok {
			return nil, false, fmt.Errorf("-R wants recipient=reason with one of the recipients, not %q", arg)
		}
		req.rcptReason[rcpt] = reason
	}
	for r := range req.done {
		if !listed[r] {
			return nil, false, fmt.Errorf("-d names %q, which is not a recipient", r)
		}
	}
	deferring := req.reason != "" || len(req.rcptReason) > 0
	if req.queue == "" {
		req.queue = spool.Incoming
		if deferring {
			req.queue = spool.Deferred
		}
	}
	switch req.queue {
	case spool.Incoming, spool.Deferred, spool.Hold, spool.Active:
	case spool.Maildrop:
		if deferring || req.expire || len(req.done) > 0 {
			return nil, false, errors.New("a maildrop file takes none of -e, -r, -R or -d: it has not been scheduled yet")
		}
	default:
		return nil, false, fmt.Errorf("-q wants incoming, deferred, hold, active or maildrop, not %q", req.queue)
	}
	return req, false, nil
}

// parseArrival reads -T: Unix seconds with an optional fraction, or a
// negative duration meaning that long before now.
func parseArrival(s string, now time.Time) (time.Time, error) {
	if strings.HasPrefix(s, "-") {
		d, err := time.ParseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("-T wants Unix seconds or a negative age such as -90m, not %q", s)
		}
		return now.Add(d), nil
	}
	secText, fracText, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secText, 10, 64)
	if err != nil || sec < 0 || len(fracText) > 9 {
		return time.Time{}, fmt.Errorf("-T wants Unix seconds or a negative age such as -90m, not %q", s)
	}
	var nsec int64
	if fracText != "" {
		n, err := strconv.ParseUint(fracText, 10, 32)
		if err != nil {
			return time.Time{}, fmt.Errorf("-T wants Unix seconds or a negative age such as -90m, not %q", s)
		}
		nsec = int64(n)
		for i := len(fracText); i < 9; i++ {
			nsec *= 10
		}
	}
	return time.Unix(sec, nsec), nil
}

// cutRecipientReason splits "rcpt=reason" where rcpt is one of the
// recipients: addresses may hold '=' (VERP) and reasons '@' and '=', so
// the recipient list, not a separator rule, decides. The longest match
// wins.
func cutRecipientReason(arg string, recipients []string) (rcpt, reason string, ok bool) {
	for _, r := range recipients {
		if len(r) > len(rcpt) && strings.HasPrefix(arg, r+"=") {
			rcpt, ok = r, true
		}
	}
	if !ok || len(arg) == len(rcpt)+1 {
		return "", "", false
	}
	return rcpt, arg[len(rcpt)+1:], true
}

func validDeferStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != "4" {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 || p == "" {
			return false
		}
	}
	return true
}

// splitLines splits a message into lines on LF, dropping a CR before the
// LF; a final line without a terminator is still a line.
func splitLines(msg []byte) [][]byte {
	if len(msg) == 0 {
		return nil
	}
	lines := bytes.Split(msg, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		lines[i] = bytes.TrimSuffix(l, []byte("\r"))
	}
	return lines
}

// injector writes the queue files of one inject command.
type injector struct {
	sp                     *spool.Spool
	req                    *injectRequest
	lines                  [][]byte
	now                    func() time.Time
	minBackoff, maxBackoff time.Duration
}

func (in *injector) envelope() *spool.NewEnvelope {
	e := &spool.NewEnvelope{
		Arrival:  in.req.arrival,
		Attrs:    []spool.Attr{{Name: "rewrite_context", Value: "local"}},
		FullName: in.req.fullName,
		Sender:   in.req.sender,
	}
	for _, r := range in.req.recipients {
		// As cleanup records a sendmail or SMTP recipient.
		e.Recipients = append(e.Recipients, spool.NewRecipient{Address: r, Orig: r, DSNOrig: "rfc822;" + r})
	}
	return e
}

// stagingQueue is where inject writes a queue file before it is
// complete: a queue that no queue manager takes mail from (hold; corrupt
// when hold is hashed, as a new file is named in its queue's top
// directory), so a running daemon never takes the file before its
// deferral, done recipients and mode are in place. A crash meanwhile
// leaves it where an operator looks and nothing delivers it.
func stagingQueue(sp *spool.Spool) (string, error) {
	for _, q := range []string{spool.Hold, spool.Corrupt} {
		if !sp.Hashed(q) {
			return q, nil
		}
	}
	return "", errors.New("inject: hold and corrupt are both hashed (hash_queue_names); no queue to stage the file in that the queue manager leaves alone")
}

// write writes one queue file and returns its ID. The file is written
// in the staging queue, then moved where it belongs.
func (in *injector) write() (string, error) {
	if in.req.queue == spool.Maildrop {
		return in.writeMaildrop()
	}
	staging, err := stagingQueue(in.sp)
	if err != nil {
		return "", err
	}
	now := in.now()
	f, err := in.sp.NewFile(staging, now)
	if err != nil {
		return "", err
	}
	if err := f.WriteEnvelope(in.envelope()); err != nil {
		f.Abort()
		return "", err
	}
	for _, l := range in.lines {
		f.WriteLine(l)
	}
	if err := f.CommitNoDirSync(); err != nil {
		return "", err
	}
	if err := in.finish(f.ID, staging, now); err != nil {
		in.sp.Remove(staging, f.ID)
		return "", fmt.Errorf("inject %s: %w", f.ID, err)
	}
	return f.ID, nil
}

// finish takes a committed file in the staging queue to its final state:
// done recipients, defer log, forced expiry, owner, times and queue.
func (in *injector) finish(id, staging string, now time.Time) error {
	path := in.sp.Path(staging, id)
	env, _, err := spool.ReadFile(path, spool.ReadOptions{SkipContent: true})
	if err != nil {
		return err
	}
	var entries []spool.LogEntry
	for _, r := range env.Recipients {
		if in.req.done[r.Address] {
			if err := spool.MarkDone(path, r.Offset, !in.sp.NoSync); err != nil {
				return err
			}
			continue
		}
		reason, ok := in.req.rcptReason[r.Address]
		if !ok {
			reason = in.req.reason
		}
		if reason == "" {
			continue
		}
		entries = append(entries, spool.LogEntry{
			Recipient: spool.QuoteAddress(r.Address), Offset: r.Offset, DSNOrigRcpt: r.DSNOrig,
			Status: in.req.status, Action: "delayed", Reason: reason,
		})
	}
	if len(entries) > 0 {
		if err := in.sp.AppendLog(spool.Defer, id, entries...); err != nil {
			return err
		}
		if err := adoptOwner(in.sp, spool.Defer, id); err != nil {
			return err
		}
	}
	if in.req.expire {
		if err := os.Chmod(path, spool.ModeReady|spool.ModeExpire); err != nil {
			return fmt.Errorf("set forced expiry: %w", err)
		}
	}
	if err := adoptOwner(in.sp, staging, id); err != nil {
		return err
	}
	if in.req.queue == spool.Deferred {
		// As the queue manager defers: the next attempt is after the
		// message's age, clamped to the backoff limits (reference §8.2).
		delay := min(max(now.Sub(in.req.arrival), in.minBackoff), in.maxBackoff)
		if err := in.sp.SetTimes(staging, id, now.Add(delay)); err != nil {
			return err
		}
	}
	if in.req.queue == staging {
		return in.sp.SyncQueueDir(staging)
	}
	// Move makes a missing hash directory with the queue's owner.
	return in.sp.Move(id, staging, in.req.queue)
}

// writeMaildrop writes a maildrop file as postdrop does, with the
// writer sluice's sendmail uses.
func (in *injector) writeMaildrop() (string, error) {
	d, err := pickup.NewDrop(in.sp, in.now())
	if err != nil {
		return "", err
	}
	e := &pickup.DropEnvelope{Arrival: in.req.arrival, FullName: in.req.fullName, Sender: in.req.sender}
	for _, r := range in.req.recipients {
		e.Recipients = append(e.Recipients, pickup.DropRecipient{Address: r})
	}
	d.WriteEnvelope(e)
	for _, l := range in.lines {
		d.WriteLine(l)
	}
	if err := d.Commit(nil); err != nil {
		return "", err
	}
	if os.Geteuid() == 0 {
		// postdrop is setgid postdrop: the file keeps the submitter as
		// owner and gets the maildrop directory's group.
		if _, gid, ok := ownerOf(filepath.Join(in.sp.Root, spool.Maildrop)); ok {
			if err := os.Chown(d.Path, -1, gid); err != nil {
				return "", fmt.Errorf("inject %s: %w", d.ID, err)
			}
		}
	}
	return d.ID, nil
}

// adoptOwner gives the file of id in queue the owner of the queue
// directory (and that user's group) when we run as root and that owner
// is someone else: Postfix's daemons run as mail_owner and must be able
// to read, rewrite and rename what we write.
func adoptOwner(sp *spool.Spool, queue, id string) error {
	uid, gid, ok := queueOwner(filepath.Join(sp.Root, queue))
	if !ok {
		return nil
	}
	if err := os.Lchown(sp.Path(queue, id), uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", sp.Path(queue, id), err)
	}
	return nil
}

// queueOwner returns the owner a new file under the queue directory top
// should have: the directory's owner and that user's primary group. ok is
// false when we are not root or the directory is ours already.
func queueOwner(top string) (uid, gid int, ok bool) {
	if os.Geteuid() != 0 {
		return 0, 0, false
	}
	uid, gid, ok = ownerOf(top)
	if !ok || uid == 0 {
		return 0, 0, false
	}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		if g, err := strconv.Atoi(u.Gid); err == nil {
			gid = g
		}
	}
	return uid, gid, true
}

func ownerOf(path string) (uid, gid int, ok bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, false
	}
	st, isUnix := fi.Sys().(*syscall.Stat_t)
	if !isUnix {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
