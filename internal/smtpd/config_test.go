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
	if cfg.Banner != "mx.example.com ESMTP sluice" || cfg.HeloRequired || cfg.ForbidUnauthPipelining || len(cfg.DiscardEHLOKeywords) != 0 {
		t.Errorf("banner %q helo %v pipelining %v discard %v", cfg.Banner, cfg.HeloRequired, cfg.ForbidUnauthPipelining, cfg.DiscardEHLOKeywords)
	}
	if cfg.SoftErrorLimit != 10 || cfg.HardErrorLimit != 20 || cfg.ErrorSleep != time.Second || cfg.JunkCommandLimit != 100 || cfg.DataTimeLimit != time.Hour {
		t.Errorf("error limits %d %d %v %d data %v", cfg.SoftErrorLimit, cfg.HardErrorLimit, cfg.ErrorSleep, cfg.JunkCommandLimit, cfg.DataTimeLimit)
	}
	if l := cfg.Limits; l.ConnectionCount != 50 || l.ConnectionRate != 0 || l.RateTimeUnit != time.Minute || l.Process != 100 || len(l.Exceptions) != 1 || l.Exceptions[0].String() != "192.0.2.0/24" {
		t.Errorf("connection limits %+v", l)
	}
	c.Set("smtpd_banner", "$myhostname ready")
	c.Set("smtpd_discard_ehlo_keywords", "CHUNKING, silent-discard")
	c.Set("smtpd_error_sleep_time", "0")
	c.Set("smtpd_client_event_limit_exceptions", "")
	if cfg, err = FromConfig(c); err != nil {
		t.Fatal(err)
	}
	if cfg.Banner != "mx.example.com ready" || strings.Join(cfg.DiscardEHLOKeywords, " ") != "chunking silent-discard" || cfg.ErrorSleep >= 0 || cfg.Limits.Exceptions == nil || len(cfg.Limits.Exceptions) != 0 {
		t.Errorf("banner %q discard %v sleep %v exceptions %v", cfg.Banner, cfg.DiscardEHLOKeywords, cfg.ErrorSleep, cfg.Limits.Exceptions)
	}
	c.Set("smtpd_banner", "")
	c.Set("smtpd_discard_ehlo_keywords", "")
	c.Set("smtpd_error_sleep_time", "1s")
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
