package smtpd

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"strings"

	"sluice/internal/config"
)

// FromConfig fills a Config from main.cf parameters: smtpd_listen,
// myhostname, myorigin, mynetworks, mydestination, relay_domains,
// message_size_limit, smtpd_recipient_limit, smtpd_timeout,
// local_header_rewrite_clients, smtpd_tls_cert_file and
// smtpd_tls_key_file. The caller adds Cleanup and Log.
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
	if cfg.LocalHeaderRewrite, err = headerRewriteRule(c.List("local_header_rewrite_clients"), cfg.MyNetworks); err != nil {
		return cfg, err
	}
	if cert := c.Get("smtpd_tls_cert_file"); cert != "" {
		key := c.Get("smtpd_tls_key_file")
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return cfg, fmt.Errorf("smtpd_tls_cert_file/smtpd_tls_key_file: %w", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
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
