package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// maxLevel bounds alias, :include: and .forward nesting (Postfix: 100).
const maxLevel = 100

// The expansion classes of allow_mail_to_commands and allow_mail_to_files.
const (
	classAlias   = "alias"
	classForward = "forward"
	classInclude = "include"
)

// expansion is where an address being delivered came from.
type expansion struct {
	level   int
	class   string // "" for the queued recipient itself; alias, forward, include
	expFrom string // the alias name, or the user whose .forward it was
	cred    *Cred  // who files and commands run as; nil: no context yet
	user    *User  // the user context (.forward), nil for aliases
	sender  string // the envelope sender, changed by an owner- alias
	ext     string // an extension to carry on to addresses (propagate_unmatched_extensions)
	current string // the address being expanded: the To of files and commands
}

// run is the delivery of one queued recipient.
type run struct {
	a       *Agent
	ctx     context.Context
	msg     *Message
	rcpt    Recipient
	loops   map[string]bool // the message's Delivered-To: addresses
	seen    map[string]bool // duplicate filter
	finals  []Final
	forward map[string][]string // sender -> addresses to forward to
	fwdTo   map[string][]int    // sender -> indexes into finals to fill in
}

// Deliver delivers the message to each of its recipients and says what
// became of each, in order.
func (a *Agent) Deliver(ctx context.Context, m *Message) []Result {
	out := make([]Result, len(m.Recipients))
	loops, err := a.deliveredTo(m)
	if err != nil {
		for i := range out {
			out[i] = Result{Status: Deferred, DSN: "4.3.0", Reason: fmt.Sprintf("cannot read message: %v", err)}
		}
		return out
	}
	for i, rc := range m.Recipients {
		if ctx.Err() != nil {
			out[i] = Result{Status: Deferred, DSN: "4.3.0", Reason: "delivery interrupted"}
			continue
		}
		if rc.Orig == "" {
			rc.Orig = rc.Address
		}
		r := &run{a: a, ctx: ctx, msg: m, rcpt: rc, loops: loops, seen: map[string]bool{},
			forward: map[string][]string{}, fwdTo: map[string][]int{}}
		r.recipient(expansion{sender: m.Sender}, rc.Address)
		r.flushForwards()
		out[i] = r.result()
	}
	return out
}

// result folds the final deliveries into the recipient's outcome.
func (r *run) result() Result {
	res := Result{Status: Sent, DSN: "2.0.0", Finals: r.finals}
	var bounced, deferred *Final
	for i := range r.finals {
		f := &r.finals[i]
		switch {
		case f.Status == Deferred && deferred == nil:
			deferred = f
		case f.Status == Bounced && bounced == nil:
			bounced = f
		}
	}
	switch {
	case deferred != nil:
		res.Status, res.DSN, res.Reason = Deferred, deferred.DSN, deferred.Text
	case bounced != nil:
		res.Status, res.DSN, res.Reason = Bounced, bounced.DSN, bounced.Text
	case len(r.finals) > 0:
		res.Reason = r.finals[0].Text
	default:
		// Every destination was a duplicate of one already done.
		res.Reason = "delivered to nothing (duplicates)"
	}
	return res
}

func (r *run) final(to string, st Status, dsn, text string) {
	r.finals = append(r.finals, Final{To: to, Status: st, DSN: dsn, Text: text})
}

// fail records err for to: a *deliveryError keeps its status (4.x.x
// defers, 5.x.x bounces), a privilege problem and anything else defer.
func (r *run) fail(to, prefix string, err error) {
	var de *deliveryError
	if errors.As(err, &de) {
		st := Deferred
		if strings.HasPrefix(de.dsn, "5") {
			st = Bounced
		}
		r.final(to, st, de.dsn, prefix+de.text)
		return
	}
	r.final(to, Deferred, "4.3.0", prefix+err.Error())
}

// recipient delivers to one address: aliases first, then the user's
// .forward, then the mailbox, as local(8) does.
func (r *run) recipient(st expansion, addr string) {
	if st.level > maxLevel {
		r.final(addr, Bounced, "5.4.6", "alias database loop for "+addr)
		a := r.a
		a.warn("%s: alias database loop for %s", r.msg.QueueID, addr)
		return
	}
	if domainPart(addr) == "" {
		addr += "@" + r.a.cfg.MyOrigin
	}
	key := fmt.Sprintf("recipient %d %s", st.level, strings.ToLower(addr))
	if r.seen[key] {
		return
	}
	r.seen[key] = true
	if !r.a.IsLocal(addr) {
		r.queueForward(st, addr)
		return
	}
	// Mail that has been here before, by way of a Delivered-To header
	// this agent wrote, is a forwarding loop.
	if r.loops[strings.ToLower(addr)] {
		r.final(addr, Bounced, "5.4.6", "mail forwarding loop for "+addr)
		return
	}
	st.current = addr
	lp := strings.ToLower(localPart(addr))
	base, ext := r.a.splitExtension(lp)
	if done := r.alias(st, addr, lp, base, ext); done {
		return
	}
	u, err := r.a.cfg.Users.Lookup(base)
	if errors.Is(err, ErrNoUser) {
		r.final(addr, Bounced, "5.1.1", fmt.Sprintf("unknown user: %q", base))
		return
	}
	if err != nil {
		r.final(addr, Deferred, "4.3.0", fmt.Sprintf("user lookup %s: %v", base, err))
		return
	}
	// A user listed in their own .forward gets the mail in the mailbox.
	if !(st.class == classForward && st.expFrom == base) {
		if r.dotForward(st, addr, u, lp, ext) {
			return
		}
	}
	r.mailbox(st, addr, u)
}

// alias expands addr through alias_maps: the whole local part first,
// then the part before the extension. An address found in its own
// expansion is not expanded again: it goes to the user.
func (r *run) alias(st expansion, addr, lp, base, ext string) bool {
	for _, name := range uniq(lp, base) {
		if st.class == classAlias && st.expFrom == name {
			continue
		}
		al, table, ok, err := r.a.aliases.lookup(name)
		if err != nil {
			r.final(addr, Deferred, "4.3.0", fmt.Sprintf("alias database unavailable: %v", err))
			return true
		}
		if !ok {
			continue
		}
		items, err := splitValue(al.Value)
		if err != nil {
			r.final(addr, Deferred, "4.3.0", fmt.Sprintf("%s, line %d: bad alias %q: %v", al.File, al.Line, name, err))
			return true
		}
		// Commands and files run as the table's owner; default_privs
		// (root's stand-in) is looked up when one is met.
		var cred *Cred
		if table.uid != 0 {
			cred = &Cred{Name: fmt.Sprintf("uid %d", table.uid), UID: table.uid, GID: table.gid}
		}
		next := st
		next.level++
		next.class, next.expFrom, next.cred, next.user = classAlias, name, cred, nil
		next.ext = ""
		if name != lp && r.a.cfg.Propagate[classAlias] {
			next.ext = ext
		}
		// An owner-NAME alias receives the errors of a list and becomes
		// its envelope sender (never for the null sender: a bounce must
		// not be answered).
		if st.sender != "" && !strings.HasPrefix(name, "owner-") {
			if _, _, ok, _ := r.a.aliases.lookup("owner-" + name); ok {
				next.sender = "owner-" + name + "@" + r.a.cfg.MyOrigin
			}
		}
		r.items(next, items)
		return true
	}
	return false
}

func (a *Agent) defaultPrivs() (*Cred, error) {
	u, err := a.cfg.Users.Lookup(a.cfg.DefaultPrivs)
	if err != nil {
		return nil, fmt.Errorf("default_privs user %q: %w", a.cfg.DefaultPrivs, err)
	}
	if u.UID == 0 {
		return nil, fmt.Errorf("default_privs user %q has uid 0", a.cfg.DefaultPrivs)
	}
	return &Cred{Name: u.Name, UID: u.UID, GID: u.GID, Groups: []uint32{u.GID}}, nil
}

func userCred(u *User) Cred {
	return Cred{Name: u.Name, UID: u.UID, GID: u.GID, Groups: u.Groups}
}

// items delivers to each destination of an alias, :include: file or
// .forward file.
func (r *run) items(st expansion, items []Item) {
	for _, it := range items {
		if r.ctx.Err() != nil {
			r.final(st.current, Deferred, "4.3.0", "delivery interrupted")
			return
		}
		switch it.Kind {
		case KindAddress:
			addr := it.Value
			if st.ext != "" {
				addr = r.a.addExtension(addr, st.ext)
			}
			r.recipient(st, addr)
		case KindInclude:
			r.include(st, it.Value)
		case KindFile:
			if !r.a.cfg.FilesFrom[st.class] {
				r.final(st.current, Bounced, "5.7.1", "mail to file is restricted")
				continue
			}
			r.file(st, it.Value)
		case KindCommand:
			if !r.a.cfg.CommandsFrom[st.class] {
				r.final(st.current, Bounced, "5.7.1", "mail to command is restricted")
				continue
			}
			r.command(st, it.Value)
		}
	}
}

// addExtension puts ext after the user part of addr: user@d becomes
// user+ext@d (propagate_unmatched_extensions).
func (a *Agent) addExtension(addr, ext string) string {
	if a.cfg.RecipientDelimiter == "" {
		return addr
	}
	lp, dom := localPart(addr), domainPart(addr)
	if strings.ContainsAny(lp, a.cfg.RecipientDelimiter) {
		return addr
	}
	out := lp + a.cfg.RecipientDelimiter[:1] + ext
	if dom != "" || strings.Contains(addr, "@") {
		out += "@" + dom
	}
	return out
}

// include reads a :include: file as the current context's identity and
// delivers to what it lists; its commands and files run as the file's
// owner (default_privs when root owns it), and are subject to the
// "include" class of allow_mail_to_commands and allow_mail_to_files.
func (r *run) include(st expansion, path string) {
	if r.seen["include "+path] {
		return
	}
	r.seen["include "+path] = true
	cred := st.cred
	if cred == nil {
		var err error
		if cred, err = r.a.defaultPrivs(); err != nil {
			r.final(st.current, Deferred, "4.3.0", err.Error())
			return
		}
	}
	var items []Item
	var owner syscall.Stat_t
	err := r.a.asCred(*cred, func() error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := syscall.Fstat(int(f.Fd()), &owner); err != nil {
			return err
		}
		if owner.Mode&syscall.S_IFMT != syscall.S_IFREG {
			return &deliveryError{dsn: "5.3.0", text: fmt.Sprintf("cannot open include file %s: not a regular file", path)}
		}
		var errs []error
		items, errs = ParseItems(io.LimitReader(f, 16<<20), path)
		for _, e := range errs {
			r.a.warn("%v", e)
		}
		return nil
	})
	if err != nil {
		var pe *privError
		var de *deliveryError
		switch {
		case errors.As(err, &pe), errors.As(err, &de):
			r.fail(st.current, "", err)
		case errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
			r.final(st.current, Bounced, "5.3.0", fmt.Sprintf("cannot open include file %s: %v", path, unwrapPath(err)))
		default:
			r.final(st.current, Deferred, "4.3.0", fmt.Sprintf("cannot open include file %s: %v", path, unwrapPath(err)))
		}
		return
	}
	next := st
	next.level++
	next.class = classInclude
	if !r.a.cfg.Propagate[classInclude] {
		next.ext = ""
	}
	next.cred, next.user = nil, nil // root's file: default_privs, when needed
	if owner.Uid != 0 {
		next.cred = &Cred{Name: fmt.Sprintf("uid %d", owner.Uid), UID: owner.Uid, GID: owner.Gid}
	}
	r.items(next, items)
}

// dotForward looks for the user's .forward along forward_path and, when
// one is found that is not empty, delivers to what it lists, as the
// user. It reports whether a .forward took the mail.
func (r *run) dotForward(st expansion, addr string, u *User, lp, ext string) bool {
	if u.Home == "" {
		return false
	}
	cred := userCred(u)
	for _, tmpl := range r.a.cfg.ForwardPath {
		path, usedExt, ok := r.a.expandPath(tmpl, u, addr, lp, ext)
		if !ok {
			continue
		}
		var items []Item
		found := false
		err := r.a.asCred(cred, func() error {
			f, err := os.Open(path)
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil
			}
			if err != nil {
				return err
			}
			defer f.Close()
			var fst syscall.Stat_t
			if err := syscall.Fstat(int(f.Fd()), &fst); err != nil {
				return err
			}
			if fst.Mode&syscall.S_IFMT != syscall.S_IFREG {
				r.a.warn("%s: not a regular file: ignored", path)
				return nil
			}
			// A .forward that someone else could have written would let
			// them run commands as this user.
			if fst.Uid != u.UID && fst.Uid != 0 {
				r.a.warn("%s: owned by uid %d, not by %s: ignored", path, fst.Uid, u.Name)
				return nil
			}
			var errs []error
			items, errs = ParseItems(io.LimitReader(f, 16<<20), path)
			for _, e := range errs {
				r.a.warn("%v", e)
			}
			found = true
			return nil
		})
		if err != nil {
			r.fail(addr, "", fmt.Errorf("cannot open %s: %w", path, unwrapPath(err)))
			return true
		}
		if !found {
			continue
		}
		if len(items) == 0 {
			// An empty .forward means: do not forward.
			return false
		}
		next := st
		next.level++
		next.class, next.expFrom, next.cred, next.user = classForward, u.Name, &cred, u
		next.ext = ""
		if !usedExt && ext != "" && r.a.cfg.Propagate[classForward] {
			next.ext = ext
		}
		r.items(next, items)
		return true
	}
	return false
}

// expandPath fills in a forward_path entry: $user, $home, $shell,
// $recipient, $extension, $domain, $local, $recipient_delimiter, and
// the ${name?text} and ${name:text} forms. An entry that uses a plain
// $name that is empty (no extension, say) is skipped (ok false), as
// Postfix skips it. Characters outside forward_expansion_filter's
// default set are replaced with '_'.
func (a *Agent) expandPath(tmpl string, u *User, addr, lp, ext string) (path string, usedExt, ok bool) {
	vars := map[string]string{
		"user": u.Name, "home": u.Home, "shell": u.Shell, "recipient": addr, "extension": ext,
		"domain": domainPart(addr), "local": lp, "recipient_delimiter": a.cfg.RecipientDelimiter,
	}
	undefined := false
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '$' || i+1 >= len(tmpl) {
			b.WriteByte(tmpl[i])
			continue
		}
		var ref string
		if tmpl[i+1] == '{' || tmpl[i+1] == '(' {
			closer := byte('}')
			if tmpl[i+1] == '(' {
				closer = ')'
			}
			end := strings.IndexByte(tmpl[i+2:], closer)
			if end < 0 {
				b.WriteByte('$')
				continue
			}
			ref = tmpl[i+2 : i+2+end]
			i += 2 + end
		} else {
			j := i + 1
			for j < len(tmpl) && (tmpl[j] == '_' || tmpl[j] >= 'a' && tmpl[j] <= 'z' || tmpl[j] >= 'A' && tmpl[j] <= 'Z' || tmpl[j] >= '0' && tmpl[j] <= '9') {
				j++
			}
			ref = tmpl[i+1 : j]
			i = j - 1
		}
		if k, text, found := strings.Cut(ref, "?"); found {
			if vars[k] != "" {
				b.WriteString(strings.Trim(text, "{}"))
				usedExt = usedExt || k == "extension"
			}
			continue
		}
		if k, text, found := strings.Cut(ref, ":"); found {
			if vars[k] == "" {
				b.WriteString(strings.Trim(text, "{}"))
			}
			continue
		}
		v := vars[ref]
		if v == "" {
			undefined = true
		}
		if ref == "extension" {
			usedExt = true
		}
		b.WriteString(filterExpansion(v))
	}
	if undefined {
		return "", false, false
	}
	return b.String(), usedExt, true
}

// filterExpansion replaces characters outside Postfix's default
// forward_expansion_filter with '_', so an address extension cannot
// climb out of the home directory or name a device.
func filterExpansion(s string) string {
	const ok = "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := []byte(s)
	for i, c := range b {
		if !strings.ContainsRune(ok, rune(c)) {
			b[i] = '_'
		}
	}
	out := string(b)
	// ".." is made of allowed characters, but must not climb.
	return strings.ReplaceAll(out, "..", "__")
}

// mailbox delivers to the user's mailbox: $home/$home_mailbox when
// home_mailbox is set (Maildir when it ends in "/"), else the mbox file
// mail_spool_directory/user.
func (r *run) mailbox(st expansion, addr string, u *User) {
	cred := userCred(u)
	var path string
	if r.a.cfg.HomeMailbox != "" {
		path = filepath.Join(u.Home, r.a.cfg.HomeMailbox)
		if strings.HasSuffix(r.a.cfg.HomeMailbox, "/") {
			path += "/"
		}
	} else {
		path = filepath.Join(r.a.cfg.SpoolDir, u.Name)
	}
	if r.seen["mailbox "+path] {
		return
	}
	r.seen["mailbox "+path] = true
	hdr := r.headers(st, r.a.cfg.DeliveredTo["file"])
	if strings.HasSuffix(path, "/") {
		err := r.a.deliverMaildir(path, cred, r.writer(hdr, false, false))
		if err != nil {
			r.fail(addr, "maildir delivery failed: ", err)
			return
		}
		r.final(addr, Sent, "2.0.0", "delivered to maildir")
		return
	}
	opener := cred
	if r.a.cfg.HomeMailbox == "" && r.a.privileged() {
		// As Postfix: in a spool directory that is not world-writable
		// (Debian's /var/mail is root:mail 2775) the lock file and a new
		// mailbox are made as root, the mailbox then given to the user;
		// the message itself is written with the file opened.
		if fi, err := os.Stat(r.a.cfg.SpoolDir); err == nil && fi.Mode().Perm()&0o002 == 0 {
			opener = Cred{Name: "root"}
		}
	}
	err := r.a.appendMbox(mboxTarget{
		path: path, owner: cred, opener: opener, writer: cred,
		checkOwner: true, sizeLimit: r.a.cfg.MailboxSizeLimit,
	}, r.writer(hdr, true, true))
	if err != nil {
		r.fail(addr, fmt.Sprintf("cannot update mailbox %s for user %s. ", path, u.Name), err)
		return
	}
	r.final(addr, Sent, "2.0.0", "delivered to mailbox")
}

// file appends to a file named in an alias, :include: or .forward file,
// as the context's identity (never as root): mbox format, or Maildir for
// a name ending in "/".
func (r *run) file(st expansion, path string) {
	cred, err := r.a.contextCred(st)
	if err != nil {
		r.final(st.current, Deferred, "4.3.0", err.Error())
		return
	}
	if r.seen[fmt.Sprintf("file %d %s", cred.UID, path)] {
		return
	}
	r.seen[fmt.Sprintf("file %d %s", cred.UID, path)] = true
	hdr := r.headers(st, r.a.cfg.DeliveredTo["file"])
	if strings.HasSuffix(path, "/") {
		if err := r.a.deliverMaildir(path, cred, r.writer(hdr, false, false)); err != nil {
			r.fail(st.current, "", err)
			return
		}
		r.final(st.current, Sent, "2.0.0", "delivered to file: "+path)
		return
	}
	err = r.a.appendMbox(mboxTarget{
		path: path, owner: cred, opener: cred, writer: cred,
		dotlockMayFail: true, refuseExec: true, sizeLimit: r.a.cfg.MailboxSizeLimit,
	}, r.writer(hdr, true, true))
	if err != nil {
		r.fail(st.current, fmt.Sprintf("cannot append message to file %s: ", path), err)
		return
	}
	r.final(st.current, Sent, "2.0.0", "delivered to file: "+path)
}

// contextCred is whom a file or command of this expansion runs as; root
// is never used: default_privs stands in.
func (a *Agent) contextCred(st expansion) (Cred, error) {
	if st.cred != nil && st.cred.UID != 0 {
		return *st.cred, nil
	}
	c, err := a.defaultPrivs()
	if err != nil {
		return Cred{}, err
	}
	return *c, nil
}

// command pipes the message to a command.
func (r *run) command(st expansion, cmdline string) {
	cred, err := r.a.contextCred(st)
	if err != nil {
		r.final(st.current, Deferred, "4.3.0", err.Error())
		return
	}
	key := fmt.Sprintf("command %d %s", cred.UID, cmdline)
	if r.seen[key] {
		return
	}
	r.seen[key] = true
	lp := localPart(st.current)
	_, ext := r.a.splitExtension(strings.ToLower(lp))
	hdr := r.headers(st, r.a.cfg.DeliveredTo["command"])
	e := commandEnv{user: st.user, cred: cred, sender: st.sender, recipient: st.current, orig: r.rcpt.Orig,
		local: lp, extension: ext, domain_: domainPart(st.current)}
	if err := r.a.runCommand(r.ctx, cmdline, e, r.writer(hdr, true, false)); err != nil {
		r.fail(st.current, "", err)
		return
	}
	r.final(st.current, Sent, "2.0.0", "delivered to command: "+cmdline)
}

// queueForward notes an address outside mydestination; all of a
// recipient's forwarded addresses with the same sender go out as one new
// message (flushForwards).
func (r *run) queueForward(st expansion, addr string) {
	if r.seen["forward "+strings.ToLower(addr)] {
		return
	}
	r.seen["forward "+strings.ToLower(addr)] = true
	r.forward[st.sender] = append(r.forward[st.sender], addr)
	r.fwdTo[st.sender] = append(r.fwdTo[st.sender], len(r.finals))
	r.final(addr, Deferred, "4.3.0", "not yet forwarded")
}

// flushForwards submits the forwarded copies: each is a new queued
// message (so each address gets its own delivery status), with a
// Delivered-To: header for the recipient whose alias or .forward named
// it, which stops a loop when the mail comes back.
func (r *run) flushForwards() {
	senders := make([]string, 0, len(r.forward))
	for s := range r.forward {
		senders = append(senders, s)
	}
	sort.Strings(senders)
	for _, sender := range senders {
		rcpts := r.forward[sender]
		text := ""
		dsn, st := "4.3.0", Deferred
		if r.a.cfg.Forward == nil {
			text = "forwarding is not available"
		} else if id, err := r.forwardOne(sender, rcpts); err != nil {
			text = fmt.Sprintf("cannot forward: %v", err)
		} else {
			text, dsn, st = "forwarded as "+id, "2.0.0", Sent
		}
		for _, i := range r.fwdTo[sender] {
			r.finals[i].Status, r.finals[i].DSN, r.finals[i].Text = st, dsn, text
		}
	}
}

func (r *run) forwardOne(sender string, rcpts []string) (string, error) {
	src, err := r.msg.Open()
	if err != nil {
		return "", err
	}
	defer src.Close()
	var prefix string
	if r.a.cfg.DeliveredTo["forward"] {
		prefix = "Delivered-To: " + strings.ToLower(r.rcpt.Address) + "\n"
	}
	return r.a.cfg.Forward(r.ctx, sender, rcpts, io.MultiReader(strings.NewReader(prefix), src))
}

// headers is what local(8) puts before the message: the From_ line (for
// mbox and commands; the writer leaves it out for Maildir), Return-Path:,
// X-Original-To: and, when wanted, Delivered-To:. The Delivered-To:
// address is the recipient as queued (frozen_delivered_to), lower-cased.
func (r *run) headers(st expansion, delivered bool) []byte {
	var b bytes.Buffer
	sender := st.sender
	from := sender
	if from == "" {
		from = "MAILER-DAEMON"
	}
	// asctime(3) format, local time, as in every mbox "From " line.
	fmt.Fprintf(&b, "From %s  %s\n", quoteLocal(from), r.a.now().Format("Mon Jan _2 15:04:05 2006"))
	fmt.Fprintf(&b, "Return-Path: <%s>\n", quoteLocal(sender))
	fmt.Fprintf(&b, "X-Original-To: %s\n", quoteLocal(r.rcpt.Orig))
	if delivered {
		fmt.Fprintf(&b, "Delivered-To: %s\n", strings.ToLower(quoteLocal(r.rcpt.Address)))
	}
	return b.Bytes()
}

// writer returns a function that writes the headers and the message. The
// From_ line (the first line of hdr) is kept only with from.
func (r *run) writer(hdr []byte, from, mbox bool) func(io.Writer) error {
	return func(w io.Writer) error {
		h := hdr
		if !from {
			// Maildir: no From_ line.
			if i := bytes.IndexByte(h, '\n'); i >= 0 {
				h = h[i+1:]
			}
		}
		if _, err := w.Write(h); err != nil {
			return err
		}
		src, err := r.msg.Open()
		if err != nil {
			return &deliveryError{dsn: "4.3.0", text: fmt.Sprintf("cannot read message: %v", err)}
		}
		defer src.Close()
		return copyMessage(w, src, mbox, mbox)
	}
}

// quoteLocal quotes the local part of an address when it holds
// characters that RFC 5322 §3.2.3 does not allow in a dot-atom, so the
// Return-Path: and From_ line stay parseable.
func quoteLocal(addr string) string {
	lp, dom := addr, ""
	hasAt := false
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		lp, dom, hasAt = addr[:i], addr[i+1:], true
	}
	needs := lp == "" && hasAt
	for i := 0; i < len(lp) && !needs; i++ {
		c := lp[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80:
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		case c == '.' && i > 0 && i < len(lp)-1 && lp[i-1] != '.':
		default:
			needs = true
		}
	}
	if !needs {
		return addr
	}
	q := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(lp) + `"`
	if hasAt {
		return q + "@" + dom
	}
	return q
}

// deliveredTo reads the message's headers and returns the addresses of
// its Delivered-To: headers, lower-cased.
func (a *Agent) deliveredTo(m *Message) (map[string]bool, error) {
	src, err := m.Open()
	if err != nil {
		return nil, err
	}
	defer src.Close()
	out := map[string]bool{}
	br := bufio.NewReader(src)
	for {
		line, err := br.ReadString('\n')
		t := strings.TrimRight(line, "\r\n")
		if t == "" {
			break
		}
		if len(t) > 13 && strings.EqualFold(t[:13], "delivered-to:") {
			out[strings.ToLower(strings.TrimSpace(t[13:]))] = true
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
