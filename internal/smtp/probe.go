package smtp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// A probe answers "can mail reach this destination, and if not, where does
// it stop?" It follows the path a delivery would take — the relayhost or
// the destination's MX records with their preferences, each host's
// addresses, and the TLS security level — and talks to every address it
// finds as far as RCPT TO, then RSET and QUIT: it never sends mail. It
// reports what each step saw (times, banner, EHLO extensions, the TLS
// protocol, cipher and certificate) and a verdict per host.

// ProbeOptions says what a probe asks the servers.
type ProbeOptions struct {
	// Sender is the MAIL FROM address; "" is the null sender <>.
	Sender string
	// Recipient is the RCPT TO address; "" means postmaster@ the probed
	// domain (or the host, for an address literal).
	Recipient string
}

// ProbeReport is the outcome of one probe.
type ProbeReport struct {
	Target    string `json:"target"`
	NextHop   string `json:"next_hop"` // what was resolved: the target or the relayhost
	Via       string `json:"via"`      // "mx", "host" or "literal"
	TLSPolicy string `json:"tls_policy"`
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
	// MX lists the MX records found, best first; empty unless Via is mx
	// and the domain has MX records.
	MX []ProbeMX `json:"mx,omitempty"`
	// Error is the resolution failure that stops delivery before any
	// connection, in the words of the defer log ("Host or domain name
	// not found. ...").
	Error string      `json:"error,omitempty"`
	Hosts []ProbeHost `json:"hosts"`
	// OK is true when at least one host accepted the recipient.
	OK bool `json:"ok"`
}

// ProbeMX is one MX record and what its host resolved to.
type ProbeMX struct {
	Preference uint16   `json:"preference"`
	Host       string   `json:"host"`
	Addresses  []string `json:"addresses,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// ProbeHost is one address the delivery would try.
type ProbeHost struct {
	Host       string     `json:"host"`
	Address    string     `json:"address"`
	Port       int        `json:"port"`
	Preference uint16     `json:"preference"`
	ConnectMS  float64    `json:"connect_ms"`
	Banner     string     `json:"banner,omitempty"`
	EHLO       []string   `json:"ehlo,omitempty"` // extension lines, as sent
	TLS        *ProbeTLS  `json:"tls,omitempty"`
	Steps      []ProbeCmd `json:"steps,omitempty"` // MAIL, RCPT and RSET with replies
	TotalMS    float64    `json:"total_ms"`
	OK         bool       `json:"ok"`
	Verdict    string     `json:"verdict"`
}

// ProbeCmd is one command and the server's reply.
type ProbeCmd struct {
	Command string  `json:"command"`
	Reply   string  `json:"reply"`
	MS      float64 `json:"ms"`
}

// ProbeTLS is what STARTTLS negotiated.
type ProbeTLS struct {
	Version  string    `json:"version"`
	Cipher   string    `json:"cipher"`
	Subject  string    `json:"subject,omitempty"`
	Names    []string  `json:"names,omitempty"` // the certificate's DNS names
	Issuer   string    `json:"issuer,omitempty"`
	NotAfter time.Time `json:"not_after"`
	// Trusted is whether the chain verifies against the system's roots
	// for the host name; Postfix's may and encrypt levels deliver either
	// way, so this informs, it does not decide.
	Trusted     bool   `json:"trusted"`
	TrustReason string `json:"trust_reason,omitempty"`
}

// Probe probes target: a domain (looked up as delivery would, through the
// relayhost when one is set), "[host]:port", "[address]" or "host:port".
func (c *Client) Probe(ctx context.Context, target string, opt ProbeOptions) *ProbeReport {
	rep := &ProbeReport{Target: target, Sender: opt.Sender, Hosts: []ProbeHost{}}
	rep.TLSPolicy = strings.ToLower(c.TLSLevel)
	if rep.TLSPolicy == "" {
		rep.TLSPolicy = "none"
	}
	hop := strings.TrimSpace(target)
	if c.RelayHost != "" && !strings.HasPrefix(hop, "[") && !strings.Contains(hop, ":") {
		hop = c.RelayHost
	}
	rep.NextHop = hop
	dest, err := parseDestination(hop, c.port())
	if err != nil {
		rep.Via, rep.Error = "host", err.Error()
		return rep
	}
	rep.Recipient = opt.Recipient
	if rep.Recipient == "" {
		domain, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(target), "["), "]")
		if i := strings.LastIndexByte(domain, ':'); i >= 0 && strings.Count(domain, ":") == 1 {
			domain = domain[:i]
		}
		if net.ParseIP(domain) != nil {
			domain = "[" + domain + "]"
		}
		rep.Recipient = "postmaster@" + strings.ToLower(domain)
	}
	switch {
	case net.ParseIP(dest.host) != nil:
		rep.Via = "literal"
	case dest.mx:
		rep.Via = "mx"
		rep.MX = c.probeMX(ctx, dest)
	default:
		rep.Via = "host"
	}
	targets, f := c.resolve(ctx, dest)
	if f != nil {
		rep.Error = f.reason
		return rep
	}
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		h := c.probeHost(ctx, t, opt.Sender, rep.Recipient, dest.host)
		rep.OK = rep.OK || h.OK
		rep.Hosts = append(rep.Hosts, h)
	}
	return rep
}

// probeMX lists the MX records and their addresses for the report; the
// targets come from resolve, as a delivery's do.
func (c *Client) probeMX(ctx context.Context, dest destination) []ProbeMX {
	if c.Resolver == nil {
		return nil
	}
	mxs, err := c.Resolver.LookupMX(ctx, dest.host+".")
	if err != nil {
		return nil
	}
	var out []ProbeMX
	for _, mx := range mxs {
		host := strings.TrimSuffix(strings.ToLower(mx.Host), ".")
		p := ProbeMX{Preference: mx.Pref, Host: host}
		if host == "" {
			p.Error = "null MX: the domain accepts no mail (RFC 7505)"
			out = append(out, p)
			continue
		}
		ts, f := c.hostTargets(ctx, host, dest.port)
		if f != nil {
			p.Error = f.reason
		}
		for _, t := range ts {
			p.Addresses = append(p.Addresses, t.ip.String())
		}
		out = append(out, p)
	}
	slices.SortStableFunc(out, func(a, b ProbeMX) int { return int(a.Preference) - int(b.Preference) })
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// probeHost talks to one address as far as RCPT TO. The connection,
// greeting, EHLO and STARTTLS are delivery's own (connect), so the probe
// meets each host as a delivery would.
func (c *Client) probeHost(ctx context.Context, t target, sender, rcpt, domain string) ProbeHost {
	h := ProbeHost{Host: t.host, Address: t.ip.String(), Port: t.port, Preference: t.pref}
	start := time.Now()
	defer func() { h.TotalMS = ms(time.Since(start)) }()
	if c.isSelf(t) {
		h.Verdict = fmt.Sprintf("mail for %s loops back to myself: %s is this host", domain, t.relay())
		return h
	}
	s, f, retryPlain := c.connect(ctx, t, false, domain)
	h.ConnectMS = ms(time.Since(start))
	if s != nil {
		h.ConnectMS = ms(s.born.Sub(start))
		h.Banner = s.banner
		if s.ext != nil {
			h.EHLO = extLines(s)
		}
		if tc, ok := s.conn.(*tls.Conn); ok && s.tls {
			h.TLS = tlsReport(tc.ConnectionState(), t.host)
		}
	}
	if f != nil {
		h.Verdict = f.reason
		if retryPlain {
			h.Verdict += "; delivery would retry this host in plaintext"
		}
		return h
	}
	unbind := s.bind(ctx)
	defer func() { unbind(); s.quit() }()
	for _, cmd := range []string{"MAIL FROM:<" + sender + ">", "RCPT TO:<" + rcpt + ">"} {
		t0 := time.Now()
		rep, err := s.chat("%s", cmd)
		if err != nil {
			h.Verdict = s.ioFailure(err, "sending "+cmd).reason
			return h
		}
		h.Steps = append(h.Steps, ProbeCmd{Command: cmd, Reply: rep.text(), MS: ms(time.Since(t0))})
		if rep.class() != 2 {
			f := s.replyFailure(rep, strings.SplitN(cmd, ":", 2)[0])
			kind := "temporary"
			if !f.soft {
				kind = "permanent"
			}
			h.Verdict = fmt.Sprintf("%s failure: %s", kind, f.reason)
			s.chat("RSET")
			return h
		}
	}
	t0 := time.Now()
	if rep, err := s.chat("RSET"); err == nil {
		h.Steps = append(h.Steps, ProbeCmd{Command: "RSET", Reply: rep.text(), MS: ms(time.Since(t0))})
	}
	h.OK = true
	h.Verdict = fmt.Sprintf("accepts mail for <%s>", rcpt)
	if h.TLS == nil && strings.EqualFold(c.TLSLevel, "may") {
		h.Verdict += " (in plaintext)"
	}
	return h
}

// extLines returns the EHLO extensions, sorted.
func extLines(s *session) []string {
	out := make([]string, 0, len(s.ext))
	for kw, param := range s.ext {
		out = append(out, strings.TrimSpace(kw+" "+param))
	}
	slices.Sort(out)
	return out
}

// tlsReport describes a negotiated TLS session and checks the chain
// against the system's roots for host.
func tlsReport(cs tls.ConnectionState, host string) *ProbeTLS {
	r := &ProbeTLS{Version: tlsVersionName(cs.Version), Cipher: tls.CipherSuiteName(cs.CipherSuite)}
	if len(cs.PeerCertificates) == 0 {
		r.TrustReason = "no certificate"
		return r
	}
	leaf := cs.PeerCertificates[0]
	r.Subject, r.Issuer, r.NotAfter = leaf.Subject.String(), leaf.Issuer.String(), leaf.NotAfter
	r.Names = leaf.DNSNames
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Intermediates: inter})
	r.Trusted = err == nil
	if err != nil {
		r.TrustReason = err.Error()
	}
	return r
}

// tlsVersionName words a version as Postfix's log does ("TLSv1.3").
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}
