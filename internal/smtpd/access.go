package smtpd

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseNetworks parses a mynetworks value: CIDR blocks or single
// addresses, IPv6 optionally in brackets as Postfix writes them
// ("[::1]/128"), separated by commas or white space.
func ParseNetworks(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.HasPrefix(s, "[") {
			if i := strings.IndexByte(s, ']'); i > 0 {
				s = s[1:i] + s[i+1:]
			}
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("mynetworks: bad address %q", s)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("mynetworks: bad network %q", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// inNetworks reports whether ip is in one of nets. IPv4-mapped IPv6
// addresses match IPv4 networks.
func inNetworks(ip netip.Addr, nets []netip.Prefix) bool {
	ip = ip.Unmap()
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
