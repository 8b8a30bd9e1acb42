package server

import (
	"net"
	"net/netip"

	"sluice/internal/rewrite"
)

// selfSet is where this process receives mail: every listener's address
// and port (a wildcard listener stands for each interface address), and
// the proxy_interfaces addresses on the delivery port. The SMTP client
// bounces mail whose next hop is one of them ("loops back to myself").
type selfSet map[netip.AddrPort]bool

func (s *Server) setSelf(listeners []net.Addr) {
	set := selfSet{}
	for _, l := range listeners {
		ap, err := netip.ParseAddrPort(l.String())
		if err != nil {
			continue
		}
		addrs, err := rewrite.OwnAddrs([]net.Addr{l}, nil, net.InterfaceAddrs)
		if err != nil {
			s.log.Warn("master", "own addresses: %v", err)
		}
		for _, a := range addrs {
			set[netip.AddrPortFrom(a, ap.Port())] = true
		}
	}
	port := uint16(25)
	if s.opt.SMTPPort > 0 {
		port = uint16(s.opt.SMTPPort)
	}
	proxy, err := rewrite.OwnAddrs(nil, s.opt.Config.List("proxy_interfaces"), nil)
	if err != nil {
		s.log.Warn("master", "%v", err)
	}
	for _, a := range proxy {
		set[netip.AddrPortFrom(a, port)] = true
	}
	s.self.Store(&set)
}

// isSelf reports whether ap is one of this process's receiving
// endpoints; before the listeners open there are none.
func (s *Server) isSelf(ap netip.AddrPort) bool {
	set := s.self.Load()
	return set != nil && (*set)[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
}
