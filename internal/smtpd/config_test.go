package smtpd

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"sluice/internal/config"
)

func TestFromConfig(t *testing.T) {
	c, err := config.Parse(strings.NewReader(`
myhostname = mx.example.com
mydomain = example.com
smtpd_listen = 127.0.0.1:0, [::1]:0
relay_domains = relay.test
smtpd_timeout = 1m
local_header_rewrite_clients = permit_mynetworks
mynetworks = 192.0.2.0/24
`), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := FromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Listen, " ") != "127.0.0.1:0 [::1]:0" || cfg.Hostname != "mx.example.com" || cfg.MyOrigin != "mx.example.com" {
		t.Errorf("listen %v host %q origin %q", cfg.Listen, cfg.Hostname, cfg.MyOrigin)
	}
	if strings.Join(cfg.MyDestination, " ") != "mx.example.com localhost.example.com localhost" {
		t.Errorf("mydestination %v", cfg.MyDestination)
	}
	if cfg.MessageSizeLimit != 10240000 || cfg.RecipientLimit != 1000 || cfg.Timeout != time.Minute || cfg.TLS != nil {
		t.Errorf("limits %d %d %v tls %v", cfg.MessageSizeLimit, cfg.RecipientLimit, cfg.Timeout, cfg.TLS)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	if cfg.LocalHeaderRewrite(lo, lo) || !cfg.LocalHeaderRewrite(netip.MustParseAddr("192.0.2.9"), lo) {
		t.Error("permit_mynetworks rule wrong")
	}

	c.Set("smtpd_tls_cert_file", "/nonexistent/cert.pem")
	if _, err := FromConfig(c); err == nil {
		t.Error("missing certificate accepted")
	}
	c.Set("smtpd_tls_cert_file", "")
	c.Set("local_header_rewrite_clients", "permit_sasl_authenticated")
	if _, err := FromConfig(c); err == nil {
		t.Error("unsupported rule accepted")
	}
	c.Set("local_header_rewrite_clients", "")
	cfg, _ = FromConfig(c)
	if cfg.LocalHeaderRewrite(lo, lo) {
		t.Error("empty rule should permit nobody")
	}
}
