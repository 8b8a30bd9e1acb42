// Package milter is the MTA side of the Sendmail milter protocol, as
// Postfix speaks it (milter_protocol = 6): smtpd and pickup hand each SMTP
// event and each message to the configured milters and act on their
// answers. The wire protocol is github.com/d--j/go-milter's client; this
// package owns Postfix's semantics on top of it.
//
// # Configuration (Postfix's parameters, defaults and meanings)
//
//   - smtpd_milters, non_smtpd_milters: lists of "unix:/path" or
//     "inet:host:port" (also "local:/path"), separated by commas or white
//     space; an entry may be "{ address, name=value, ... }" to override
//     default_action, connect_timeout, command_timeout, content_timeout
//     or protocol for that milter.
//   - milter_default_action (tempfail): what a milter that cannot be
//     reached, times out or breaks the protocol means. tempfail: every
//     later command of the session (or the message) gets "451 4.7.1
//     Service unavailable - try again later"; reject: "550 5.5.0 Service
//     unavailable"; accept: the milter is left out and mail goes on;
//     quarantine: as accept, but the message is queued to hold/. So
//     nothing is accepted unfiltered unless the operator said so.
//   - milter_connect_timeout (30s), milter_command_timeout (30s, SMTP
//     events), milter_content_timeout (300s, headers, body, end of
//     message).
//   - milter_*_macros: the macros sent at each stage, Postfix's lists; a
//     milter that asks for its own lists at negotiation gets those.
//
// # Answers
//
// At each event every milter that has not accepted is asked in turn:
// continue goes on to the next; accept stops asking that milter (for the
// connection at connect/HELO, for the message after MAIL); reject
// ("550 5.7.1 Command rejected"), tempfail ("451 4.7.1 Service
// unavailable - try again later") and a custom reply code refuse the
// command and stop; discard (at MAIL, RCPT or in the message) accepts the
// message and throws it away. At the end of the message the milters'
// modification requests (headers added, changed, inserted; body
// replaced; recipients added or deleted; sender changed; quarantine) are
// applied to cleanup's Content before the queue file is committed.
package milter

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"sluice/internal/config"
)

// Default actions (milter_default_action).
const (
	ActionTempfail   = "tempfail"
	ActionAccept     = "accept"
	ActionReject     = "reject"
	ActionQuarantine = "quarantine"
)

// Postfix's replies.
const (
	ReplyTempfail     = "451 4.7.1 Service unavailable - try again later"
	ReplyReject       = "550 5.7.1 Command rejected"
	ReplyDefaultRejct = "550 5.5.0 Service unavailable"
)

// Spec is one configured milter.
type Spec struct {
	Name           string // as configured: "inet:127.0.0.1:8891"
	Network, Addr  string // for net.Dial: "tcp", "127.0.0.1:8891"
	DefaultAction  string
	Protocol       int
	ConnectTimeout time.Duration
	CommandTimeout time.Duration
	ContentTimeout time.Duration
}

// Config is what a milter Session needs.
type Config struct {
	Milters []Spec
	// Macros to send at each stage, by stage name: connect, helo, mail,
	// rcpt, data, eoh, eom.
	ConnectMacros, HeloMacros, MailMacros, RcptMacros, DataMacros, EOHMacros, EOMMacros []string
	DaemonName                                                                          string // {daemon_name}
	MyHostname                                                                          string // j
	Version                                                                             string // v
	// Warn logs a warning line (without "warning: ").
	Warn func(format string, args ...any)
	// Dial connects to a milter; nil means net.Dialer with the connect
	// timeout.
	Dial func(network, addr string, timeout time.Duration) (net.Conn, error)
}

// FromConfig reads the milter parameters for list (smtpd_milters or
// non_smtpd_milters).
func FromConfig(c *config.Config, list string) (Config, error) {
	var cfg Config
	defaults := Spec{DefaultAction: strings.ToLower(strings.TrimSpace(c.Get("milter_default_action")))}
	var err error
	if defaults.ConnectTimeout, err = c.Duration("milter_connect_timeout"); err != nil {
		return cfg, err
	}
	if defaults.CommandTimeout, err = c.Duration("milter_command_timeout"); err != nil {
		return cfg, err
	}
	if defaults.ContentTimeout, err = c.Duration("milter_content_timeout"); err != nil {
		return cfg, err
	}
	p, err := c.Int("milter_protocol")
	if err != nil {
		return cfg, err
	}
	defaults.Protocol = int(p)
	if cfg.Milters, err = ParseList(c.Get(list), defaults); err != nil {
		return cfg, fmt.Errorf("%s: %w", list, err)
	}
	cfg.ConnectMacros = c.List("milter_connect_macros")
	cfg.HeloMacros = c.List("milter_helo_macros")
	cfg.MailMacros = c.List("milter_mail_macros")
	cfg.RcptMacros = c.List("milter_rcpt_macros")
	cfg.DataMacros = c.List("milter_data_macros")
	cfg.EOHMacros = c.List("milter_end_of_header_macros")
	cfg.EOMMacros = c.List("milter_end_of_data_macros")
	cfg.DaemonName = c.Get("milter_macro_daemon_name")
	cfg.MyHostname = c.Get("myhostname")
	cfg.Version = strings.TrimSpace(strings.ReplaceAll(c.Get("milter_macro_v"), "$mail_version", ""))
	return cfg, nil
}

// ParseList parses a milter list as Postfix writes it.
func ParseList(s string, defaults Spec) ([]Spec, error) {
	var out []Spec
	for _, item := range splitList(s) {
		sp := defaults
		fields := []string{item}
		if strings.HasPrefix(item, "{") {
			inner := strings.TrimSuffix(strings.TrimPrefix(item, "{"), "}")
			fields = nil
			for _, f := range strings.Split(inner, ",") {
				if f = strings.TrimSpace(f); f != "" {
					fields = append(fields, f)
				}
			}
			if len(fields) == 0 {
				return nil, fmt.Errorf("empty milter entry %q", item)
			}
		}
		if err := sp.setAddress(fields[0]); err != nil {
			return nil, err
		}
		for _, f := range fields[1:] {
			name, value, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("milter %s: bad setting %q (need name=value)", sp.Name, f)
			}
			if err := sp.set(strings.TrimSpace(name), strings.TrimSpace(value)); err != nil {
				return nil, fmt.Errorf("milter %s: %w", sp.Name, err)
			}
		}
		switch sp.DefaultAction {
		case ActionTempfail, ActionAccept, ActionReject, ActionQuarantine:
		default:
			return nil, fmt.Errorf("milter %s: bad default_action %q (tempfail, accept, reject or quarantine)", sp.Name, sp.DefaultAction)
		}
		if sp.Protocol < 2 || sp.Protocol > 6 {
			return nil, fmt.Errorf("milter %s: protocol %d not in 2..6", sp.Name, sp.Protocol)
		}
		out = append(out, sp)
	}
	return out, nil
}

// splitList splits on commas and white space outside braces.
func splitList(s string) []string {
	var out []string
	depth, start := 0, -1
	flush := func(i int) {
		if start >= 0 {
			out = append(out, s[start:i])
			start = -1
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{':
			if depth == 0 {
				flush(i)
				start = i
			}
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				out = append(out, s[start:i+1])
				start = -1
			}
		case depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n'):
			flush(i)
		default:
			if start < 0 {
				start = i
			}
		}
	}
	flush(len(s))
	return out
}

func (sp *Spec) setAddress(a string) error {
	sp.Name = a
	kind, rest, ok := strings.Cut(a, ":")
	if !ok {
		// Postfix takes a bare path as unix:.
		kind, rest = "unix", a
	}
	switch strings.ToLower(kind) {
	case "unix", "local":
		sp.Network, sp.Addr = "unix", rest
	case "inet":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			i := strings.LastIndexByte(rest, ':')
			if i < 0 {
				return fmt.Errorf("milter %s: need inet:host:port", a)
			}
			host, port = strings.Trim(rest[:i], "[]"), rest[i+1:]
		}
		sp.Network, sp.Addr = "tcp", net.JoinHostPort(host, port)
	default:
		return fmt.Errorf("milter %s: unsupported address type %q (unix: or inet:)", a, kind)
	}
	if sp.Addr == "" || sp.Addr == ":" {
		return fmt.Errorf("milter %s: empty address", a)
	}
	return nil
}

func (sp *Spec) set(name, value string) error {
	dur := func() (time.Duration, error) {
		if n, err := strconv.Atoi(value); err == nil {
			return time.Duration(n) * time.Second, nil
		}
		return time.ParseDuration(value)
	}
	var err error
	switch name {
	case "default_action":
		sp.DefaultAction = strings.ToLower(value)
	case "connect_timeout":
		sp.ConnectTimeout, err = dur()
	case "command_timeout":
		sp.CommandTimeout, err = dur()
	case "content_timeout":
		sp.ContentTimeout, err = dur()
	case "protocol":
		sp.Protocol, err = strconv.Atoi(value)
	default:
		return fmt.Errorf("unknown setting %q", name)
	}
	return err
}
