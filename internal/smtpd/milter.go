package smtpd

// Milters in the SMTP session (smtpd_milters), as Postfix runs them:
//
//   - CONNECT: after the greeting. A refusal (or a milter that is down,
//     with milter_default_action = tempfail or reject) is answered to
//     every later command but QUIT, RSET and NOOP, as Postfix does.
//   - HELO/EHLO, MAIL, RCPT, DATA: before our own reply; a refusal at
//     RCPT refuses that recipient, at MAIL or DATA the transaction.
//   - The message: cleanup's filter stage (milter.Filter) runs the
//     headers, body and end of message before the queue file is
//     committed and applies the milters' changes to it; a reject comes
//     back as *cleanup.FilterRejectError and its reply is the answer.
//   - A discard at MAIL, RCPT or DATA: the message is acknowledged and
//     thrown away, as at the end of the message.

import (
	"context"
	"net/netip"
	"strconv"

	"sluice/internal/cleanup"
	"sluice/internal/milter"
)

// milterConnect opens the session's milters after the greeting.
func (ss *session) milterConnect() {
	if ss.cfg.Milters == nil || len(ss.cfg.Milters.Milters) == 0 {
		return
	}
	mc := *ss.cfg.Milters
	mc.Warn = ss.s.warn
	server, _ := netip.ParseAddr(ss.serverAddr)
	port, _ := strconv.Atoi(ss.port)
	sport, _ := strconv.Atoi(ss.serverPort)
	ms, r := milter.New(&mc, milter.ConnInfo{
		ClientName: ss.name, ClientPTR: ss.rev, ClientAddr: ss.addr, ClientPort: port,
		ServerAddr: server, ServerPort: sport,
	})
	ss.milters = ms
	if r.Refused() {
		ss.milterReply = r.Reply
		ss.s.log("NOQUEUE: milter-reject: CONNECT from %s: %s; proto=SMTP", ss.origin(), r.Reply)
	}
}

// milterClose ends the milters' session.
func (ss *session) milterClose() {
	if ss.milters != nil {
		ss.milters.Close()
		ss.milters = nil
	}
}

// milterRefusedSession answers a command of a session the milters
// refused at connect; it reports whether it did.
func (ss *session) milterRefusedSession(verb string) bool {
	if ss.milterReply == "" {
		return false
	}
	switch verb {
	case "QUIT", "RSET", "NOOP":
		return false
	}
	ss.reply(ss.milterReply)
	return true
}

// milterHelo returns the milters' refusal of HELO/EHLO, or "".
func (ss *session) milterHelo(name string) string {
	if ss.milters == nil {
		return ""
	}
	r := ss.milters.Helo(name, "")
	if r.Refused() {
		ss.s.log("NOQUEUE: milter-reject: HELO from %s: %s; proto=SMTP helo=<%s>", ss.origin(), r.Reply, name)
	}
	return r.Reply
}

// milterMail returns the milters' refusal of MAIL, or "".
func (ss *session) milterMail(tx *transaction, params []string) string {
	if ss.milters == nil {
		return ""
	}
	r := ss.milters.Mail(tx.from, params, milter.AuthInfo{Type: ss.saslMethod, User: ss.saslUser})
	tx.discard = r.Discard
	if r.Refused() {
		ss.s.log("NOQUEUE: milter-reject: MAIL from %s: %s; from=<%s> proto=%s%s", ss.origin(), r.Reply, tx.from, ss.protocol(false), ss.heloField())
		ss.milters.EndTransaction()
	}
	return r.Reply
}

// milterRcpt returns the milters' refusal of one recipient, or "".
func (ss *session) milterRcpt(addr string, params []string) string {
	if ss.milters == nil {
		return ""
	}
	r := ss.milters.Rcpt(addr, params)
	if r.Discard {
		ss.tx.discard = true
	}
	if r.Refused() {
		ss.s.log("NOQUEUE: milter-reject: RCPT from %s: %s; from=<%s> to=<%s> proto=%s%s", ss.origin(), r.Reply, ss.tx.from, addr, ss.protocol(false), ss.heloField())
	}
	return r.Reply
}

// milterData returns the milters' refusal of DATA, or "".
func (ss *session) milterData() string {
	if ss.milters == nil {
		return ""
	}
	r := ss.milters.Data()
	if r.Discard {
		ss.tx.discard = true
	}
	if r.Refused() {
		ss.s.log("NOQUEUE: milter-reject: DATA from %s: %s; from=<%s> proto=%s%s", ss.origin(), r.Reply, ss.tx.from, ss.protocol(false), ss.heloField())
	}
	return r.Reply
}

// milterEndTransaction tells the milters a transaction ended unfinished.
func (ss *session) milterEndTransaction() {
	if ss.milters != nil {
		ss.milters.EndTransaction()
	}
}

// milterFilter is the message's filter for cleanup, nil without milters.
func (ss *session) milterFilter(tx *transaction) cleanup.Filter {
	if ss.milters == nil {
		return nil
	}
	f := &milter.Filter{S: ss.milters, Log: milter.MessageLog{
		Origin: ss.origin(), Proto: ss.protocol(tx.utf8), Helo: ss.helo,
		Log: ss.s.log,
	}}
	if tx.discard {
		return discardFilter{f}
	}
	return f
}

// discardFilter throws the message away after a discard at MAIL, RCPT or
// DATA (the milters still see it end).
type discardFilter struct{ f *milter.Filter }

func (d discardFilter) Filter(ctx context.Context, c *cleanup.Content) (cleanup.Verdict, error) {
	d.f.S.EndTransaction()
	d.f.Log.Log("%s: milter-discard: END-OF-MESSAGE from %s: milter triggers DISCARD action; from=<%s> proto=%s", c.QueueID, d.f.Log.Origin, c.Sender, d.f.Log.Proto)
	return cleanup.Verdict{Action: cleanup.FilterDiscard}, nil
}
