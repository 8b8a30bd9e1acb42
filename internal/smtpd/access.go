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

// domainOf returns the lower-cased domain of an address, without a
// trailing dot; "" when the address has none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(addr[i+1:]), ".")
}

// domainList is a list of domains; a leading dot ("." + domain) or the
// subdomain flag also matches every subdomain, as Postfix's
// parent_domain_matches_subdomains does for relay_domains.
type domainList struct {
	exact map[string]bool
	// parents are domains whose subdomains match too.
	parents []string
}

func newDomainList(names []string, subdomains bool) domainList {
	dl := domainList{exact: map[string]bool{}}
	for _, n := range names {
		n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
		if n == "" {
			continue
		}
		if strings.HasPrefix(n, ".") {
			dl.parents = append(dl.parents, n[1:])
			continue
		}
		dl.exact[n] = true
		if subdomains {
			dl.parents = append(dl.parents, n)
		}
	}
	return dl
}

func (dl domainList) match(domain string) bool {
	if dl.exact[domain] {
		return true
	}
	for _, p := range dl.parents {
		if strings.HasSuffix(domain, "."+p) {
			return true
		}
	}
	return false
}
