package smtp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"sluice/internal/event"
)

// destination is a parsed next hop.
type destination struct {
	host string // domain, host name or address literal (without brackets)
	port int
	mx   bool   // look up MX records for host
	key  string // connection-cache key
}

// parseDestination reads "[host]:port", "[host]", "host:port" or "host".
func parseDestination(s string, defPort int) (destination, error) {
	d := destination{port: defPort, mx: true}
	rest := strings.TrimSpace(s)
	if rest == "" {
		return d, fmt.Errorf("empty next-hop destination")
	}
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return d, fmt.Errorf("malformed next-hop destination %q", s)
		}
		d.host, d.mx = rest[1:end], false
		rest = rest[end+1:]
		if len(d.host) > 5 && strings.EqualFold(d.host[:5], "ipv6:") {
			d.host = d.host[5:]
		}
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return d, fmt.Errorf("malformed next-hop destination %q", s)
			}
			p, err := parsePort(rest[1:])
			if err != nil {
				return d, fmt.Errorf("malformed next-hop destination %q: %v", s, err)
			}
			d.port = p
		}
	} else {
		d.host = rest
		if i := strings.LastIndexByte(rest, ':'); i >= 0 && strings.Count(rest, ":") == 1 {
			p, err := parsePort(rest[i+1:])
			if err != nil {
				return d, fmt.Errorf("malformed next-hop destination %q: %v", s, err)
			}
			d.host, d.port = rest[:i], p
		}
		if net.ParseIP(d.host) != nil {
			d.mx = false
		}
	}
	d.host = strings.TrimSuffix(strings.ToLower(d.host), ".")
	if d.host == "" {
		return d, fmt.Errorf("malformed next-hop destination %q", s)
	}
	if d.mx {
		d.key = d.host + ":" + strconv.Itoa(d.port)
	} else {
		d.key = "[" + d.host + "]:" + strconv.Itoa(d.port)
	}
	return d, nil
}

func parsePort(s string) (int, error) {
	if s == "smtp" {
		return 25, nil
	}
	p, err := strconv.Atoi(s)
	if err != nil || p <= 0 || p > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return p, nil
}

// target is one address to try.
type target struct {
	host string // MX host name, or the address itself for literals
	ip   net.IP
	port int
	pref uint16 // MX preference
}

func (t target) namaddr() string { return t.host + "[" + t.ip.String() + "]" }

func (t target) relay() string { return t.namaddr() + ":" + strconv.Itoa(t.port) }

// resolve turns a destination into addresses to try, most preferred first.
func (c *Client) resolve(ctx context.Context, d destination) ([]target, *failure) {
	if ip := net.ParseIP(d.host); ip != nil {
		return []target{{host: ip.String(), ip: ip, port: d.port}}, nil
	}
	if c.Resolver == nil {
		return nil, &failure{soft: true, dsn: "4.3.5", reason: "mail system configuration error: no resolver", kind: event.KindLocal}
	}
	if !d.mx {
		return c.hostTargets(ctx, d.host, d.port)
	}
	mxs, err := c.Resolver.LookupMX(ctx, d.host+".")
	if err != nil {
		if isNotFound(err) {
			// No MX records (or no such name): the name itself is the
			// mail exchanger (RFC 5321 §5.1). Postfix reports the error
			// of the address lookup that follows.
			return c.hostTargets(ctx, d.host, d.port)
		}
		return nil, dnsFailure(d.host, "MX", err)
	}
	// A single MX record with the root as its host is a null MX (RFC 7505).
	if len(mxs) == 1 && strings.Trim(mxs[0].Host, ".") == "" {
		return nil, &failure{dsn: "5.1.0", reason: fmt.Sprintf("Domain %s does not accept mail (nullMX)", d.host)}
	}
	var out []target
	var soft, hard *failure
	looped := false
	for _, mx := range mxs {
		host := strings.TrimSuffix(strings.ToLower(mx.Host), ".")
		if host == "" {
			continue
		}
		ts, f := c.hostTargets(ctx, host, d.port)
		if f != nil {
			// A soft error dominates past and future hard errors.
			if f.soft {
				soft = f
			} else if hard == nil {
				hard = f
			}
			continue
		}
		if slices.ContainsFunc(ts, c.isSelf) {
			// This host is an MX host: only better ones are worth
			// trying. The records come sorted by preference, so
			// everything after this one is no better either.
			looped = true
			out = slices.DeleteFunc(out, func(t target) bool { return t.pref >= mx.Pref })
			break
		}
		for i := range ts {
			ts[i].pref = mx.Pref
		}
		out = append(out, ts...)
		if len(out) >= maxAddresses {
			out = out[:maxAddresses]
			break
		}
	}
	if len(out) == 0 && looped {
		return nil, &failure{dsn: loopDSN, reason: fmt.Sprintf("mail for %s loops back to myself", d.host)}
	}
	if len(out) == 0 {
		if soft != nil {
			return nil, soft
		}
		if hard != nil {
			return nil, hard
		}
		return nil, &failure{soft: true, dsn: "4.4.4", reason: fmt.Sprintf("no MX host for %s has a valid address record", d.host), kind: event.KindDNS}
	}
	return out, nil
}

// hostTargets looks up the addresses of one host.
func (c *Client) hostTargets(ctx context.Context, host string, port int) ([]target, *failure) {
	addrs, err := c.Resolver.LookupIPAddr(ctx, host+".")
	if err != nil {
		return nil, dnsFailure(host, "A", err)
	}
	var out []target
	for _, a := range addrs {
		if a.IP == nil {
			continue
		}
		out = append(out, target{host: host, ip: a.IP, port: port})
	}
	if len(out) == 0 {
		return nil, &failure{dsn: "5.4.4", reason: fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=A: Host not found", host), kind: event.KindDNS}
	}
	return out, nil
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// dnsFailure words a failed lookup as Postfix's dns_lookup does: a name
// that does not exist is a hard error (5.4.4), anything else is temporary
// (4.4.3).
func dnsFailure(name, qtype string, err error) *failure {
	if isNotFound(err) {
		return &failure{dsn: "5.4.4", reason: fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: Host not found", name, qtype), kind: event.KindDNS}
	}
	return &failure{soft: true, dsn: "4.4.3", reason: fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: Host not found, try again", name, qtype), kind: event.KindDNS}
}
