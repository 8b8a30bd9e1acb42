package smtp

import (
	"fmt"
	"net/netip"
	"strings"

	"sluice/internal/event"
)

// Mail loops, as Postfix's smtp client catches them (checked against
// Postfix 3.7.11), and one check Postfix cannot make:
//
//   - The best MX host is this host: MX hosts whose preference is that of
//     the first MX host at one of our own addresses, or worse, are
//     dropped (we may be a backup MX: the better ones are still tried);
//     when none is left the mail bounces with 5.4.6 "mail for DOMAIN
//     loops back to myself".
//   - A server whose reply to EHLO (or HELO) names our own myhostname:
//     warning "host NAME[ADDR]:PORT replied to HELO/EHLO with my own
//     hostname MYHOSTNAME", and the mail bounces with 5.4.6 "mail for
//     NEXTHOP loops back to myself". A greeting (220) that names it is
//     only a warning, "host NAME[ADDR]:PORT greeted me with my own
//     hostname MYHOSTNAME". Postfix makes both checks only on the
//     standard port (here: the client's Port), so that content filters
//     and other instances on the same host, which share its name, are
//     reachable on theirs.
//   - sluice knows the endpoints it listens on: a next hop (relayhost,
//     literal, or an address of an implicit MX) that is one of them is
//     this very process, whatever its port: 5.4.6 "mail for NEXTHOP loops
//     back to myself" at once, before connecting. Postfix relays such
//     mail until the hop count stops it.
//
// What no check here sees (a loop through another host) is left to the
// hop count in cleanup.

// loopDSN is the status of mail that loops back to this host.
const loopDSN = "5.4.6"

func loopFailure(nexthop, relay string) failure {
	return failure{dsn: loopDSN, relay: relay, reason: fmt.Sprintf("mail for %s loops back to myself", nexthop), kind: event.KindLocal}
}

// isSelf reports whether t is one of this host's own listeners.
func (c *Client) isSelf(t target) bool {
	if c.IsSelf == nil {
		return false
	}
	ip, ok := netip.AddrFromSlice(t.ip)
	return ok && c.IsSelf(netip.AddrPortFrom(ip.Unmap(), uint16(t.port)))
}

// namesMe reports whether a greeting or EHLO reply's text starts with our
// myhostname, on the standard port.
func (s *session) namesMe(text string) bool {
	me := s.c.MyHostname
	if me == "" || s.t.port != s.c.port() {
		return false
	}
	word, _, _ := strings.Cut(strings.TrimSpace(text), " ")
	return strings.EqualFold(strings.TrimSuffix(word, "."), strings.TrimSuffix(me, "."))
}

func (c *Client) warn(format string, args ...any) {
	if c.Warn != nil {
		c.Warn(format, args...)
	}
}
