package milter

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	gm "github.com/d--j/go-milter"

	"sluice/internal/cleanup"
)

// Result is what an SMTP event gets from the milters.
type Result struct {
	// Reply, when set, refuses the command with this SMTP reply.
	Reply string
	// Discard: the message is to be accepted and thrown away.
	Discard bool
	// Milter names the milter that decided, for the log.
	Milter string
}

// Refused reports whether the command is refused.
func (r Result) Refused() bool { return r.Reply != "" }

// ConnInfo describes the SMTP client, for the connect event and macros.
type ConnInfo struct {
	ClientName string // verified name or "unknown"
	ClientPTR  string // reverse name or "unknown"
	ClientAddr netip.Addr
	ClientPort int
	ServerAddr netip.Addr
	ServerPort int
}

// Session is the milters of one SMTP connection (or one local
// submission). It is not safe for concurrent use.
type Session struct {
	cfg    *Config
	links  []*link
	macros *gm.MacroBag
	helo   string
}

// link is one milter's connection.
type link struct {
	spec   Spec
	conn   *stageConn
	cs     *gm.ClientSession
	failed bool // broke: default_action from now on
	// accepted: the milter accepted the connection; it hears nothing more.
	accepted bool
	// msgAccepted: it accepted this message; nothing more until the next.
	msgAccepted bool
	heloSent    bool
	inTx        bool // MAIL was sent and the transaction not ended
	quarantine  bool // failed with default_action=quarantine
}

// New connects to every configured milter and sends the connect event.
// A refusal (Result.Refused) holds for the whole session, as Postfix
// answers every later command with it.
func New(cfg *Config, ci ConnInfo) (*Session, Result) {
	s := &Session{cfg: cfg, macros: gm.NewMacroBag()}
	s.setConnMacros(ci)
	for _, sp := range cfg.Milters {
		l := &link{spec: sp}
		s.links = append(s.links, l)
		if err := s.open(l); err != nil {
			s.fail(l, err, true)
		}
	}
	family, addr := gm.FamilyInet, ci.ClientAddr.String()
	if ci.ClientAddr.Is6() {
		family = gm.FamilyInet6
	}
	if !ci.ClientAddr.IsValid() {
		family, addr = gm.FamilyUnknown, ""
	}
	return s, s.each(false, func(l *link) (*gm.Action, error) {
		return l.cs.Conn(ci.ClientName, family, uint16(ci.ClientPort), addr)
	}, true)
}

func (s *Session) setConnMacros(ci ConnInfo) {
	m := s.macros
	m.Set("j", s.cfg.MyHostname)
	m.Set("{daemon_name}", s.cfg.DaemonName)
	if s.cfg.Version != "" {
		m.Set("v", s.cfg.Version)
	}
	if ci.ClientAddr.IsValid() {
		m.Set("{client_addr}", ci.ClientAddr.String())
		m.Set("{client_port}", strconv.Itoa(ci.ClientPort))
		m.Set("_", ci.ClientName+" ["+ci.ClientAddr.String()+"]")
	}
	m.Set("{client_name}", orUnknown(ci.ClientName))
	m.Set("{client_ptr}", orUnknown(ci.ClientPTR))
	if ci.ServerAddr.IsValid() {
		m.Set("{daemon_addr}", ci.ServerAddr.String())
		m.Set("{daemon_port}", strconv.Itoa(ci.ServerPort))
		m.Set("{if_addr}", ci.ServerAddr.String())
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// open dials and negotiates, within the connect timeout.
func (s *Session) open(l *link) error {
	dial := s.cfg.Dial
	if dial == nil {
		dial = func(network, addr string, timeout time.Duration) (net.Conn, error) {
			return (&net.Dialer{Timeout: timeout}).Dial(network, addr)
		}
	}
	c, err := dial(l.spec.Network, l.spec.Addr, l.spec.ConnectTimeout)
	if err != nil {
		return &connectError{err}
	}
	l.conn = &stageConn{Conn: c, timeout: l.spec.ConnectTimeout}
	stages := []struct {
		stage  gm.MacroStage
		macros []string
	}{
		{gm.StageConnect, s.cfg.ConnectMacros}, {gm.StageHelo, s.cfg.HeloMacros},
		{gm.StageMail, s.cfg.MailMacros}, {gm.StageRcpt, s.cfg.RcptMacros},
		{gm.StageData, s.cfg.DataMacros}, {gm.StageEOH, s.cfg.EOHMacros},
		{gm.StageEOM, s.cfg.EOMMacros},
	}
	opts := []gm.Option{
		gm.WithDialer(fixedDialer{l.conn}),
		gm.WithMaximumVersion(uint32(l.spec.Protocol)),
		gm.WithActions(gm.AllClientSupportedActionMasks),
		// The stage's own limit is applied by stageConn; these only make
		// the library set a deadline at all.
		gm.WithReadTimeout(time.Second), gm.WithWriteTimeout(time.Second),
		gm.WithoutDefaultMacros(),
	}
	for _, st := range stages {
		opts = append(opts, gm.WithMacroRequest(st.stage, st.macros))
	}
	cs, err := gm.NewClient(l.spec.Network, l.spec.Addr, opts...).Session(s.macros)
	if err != nil {
		c.Close()
		return err
	}
	l.cs = cs
	l.conn.timeout = l.spec.CommandTimeout
	return nil
}

// connectError is a failure to reach the milter at all.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }

// fail takes a milter out after an error and says what its default
// action makes of the event.
func (s *Session) fail(l *link, err error, connecting bool) {
	l.failed = true
	if l.cs != nil {
		l.cs.Close()
	}
	if ce := (*connectError)(nil); errors.As(err, &ce) {
		s.warn("connect to Milter service %s: %s", l.spec.Name, describe(ce.err))
	} else {
		s.warn("milter %s: %s", l.spec.Name, describe(err))
	}
	if l.spec.DefaultAction == ActionQuarantine {
		l.quarantine = true
	}
}

// describe renders an error as Postfix's %m would, where it can.
func describe(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ENOENT):
		return "No such file or directory"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "Connection refused"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "error: " + err.Error() + " (timeout)"
	}
	return err.Error()
}

// defaultReply is what a failed milter answers to every event.
func (l *link) defaultReply() string {
	switch l.spec.DefaultAction {
	case ActionReject:
		return ReplyDefaultRejct
	case ActionTempfail:
		return ReplyTempfail
	}
	return ""
}

func (s *Session) warn(format string, args ...any) {
	if s.cfg.Warn != nil {
		s.cfg.Warn(format, args...)
	}
}

// each sends one event to every milter still listening, in order, and
// returns the first refusal. msg says the event belongs to a message
// (an accept then ends only that message for the milter).
func (s *Session) each(msg bool, event func(l *link) (*gm.Action, error), connect bool) Result {
	for _, l := range s.links {
		if l.failed {
			if r := l.defaultReply(); r != "" {
				return Result{Reply: r, Milter: l.spec.Name}
			}
			continue
		}
		if l.accepted || l.msgAccepted {
			continue
		}
		act, err := event(l)
		if err != nil {
			s.fail(l, err, connect)
			if r := l.defaultReply(); r != "" {
				return Result{Reply: r, Milter: l.spec.Name}
			}
			continue
		}
		switch act.Type {
		case gm.ActionAccept:
			if msg {
				l.msgAccepted = true
			} else {
				l.accepted = true
			}
		case gm.ActionReject, gm.ActionTempFail, gm.ActionRejectWithCode:
			return Result{Reply: act.SMTPReply, Milter: l.spec.Name}
		case gm.ActionDiscard:
			if msg {
				return Result{Discard: true, Milter: l.spec.Name}
			}
		}
	}
	return Result{}
}

// Helo sends HELO/EHLO.
func (s *Session) Helo(name string, tlsVersion string) Result {
	s.helo = name
	if tlsVersion != "" {
		s.macros.Set("{tls_version}", tlsVersion)
	}
	return s.each(false, func(l *link) (*gm.Action, error) {
		l.heloSent = true
		return l.cs.Helo(name)
	}, false)
}

// AuthInfo is the SASL login, for the {auth_*} macros.
type AuthInfo struct{ Type, User string }

// Mail sends MAIL FROM; from is the address without brackets.
func (s *Session) Mail(from string, args []string, auth AuthInfo) Result {
	s.EndTransaction()
	s.macros.Set("{mail_addr}", from)
	if auth.User != "" {
		s.macros.Set("{auth_type}", auth.Type)
		s.macros.Set("{auth_authen}", auth.User)
	}
	for _, l := range s.links {
		l.msgAccepted = false
	}
	return s.each(true, func(l *link) (*gm.Action, error) {
		if !l.heloSent {
			// MAIL without HELO: the milter still needs one.
			l.heloSent = true
			if act, err := l.cs.Helo(s.helo); err != nil || act.Type != gm.ActionContinue {
				return act, err
			}
		}
		l.inTx = true
		return l.cs.Mail("<"+from+">", strings.Join(args, " "))
	}, false)
}

// Rcpt sends RCPT TO; a refusal refuses that recipient only.
func (s *Session) Rcpt(to string, args []string) Result {
	s.macros.Set("{rcpt_addr}", to)
	return s.each(true, func(l *link) (*gm.Action, error) {
		return l.cs.Rcpt("<"+to+">", strings.Join(args, " "))
	}, false)
}

// Data sends the DATA command event.
func (s *Session) Data() Result {
	return s.each(true, func(l *link) (*gm.Action, error) {
		return l.cs.DataStart()
	}, false)
}

// EndTransaction tells the milters that heard MAIL that the transaction
// is over without an end of message (RSET, a refusal, a new MAIL).
func (s *Session) EndTransaction() {
	for _, l := range s.links {
		if l.inTx && !l.failed {
			if err := l.cs.Abort(nil); err != nil {
				s.fail(l, err, false)
			}
		}
		l.inTx = false
	}
	s.macros.Set("{rcpt_addr}", "")
}

// Close sends QUIT and closes every milter connection.
func (s *Session) Close() {
	for _, l := range s.links {
		if l.cs != nil && !l.failed {
			l.cs.Close()
		}
	}
}

// MessageLog is what the log lines of the end of a message name.
type MessageLog struct {
	Origin string // "host[addr]"
	Proto  string // ESMTP, SMTP, ...
	Helo   string
	// Log writes a mail log line (without the queue ID).
	Log func(format string, args ...any)
}

// Filter adapts a Session to cleanup's filter stage for one message.
type Filter struct {
	S   *Session
	Log MessageLog
}

// Filter runs the end-of-message stage: headers, body and end of message
// to each milter in turn, each seeing the edits of those before it; the
// modification requests are applied to c.
func (f *Filter) Filter(ctx context.Context, c *cleanup.Content) (cleanup.Verdict, error) {
	s := f.S
	s.macros.Set("i", c.QueueID)
	hold := ""
	for _, l := range s.links {
		if l.quarantine && hold == "" {
			hold = "milter default action"
		}
	}
	for _, l := range s.links {
		if l.failed {
			if r := l.defaultReply(); r != "" {
				return f.reject(c, r), nil
			}
			continue
		}
		if l.accepted || l.msgAccepted || !l.inTx {
			continue
		}
		l.conn.timeout = l.spec.ContentTimeout
		acts, act, err := s.message(l, c)
		l.conn.timeout = l.spec.CommandTimeout
		if err != nil {
			s.fail(l, err, false)
			if l.quarantine && hold == "" {
				hold = "milter default action"
			}
			if r := l.defaultReply(); r != "" {
				return f.reject(c, r), nil
			}
			continue
		}
		l.inTx = false
		if act != nil {
			switch act.Type {
			case gm.ActionReject, gm.ActionTempFail, gm.ActionRejectWithCode:
				return f.reject(c, act.SMTPReply), nil
			case gm.ActionDiscard:
				f.log(c, "milter-discard", "milter triggers DISCARD action")
				return cleanup.Verdict{Action: cleanup.FilterDiscard}, nil
			}
		}
		if reason := f.apply(l, c, acts); reason != "" && hold == "" {
			hold = reason
		}
	}
	if hold != "" {
		f.log(c, "milter-hold", "milter triggers HOLD action")
		return cleanup.Verdict{Action: cleanup.FilterHold}, nil
	}
	return cleanup.Verdict{Action: cleanup.FilterAccept}, nil
}

func (f *Filter) reject(c *cleanup.Content, reply string) cleanup.Verdict {
	code, text, _ := strings.Cut(reply, " ")
	_ = code
	f.log(c, "milter-reject", text)
	return cleanup.Verdict{Action: cleanup.FilterReject, Reply: reply}
}

// log writes Postfix's "ID: milter-reject: END-OF-MESSAGE from ..." line.
func (f *Filter) log(c *cleanup.Content, what, text string) {
	if f.Log.Log == nil {
		return
	}
	var to string
	if len(c.Recipients) > 0 {
		to = " to=<" + c.Recipients[0].Address + ">"
	}
	helo := ""
	if f.Log.Helo != "" {
		helo = " helo=<" + f.Log.Helo + ">"
	}
	f.Log.Log("%s: %s: END-OF-MESSAGE from %s: %s; from=<%s>%s proto=%s%s",
		c.QueueID, what, f.Log.Origin, text, c.Sender, to, f.Log.Proto, helo)
}

// message sends the content of c to one milter.
func (s *Session) message(l *link, c *cleanup.Content) ([]gm.ModifyAction, *gm.Action, error) {
	lead := l.cs.ProtocolOption(gm.OptHeaderLeadingSpace)
	for _, h := range c.Headers() {
		v := h.Value()
		if lead {
			v = h.Raw[len(h.Name)+1:]
		}
		act, err := l.cs.HeaderField(h.Name, v, nil)
		if err != nil {
			return nil, nil, err
		}
		if act.Type != gm.ActionContinue {
			return nil, act, nil
		}
	}
	act, err := l.cs.HeaderEnd()
	if err != nil || act.Type != gm.ActionContinue {
		return nil, act, err
	}
	return l.cs.BodyReadFrom(c.Body())
}

// apply applies one milter's modification requests; it returns the
// quarantine reason, if any.
func (f *Filter) apply(l *link, c *cleanup.Content, acts []gm.ModifyAction) string {
	hold := ""
	var body *bytes.Buffer
	for _, a := range acts {
		switch a.Type {
		case gm.ActionAddHeader:
			c.AddHeader(a.HeaderName, a.HeaderValue)
		case gm.ActionInsertHeader:
			c.InsertHeader(int(a.HeaderIndex), a.HeaderName, a.HeaderValue)
		case gm.ActionChangeHeader:
			c.ChangeHeader(int(a.HeaderIndex), a.HeaderName, a.HeaderValue)
		case gm.ActionReplaceBody:
			if body == nil {
				body = new(bytes.Buffer)
			}
			body.Write(a.Body)
		case gm.ActionChangeFrom:
			if a.FromArgs != "" {
				f.S.warn("%s: cleanup_chg_from: ignoring ESMTP arguments \"%.100s\"", c.QueueID, a.FromArgs)
			}
			c.ChangeSender(unbracket(a.From))
		case gm.ActionAddRcpt:
			if a.RcptArgs != "" {
				f.S.warn("%s: cleanup_add_rcpt: ignoring ESMTP arguments \"%.100s\"", c.QueueID, a.RcptArgs)
			}
			if r := unbracket(a.Rcpt); r != "" {
				c.AddRecipient(r)
			} else {
				f.S.warn("%s: ignoring attempt from Milter to add null recipient", c.QueueID)
			}
		case gm.ActionDelRcpt:
			c.DeleteRecipient(unbracket(a.Rcpt))
		case gm.ActionQuarantine:
			if hold == "" {
				hold = a.Reason
				if hold == "" {
					hold = "quarantine"
				}
			}
		}
	}
	if body != nil {
		c.SetBody(body.Bytes())
	}
	return hold
}

// unbracket turns "<a@b>" into "a@b".
func unbracket(a string) string {
	a = strings.TrimSpace(a)
	if strings.HasPrefix(a, "<") && strings.HasSuffix(a, ">") {
		a = a[1 : len(a)-1]
	}
	return a
}

// stageConn applies the current stage's time limit to every read and
// write, whatever deadline the protocol library asks for.
type stageConn struct {
	net.Conn
	timeout time.Duration
}

func (c *stageConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		t = time.Now().Add(c.timeout)
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *stageConn) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() {
		t = time.Now().Add(c.timeout)
	}
	return c.Conn.SetWriteDeadline(t)
}

// fixedDialer hands the library the connection we already made.
type fixedDialer struct{ c net.Conn }

func (d fixedDialer) Dial(string, string) (net.Conn, error) { return d.c, nil }
