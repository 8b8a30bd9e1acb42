package rewrite

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"sluice/internal/config"
)

// FromConfig reads myhostname, myorigin, mydestination, relay_domains,
// allow_percent_hack, swap_bangpath, resolve_dequoted_address,
// resolve_null_domain, resolve_numeric_domain and
// allow_untrusted_routing. own are this host's receiving addresses (see
// OwnAddrs).
func FromConfig(c *config.Config, own []netip.Addr) Config {
	return Config{
		MyHostname:            c.Get("myhostname"),
		MyOrigin:              c.Get("myorigin"),
		MyDestination:         c.List("mydestination"),
		RelayDomains:          c.List("relay_domains"),
		OwnAddrs:              own,
		AllowPercentHack:      c.Bool("allow_percent_hack"),
		SwapBangPath:          c.Bool("swap_bangpath"),
		ResolveDequoted:       c.Bool("resolve_dequoted_address"),
		ResolveNullDomain:     c.Bool("resolve_null_domain"),
		ResolveNumericDomain:  c.Bool("resolve_numeric_domain"),
		AllowUntrustedRouting: c.Bool("allow_untrusted_routing"),
	}
}

// OwnAddrs returns the addresses this host receives mail on: the IP
// addresses of the SMTP listeners, where a wildcard listener (0.0.0.0,
// ::) stands for every address of the machine's interfaces (ifaces,
// normally net.InterfaceAddrs), and the proxy_interfaces addresses (mail
// that reaches us through a proxy or NAT). Postfix takes the first from
// inet_interfaces; sluice listens where smtpd_listen says.
func OwnAddrs(listeners []net.Addr, proxy []string, ifaces func() ([]net.Addr, error)) ([]netip.Addr, error) {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(a netip.Addr) {
		a = a.Unmap().WithZone("")
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	wildcard := false
	for _, l := range listeners {
		ap, err := netip.ParseAddrPort(l.String())
		if err != nil {
			continue
		}
		if ap.Addr().IsUnspecified() {
			wildcard = true
			continue
		}
		add(ap.Addr())
	}
	if wildcard && ifaces != nil {
		addrs, err := ifaces()
		if err != nil {
			return nil, fmt.Errorf("rewrite: interface addresses: %w", err)
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				add(p.Addr())
			} else if ip, err := netip.ParseAddr(a.String()); err == nil {
				add(ip)
			}
		}
	}
	for _, p := range proxy {
		p = strings.Trim(strings.TrimSpace(p), "[]")
		if p == "" {
			continue
		}
		a, err := netip.ParseAddr(p)
		if err != nil {
			return nil, fmt.Errorf("rewrite: proxy_interfaces: %q is not an IP address", p)
		}
		add(a)
	}
	return out, nil
}
