package smtpd

// Submission services and TLS policy.
//
// Postfix runs submission (587) and smtps (465) as extra smtpd services
// in master.cf, each with -o overrides. sluice takes them from main.cf:
//
//	Postfix master.cf                              sluice main.cf
//	smtp       inet ... smtpd                      smtpd_listen = ADDR...
//	submission inet ... smtpd                      sluice_submission_listen = ADDR...
//	  -o syslog_name=postfix/submission              (always)
//	  -o smtpd_tls_security_level=encrypt            (always)
//	  -o smtpd_sasl_auth_enable=yes                  (always)
//	  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
//	                                                 sluice_submission_client_restrictions
//	smtps      inet ... smtpd                      sluice_smtps_listen = ADDR...
//	  -o syslog_name=postfix/smtps                   (always)
//	  -o smtpd_tls_wrappermode=yes                   (always)
//	  -o smtpd_sasl_auth_enable=yes                  (always)
//	  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
//	                                                 sluice_smtps_client_restrictions
//
// Every other parameter is the main.cf value the smtp service has. The
// mail log names the services as Postfix's syslog_name override does:
// postfix/submission/smtpd, postfix/smtps/smtpd (Config.Service, set
// from the service's name by the daemon).
//
// # TLS policy
//
// smtpd_tls_security_level: empty (sluice's default) or may offers
// STARTTLS when a certificate is configured; none never does; encrypt
// requires a certificate and refuses every command but HELO, EHLO,
// STARTTLS, RSET, NOOP and QUIT before TLS with "530 5.7.0 Must issue a
// STARTTLS command first" (an error for the error limits), and offers
// AUTH only under TLS. smtpd_tls_wrappermode = yes starts TLS at connect
// (smtps), before the greeting; a failed handshake ends the session
// ("warning: TLS handshake failed for name[addr]: ..." and "lost
// connection after CONNECT from name[addr]"). Certificates are read
// when the configuration is (start and reload).

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"sluice/internal/config"
	"sluice/internal/sasl"
)

// Service is one smtpd service: its name, its listen addresses and the
// configuration it runs with.
type Service struct {
	Name   string // smtp, submission, smtps
	Listen []string
	Config *config.Config
}

// Services returns the smtpd services main.cf asks for: smtp always
// (smtpd_listen may be empty), then submission and smtps when their
// listen lists are set. An address in two lists is an error.
func Services(c *config.Config) ([]Service, error) {
	out := []Service{{Name: "smtp", Listen: c.List("smtpd_listen"), Config: c}}
	sub := []struct{ name, listen, restrictions, tlsParam, tlsValue string }{
		{"submission", "sluice_submission_listen", "sluice_submission_client_restrictions", "smtpd_tls_security_level", "encrypt"},
		{"smtps", "sluice_smtps_listen", "sluice_smtps_client_restrictions", "smtpd_tls_wrappermode", "yes"},
	}
	seen := map[string]string{}
	for _, a := range out[0].Listen {
		seen[a] = "smtpd_listen"
	}
	for _, s := range sub {
		listen := c.List(s.listen)
		if len(listen) == 0 {
			continue
		}
		for _, a := range listen {
			if prev, dup := seen[a]; dup {
				return nil, fmt.Errorf("%s: address %s is in %s too", s.listen, a, prev)
			}
			seen[a] = s.listen
		}
		sc := c.With(map[string]string{
			s.tlsParam:                  s.tlsValue,
			"smtpd_sasl_auth_enable":    "yes",
			"smtpd_client_restrictions": c.Get(s.restrictions),
		})
		out = append(out, Service{Name: s.name, Listen: listen, Config: sc})
	}
	return out, nil
}

// fromConfigTLS reads the TLS policy: smtpd_tls_security_level,
// smtpd_tls_wrappermode, smtpd_tls_auth_only.
func fromConfigTLS(c *config.Config, cfg *Config) error {
	lvl := strings.ToLower(strings.TrimSpace(c.Get("smtpd_tls_security_level")))
	switch lvl {
	case "", "may", "none", "encrypt":
	default:
		return fmt.Errorf("smtpd_tls_security_level: unsupported value %q (none, may or encrypt)", lvl)
	}
	cfg.TLSLevel = lvl
	cfg.TLSWrapper = c.Bool("smtpd_tls_wrappermode")
	cfg.TLSAuthOnly = c.Bool("smtpd_tls_auth_only")
	if lvl == "none" && !cfg.TLSWrapper {
		cfg.TLS = nil
	}
	if (lvl == "encrypt" || cfg.TLSWrapper) && cfg.TLS == nil {
		return fmt.Errorf("smtpd_tls_security_level = %s, smtpd_tls_wrappermode = %s: no certificate (set smtpd_tls_cert_file and smtpd_tls_key_file)", orText(lvl, "(empty)"), c.Get("smtpd_tls_wrappermode"))
	}
	return nil
}

// preTLSCommands may be used before STARTTLS at security level encrypt.
var preTLSCommands = map[string]bool{"HELO": true, "EHLO": true, "STARTTLS": true, "RSET": true, "NOOP": true, "QUIT": true}

// tlsRequired refuses a command that needs TLS first; it reports
// whether it did.
func (ss *session) tlsRequired(verb string) bool {
	if ss.cfg.TLSLevel != "encrypt" || ss.tls || preTLSCommands[verb] {
		return false
	}
	ss.reply("530 5.7.0 Must issue a STARTTLS command first")
	return true
}

// wrapTLS starts TLS at connect (smtpd_tls_wrappermode); false when
// the handshake failed and the session is over.
func (ss *session) wrapTLS() bool { return ss.startTLS("CONNECT") }

// startTLS runs the server's TLS handshake, within smtpd_timeout, after
// the command named (CONNECT for wrapper mode). On success the session
// reads and writes through TLS; on failure it is logged and the session
// ends.
func (ss *session) startTLS(after string) bool {
	tc := tls.Server(ss.tc, ss.cfg.TLS)
	ss.tc.limit = time.Now().Add(ss.cfg.Timeout)
	err := tc.HandshakeContext(ss.s.ctx)
	ss.tc.limit = time.Time{}
	if err != nil {
		ss.s.warn("TLS handshake failed for %s: %v", ss.origin(), err)
		ss.s.log("lost connection after %s from %s", after, ss.origin())
		ss.closing = true
		return false
	}
	// tls.Conn reads and writes through ss.tc, which sets the
	// deadlines before each read and write as before.
	ss.br.Reset(tc)
	ss.bw.Reset(tc)
	ss.tls = true
	return true
}

// fromConfigAuth reads SASL, the restriction lists and
// smtpd_sender_login_maps.
func fromConfigAuth(c *config.Config, cfg *Config) error {
	for _, l := range []struct {
		name string
		dst  *[]string
	}{
		{listClient, &cfg.ClientRestrictions},
		{listSender, &cfg.SenderRestrictions},
		{listRelay, &cfg.RelayRestrictions},
		{listRecipient, &cfg.RecipientRestrictions},
	} {
		v := c.List(l.name)
		if err := CheckRestrictions(l.name, v); err != nil {
			return err
		}
		*l.dst = append([]string{}, v...) // set, even when empty
	}
	if maps := c.List("smtpd_sender_login_maps"); len(maps) > 0 {
		lm, err := LoadLoginMaps(maps)
		if err != nil {
			return err
		}
		cfg.SenderLogins = lm.Lookup
	}
	n, err := c.Int("smtpd_client_auth_rate_limit")
	if err != nil {
		return err
	}
	cfg.Limits.AuthRate = int(n)
	if !c.Bool("smtpd_sasl_auth_enable") {
		return nil
	}
	if t := c.Get("smtpd_sasl_type"); t != "dovecot" {
		return fmt.Errorf("smtpd_sasl_type = %s: sluice speaks to Dovecot only (dovecot)", t)
	}
	s := &SASL{Path: c.Get("smtpd_sasl_path")}
	// A relative socket path is in the queue directory, as Postfix's
	// private/auth is, whatever the working directory.
	if network, addr, err := sasl.ParsePath(s.Path); err != nil {
		return fmt.Errorf("smtpd_sasl_path: %w", err)
	} else if network == "unix" && !filepath.IsAbs(addr) {
		s.Path = filepath.Join(c.Get("queue_directory"), addr)
	}
	opts := func(name string) (noAnon, noPlain bool, err error) {
		for _, o := range c.List(name) {
			switch strings.ToLower(o) {
			case "noanonymous":
				noAnon = true
			case "noplaintext":
				noPlain = true
			case "nodictionary", "noactive", "mutual_auth", "forward_secrecy":
				// Properties of mechanisms sluice relays without
				// judging; PLAIN and LOGIN pass them all but
				// noplaintext.
			default:
				return false, false, fmt.Errorf("%s: unknown option %q", name, o)
			}
		}
		return noAnon, noPlain, nil
	}
	if s.NoAnonymous, s.NoPlaintext, err = opts("smtpd_sasl_security_options"); err != nil {
		return err
	}
	if s.TLSNoAnonymous, s.TLSNoPlaintext, err = opts("smtpd_sasl_tls_security_options"); err != nil {
		return err
	}
	cfg.SASL = s
	return nil
}
