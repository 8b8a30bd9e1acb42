package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"

	"sluice/internal/control"
	"sluice/internal/privsep"
	"sluice/internal/showq"
	"sluice/internal/spool"
)

// What sluice serve needs for least privilege (package privsep): SMTP
// sockets and a mail log opened by a root master, the listing and flush
// rules on the control socket, and public/showq for Postfix's postqueue.

// authorizer applies authorized_mailq_users and authorized_flush_users
// to the peers of the control socket.
func (s *Server) authorizer() (func(uid int, what control.Access) error, error) {
	p, err := privsep.NewPolicy(s.opt.Config)
	if err != nil {
		return nil, err
	}
	return func(uid int, what control.Access) error {
		switch {
		case what == control.AccessList && !p.MayList(uid):
			return errors.New(privsep.ListRefusal(uid))
		case what == control.AccessFlush && !p.MayFlush(uid):
			return errors.New(privsep.FlushRefusal(uid))
		}
		return nil
	}, nil
}

// startShowq serves public/showq: the queue listing in Postfix's showq
// protocol (from listings, as the control socket's), so that Postfix's
// postqueue -p/-j and mailq work on this spool while the daemon runs. Users authorized_mailq_users leaves out
// are disconnected (Postfix's postqueue refuses them before it
// connects).
func (s *Server) startShowq(listings *showq.Lister) error {
	ln, err := spool.ListenSocket(filepath.Join(s.sp.Root, "public", "showq"))
	if err != nil {
		return fmt.Errorf("showq: %w", err)
	}
	p, err := privsep.NewPolicy(s.opt.Config)
	if err != nil {
		ln.Close()
		return err
	}
	opt := showq.DefaultOptions()
	opt.EmptyAddress = s.opt.Config.Get("empty_address_recipient")
	if n, err := s.opt.Config.Int("duplicate_filter_limit"); err == nil {
		opt.DupFilterLimit = int(n)
	}
	opt.UTF8 = s.opt.Config.SMTPUTF8Enable()
	opt.Warn = func(msg string) { s.log.Warn("showq", "%s", msg) }
	allow := func(c net.Conn) bool { return p.MayList(control.PeerUID(c)) }
	s.showqLn = ln
	s.showqDone = make(chan struct{})
	done := s.showqDone
	go func() {
		defer close(done)
		showq.Serve(ln, allow, func(w io.Writer) error {
			return listings.Write(w, opt, showq.Format{Kind: showq.Protocol})
		})
	}()
	// No listing is made ahead of time: the first one after a start
	// reads every file (see showq.Lister), when someone asks, rather
	// than competing with the start's own work and the first actions.
	return nil
}
