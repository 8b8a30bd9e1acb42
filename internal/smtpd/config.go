package smtpd

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"sluice/internal/config"
	"sluice/internal/milter"
	"sluice/internal/rewrite"
)

// FromConfig fills a Config from main.cf parameters: smtpd_listen,
// myhostname, myorigin, mynetworks, mydestination, relay_domains,
// message_size_limit, smtpd_recipient_limit, smtpd_timeout,
// local_header_rewrite_clients, smtpd_tls_cert_file and
// smtpd_tls_key_file; the address resolution switches (allow_percent_hack,
// swap_bangpath, resolve_* , allow_untrusted_routing, proxy_interfaces);
// smtpd_banner, mail_name, smtpd_helo_required,
// smtpd_discard_ehlo_keywords, smtpd_forbid_unauth_pipelining, the
// error limits (smtpd_soft_error_limit, smtpd_hard_error_limit,
// smtpd_error_sleep_time, smtpd_junk_command_limit), the connection
// limits (smtpd_client_connection_count_limit,
// smtpd_client_connection_rate_limit, anvil_rate_time_unit,
// default_process_limit, smtpd_client_event_limit_exceptions) and
// sluice_smtpd_data_time_limit. The caller adds Cleanup and Log.
func FromConfig(c *config.Config) (Config, error) {
	var cfg Config
	var err error
	cfg.Listen = c.List("smtpd_listen")
	cfg.Hostname = c.Get("myhostname")
	cfg.MyOrigin = c.Get("myorigin")
	if cfg.MyNetworks, err = ParseNetworks(c.List("mynetworks")); err != nil {
		return cfg, err
	}
	cfg.MyDestination = c.List("mydestination")
	cfg.RelayDomains = c.List("relay_domains")
	if cfg.MessageSizeLimit, err = c.Int("message_size_limit"); err != nil {
		return cfg, err
	}
	limit, err := c.Int("smtpd_recipient_limit")
	if err != nil {
		return cfg, err
	}
	cfg.RecipientLimit = int(limit)
	if cfg.Timeout, err = c.Duration("smtpd_timeout"); err != nil {
		return cfg, err
	}
	own, err := rewrite.OwnAddrs(listenAddrs(cfg.Listen), c.List("proxy_interfaces"), net.InterfaceAddrs)
	if err != nil {
		return cfg, err
	}
	cfg.Rewrite = rewrite.New(rewrite.FromConfig(c, own))
	cfg.FlushDomains = c.List("fast_flush_domains")
	if err := fromConfigSMTPD(c, &cfg); err != nil {
		return cfg, err
	}
	if cfg.LocalHeaderRewrite, err = headerRewriteRule(c.List("local_header_rewrite_clients"), cfg.MyNetworks); err != nil {
		return cfg, err
	}
	if mc, err := milter.FromConfig(c, "smtpd_milters"); err != nil {
		return cfg, err
	} else if len(mc.Milters) > 0 {
		cfg.Milters = &mc
	}
	if cert := c.Get("smtpd_tls_cert_file"); cert != "" {
		key := c.Get("smtpd_tls_key_file")
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return cfg, fmt.Errorf("smtpd_tls_cert_file/smtpd_tls_key_file: %w", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	if err := fromConfigTLS(c, &cfg); err != nil {
		return cfg, err
	}
	if err := fromConfigAuth(c, &cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// headerRewriteRule turns local_header_rewrite_clients into a test.
func headerRewriteRule(list []string, mynetworks []netip.Prefix) (func(client, server netip.Addr) bool, error) {
	var inet, mynets, all bool
	for _, v := range list {
		switch strings.ToLower(v) {
		case "permit_inet_interfaces":
			inet = true
		case "permit_mynetworks":
			mynets = true
		case "static:all":
			all = true
		default:
			return nil, fmt.Errorf("local_header_rewrite_clients: unsupported value %q (use permit_inet_interfaces, permit_mynetworks or static:all)", v)
		}
	}
	return func(client, server netip.Addr) bool {
		return all ||
			inet && (client.IsLoopback() || client == server) ||
			mynets && inNetworks(client, mynetworks)
	}, nil
}

// fromConfigSMTPD reads the parameters of the protocol layer: replies,
// error accounting, connection limits.
func fromConfigSMTPD(c *config.Config, cfg *Config) error {
	cfg.Banner = c.Get("smtpd_banner")
	cfg.MailName = c.Get("mail_name")
	cfg.HeloRequired = c.Bool("smtpd_helo_required")
	cfg.ForbidUnauthPipelining = c.Bool("smtpd_forbid_unauth_pipelining")
	for _, k := range c.List("smtpd_discard_ehlo_keywords") {
		cfg.DiscardEHLOKeywords = append(cfg.DiscardEHLOKeywords, strings.ToLower(k))
	}
	ints := []struct {
		name string
		dst  *int
	}{
		{"smtpd_soft_error_limit", &cfg.SoftErrorLimit},
		{"smtpd_hard_error_limit", &cfg.HardErrorLimit},
		{"smtpd_junk_command_limit", &cfg.JunkCommandLimit},
		{"smtpd_client_connection_count_limit", &cfg.Limits.ConnectionCount},
		{"smtpd_client_connection_rate_limit", &cfg.Limits.ConnectionRate},
		{"default_process_limit", &cfg.Limits.Process},
	}
	for _, p := range ints {
		n, err := c.Int(p.name)
		if err != nil {
			return err
		}
		if n < 0 {
			return fmt.Errorf("%s: negative value %d", p.name, n)
		}
		*p.dst = int(n)
	}
	var err error
	if cfg.ErrorSleep, err = c.Duration("smtpd_error_sleep_time"); err != nil {
		return err
	}
	if cfg.ErrorSleep == 0 {
		cfg.ErrorSleep = -1 // Postfix's 0: no sleep; Config's 0 is the default
	}
	if cfg.Limits.RateTimeUnit, err = c.Duration("anvil_rate_time_unit"); err != nil {
		return err
	}
	if cfg.DataTimeLimit, err = c.Duration("sluice_smtpd_data_time_limit"); err != nil {
		return err
	}
	exc, err := ParseNetworks(c.List("smtpd_client_event_limit_exceptions"))
	if err != nil {
		return fmt.Errorf("smtpd_client_event_limit_exceptions: %w", err)
	}
	// An empty list exempts nobody; Config's nil would mean mynetworks.
	cfg.Limits.Exceptions = append([]netip.Prefix{}, exc...)
	return nil
}

// listenAddrs turns smtpd_listen's host:port values into addresses for
// rewrite.OwnAddrs: IP literals as they are, an empty host as the
// wildcard (every interface's address). Host names are left out: our own
// literals are a matter of addresses, and resolving names here would make
// the start wait on DNS.
func listenAddrs(listen []string) []net.Addr {
	var out []net.Addr
	for _, l := range listen {
		host, port, err := net.SplitHostPort(l)
		if err != nil {
			continue
		}
		p, _ := strconv.Atoi(port)
		if host == "" {
			out = append(out, &net.TCPAddr{IP: net.IPv4zero, Port: p})
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			out = append(out, net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(p))))
		}
	}
	return out
}
