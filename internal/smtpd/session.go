package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"sluice/internal/cleanup"
	"sluice/internal/milter"
	"sluice/internal/rewrite"
	"sluice/internal/sasl"
	"sluice/internal/spool"
)

// session is one client connection: its I/O, its SMTP state and its
// counters.
type session struct {
	s   *Server
	cfg *Config

	raw net.Conn   // the accepted connection
	tc  *timedConn // deadlines; under TLS when it is on
	br  *bufio.Reader
	bw  *bufio.Writer

	line     []byte // the current command line
	writeErr error

	// Fixed at accept time.
	addr       netip.Addr
	port       string
	serverAddr string
	serverPort string
	name, rev  string

	helo       string // the client's HELO/EHLO argument
	ehlo       bool   // the last greeting was EHLO
	pipelining bool   // the last EHLO reply offered PIPELINING
	tls        bool
	tx         *transaction // nil outside a mail transaction
	bdat       *bdatTransfer
	// bdatRefused: a BDAT chunk was refused outside a transaction. As
	// Postfix, the session stays in BDAT mode until RSET or HELO/EHLO, so
	// MAIL, RCPT and DATA are refused.
	bdatRefused   bool
	errors        int  // Postfix's error_count
	junk          int  // HELO/EHLO/NOOP/VRFY/ETRN/RSET commands so far
	code          int  // the last reply's code
	okOverride    bool // count the command as a success whatever code
	counts        [numCommands]tally
	lastCmd       string // for "... after CMD from": CONNECT, HELO, ...
	illPipelining bool   // logged once
	closing       bool

	// Milters (milter.go): the session's milters, and the reply to every
	// command after they refused the connection.
	milters     *milter.Session
	milterReply string
	// AUTH (auth.go): the connection to Dovecot, and who logged in (also
	// the milters' {auth_type} and {auth_authen}).
	sasl       *sasl.Conn
	saslMethod string
	saslUser   string
}

// transaction is one mail transaction, from MAIL to the end of its data.
type transaction struct {
	from     string
	size     int64
	body8bit bool
	utf8     bool
	ret      int
	envid    string
	rcpts    []cleanup.Recipient
	refused  int  // recipients refused (for "no valid recipients")
	discard  bool // a milter said discard before the end of the message
	// saslSender is MAIL FROM's AUTH= value of an authenticated
	// client, as written (RFC 4954 §5).
	saslSender string
}

// command describes one SMTP command.
type command struct {
	index int
	// last: must end a pipelined group (RFC 2920 §3.1); Postfix's list.
	last bool
	// junk: counts toward smtpd_junk_command_limit.
	junk bool
	run  func(ss *session, args string)
}

var commands = map[string]command{
	"HELO":     {cmdHelo, true, true, (*session).doHelo},
	"EHLO":     {cmdEhlo, true, true, (*session).doEhlo},
	"STARTTLS": {cmdStartTLS, true, false, (*session).doStartTLS},
	"AUTH":     {cmdAuth, false, false, (*session).doAuth},
	"MAIL":     {cmdMail, false, false, (*session).doMail},
	"RCPT":     {cmdRcpt, false, false, (*session).doRcpt},
	"DATA":     {cmdData, true, false, (*session).doData},
	"BDAT":     {cmdBdat, false, false, (*session).doBdat},
	"RSET":     {cmdRset, false, true, (*session).doRset},
	"NOOP":     {cmdNoop, true, true, (*session).doNoop},
	"VRFY":     {cmdVrfy, true, true, (*session).doVrfy},
	"ETRN":     {cmdEtrn, false, true, (*session).doEtrn},
	"QUIT":     {cmdQuit, false, false, (*session).doQuit},
}

// forbiddenCommands are not SMTP; Postfix's smtpd_forbidden_commands.
var forbiddenCommands = map[string]bool{"CONNECT": true, "GET": true, "POST": true}

// command runs one command line.
func (ss *session) command(line []byte) {
	// Postfix's strings end at NUL: so does the command line.
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	switch {
	case bytes.IndexByte(line, '\r') >= 0:
		ss.reply("500 5.5.2 Error: bad syntax")
		ss.errors++
		return
	case !utf8.Valid(line):
		ss.reply("500 5.5.2 Error: bad UTF-8 syntax")
		ss.errors++
		return
	}
	text := strings.TrimLeft(string(line), " \t")
	verb, args, _ := strings.Cut(text, " ")
	args = strings.TrimSpace(args)
	if verb == "" {
		ss.reply("500 5.5.2 Error: bad syntax")
		ss.errors++
		return
	}
	upper := strings.ToUpper(verb)
	if c := verb[0]; forbiddenCommands[upper] || !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') || looksLikeHeader(verb) {
		ss.s.warn("non-SMTP command from %s: %.100s", ss.origin(), text)
		ss.reply("221 2.7.0 Error: I can break rules, too. Goodbye.")
		ss.closing = true
		return
	}
	cmd, known := commands[upper]
	if !known {
		cmd = command{index: cmdUnknown, run: (*session).doUnknown}
		upper = "UNKNOWN"
	}
	ss.lastCmd = upper
	ss.code = 0
	// Postfix checks known commands only: input after an unknown
	// command is not flagged.
	if known && ss.br.Buffered() > 0 && (cmd.last || !ss.pipelining) {
		ss.improperPipelining()
	}
	if ss.closing { // refused for pipelining
		ss.counts[cmd.index].total++
		return
	}
	ss.okOverride = false
	if ss.tlsRequired(upper) || ss.milterRefusedSession(upper) {
		ss.counts[cmd.index].total++
		ss.errors++
		return
	}
	cmd.run(ss, args)
	ss.counts[cmd.index].total++
	if ss.code < 400 || ss.okOverride {
		ss.counts[cmd.index].ok++
	} else {
		ss.errors++
	}
	if cmd.junk {
		if ss.junk > ss.cfg.JunkCommandLimit {
			ss.errors++
		}
		ss.junk++
	}
}

func (ss *session) doUnknown(string) {
	ss.reply("500 5.5.2 Error: command not recognized")
}

// resetTransaction forgets the mail transaction (RSET, HELO, EHLO,
// STARTTLS); an unfinished BDAT transfer ends with it, and its message is
// not queued. Other commands between chunks leave the transfer alone.
func (ss *session) resetTransaction() {
	ss.abortBDAT()
	if ss.tx != nil {
		ss.milterEndTransaction()
	}
	ss.tx = nil
	ss.bdatRefused = false
}

// inBDAT reports whether the session is in BDAT mode (a message is
// arriving in chunks, or a chunk was refused) and only BDAT, RSET and
// the like may follow.
func (ss *session) inBDAT() bool { return ss.bdat != nil || ss.bdatRefused }

func (ss *session) doHelo(args string) {
	if args == "" {
		ss.reply("501 Syntax: HELO hostname")
		return
	}
	ss.resetTransaction()
	if r := ss.milterHelo(args); r != "" {
		ss.reply(r)
		return
	}
	ss.helo, ss.ehlo, ss.pipelining = args, false, false
	ss.reply("250 " + ss.cfg.Hostname)
}

func (ss *session) doEhlo(args string) {
	if args == "" {
		ss.reply("501 Syntax: EHLO hostname")
		return
	}
	ss.resetTransaction()
	if r := ss.milterHelo(args); r != "" {
		ss.reply(r)
		return
	}
	ss.helo, ss.ehlo = args, true
	lines := []string{ss.cfg.Hostname}
	for _, kw := range ss.ehloKeywords() {
		lines = append(lines, kw)
	}
	ss.pipelining = !ss.discarded("pipelining")
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		if i == 0 {
			ss.reply("250" + sep + l)
		} else {
			ss.writeLine("250" + sep + l)
		}
	}
}

// ehloKeywords are the EHLO reply's keywords in Postfix 3.7's order,
// without smtpd_discard_ehlo_keywords.
func (ss *session) ehloKeywords() []string {
	size := "SIZE"
	if ss.cfg.MessageSizeLimit > 0 {
		size += " " + strconv.FormatInt(ss.cfg.MessageSizeLimit, 10)
	}
	all := []string{"PIPELINING", size, "VRFY", "ETRN"}
	if ss.cfg.TLS != nil && !ss.tls {
		all = append(all, "STARTTLS")
	}
	if kw := ss.authKeyword(); kw != "" {
		all = append(all, kw)
	}
	all = append(all, "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING")
	var out []string
	for _, kw := range all {
		name, _, _ := strings.Cut(kw, " ")
		if !ss.discarded(strings.ToLower(name)) {
			out = append(out, kw)
		}
	}
	return out
}

// discarded reports whether an EHLO keyword (lower case) is in
// smtpd_discard_ehlo_keywords.
func (ss *session) discarded(keyword string) bool {
	for _, k := range ss.cfg.DiscardEHLOKeywords {
		if strings.EqualFold(k, keyword) {
			return true
		}
	}
	return false
}

func (ss *session) doStartTLS(args string) {
	switch {
	case ss.cfg.TLS == nil || ss.discarded("starttls"):
		ss.reply("502 5.5.1 Error: command not implemented")
		return
	case ss.tls:
		ss.reply("554 5.5.1 Error: TLS already active")
		return
	case args != "":
		ss.reply("501 5.5.4 Syntax: STARTTLS")
		return
	}
	ss.reply("220 2.0.0 Ready to start TLS")
	ss.flush()
	if ss.writeErr != nil {
		return
	}
	// Plain text sent after STARTTLS, before the handshake, is dropped
	// unread: it must not run as if it came under TLS.
	ss.br.Reset(ss.tc)
	if !ss.startTLS("STARTTLS") {
		return
	}
	// RFC 3207 §4.2: forget everything learned before TLS.
	ss.resetTransaction()
	ss.helo, ss.ehlo, ss.pipelining = "", false, false
}

func (ss *session) doMail(args string) {
	switch {
	case ss.cfg.HeloRequired && ss.helo == "":
		ss.reply("503 5.5.1 Error: send HELO/EHLO first")
		return
	case ss.inBDAT():
		ss.reply("503 5.5.1 Error: MAIL after BDAT")
		return
	case ss.tx != nil:
		ss.reply("503 5.5.1 Error: nested MAIL command")
		return
	}
	addr, params, perr := parsePath(args, "FROM:")
	switch perr {
	case pathSyntax:
		ss.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
		return
	case pathBadAddress:
		ss.reply("501 5.1.7 Bad sender address syntax")
		return
	}
	tx := &transaction{from: addr}
	if r := ss.mailParams(tx, params); r != "" {
		ss.reply(r)
		return
	}
	if limit := ss.cfg.MessageSizeLimit; limit > 0 && tx.size > limit {
		const r = "552 5.3.4 Message size exceeds fixed limit"
		ss.s.log("NOQUEUE: reject: MAIL from %s: %s; from=<%s> proto=%s%s", ss.origin(), r, addr, ss.protocol(false), ss.heloField())
		ss.reply(r)
		return
	}
	if r := ss.milterMail(tx, params); r != "" {
		ss.reply(r)
		return
	}
	ss.tx = tx
	ss.reply("250 2.1.0 Ok")
}

// heloField is the log's " helo=<name>", empty when there was no HELO.
func (ss *session) heloField() string {
	if ss.helo == "" {
		return ""
	}
	return " helo=<" + ss.helo + ">"
}

func (ss *session) doRcpt(args string) {
	if ss.tx == nil {
		ss.reply("503 5.5.1 Error: need MAIL command")
		return
	}
	if ss.inBDAT() {
		// The message already went to Submit with its recipients.
		ss.reply("503 5.5.1 Error: RCPT after BDAT")
		return
	}
	addr, params, perr := parsePath(args, "TO:")
	switch {
	case perr == pathSyntax:
		ss.reply("501 5.5.4 Syntax: RCPT TO:<address>")
		return
	case perr == pathBadAddress || addr == "":
		ss.reply("501 5.1.3 Bad recipient address syntax")
		return
	}
	r := cleanup.Recipient{Address: addr}
	if reply := ss.rcptParams(&r, params); reply != "" {
		ss.reply(reply)
		return
	}
	if limit := ss.cfg.RecipientLimit; limit > 0 && len(ss.tx.rcpts) >= limit {
		// Postfix counts this as a success, not as a client error.
		ss.reply("452 4.5.3 Error: too many recipients")
		ss.okOverride = true
		return
	}
	if reply := ss.relayRefusal(addr); reply != "" {
		// Postfix logs refusals by policy, not a malformed address.
		if !strings.HasPrefix(reply, "501") {
			ss.s.log("NOQUEUE: reject: RCPT from %s: %s; from=<%s> to=<%s> proto=%s%s",
				ss.origin(), reply, ss.tx.from, addr, ss.protocol(false), ss.heloField())
		}
		ss.tx.refused++
		ss.reply(reply)
		return
	}
	if reply := ss.milterRcpt(addr, params); reply != "" {
		ss.tx.refused++
		ss.reply(reply)
		return
	}
	ss.tx.rcpts = append(ss.tx.rcpts, r)
	ss.reply("250 2.1.5 Ok")
}

// relayRefusal is the one place RCPT and VRFY ask whether this client
// may send to addr: "" to accept, else the reply (see the package
// comment: the relay decision on the resolved address, then the local
// recipient table).
func (ss *session) relayRefusal(addr string) string {
	// Syntax first (trusted: no relay decision yet), then the
	// restriction lists, where the relay decision is (auth.go).
	v := ss.cfg.Rewrite.Check(addr, true)
	if !v.OK {
		return v.Reply()
	}
	if r := ss.checkRestrictions(addr); r != "" {
		return r
	}
	if v.Result.Class != rewrite.Local || ss.cfg.KnownRecipient == nil {
		return ""
	}
	known, err := ss.cfg.KnownRecipient(v.Result.Address)
	switch {
	case err != nil:
		ss.s.warn("%s: local_recipient_maps lookup of %s: %v", ss.origin(), v.Result.Address, err)
		return "451 4.3.0 <" + addr + ">: Temporary lookup failure"
	case !known:
		return "550 5.1.1 <" + addr + ">: Recipient address rejected: User unknown in local recipient table"
	}
	return ""
}

func (ss *session) doRset(args string) {
	if args != "" {
		ss.reply("501 5.5.4 Syntax: RSET")
		return
	}
	ss.resetTransaction()
	ss.reply("250 2.0.0 Ok")
}

func (ss *session) doNoop(string) {
	ss.reply("250 2.0.0 Ok")
}

func (ss *session) doVrfy(args string) {
	if args == "" {
		ss.reply("501 5.5.4 Syntax: VRFY address [SMTPUTF8]")
		return
	}
	arg, _, _ := strings.Cut(args, " ")
	addr, _, perr := parsePath(arg, "")
	if perr != pathOK || addr == "" {
		ss.reply("501 5.1.3 Bad recipient address syntax")
		return
	}
	if reply := ss.relayRefusal(addr); reply != "" {
		ss.s.log("NOQUEUE: reject: VRFY from %s: %s; to=<%s> proto=%s%s", ss.origin(), reply, addr, ss.protocol(false), ss.heloField())
		ss.reply(reply)
		return
	}
	ss.reply("252 2.0.0 " + arg)
}

func (ss *session) doEtrn(args string) {
	switch {
	case ss.tx != nil:
		ss.reply("503 Error: MAIL transaction in progress")
	case args == "":
		ss.reply("500 Syntax: ETRN domain")
	case ss.cfg.FlushSite != nil && flushable(args, ss.cfg.FlushDomains):
		// RFC 1985: the client asks for its queued mail now.
		ss.cfg.FlushSite(strings.TrimSuffix(strings.ToLower(args), "."))
		ss.reply("250 Queuing started")
	default:
		ss.reply("459 <" + args + ">: service unavailable")
	}
}

// flushable reports whether ETRN may flush domain: it is one of
// fast_flush_domains or a subdomain of one, as Postfix matches
// (parent_domain_matches_subdomains lists fast_flush_domains).
func flushable(domain string, list []string) bool {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	for _, d := range list {
		d = strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(d), "."), ".")
		if d != "" && (domain == d || strings.HasSuffix(domain, "."+d)) {
			return true
		}
	}
	return false
}

func (ss *session) doQuit(string) {
	ss.reply("221 2.0.0 Bye")
	ss.closing = true
}

// mailParams applies MAIL's ESMTP parameters to tx; it returns the
// error reply, or "".
func (ss *session) mailParams(tx *transaction, params []string) string {
	var seenBody bool
	for _, p := range params {
		name, value, hasValue := strings.Cut(p, "=")
		switch strings.ToUpper(name) {
		case "SIZE":
			n, err := strconv.ParseUint(value, 10, 63)
			// A repeated SIZE is taken, the last one counting, as Postfix
			// takes it.
			if !hasValue || err != nil && !isRangeErr(err) {
				return "501 5.5.4 Bad message size syntax"
			}
			if err != nil { // larger than any limit
				n = 1<<63 - 1
			}
			tx.size = int64(n)
		case "BODY":
			switch strings.ToUpper(value) {
			case "7BIT":
			case "8BITMIME":
				tx.body8bit = true
			default:
				return "555 5.5.4 Unsupported option: " + p
			}
			if seenBody {
				return "555 5.5.4 Unsupported option: " + p
			}
			seenBody = true
		case "RET":
			if ss.discarded("dsn") {
				return "555 5.5.4 Unsupported option: " + p
			}
			if tx.ret != 0 {
				return "501 5.5.4 Bad RET parameter syntax"
			}
			switch strings.ToUpper(value) {
			case "FULL":
				tx.ret = cleanup.RetFull
			case "HDRS":
				tx.ret = cleanup.RetHdrs
			default:
				return "501 5.5.4 Bad RET parameter syntax"
			}
		case "ENVID":
			if ss.discarded("dsn") {
				return "555 5.5.4 Unsupported option: " + p
			}
			v, ok := decodeXtext(value)
			if !hasValue || tx.envid != "" || !ok || v == "" || len(v) > 100 {
				return "501 5.5.4 Bad ENVID parameter syntax"
			}
			tx.envid = v
		case "SMTPUTF8":
			if hasValue || ss.discarded("smtputf8") {
				return "555 5.5.4 Unsupported option: " + p
			}
			tx.utf8 = true
		case "AUTH":
			// RFC 4954 §5: kept for an authenticated client only, as
			// written, as Postfix keeps it; ignored otherwise.
			if ss.cfg.SASL == nil {
				break // AUTH not enabled: ignored, as before
			}
			if _, ok := decodeXtext(value); !hasValue || !ok && value != "<>" {
				return "501 5.5.4 Bad AUTH parameter syntax"
			}
			if ss.saslUser != "" {
				tx.saslSender = value
			}
		default:
			return "555 5.5.4 Unsupported option: " + p
		}
	}
	return ""
}

func isRangeErr(err error) bool {
	var ne *strconv.NumError
	return errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange)
}

// rcptParams applies RCPT's ESMTP parameters to r; it returns the error
// reply, or "".
func (ss *session) rcptParams(r *cleanup.Recipient, params []string) string {
	seenNotify := false
	for _, p := range params {
		name, value, _ := strings.Cut(p, "=")
		switch strings.ToUpper(name) {
		case "NOTIFY":
			if ss.discarded("dsn") {
				return "555 5.5.4 Unsupported option: " + p
			}
			n, ok := parseNotify(value)
			if !ok || seenNotify {
				ss.s.warn("unknown DSN NOTIFY command value \"%s\" in \"%s\"", value, value)
				return "501 5.5.4 Error: Bad NOTIFY parameter syntax"
			}
			seenNotify, r.Notify = true, n
		case "ORCPT":
			if ss.discarded("dsn") {
				return "555 5.5.4 Unsupported option: " + p
			}
			typ, xt, ok := strings.Cut(value, ";")
			dec, xok := decodeXtext(xt)
			// An empty address ("rfc822;") is accepted, as Postfix does.
			if !ok || r.ORCPT != "" || !xok || len(value) > 500 || !validAddrType(typ) {
				return "501 5.5.4 Error: Bad ORCPT parameter syntax"
			}
			r.ORCPT = strings.ToLower(typ) + ";" + dec
		default:
			return "555 5.5.4 Unsupported option: " + p
		}
	}
	return ""
}

// parseNotify parses NOTIFY's value (RFC 3461 §4.1): NEVER, or a list of
// SUCCESS, FAILURE and DELAY.
func parseNotify(v string) (int, bool) {
	if strings.EqualFold(v, "NEVER") {
		return cleanup.NotifyNever, true
	}
	n := 0
	for _, w := range strings.Split(v, ",") {
		var bit int
		switch strings.ToUpper(w) {
		case "SUCCESS":
			bit = cleanup.NotifySuccess
		case "FAILURE":
			bit = cleanup.NotifyFailure
		case "DELAY":
			bit = cleanup.NotifyDelay
		default:
			return 0, false
		}
		if n&bit != 0 {
			return 0, false
		}
		n |= bit
	}
	return n, true
}

// validAddrType accepts ORCPT's address types: an atom (RFC 3461 §4.2),
// in practice rfc822 or utf-8.
func validAddrType(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// message builds what Submit needs from the transaction.
func (ss *session) message() *cleanup.Message {
	tx := ss.tx
	server, _ := netip.ParseAddr(ss.serverAddr)
	proto := ss.protocol(tx.utf8)
	if ss.saslUser != "" {
		// The Received: header shows authentication: ESMTPA, ESMTPSA.
		if proto == "SMTP" {
			proto = "ESMTP"
		}
		proto += "A"
	}
	m := &cleanup.Message{
		Sender:     tx.from,
		Recipients: tx.rcpts,
		Received: cleanup.ReceivedInfo{
			SASLMethod:   ss.saslMethod,
			SASLUsername: ss.saslUser,
			SASLSender:   tx.saslSender,
			Protocol:     proto,
			Helo:         ss.helo,
			ClientName:   ss.name,
			ReverseName:  ss.rev,
			ClientAddr:   ss.addrString(),
			ClientPort:   ss.port,
			ServerAddr:   ss.serverAddr,
			ServerPort:   ss.serverPort,
		},
		EnvID:       tx.envid,
		Ret:         tx.ret,
		SMTPUTF8:    tx.utf8,
		KeepHeaders: !ss.cfg.LocalHeaderRewrite(ss.addr, server),
		Started: func(id string) {
			ss.s.log("%s: client=%s%s", id, ss.origin(), ss.saslLogFields())
		},
		Filter: ss.milterFilter(tx),
	}
	if tx.body8bit {
		m.Attrs = append(m.Attrs, spool.Attr{Name: "encoding", Value: "8bit"})
	}
	return m
}

// Replies for Submit's failures, with Postfix's texts.
const (
	replyTooBig     = "552 5.3.4 Error: message file too big"
	replyQueueWrite = "451 4.3.0 Error: queue file write error"
	replyNoRcpt     = "554 5.5.1 Error: no valid recipients"
	replyInternal   = "451 4.3.0 Error: internal error"
	replyShutdown   = "421 4.3.0 Error: server shutting down"
)

// replyFor maps a Submit failure to Postfix's reply, and logs what the
// client will not see.
func (ss *session) replyFor(err error) string {
	switch {
	case errors.Is(err, cleanup.ErrTooBig), errors.Is(err, errTooBig):
		ss.s.log("NOQUEUE: reject: %s from %s: 552 5.3.4 message file too big; from=<%s> proto=%s%s",
			ss.lastCmd, ss.origin(), ss.tx.from, ss.protocol(false), ss.heloField())
		return replyTooBig
	case errors.Is(err, cleanup.ErrQueueWrite):
		ss.s.warn("%s: %v", ss.origin(), err)
		return replyQueueWrite
	case errors.Is(err, cleanup.ErrNoRecipients):
		return replyNoRcpt
	}
	// A milter refused the message; the filter logged it.
	if fr := (*cleanup.FilterRejectError)(nil); errors.As(err, &fr) {
		return fr.Reply
	}
	// cleanup refused the message itself (too many hops) and logged why.
	if rej := (*cleanup.Reject)(nil); errors.As(err, &rej) {
		return rej.Reply()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return replyShutdown
	}
	ss.s.warn("%s: %v", ss.origin(), err)
	return replyInternal
}

// looksLikeHeader reports whether a command word is a message header's
// start ("Subject:", "MAILFROM:<a@b>"): a client that sends one is
// pouring a message into the command stream, and Postfix hangs up on it.
func looksLikeHeader(word string) bool {
	i := strings.IndexByte(word, ':')
	if i <= 0 {
		return false
	}
	for _, c := range []byte(word[:i]) {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
