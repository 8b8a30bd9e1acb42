package sasl_test

import (
	"context"
	"net"
	"slices"
	"testing"

	"sluice/internal/sasl"
	"sluice/internal/sasl/dovecottest"
)

func TestDovecotPlainAndLogin(t *testing.T) {
	dv := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret1", "bob@example.org": "p@ss word"}})
	ctx := context.Background()
	c, err := sasl.Dial(ctx, sasl.Config{Path: dv.Socket})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Mechanisms(false, true); !slices.Equal(got, []string{"PLAIN", "LOGIN"}) {
		t.Errorf("mechanisms = %v, want [PLAIN LOGIN]", got)
	}
	if got := c.Mechanisms(false, false); len(got) != 0 {
		t.Errorf("without plaintext: mechanisms = %v, want none", got)
	}
	info := sasl.Info{Service: "smtp", LocalAddr: net.IPv4(127, 0, 0, 1), RemoteAddr: net.IPv4(192, 0, 2, 7), Secured: true}

	r, err := c.Start("PLAIN", []byte("\x00alice\x00secret1"), info)
	if err != nil || r.Status != sasl.OK || r.User != "alice" {
		t.Fatalf("PLAIN good password: %+v, %v", r, err)
	}
	r, err = c.Start("PLAIN", []byte("\x00alice\x00wrong"), info)
	if err != nil || r.Status != sasl.Fail || r.User != "alice" || r.Temp {
		t.Fatalf("PLAIN wrong password: %+v, %v", r, err)
	}
	// A password with a space and an @ goes through base64 untouched.
	r, err = c.Start("PLAIN", []byte("\x00bob@example.org\x00p@ss word"), info)
	if err != nil || r.Status != sasl.OK || r.User != "bob@example.org" {
		t.Fatalf("PLAIN with space: %+v, %v", r, err)
	}

	// LOGIN: no initial response, two challenges.
	r, err = c.Start("LOGIN", nil, info)
	if err != nil || r.Status != sasl.Continue || string(r.Challenge) != "Username:" {
		t.Fatalf("LOGIN start: %+v, %v", r, err)
	}
	r, err = c.Continue([]byte("alice"))
	if err != nil || r.Status != sasl.Continue || string(r.Challenge) != "Password:" {
		t.Fatalf("LOGIN user: %+v, %v", r, err)
	}
	r, err = c.Continue([]byte("secret1"))
	if err != nil || r.Status != sasl.OK || r.User != "alice" {
		t.Fatalf("LOGIN password: %+v, %v", r, err)
	}
	// PLAIN without an initial response gets an empty challenge.
	r, err = c.Start("PLAIN", nil, info)
	if err != nil || r.Status != sasl.Continue || len(r.Challenge) != 0 {
		t.Fatalf("PLAIN without initial response: %+v, %v", r, err)
	}
	r, err = c.Continue([]byte("\x00nobody\x00x"))
	if err != nil || r.Status != sasl.Fail {
		t.Fatalf("PLAIN unknown user: %+v, %v", r, err)
	}
}

func TestParsePath(t *testing.T) {
	for _, tc := range []struct{ in, network, addr string }{
		{"private/auth", "unix", "private/auth"},
		{"/run/dovecot/auth-client", "unix", "/run/dovecot/auth-client"},
		{"unix:/x/y", "unix", "/x/y"},
		{"inet:127.0.0.1:12345", "tcp", "127.0.0.1:12345"},
		{"inet:[::1]:12345", "tcp", "[::1]:12345"},
	} {
		n, a, err := sasl.ParsePath(tc.in)
		if err != nil || n != tc.network || a != tc.addr {
			t.Errorf("ParsePath(%q) = %q, %q, %v", tc.in, n, a, err)
		}
	}
	for _, bad := range []string{"", "inet:nohost"} {
		if _, _, err := sasl.ParsePath(bad); err == nil {
			t.Errorf("ParsePath(%q): no error", bad)
		}
	}
}
