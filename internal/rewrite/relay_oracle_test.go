package rewrite

import (
	"bufio"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"sluice/internal/oracle"
)

// TestRelayVerdictsMatchPostfix sends every RCPT form of the golden file
// to a live Postfix 3.7 from an untrusted (127.0.0.1) and a trusted
// (127.0.0.2) client, and checks that Check gives the same verdict and
// reply text for the same address.
func TestRelayVerdictsMatchPostfix(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix instances")
	}
	oracle.Require(t)
	cases := readGolden(t)
	for _, settings := range []string{"default", "alt"} {
		t.Run(settings, func(t *testing.T) {
			params := []string{
				"mydestination = $myhostname, localhost",
				"relay_domains = relay.test",
				"mynetworks = 127.0.0.2/32",
				"smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
				"local_recipient_maps =",
				"smtpd_hard_error_limit = 1000",
				"smtpd_soft_error_limit = 1000",
				"smtpd_error_sleep_time = 0",
			}
			if settings == "alt" {
				params = append(params, "allow_percent_hack = no", "swap_bangpath = no",
					"resolve_dequoted_address = no", "resolve_null_domain = yes", "resolve_numeric_domain = yes")
			}
			in := oracle.StartPostfix(t, oracle.Options{Params: params})
			r := New(factsConfig(settings))
			var paths []string
			for _, c := range cases {
				if c.settings == settings {
					paths = append(paths, c.path)
				}
			}
			for _, client := range []string{"127.0.0.1", "127.0.0.2"} {
				replies, err := rcptReplies(in.SMTPAddr(), client, paths)
				if err != nil {
					t.Fatal(err)
				}
				compared := 0
				for i, path := range paths {
					internal, err := ParsePath(path)
					if err != nil {
						t.Errorf("%s: ParsePath: %v", path, err)
						continue
					}
					got := r.Check(internal, client == "127.0.0.2").Reply()
					if got == "" {
						got = "250 2.1.5 Ok"
					}
					if got != replies[i] {
						t.Errorf("client %s RCPT TO:%s: sluice %q, Postfix %q", client, path, got, replies[i])
					}
					compared++
				}
				t.Logf("client %s: %d RCPT forms compared", client, compared)
			}
		})
	}
}

// rcptReplies opens one session from the local address client and
// returns, for each path, the first line of the reply to its RCPT TO, all
// in one mail transaction.
func rcptReplies(server, client string, paths []string) ([]string, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	tp := textproto.NewConn(c)
	tp.R = bufio.NewReader(c)
	read := func() (string, error) {
		var first string
		for {
			l, err := tp.ReadLine()
			if err != nil {
				return "", err
			}
			if first == "" {
				first = l
			}
			if len(l) < 4 || l[3] != '-' {
				if len(first) > 3 && first[3] == '-' {
					first = first[:3] + " " + first[4:]
				}
				return first, nil
			}
		}
	}
	chat := func(cmd string) (string, error) {
		if err := tp.PrintfLine("%s", cmd); err != nil {
			return "", err
		}
		return read()
	}
	if _, err := read(); err != nil {
		return nil, err
	}
	if _, err := chat("EHLO client.test"); err != nil {
		return nil, err
	}
	// One transaction for all: a refused RCPT does not end it, and an
	// accepted one costs Postfix a queue file each time it is reset.
	if rep, err := chat("MAIL FROM:<sender@client.test>"); err != nil || !strings.HasPrefix(rep, "250") {
		return nil, fmt.Errorf("MAIL FROM: %q %v", rep, err)
	}
	var out []string
	for _, p := range paths {
		rep, err := chat("RCPT TO:" + p)
		if err != nil {
			return nil, fmt.Errorf("RCPT TO:%s: %w", p, err)
		}
		out = append(out, rep)
	}
	chat("QUIT")
	return out, nil
}
