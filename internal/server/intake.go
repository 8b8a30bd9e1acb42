package server

import (
	"net"
	"os/user"
	"strconv"

	"sluice/internal/control"
	"sluice/internal/httpapi"
	"sluice/internal/showq"
)

// startIntake opens everything that lets work in: the SMTP sockets and
// their server, pickup, and the control socket.
func (s *Server) startIntake() (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ports = map[string]*port{}
	defer func() {
		if err != nil {
			for _, p := range s.ports {
				p.close()
			}
			s.ports = nil
		}
	}()
	var ports []*port
	for _, a := range s.set.listen {
		if s.ports[a] != nil {
			continue
		}
		p, err := s.openPort(a)
		if err != nil {
			return err
		}
		s.ports[a] = p
		ports = append(ports, p)
	}
	clean := s.clean.Load()
	g, err := s.newGen(s.cfg, s.set, clean, s.ports)
	if err != nil {
		return err
	}
	authorize, err := s.authorizer()
	if err != nil {
		return err
	}
	// One Lister for the control socket and public/showq, so both
	// share what it knows of the files.
	listings := showq.NewLister(s.sp, s.model)
	listings.SetCacheLimit(s.listingCacheLimit)
	listings.SetOnListing(s.listingBegins)
	ctl, err := control.Listen(s.sp.Root, control.Backend{
		Queue:    s.manageQueue(),
		FlushAll: s.qm.FlushAll,
		FlushSite: func(site string) error {
			_, err := s.qm.FlushSite(site)
			return err
		},
		MailOwner: mailOwner(s.opt.Config.Get("mail_owner")),
		Authorize: authorize,
		Listing:   listings,
		Now:       s.clk.Now,
		Model:     s.model,

		Suspensions: s.susp, // suspend.go
		AuditPath:   s.auditPath(),
		Warn:        func(f string, a ...any) { s.log.Warn("master", f, a...) },
		Events:      httpapi.EventsHandler(s.stream, httpapi.StreamOptions{}),
		API:         s.apiHandler(),
	})
	if err != nil {
		return err
	}
	s.ctl = ctl
	s.ctlDone = make(chan struct{})
	go func() {
		defer close(s.ctlDone)
		if err := ctl.Serve(); err != nil {
			s.log.Warn("master", "control socket: %v", err)
		}
	}()
	if err := s.startShowq(listings); err != nil {
		return err
	}
	s.startHTTP()
	s.serveGen(g, ports)
	s.gen = g
	s.pick = s.startPickup(clean, s.cfg)
	return nil
}

// Addrs returns the addresses the SMTP server listens on.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrsLocked()
}

// addrsLocked is Addrs with s.mu held.
func (s *Server) addrsLocked() []net.Addr {
	var out []net.Addr
	seen := map[string]bool{}
	for _, a := range s.set.listen {
		if p := s.ports[a]; p != nil && !seen[a] {
			seen[a] = true
			out = append(out, p.ln.Addr())
		}
	}
	return out
}

// mailOwner returns the uid of the mail_owner user, or -1.
func mailOwner(name string) int {
	u, err := user.Lookup(name)
	if err != nil {
		return -1
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return -1
	}
	return uid
}
