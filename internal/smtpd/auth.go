package smtpd

// SMTP AUTH (RFC 4954) through Dovecot, the restriction lists that use
// it, and smtpd_sender_login_maps. Replies, log lines and their order are
// Postfix 3.7's with smtpd_sasl_type = dovecot, checked against a running
// Postfix and Dovecot:
//
//   - AUTH is offered in the EHLO reply (after STARTTLS) with the
//     mechanisms Dovecot offers (package sasl filters them); not before
//     TLS when smtpd_tls_auth_only = yes or smtpd_tls_security_level =
//     encrypt. Refused while not offered: "503 5.5.1 Error:
//     authentication not enabled".
//   - smtpd_client_auth_rate_limit counts every AUTH command per client
//     address and anvil_rate_time_unit (clients in
//     smtpd_client_event_limit_exceptions are exempt): past it "450 4.7.1
//     Error: too many AUTH commands from ADDR" and "warning: AUTH command
//     rate limit exceeded: N from name[addr] for service SERVICE".
//   - During a mail transaction: "503 5.5.1 Error: MAIL transaction in
//     progress"; a second AUTH: "503 5.5.1 Error: already authenticated";
//     not one or two arguments: "501 5.5.4 Syntax: AUTH mechanism".
//   - A mechanism not offered, base64 that does not decode, and a refused
//     password are "535 5.7.8 Error: authentication failed: REASON"
//     (Invalid authentication mechanism / Invalid base64 data in initial
//     response / Invalid base64 data in continued response / Dovecot's
//     reason, "(reason unavailable)" when it gives none), logged "warning:
//     name[addr]: SASL MECH authentication failed: REASON,
//     sasl_username=USER" (or "(unavailable)"). Each counts as an error,
//     so smtpd_soft_error_limit's sleep and smtpd_hard_error_limit's
//     disconnect apply to password guessing too.
//   - "*" as a response cancels: "501 5.7.0 Authentication aborted",
//     logged "warning: name[addr]: SASL MECH authentication aborted".
//   - An initial response of "=" is the empty response; challenges go
//     out as "334 BASE64" ("334 " for an empty one).
//   - Dovecot down or a temporary failure: "454 4.7.0 Temporary
//     authentication failure: REASON".
//   - Success: "235 2.7.0 Authentication successful". The session then
//     counts as authenticated for permit_sasl_authenticated; the queue
//     file gets sasl_method, sasl_username and (with MAIL FROM's AUTH=,
//     kept as the client wrote it, xtext and all) sasl_sender, after
//     rewrite_context; the log's "ID: client=name[addr], sasl_method=M,
//     sasl_username=U[, sasl_sender=S]"; the Received: header's protocol
//     gains "A" (ESMTPA, ESMTPSA).
//
// # Restrictions
//
// Recipients are checked at RCPT (as Postfix with smtpd_delay_reject =
// yes) against smtpd_client_restrictions, smtpd_sender_restrictions,
// smtpd_relay_restrictions and smtpd_recipient_restrictions, in that
// order; in each list the first item that decides ends the list: permit
// goes on to the next list, a refusal ends the check. Items:
// permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
// (the relay decision of internal/rewrite: "554 5.7.1 <rcpt>: Relay
// access denied"), defer_unauth_destination (the same with 454 4.7.1),
// reject_sender_login_mismatch (= reject_authenticated_ and
// reject_unauthenticated_sender_login_mismatch), permit, reject ("554
// 5.7.1 <name[addr]>: Client host rejected: Access denied", "<sender>:
// Sender address rejected", "<rcpt>: Recipient address rejected") and
// defer (the same with 450 4.7.1). smtpd_relay_restrictions defaults to
// permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
// (Postfix's default ends in defer_unauth_destination; sluice kept its
// permanent refusal).
//
// A sender login mismatch: an authenticated client whose sender is not
// owned by its login in smtpd_sender_login_maps (or not listed at all)
// gets "553 5.7.1 <sender>: Sender address rejected: not owned by user
// U"; an unauthenticated one whose sender is listed gets "553 5.7.1
// <sender>: Sender address rejected: not logged in". The null sender is
// never checked.

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"sluice/internal/rewrite"
	"sluice/internal/sasl"
)

// SASL configures AUTH; nil in Config means smtpd_sasl_auth_enable = no.
type SASL struct {
	// Path is smtpd_sasl_path.
	Path string
	// Timeout bounds each wait for Dovecot; 0 means 60 s.
	Timeout time.Duration
	// Dial opens the connection to Dovecot; nil means net.Dialer.
	Dial sasl.Dialer
	// NoAnonymous and NoPlaintext are smtpd_sasl_security_options
	// (noanonymous, noplaintext); TLSNoAnonymous and TLSNoPlaintext
	// smtpd_sasl_tls_security_options, which apply under TLS.
	NoAnonymous, NoPlaintext       bool
	TLSNoAnonymous, TLSNoPlaintext bool
}

// Restriction list names, in the order they are checked.
const (
	listClient    = "smtpd_client_restrictions"
	listSender    = "smtpd_sender_restrictions"
	listRelay     = "smtpd_relay_restrictions"
	listRecipient = "smtpd_recipient_restrictions"
)

// defaultRelayRestrictions is sluice's smtpd_relay_restrictions.
var defaultRelayRestrictions = []string{"permit_mynetworks", "permit_sasl_authenticated", "reject_unauth_destination"}

// knownRestrictions are the restriction names sluice implements.
var knownRestrictions = map[string]bool{
	"permit": true, "reject": true, "defer": true,
	"permit_mynetworks": true, "permit_sasl_authenticated": true,
	"reject_unauth_destination": true, "defer_unauth_destination": true,
	"reject_sender_login_mismatch":                 true,
	"reject_authenticated_sender_login_mismatch":   true,
	"reject_unauthenticated_sender_login_mismatch": true,
}

// CheckRestrictions refuses a restriction list with names sluice does
// not implement: a silently ignored reject would make an open relay.
func CheckRestrictions(name string, list []string) error {
	for _, r := range list {
		if !knownRestrictions[strings.ToLower(r)] {
			return fmt.Errorf("%s: unsupported restriction %q (sluice knows permit, reject, defer, permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, defer_unauth_destination, reject_sender_login_mismatch, reject_authenticated_sender_login_mismatch, reject_unauthenticated_sender_login_mismatch)", name, r)
		}
	}
	return nil
}

// authOffered reports whether AUTH may be used now.
func (ss *session) authOffered() bool {
	if ss.cfg.SASL == nil || ss.discarded("auth") {
		return false
	}
	if !ss.tls && (ss.cfg.TLSAuthOnly || ss.cfg.TLSLevel == "encrypt") {
		return false
	}
	return true
}

// saslConn returns the session's connection to Dovecot, dialling it on
// first use.
func (ss *session) saslConn() (*sasl.Conn, error) {
	if ss.sasl != nil {
		return ss.sasl, nil
	}
	c, err := sasl.Dial(ss.s.ctx, sasl.Config{Path: ss.cfg.SASL.Path, Timeout: ss.cfg.SASL.Timeout, Dial: ss.cfg.SASL.Dial})
	if err != nil {
		return nil, err
	}
	ss.sasl = c
	return c, nil
}

// closeSASL ends the session's connection to Dovecot.
func (ss *session) closeSASL() {
	if ss.sasl != nil {
		ss.sasl.Close()
		ss.sasl = nil
	}
}

// mechanisms are the mechanisms to offer now; nil when Dovecot cannot
// be reached (AUTH is then not offered in this EHLO reply).
func (ss *session) mechanisms() []string {
	c, err := ss.saslConn()
	if err != nil {
		ss.s.warn("%s: SASL: %v", ss.origin(), err)
		return nil
	}
	sc := ss.cfg.SASL
	if ss.tls {
		return c.Mechanisms(!sc.TLSNoAnonymous, !sc.TLSNoPlaintext)
	}
	return c.Mechanisms(!sc.NoAnonymous, !sc.NoPlaintext)
}

// authKeyword is the EHLO reply's AUTH line, "" when AUTH is not offered.
func (ss *session) authKeyword() string {
	if !ss.authOffered() {
		return ""
	}
	m := ss.mechanisms()
	if len(m) == 0 {
		return ""
	}
	return "AUTH " + strings.Join(m, " ")
}

func (ss *session) doAuth(args string) {
	if !ss.authOffered() {
		ss.reply("503 5.5.1 Error: authentication not enabled")
		return
	}
	if n, over := ss.s.authRate.event(ss.addr); over {
		ss.s.warn("AUTH command rate limit exceeded: %d from %s for service %s", n, ss.origin(), ss.serviceName())
		ss.reply("450 4.7.1 Error: too many AUTH commands from " + ss.addrString())
		return
	}
	switch {
	case ss.tx != nil || ss.inBDAT():
		ss.reply("503 5.5.1 Error: MAIL transaction in progress")
		return
	case ss.saslUser != "":
		ss.reply("503 5.5.1 Error: already authenticated")
		return
	}
	f := strings.Fields(args)
	if len(f) < 1 || len(f) > 2 {
		ss.reply("501 5.5.4 Syntax: AUTH mechanism")
		return
	}
	mech := f[0]
	offered := false
	for _, m := range ss.mechanisms() {
		if strings.EqualFold(m, mech) {
			offered = true
		}
	}
	if !offered {
		if ss.sasl == nil {
			ss.authTempFail(mech, "Connection lost to authentication server")
			return
		}
		ss.authFailed(mech, "Invalid authentication mechanism", "")
		return
	}
	var initial []byte
	if len(f) == 2 {
		if f[1] == "=" {
			initial = []byte{}
		} else {
			b, err := base64.StdEncoding.DecodeString(f[1])
			if err != nil {
				ss.authFailed(mech, "Invalid base64 data in initial response", "")
				return
			}
			initial = b
		}
	}
	info := sasl.Info{Service: "smtp", Secured: ss.tls}
	if ss.addr.IsValid() {
		info.RemoteAddr = net.IP(ss.addr.AsSlice())
		info.RemotePort, _ = strconv.Atoi(ss.port)
	}
	if a, err := netip.ParseAddr(ss.serverAddr); err == nil {
		info.LocalAddr = net.IP(a.AsSlice())
		info.LocalPort, _ = strconv.Atoi(ss.serverPort)
	}
	res, err := ss.sasl.Start(strings.ToUpper(mech), initial, info)
	for err == nil && res.Status == sasl.Continue {
		ss.reply("334 " + base64.StdEncoding.EncodeToString(res.Challenge))
		line, _, rerr := ss.readLine()
		if rerr != nil {
			ss.closeSASL()
			ss.readFailed(rerr, "")
			return
		}
		resp := strings.TrimSpace(string(line))
		if resp == "*" {
			// Dovecot's protocol has no cancel: drop the exchange with
			// its connection.
			ss.closeSASL()
			ss.s.warn("%s: SASL %s authentication aborted", ss.origin(), mech)
			ss.reply("501 5.7.0 Authentication aborted")
			return
		}
		b, derr := base64.StdEncoding.DecodeString(resp)
		if derr != nil {
			ss.closeSASL()
			ss.authFailed(mech, "Invalid base64 data in continued response", "")
			return
		}
		res, err = ss.sasl.Continue(b)
	}
	if err != nil {
		ss.closeSASL()
		ss.s.warn("%s: SASL %s: %v", ss.origin(), mech, err)
		ss.authTempFail(mech, "Connection lost to authentication server")
		return
	}
	switch {
	case res.Status == sasl.OK:
		ss.saslMethod, ss.saslUser = strings.ToUpper(mech), res.User
		ss.reply("235 2.7.0 Authentication successful")
	case res.Temp:
		ss.authTempFail(mech, orText(res.Reason, "(reason unavailable)"))
	default:
		ss.authFailed(mech, orText(res.Reason, "(reason unavailable)"), res.User)
	}
}

// authFailed refuses an authentication for good, and logs it.
func (ss *session) authFailed(mech, reason, user string) {
	ss.s.warn("%s: SASL %s authentication failed: %s, sasl_username=%s", ss.origin(), mech, reason, orText(user, "(unavailable)"))
	ss.reply("535 5.7.8 Error: authentication failed: " + reason)
}

// authTempFail refuses an authentication for now.
func (ss *session) authTempFail(mech, reason string) {
	ss.s.warn("%s: SASL %s authentication failed: %s", ss.origin(), mech, reason)
	ss.reply("454 4.7.0 Temporary authentication failure: " + reason)
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// serviceName is the master.cf-style service name for log lines: smtp,
// submission, smtps.
func (ss *session) serviceName() string {
	if name, _, ok := strings.Cut(ss.cfg.Service, "/"); ok {
		return name
	}
	return "smtp"
}

// saslLogFields are the "client=" line's SASL fields.
func (ss *session) saslLogFields() string {
	if ss.saslUser == "" {
		return ""
	}
	s := ", sasl_method=" + ss.saslMethod + ", sasl_username=" + ss.saslUser
	if ss.tx != nil && ss.tx.saslSender != "" {
		s += ", sasl_sender=" + ss.tx.saslSender
	}
	return s
}

// checkRestrictions runs the restriction lists for a recipient (see
// the comment at the top); "" means accepted.
func (ss *session) checkRestrictions(rcpt string) string {
	relay := ss.cfg.RelayRestrictions
	if relay == nil {
		relay = defaultRelayRestrictions
	}
	lists := []struct {
		name  string
		items []string
	}{
		{listClient, ss.cfg.ClientRestrictions},
		{listSender, ss.cfg.SenderRestrictions},
		{listRelay, relay},
		{listRecipient, ss.cfg.RecipientRestrictions},
	}
	for _, l := range lists {
		for _, item := range l.items {
			permit, reply := ss.restriction(l.name, strings.ToLower(item), rcpt)
			if reply != "" {
				return reply
			}
			if permit {
				break
			}
		}
	}
	return ""
}

// restriction evaluates one item: permit ends its list, a reply refuses,
// neither goes on.
func (ss *session) restriction(list, item, rcpt string) (permit bool, reply string) {
	switch item {
	case "permit":
		return true, ""
	case "reject", "defer":
		code := "554 5.7.1 "
		if item == "defer" {
			code = "450 4.7.1 "
		}
		switch list {
		case listClient:
			return false, code + "<" + ss.origin() + ">: Client host rejected: Access denied"
		case listSender:
			if ss.tx == nil {
				return false, ""
			}
			return false, code + "<" + ss.tx.from + ">: Sender address rejected: Access denied"
		}
		return false, code + "<" + rcpt + ">: Recipient address rejected: Access denied"
	case "permit_mynetworks":
		return inNetworks(ss.addr, ss.cfg.MyNetworks), ""
	case "permit_sasl_authenticated":
		return ss.saslUser != "", ""
	case "reject_unauth_destination", "defer_unauth_destination":
		v := ss.cfg.Rewrite.Check(rcpt, false)
		if v.OK || v.Code == rewrite.CodeBadSyntax {
			return false, ""
		}
		if item == "defer_unauth_destination" {
			return false, "454 4.7.1 " + v.Text
		}
		return false, v.Reply()
	case "reject_sender_login_mismatch":
		if r := ss.loginMismatch(true, true); r != "" {
			return false, r
		}
	case "reject_authenticated_sender_login_mismatch":
		return false, ss.loginMismatch(true, false)
	case "reject_unauthenticated_sender_login_mismatch":
		return false, ss.loginMismatch(false, true)
	}
	return false, ""
}

// loginMismatch checks the sender against smtpd_sender_login_maps.
func (ss *session) loginMismatch(authenticated, unauthenticated bool) string {
	if ss.tx == nil || ss.tx.from == "" {
		return ""
	}
	from := ss.tx.from
	if ss.saslUser != "" && !authenticated || ss.saslUser == "" && !unauthenticated {
		return ""
	}
	owners, found, err := ss.senderOwners(from)
	if err != nil {
		ss.s.warn("%s: smtpd_sender_login_maps lookup of %s: %v", ss.origin(), from, err)
		return "451 4.3.0 <" + from + ">: Sender address rejected: Server configuration error"
	}
	if ss.saslUser == "" {
		if found {
			return "553 5.7.1 <" + from + ">: Sender address rejected: not logged in"
		}
		return ""
	}
	for _, o := range owners {
		if strings.EqualFold(o, ss.saslUser) {
			return ""
		}
	}
	return "553 5.7.1 <" + from + ">: Sender address rejected: not owned by user " + ss.saslUser
}

// senderOwners looks a sender up as Postfix looks up an address in a
// table: the address, then its local part when its domain is ours, then
// "@domain".
func (ss *session) senderOwners(from string) ([]string, bool, error) {
	if ss.cfg.SenderLogins == nil {
		return nil, false, nil
	}
	keys := []string{from}
	at := strings.LastIndexByte(from, '@')
	if at >= 0 {
		if ss.cfg.Rewrite.Resolve(from).Class == rewrite.Local {
			keys = append(keys, from[:at])
		}
		keys = append(keys, from[at:])
	}
	for _, k := range keys {
		owners, found, err := ss.cfg.SenderLogins(k)
		if err != nil || found {
			return owners, found, err
		}
	}
	return nil, false, nil
}

// authLimiter is anvil's AUTH counter (smtpd_client_auth_rate_limit):
// a fixed window of RateTimeUnit per client address, as connections.
type authLimiter struct {
	limit      int
	unit       time.Duration
	exceptions []netip.Prefix
	now        func() time.Time

	mu      sync.Mutex
	clients map[netip.Addr]*authWindow
}

type authWindow struct {
	start time.Time
	n     int
}

func newAuthLimiter(limit int, unit time.Duration, exceptions []netip.Prefix, now func() time.Time) *authLimiter {
	if unit <= 0 {
		unit = 60 * time.Second
	}
	return &authLimiter{limit: limit, unit: unit, exceptions: exceptions, now: now, clients: map[netip.Addr]*authWindow{}}
}

// event counts one AUTH command from addr; over says it is past the
// limit.
func (l *authLimiter) event(addr netip.Addr) (n int, over bool) {
	if l.limit <= 0 || !addr.IsValid() || inNetworks(addr, l.exceptions) {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.clients) > 1024 {
		for a, w := range l.clients {
			if now.Sub(w.start) >= l.unit {
				delete(l.clients, a)
			}
		}
	}
	w := l.clients[addr]
	if w == nil || now.Sub(w.start) >= l.unit {
		w = &authWindow{start: now}
		l.clients[addr] = w
	}
	w.n++
	return w.n, w.n > l.limit
}
