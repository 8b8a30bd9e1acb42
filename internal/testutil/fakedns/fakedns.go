// Package fakedns is an in-process DNS server on 127.0.0.1 for tests. It
// answers MX, A and AAAA questions from a table the test fills in, can be
// told to fail a name with NXDOMAIN, SERVFAIL or silence (a timeout), and
// hands out a *net.Resolver whose every query goes to it, so code that takes
// a resolver runs against it without touching the machine's DNS.
//
// A name that has no record of any type, and no injected failure, does not
// exist (NXDOMAIN). A name that has some records but none of the asked type
// answers NOERROR with an empty answer (NODATA), as a real server does.
package fakedns

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Failure is an injected answer for a name.
type Failure int

const (
	// NXDomain answers that the name does not exist.
	NXDomain Failure = iota + 1
	// ServFail answers SERVFAIL: a temporary failure.
	ServFail
	// Timeout never answers, so the resolver gives up after its deadline.
	Timeout
	// Refused answers REFUSED.
	Refused
)

// Query is one question the server received.
type Query struct {
	Name string // lower case, with the trailing dot
	Type string // "MX", "A", "AAAA", ...
}

// Server is a running fake DNS server. Its methods are safe for concurrent
// use, so a test may change the table while a resolver uses it.
type Server struct {
	// UDPAddr and TCPAddr are where the server listens.
	UDPAddr, TCPAddr string

	udp, tcp *dns.Server

	mu       sync.Mutex
	records  map[string][]dns.RR // key: name + "/" + type
	names    map[string]bool     // names that exist
	failures map[string]Failure  // key: name + "/" + type, type "*" for all
	queries  []Query
}

// Start starts a server on 127.0.0.1 (UDP and TCP) and stops it when the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatalf("fakedns: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a server on 127.0.0.1; the caller must Close it.
func New() (*Server, error) {
	s := &Server{
		records:  map[string][]dns.RR{},
		names:    map[string]bool{},
		failures: map[string]Failure{},
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakedns: listen udp: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("fakedns: listen tcp: %w", err)
	}
	s.UDPAddr, s.TCPAddr = pc.LocalAddr().String(), ln.Addr().String()
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: ln, Handler: s, NotifyStartedFunc: notify}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			s.Close()
			return nil, fmt.Errorf("fakedns: server did not start")
		}
	}
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

// Resolver returns a pure-Go resolver that sends every query to this
// server, whatever /etc/resolv.conf names.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			addr := s.UDPAddr
			if strings.HasPrefix(network, "tcp") {
				addr = s.TCPAddr
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

func (s *Server) add(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := rr.Header()
	key := h.Name + "/" + dns.TypeToString[h.Rrtype]
	s.records[key] = append(s.records[key], rr)
	s.names[h.Name] = true
}

// AddMX adds an MX record for domain.
func (s *Server) AddMX(domain string, pref uint16, host string) {
	s.add(&dns.MX{
		Hdr:        dns.RR_Header{Name: fqdn(domain), Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 60},
		Preference: pref, Mx: fqdn(host),
	})
}

// AddA adds A records (IPv4) for host.
func (s *Server) AddA(host string, ips ...string) {
	for _, ip := range ips {
		s.add(&dns.A{
			Hdr: dns.RR_Header{Name: fqdn(host), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A:   net.ParseIP(ip).To4(),
		})
	}
}

// AddAAAA adds AAAA records (IPv6) for host.
func (s *Server) AddAAAA(host string, ips ...string) {
	for _, ip := range ips {
		s.add(&dns.AAAA{
			Hdr:  dns.RR_Header{Name: fqdn(host), Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 60},
			AAAA: net.ParseIP(ip),
		})
	}
}

// AddName makes name exist without records, so questions about it get
// NODATA instead of NXDOMAIN.
func (s *Server) AddName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names[fqdn(name)] = true
}

// Fail makes questions for name of type qtype ("MX", "A", "AAAA", or "" for
// every type) get the failure f; f 0 removes the failure.
func (s *Server) Fail(name, qtype string, f Failure) {
	if qtype == "" {
		qtype = "*"
	}
	key := fqdn(name) + "/" + strings.ToUpper(qtype)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == 0 {
		delete(s.failures, key)
		return
	}
	s.failures[key] = f
}

// Queries returns the questions received so far, in order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// ServeDNS answers one query from the table.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name, typ := strings.ToLower(q.Name), dns.TypeToString[q.Qtype]
	s.mu.Lock()
	s.queries = append(s.queries, Query{Name: name, Type: typ})
	f, ok := s.failures[name+"/"+typ]
	if !ok {
		f = s.failures[name+"/*"]
	}
	exists := s.names[name]
	for _, rr := range s.records[name+"/"+typ] {
		m.Answer = append(m.Answer, dns.Copy(rr))
	}
	s.mu.Unlock()
	switch {
	case f == Timeout:
		return // no answer at all
	case f == NXDomain:
		m.Answer, m.Rcode = nil, dns.RcodeNameError
	case f == ServFail:
		m.Answer, m.Rcode = nil, dns.RcodeServerFailure
	case f == Refused:
		m.Answer, m.Rcode = nil, dns.RcodeRefused
	case !exists:
		m.Rcode = dns.RcodeNameError
	}
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
		// A negative answer carries the zone's SOA, as a real server's
		// does; the Go resolver treats NODATA without it the same way,
		// but other resolvers care.
		m.Ns = []dns.RR{&dns.SOA{
			Hdr: dns.RR_Header{Name: zoneOf(name), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns:  "ns." + zoneOf(name), Mbox: "hostmaster." + zoneOf(name),
			Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 60,
		}}
	}
	w.WriteMsg(m)
}

// zoneOf returns the parent of name, or the root for a top-level name.
func zoneOf(name string) string {
	if i := strings.IndexByte(name, '.'); i >= 0 && i+1 < len(name) {
		return name[i+1:]
	}
	return "."
}
