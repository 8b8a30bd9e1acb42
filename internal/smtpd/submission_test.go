package smtpd

import (
	"strings"
	"testing"

	"sluice/internal/config"
)

func parseConf(t *testing.T, text string) *config.Config {
	t.Helper()
	c, err := config.Parse(strings.NewReader(text), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestServices(t *testing.T) {
	c := parseConf(t, `
smtpd_listen = 127.0.0.1:25
sluice_submission_listen = 127.0.0.1:587
sluice_smtps_listen = 127.0.0.1:465
smtpd_client_restrictions = permit_mynetworks
smtpd_sasl_path = private/auth
queue_directory = /var/spool/x
smtpd_tls_cert_file = testdata/none.pem
`)
	svcs, err := Services(c)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range svcs {
		names = append(names, s.Name+"="+strings.Join(s.Listen, ","))
	}
	if got := strings.Join(names, " "); got != "smtp=127.0.0.1:25 submission=127.0.0.1:587 smtps=127.0.0.1:465" {
		t.Fatalf("services: %s", got)
	}
	for _, tc := range []struct {
		svc         int
		param, want string
	}{
		{1, "smtpd_tls_security_level", "encrypt"},
		{1, "smtpd_sasl_auth_enable", "yes"},
		{1, "smtpd_client_restrictions", "permit_sasl_authenticated, reject"},
		{2, "smtpd_tls_wrappermode", "yes"},
		{2, "smtpd_sasl_path", "private/auth"},
	} {
		if got := svcs[tc.svc].Config.Get(tc.param); got != tc.want {
			t.Errorf("%s: %s = %q, want %q", svcs[tc.svc].Name, tc.param, got, tc.want)
		}
	}
	if c.Get("smtpd_client_restrictions") != "permit_mynetworks" || c.Bool("smtpd_sasl_auth_enable") {
		t.Errorf("the smtp service's configuration changed")
	}

	dup := parseConf(t, "smtpd_listen = 127.0.0.1:25\nsluice_smtps_listen = 127.0.0.1:25\n")
	if _, err := Services(dup); err == nil || !strings.Contains(err.Error(), "127.0.0.1:25") {
		t.Errorf("an address in two services: %v", err)
	}
}

func TestFromConfigAuth(t *testing.T) {
	c := parseConf(t, `
queue_directory = /var/spool/x
smtpd_sasl_auth_enable = yes
smtpd_sasl_path = private/auth
smtpd_sasl_tls_security_options = noanonymous, noplaintext
smtpd_client_auth_rate_limit = 7
smtpd_relay_restrictions = permit_sasl_authenticated, defer_unauth_destination
`)
	cfg, err := FromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SASL == nil || cfg.SASL.Path != "/var/spool/x/private/auth" || !cfg.SASL.NoAnonymous || cfg.SASL.NoPlaintext || !cfg.SASL.TLSNoPlaintext {
		t.Errorf("SASL = %+v", cfg.SASL)
	}
	if cfg.Limits.AuthRate != 7 || strings.Join(cfg.RelayRestrictions, " ") != "permit_sasl_authenticated defer_unauth_destination" {
		t.Errorf("rate %d relay %v", cfg.Limits.AuthRate, cfg.RelayRestrictions)
	}
	for _, bad := range []string{
		"smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10023",
		"smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = cyrus",
		"smtpd_tls_security_level = encrypt",
		"smtpd_tls_wrappermode = yes",
		"smtpd_tls_security_level = dane",
		"smtpd_sasl_auth_enable = yes\nsmtpd_sasl_path = inet:nohost",
		"smtpd_sender_login_maps = mysql:/etc/x.cf",
	} {
		if _, err := FromConfig(parseConf(t, bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
