package server

import (
	"net"
	"net/netip"

	"sluice/internal/config"
	"sluice/internal/rewrite"
	"sluice/internal/smtp"
)

// NewProbeClient builds, for `sluice probe`, the delivery client a daemon
// running with c would use: the same relayhost, TLS security level,
// connect timeout and HELO name, and loop detection against the
// configured smtpd_listen addresses and proxy_interfaces, so that the
// probe follows delivery's path. res and port stand in for the system's
// resolver and port 25 (tests); nil and 0 mean those.
func NewProbeClient(c *config.Config, res *net.Resolver, port int) (*smtp.Client, error) {
	set, err := load(c)
	if err != nil {
		return nil, err
	}
	var r smtp.Resolver = net.DefaultResolver
	if res != nil {
		r = res
	}
	if port == 0 {
		port = 25
	}
	self := map[netip.AddrPort]bool{}
	for _, l := range set.listen {
		ap, err := netip.ParseAddrPort(l)
		if err != nil {
			continue // a host name or a bare port: not worth a lookup here
		}
		addrs, _ := rewrite.OwnAddrs([]net.Addr{net.TCPAddrFromAddrPort(ap)}, nil, net.InterfaceAddrs)
		for _, a := range addrs {
			self[netip.AddrPortFrom(a, ap.Port())] = true
		}
	}
	proxy, _ := rewrite.OwnAddrs(nil, c.List("proxy_interfaces"), nil)
	for _, a := range proxy {
		self[netip.AddrPortFrom(a, uint16(port))] = true
	}
	return &smtp.Client{
		Resolver:       r,
		HeloName:       set.myHostname,
		RelayHost:      set.relayHost,
		Port:           port,
		ConnectTimeout: set.connectTimeout,
		TLSLevel:       set.tlsLevel,
		MyHostname:     set.myHostname,
		IsSelf: func(ap netip.AddrPort) bool {
			return self[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
		},
	}, nil
}
