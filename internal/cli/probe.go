package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"sluice/internal/manage"
	"sluice/internal/queuesvc"
	"sluice/internal/server"
	"sluice/internal/smtp"
)

const probeHelp = `usage: sluice probe [-c config_dir] [--json] [--from ADDR] [--rcpt ADDR] [--timeout DUR] TARGET

Checks whether mail can reach TARGET, following the path delivery takes
under this configuration: the relayhost, or the MX records of a domain
with their preferences, each host's addresses, and the TLS security level
(smtp_tls_security_level). Each address gets a connection: its time, the
banner, the EHLO extensions, STARTTLS with protocol, cipher and
certificate, then MAIL FROM and RCPT TO, then RSET and QUIT. No mail is
sent. Each host gets a verdict.

TARGET is a domain (example.com), a host and port (mx.example.com:2525)
or an address literal ([192.0.2.1]:25).

  --from ADDR    the MAIL FROM address (default: the null sender <>)
  --rcpt ADDR    the RCPT TO address (default: postmaster@TARGET)
  --timeout DUR  give up after DUR (default 2m)
  --json         the report as JSON

For a domain, the deferred mail queued for it is shown too, with its last
reasons, side by side with what the probe found.

Exit status: 0 when some host accepts the recipient, 1 when none does,
2 on a usage error.
`

func runProbe(env *Env) int {
	var confDir, from, rcpt, target string
	asJSON := false
	timeout := 2 * time.Minute
	args := env.Args
	for len(args) > 0 {
		a := args[0]
		args = args[1:]
		value := func() (string, bool) {
			if len(args) == 0 {
				fmt.Fprintf(env.Stderr, "sluice probe: %s needs a value\n", a)
				return "", false
			}
			v := args[0]
			args = args[1:]
			return v, true
		}
		var ok bool
		switch a {
		case "-h", "--help", "help":
			fmt.Fprint(env.Stdout, probeHelp)
			return 0
		case "--json":
			asJSON, ok = true, true
		case "-c", "--config":
			confDir, ok = value()
		case "--from":
			from, ok = value()
		case "--rcpt":
			rcpt, ok = value()
		case "--timeout":
			var v string
			if v, ok = value(); ok {
				d, err := time.ParseDuration(v)
				if err != nil || d <= 0 {
					fmt.Fprintf(env.Stderr, "sluice probe: bad --timeout %q\n", v)
					return 2
				}
				timeout = d
			}
		default:
			if strings.HasPrefix(a, "-") || target != "" {
				fmt.Fprintf(env.Stderr, "sluice probe: unexpected argument %q\n", a)
				fmt.Fprint(env.Stderr, probeHelp)
				return 2
			}
			target, ok = a, true
		}
		if !ok {
			return 2
		}
	}
	if target == "" {
		fmt.Fprint(env.Stderr, probeHelp)
		return 2
	}
	cfg, err := env.LoadConfig(confDir)
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	c, err := server.NewProbeClient(cfg, nil, 0)
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r := c.Probe(ctx, target, smtp.ProbeOptions{Sender: from, Recipient: rcpt})

	var stuck *queuesvc.DeferredFor
	if domain := queuesvc.ProbeDomain(target); domain != "" {
		if sp, err := OpenSpool(cfg); err == nil {
			q := &manage.Queue{Spool: sp}
			if src, closeSrc, err := listSource(env, cfg, q); err == nil {
				stuck, _ = queuesvc.DeferredTo(ctx, domain, func(ctx context.Context, sel *manage.Selector, fn func(*manage.Message) error) error {
					return src.Each(ctx, sel, manage.SelectOptions{Full: true}, fn)
				})
				closeSrc()
			}
		}
	}
	if asJSON {
		out := struct {
			*smtp.ProbeReport
			Deferred *queuesvc.DeferredFor `json:"deferred,omitempty"`
		}{r, stuck}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	} else {
		printProbe(env.Stdout, r, stuck, time.Now())
	}
	if !r.OK {
		return 1
	}
	return 0
}

func printProbe(w io.Writer, r *smtp.ProbeReport, stuck *queuesvc.DeferredFor, now time.Time) {
	sender := r.Sender
	fmt.Fprintf(w, "probe %s via %s", r.Target, r.Via)
	if r.NextHop != r.Target {
		fmt.Fprintf(w, " (relayhost %s)", r.NextHop)
	}
	fmt.Fprintf(w, ", TLS policy %s, MAIL FROM:<%s> RCPT TO:<%s>\n", r.TLSPolicy, sender, r.Recipient)
	for _, mx := range r.MX {
		detail := strings.Join(mx.Addresses, " ")
		if mx.Error != "" {
			detail = mx.Error
		}
		fmt.Fprintf(w, "  MX %d %s: %s\n", mx.Preference, mx.Host, detail)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  no host to try: %s\n", r.Error)
	}
	accepting := 0
	for _, h := range r.Hosts {
		fmt.Fprintf(w, "%s[%s]:%d", h.Host, h.Address, h.Port)
		if r.Via == "mx" {
			fmt.Fprintf(w, " (MX %d)", h.Preference)
		}
		fmt.Fprintln(w)
		if h.ConnectMS > 0 {
			fmt.Fprintf(w, "  connect  %.1f ms\n", h.ConnectMS)
		}
		if h.Banner != "" {
			fmt.Fprintf(w, "  banner   %s\n", h.Banner)
		}
		if len(h.EHLO) > 0 {
			fmt.Fprintf(w, "  ehlo     %s\n", strings.Join(h.EHLO, ", "))
		}
		if t := h.TLS; t != nil {
			fmt.Fprintf(w, "  tls      %s %s", t.Version, t.Cipher)
			if t.Subject != "" {
				days := int(t.NotAfter.Sub(now).Hours() / 24)
				fmt.Fprintf(w, "; certificate %s, names %s, expires %s (%d days)",
					t.Subject, strings.Join(t.Names, " "), t.NotAfter.UTC().Format("2006-01-02"), days)
			}
			if t.Trusted {
				fmt.Fprint(w, ", trusted")
			} else {
				fmt.Fprintf(w, ", not trusted: %s", t.TrustReason)
			}
			fmt.Fprintln(w)
		}
		for _, s := range h.Steps {
			fmt.Fprintf(w, "  %-8s %s (%.1f ms)\n", strings.Fields(s.Command)[0], s.Reply, s.MS)
		}
		verdict := "FAIL"
		if h.OK {
			verdict = "OK"
			accepting++
		}
		fmt.Fprintf(w, "  verdict  %s: %s\n", verdict, h.Verdict)
	}
	switch {
	case r.OK:
		fmt.Fprintf(w, "verdict: reachable: %d of %d hosts accept the recipient\n", accepting, len(r.Hosts))
	case len(r.Hosts) == 0:
		fmt.Fprintln(w, "verdict: unreachable: no host to try")
	default:
		fmt.Fprintf(w, "verdict: unreachable: none of %d hosts accepts the recipient\n", len(r.Hosts))
	}
	if stuck != nil && stuck.Messages > 0 {
		fmt.Fprintf(w, "\ndeferred mail for %s: %d messages, %d recipients; last reasons:\n", stuck.Domain, stuck.Messages, stuck.Recipients)
		for _, rc := range stuck.Reasons {
			fmt.Fprintf(w, "  %6d  %s\n", rc.Recipients, rc.Reason)
		}
	}
}
