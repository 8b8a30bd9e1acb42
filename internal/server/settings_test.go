package server

import (
	"strings"
	"testing"

	"sluice/internal/config"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		maincf, want string // want "" means valid
	}{
		{"myhostname = mx.example\nrelayhost = [127.0.0.1]:2526\n", ""},
		{"maximal_queue_lifetime = 0\nminimal_backoff_time = 10s\nqueue_run_delay = 1m\n", ""},
		{"mynetworks = 10.0.0.0/8\nfrobnicate = yes\n", "unknown parameter frobnicate (line 2)"},
		{"minimal_backoff_time = later\n", "bad time parameter value: minimal_backoff_time = later"},
		{"maximal_queue_lifetime = 5x\n", "bad time parameter value: maximal_queue_lifetime = 5x"},
		{"default_destination_recipient_limit = 5O\n", "bad numerical parameter value: default_destination_recipient_limit = 5O"},
		{"enable_long_queue_ids = maybe\n", "bad boolean parameter value: enable_long_queue_ids = maybe"},
		{"smtp_tls_security_level = dane\n", "smtp_tls_security_level = dane"},
		{"smtpd_listen =\n", "smtpd_listen is empty"},
	} {
		cfg, err := config.Parse(strings.NewReader(c.maincf), "main.cf")
		if err != nil {
			t.Fatal(err)
		}
		err = Check(cfg)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: unexpected error %v", c.maincf, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: error %v, want one containing %q", c.maincf, err, c.want)
		}
	}
}

func TestZeroIsNone(t *testing.T) {
	if zeroIsNone(0) >= 0 || zeroIsNone(5) != 5 {
		t.Error("a configured 0 must reach qmgr as 'really zero' (negative)")
	}
}

func TestDiagnostic(t *testing.T) {
	text, mta := diagnostic("host mx.example[192.0.2.1] said: 550 5.1.1 <x@example>: no such user (in reply to RCPT TO command)", "mx.example[192.0.2.1]:25")
	if text != "550 5.1.1 <x@example>: no such user" || mta != "mx.example" {
		t.Errorf("diagnostic = %q, %q", text, mta)
	}
	if text, mta := diagnostic("connect to mx.example[192.0.2.1]:25: Connection refused", "none"); text != "" || mta != "" {
		t.Errorf("no peer reply: %q, %q", text, mta)
	}
}
