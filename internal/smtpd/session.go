package smtpd

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"

	gosmtp "github.com/emersion/go-smtp"

	"sluice/internal/cleanup"
	"sluice/internal/spool"
)

// session is one client's mail transaction state.
type session struct {
	s    *Server
	cc   *clientConn
	conn *gosmtp.Conn

	from     string
	mailOpts *gosmtp.MailOptions
	rcpts    []cleanup.Recipient
}

// Replies with Postfix's texts and codes.
var (
	errTooBig     = &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 3, 4}, Message: "Error: message file too big"}
	errQueueWrite = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Error: queue file write error"}
	errNoRcpt     = &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 5, 1}, Message: "Error: no valid recipients"}
	errInternal   = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Error: internal error"}
	errShutdown   = &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Error: server shutting down"}
)

func (ss *session) Reset() {
	ss.from, ss.mailOpts, ss.rcpts = "", nil, nil
}

func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, opts *gosmtp.MailOptions) error {
	ss.Reset()
	ss.from, ss.mailOpts = from, opts
	ss.cc.countTLS("mail", true)
	return nil
}

func (ss *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	if err := ss.checkRelay(to); err != nil {
		ss.cc.countTLS("rcpt", false)
		return err
	}
	r := cleanup.Recipient{Address: to}
	if opts != nil {
		if opts.OriginalRecipient != "" {
			t := strings.ToLower(string(opts.OriginalRecipientType))
			if t == "" {
				t = "rfc822"
			}
			r.ORCPT = t + ";" + opts.OriginalRecipient
		}
		for _, n := range opts.Notify {
			switch n {
			case gosmtp.DSNNotifyNever:
				r.Notify |= cleanup.NotifyNever
			case gosmtp.DSNNotifySuccess:
				r.Notify |= cleanup.NotifySuccess
			case gosmtp.DSNNotifyFailure:
				r.Notify |= cleanup.NotifyFailure
			case gosmtp.DSNNotifyDelayed:
				r.Notify |= cleanup.NotifyDelay
			}
		}
	}
	ss.rcpts = append(ss.rcpts, r)
	ss.cc.countTLS("rcpt", true)
	return nil
}

// checkRelay refuses recipients this server may not relay to for this
// client (see the package comment).
func (ss *session) checkRelay(to string) error {
	if inNetworks(ss.cc.addr, ss.s.cfg.MyNetworks) {
		return nil
	}
	d := domainOf(to)
	if d == "" {
		d = strings.ToLower(ss.s.cfg.MyOrigin)
	}
	if ss.s.mydest.match(d) || ss.s.relay.match(d) {
		return nil
	}
	reply := &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "<" + to + ">: Relay access denied"}
	ss.s.log("NOQUEUE: reject: RCPT from %s: 554 5.7.1 <%s>: Relay access denied; from=<%s> to=<%s> proto=%s helo=<%s>",
		ss.cc.origin(), to, ss.from, to, ss.cc.protocol(false), ss.conn.Hostname())
	return reply
}

func (ss *session) Data(r io.Reader) error {
	id, err := ss.data(r)
	ss.cc.countTLS("data", err == nil)
	if err != nil {
		return err
	}
	// Not an error: go-smtp sends an SMTPError's code and text as the
	// reply, and this is how the reply names the queue ID.
	return &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

func (ss *session) data(r io.Reader) (string, error) {
	if len(ss.rcpts) == 0 {
		return "", errNoRcpt
	}
	opts := ss.mailOpts
	if opts == nil {
		opts = &gosmtp.MailOptions{}
	}
	cc := ss.cc
	server, _ := netip.ParseAddr(cc.serverAddr)
	m := &cleanup.Message{
		Sender:     ss.from,
		Recipients: ss.rcpts,
		Received: cleanup.ReceivedInfo{
			Protocol:    cc.protocol(opts.UTF8),
			Helo:        ss.conn.Hostname(),
			ClientName:  cc.name,
			ReverseName: cc.rev,
			ClientAddr:  cc.addrString(),
			ClientPort:  cc.port,
			ServerAddr:  cc.serverAddr,
			ServerPort:  cc.serverPort,
		},
		EnvID:       opts.EnvelopeID,
		SMTPUTF8:    opts.UTF8,
		KeepHeaders: !ss.s.cfg.LocalHeaderRewrite(cc.addr, server),
		Started: func(id string) {
			ss.s.log("%s: client=%s", id, cc.origin())
		},
	}
	switch opts.Return {
	case gosmtp.DSNReturnFull:
		m.Ret = cleanup.RetFull
	case gosmtp.DSNReturnHeaders:
		m.Ret = cleanup.RetHdrs
	}
	if opts.Body == gosmtp.Body8BitMIME {
		m.Attrs = append(m.Attrs, spool.Attr{Name: "encoding", Value: "8bit"})
	}
	id, err := ss.s.cfg.Submit(context.Background(), m, r)
	if err != nil {
		return "", ss.replyFor(err)
	}
	return id, nil
}

// replyFor maps a cleanup failure to Postfix's reply, and logs what the
// client will not see.
func (ss *session) replyFor(err error) error {
	switch {
	case errors.Is(err, cleanup.ErrTooBig), errors.Is(err, gosmtp.ErrDataTooLarge):
		ss.s.log("NOQUEUE: reject: DATA from %s: 552 5.3.4 message file too big; from=<%s> proto=%s helo=<%s>",
			ss.cc.origin(), ss.from, ss.cc.protocol(false), ss.conn.Hostname())
		return errTooBig
	case errors.Is(err, cleanup.ErrQueueWrite):
		ss.s.cfg.Log.Warn(ss.s.cfg.Service, "%s: %v", ss.cc.origin(), err)
		return errQueueWrite
	case errors.Is(err, cleanup.ErrNoRecipients):
		return errNoRcpt
	case errors.Is(err, context.Canceled):
		return errShutdown
	}
	ss.s.cfg.Log.Warn(ss.s.cfg.Service, "%s: %v", ss.cc.origin(), err)
	return errInternal
}
