package rewrite

import (
	"net/netip"
	"strings"
)

// Class is Postfix's address class of a resolved address.
type Class int

const (
	// Default is mail for elsewhere: relayed only for trusted clients.
	Default Class = iota
	// Local is mail for this host: mydestination or an address literal of
	// one of its own addresses.
	Local
	// Relay is mail for a domain in relay_domains.
	Relay
)

func (c Class) String() string {
	switch c {
	case Local:
		return "local"
	case Relay:
		return "relay"
	}
	return "default"
}

// Result is a resolved address.
type Result struct {
	// Address is the address as resolved (resolve_clnt's rcpt): routing
	// this host does itself is undone, case is kept. For an invalid
	// address it is the part that failed ("user@").
	Address string
	// Domain is the destination: Address's domain in lower case, without
	// a trailing dot; an address literal keeps its brackets.
	Domain string
	Class  Class
	// Routed says the final local part still holds "@", "%" or "!".
	Routed bool
	// Invalid says the address has no valid destination (an empty,
	// malformed or numeric domain): "501 5.1.3 Bad recipient address
	// syntax".
	Invalid bool
}

// Config is what resolving needs, with Postfix's parameter names.
type Config struct {
	MyHostname    string
	MyOrigin      string   // appended to addresses without a domain; MyHostname when empty
	MyDestination []string // domains this host is the final destination for
	RelayDomains  []string // domains relayed for anyone; subdomains match too
	// OwnAddrs are the addresses this host receives mail on
	// (inet_interfaces and proxy_interfaces): "[addr]" literals of them
	// are local.
	OwnAddrs             []netip.Addr
	AllowPercentHack     bool // allow_percent_hack
	SwapBangPath         bool // swap_bangpath
	ResolveDequoted      bool // resolve_dequoted_address
	ResolveNullDomain    bool // resolve_null_domain
	ResolveNumericDomain bool // resolve_numeric_domain
	// AllowUntrustedRouting lets untrusted clients send routed
	// addresses to local and relay domains (allow_untrusted_routing).
	AllowUntrustedRouting bool
}

// DefaultConfig returns Postfix's defaults for the routing switches
// (percent hack, bang paths and dequoting on; null and numeric domains
// off) with the given names.
func DefaultConfig(myhostname string, mydestination []string) Config {
	return Config{
		MyHostname: myhostname, MyOrigin: myhostname, MyDestination: mydestination,
		AllowPercentHack: true, SwapBangPath: true, ResolveDequoted: true,
	}
}

// Resolver resolves addresses. It is read-only after New and safe for
// concurrent use.
type Resolver struct {
	cfg    Config
	mydest map[string]bool
	relay  domainList
	own    map[netip.Addr]bool
}

// New returns a Resolver for cfg.
func New(cfg Config) *Resolver {
	if cfg.MyOrigin == "" {
		cfg.MyOrigin = cfg.MyHostname
	}
	r := &Resolver{cfg: cfg, mydest: map[string]bool{}, relay: newDomainList(cfg.RelayDomains), own: map[netip.Addr]bool{}}
	for _, d := range cfg.MyDestination {
		if d = normDomain(d); d != "" {
			r.mydest[d] = true
		}
	}
	for _, a := range cfg.OwnAddrs {
		r.own[a.Unmap()] = true
	}
	return r
}

// maxRounds bounds the resolving loop; every round makes the address
// shorter, so this only guards against mistakes.
const maxRounds = 100

// Resolve resolves addr (internal form, see the package comment).
func (r *Resolver) Resolve(addr string) Result {
	addr = r.rewriteLocal(addr)
	at := strings.LastIndexByte(addr, '@')
	local, domain, hasDomain := addr[:at], addr[at+1:], true
	saved := "" // the last local domain stripped, as written
	for range maxRounds {
		if !hasDomain {
			// A local part left after a local domain was stripped.
			if next, ok := r.routeLocalPart(local); ok {
				local, domain, hasDomain = r.split(next)
				continue
			}
			return r.localResult(local, saved)
		}
		if domain == "" {
			if r.cfg.ResolveNullDomain || r.routes(local) {
				local, domain, hasDomain = r.split(local)
				continue
			}
			if local == "" {
				local = "MAILER-DAEMON"
			}
			return Result{Address: local + "@", Invalid: true}
		}
		domain = stripDot(domain)
		if r.cfg.ResolveNumericDomain && isNumericDomain(domain) {
			if _, ok := parseIPv4(domain); ok {
				domain = "[" + domain + "]"
			}
		}
		if !validDomain(domain) {
			return Result{Address: local + "@" + domain, Domain: strings.ToLower(domain), Invalid: true}
		}
		if r.isLocal(domain) {
			saved = domain
			local, domain, hasDomain = r.split(local)
			continue
		}
		res := Result{Address: local + "@" + domain, Domain: strings.ToLower(domain), Routed: routedChars(local)}
		if r.relay.match(res.Domain) {
			res.Class = Relay
		}
		return res
	}
	return Result{Address: local, Invalid: true}
}

// split looks at what is left once a domain is stripped: an address
// again when it holds an "@" that is seen (see opaque), else a bare local
// part.
func (r *Resolver) split(s string) (local, domain string, hasDomain bool) {
	if r.opaque(s) {
		return s, "", false
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s, "", false
	}
	return s[:at], s[at+1:], true
}

// localResult is the result for a local part that routes nowhere else.
// An empty domain means only empty domains were stripped: @myhostname.
func (r *Resolver) localResult(local, domain string) Result {
	if domain == "" {
		domain = r.cfg.MyHostname
	}
	if local == "" {
		local = "MAILER-DAEMON"
	}
	return Result{Address: local + "@" + domain, Domain: strings.ToLower(domain), Class: Local, Routed: routedChars(local)}
}

// rewriteLocal is trivial-rewrite's "local" context as far as it matters
// here: complete an address without a domain, and drop a trailing dot.
func (r *Resolver) rewriteLocal(addr string) string {
	if !strings.Contains(addr, "@") {
		if next, ok := r.routeLocalPart(addr); ok {
			return next
		}
		return addr + "@" + r.cfg.MyOrigin
	}
	at := strings.LastIndexByte(addr, '@')
	return addr[:at+1] + stripDot(addr[at+1:])
}

// routeLocalPart turns a local part without "@" into an address by the
// bang path or percent rules, when they apply.
func (r *Resolver) routeLocalPart(local string) (string, bool) {
	if r.opaque(local) || strings.Contains(local, "@") {
		return "", false
	}
	if r.cfg.SwapBangPath {
		if i := strings.IndexByte(local, '!'); i >= 0 {
			return local[i+1:] + "@" + local[:i], true
		}
	}
	if r.cfg.AllowPercentHack {
		if i := strings.LastIndexByte(local, '%'); i >= 0 {
			return local[:i] + "@" + local[i+1:], true
		}
	}
	return "", false
}

// routes reports whether a local part before an empty domain still
// routes: it holds an "@" that is seen, or a bang or percent that the
// settings honour.
func (r *Resolver) routes(local string) bool {
	if r.opaque(local) {
		return false
	}
	return strings.Contains(local, "@") ||
		r.cfg.SwapBangPath && strings.Contains(local, "!") ||
		r.cfg.AllowPercentHack && strings.Contains(local, "%")
}

// opaque reports whether a local part is one quoted string whose inside
// is not looked at: with resolve_dequoted_address = no, a local part that
// must be quoted (it holds "@", a space, …) is one token to Postfix.
func (r *Resolver) opaque(local string) bool {
	return !r.cfg.ResolveDequoted && needsQuotes(local)
}

// isLocal reports whether a domain (no trailing dot) is this host's.
func (r *Resolver) isLocal(domain string) bool {
	if strings.HasPrefix(domain, "[") {
		ip, ok := literalAddr(domain)
		return ok && r.own[ip.Unmap()]
	}
	return r.mydest[strings.ToLower(domain)]
}

func routedChars(local string) bool { return strings.ContainsAny(local, "@%!") }

// stripDot drops one trailing dot, but not from "x.." or ".": those stay
// invalid, as Postfix leaves them.
func stripDot(d string) string {
	if len(d) > 1 && d[len(d)-1] == '.' && d[len(d)-2] != '.' && d[len(d)-2] != '@' {
		return d[:len(d)-1]
	}
	return d
}

func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// domainList matches relay_domains: a name matches itself and its
// subdomains (parent_domain_matches_subdomains), ".name" only subdomains.
type domainList struct {
	exact   map[string]bool
	parents []string
}

func newDomainList(names []string) domainList {
	dl := domainList{exact: map[string]bool{}}
	for _, n := range names {
		n = normDomain(n)
		switch {
		case n == "" || strings.ContainsAny(n, ":/"):
			// Lookup tables are not supported; see the package comment.
		case strings.HasPrefix(n, "."):
			dl.parents = append(dl.parents, n[1:])
		default:
			dl.exact[n] = true
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
