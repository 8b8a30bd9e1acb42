package server

import (
	"context"
	"fmt"
	"net"
	"os/user"
	"strconv"
	"sync"
	"time"

	"sluice/internal/control"
	"sluice/internal/manage"
	"sluice/internal/qshape"
	"sluice/internal/showq"
)

// intake is everything that lets work in: the SMTP listeners, pickup,
// and the control socket.
type intake struct {
	ctl     *control.Server
	stops   []func(ctx context.Context)
	listens []net.Addr
	wg      sync.WaitGroup
}

func (s *Server) startIntake() (_ *intake, err error) {
	in := &intake{}
	defer func() {
		if err != nil {
			in.stop()
		}
	}()
	if err := s.startSMTPD(in); err != nil {
		return nil, err
	}
	if err := s.startPickup(in); err != nil {
		return nil, err
	}
	authorize, err := s.authorizer()
	if err != nil {
		return nil, err
	}
	listings := &showq.Cache{}
	ctl, err := control.Listen(s.sp.Root, control.Backend{
		Queue:    &manage.Queue{Spool: s.sp, Now: s.clk.Now, Coord: s.qm, Warn: func(f string, a ...any) { s.log.Warn("qmgr", f, a...) }},
		FlushAll: s.qm.FlushAll,
		FlushSite: func(site string) error {
			_, err := s.qm.FlushSite(site)
			return err
		},
		MailOwner: mailOwner(s.opt.Config.Get("mail_owner")),
		Authorize: authorize,
		Showq:     listings,
		Qshape:    &qshape.Cache{},
		Now:       s.clk.Now,
	})
	if err != nil {
		return nil, err
	}
	in.ctl = ctl
	if err := s.startShowq(in, listings); err != nil {
		return nil, err
	}
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		if err := ctl.Serve(); err != nil {
			s.log.Warn("master", "control socket: %v", err)
		}
	}()
	return in, nil
}

func (in *intake) addrs() []net.Addr { return in.listens }

// stop closes the listeners and waits a little for sessions to end.
func (in *intake) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := len(in.stops) - 1; i >= 0; i-- {
		in.stops[i](ctx)
	}
	in.stops = nil
	if in.ctl != nil {
		in.ctl.Shutdown(ctx)
		in.ctl = nil
	}
	in.wg.Wait()
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

var _ = fmt.Sprint
