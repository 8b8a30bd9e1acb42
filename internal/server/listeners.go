package server

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// The SMTP listening sockets belong to the daemon, not to an SMTP
// server: as Postfix's master keeps its service sockets open across a
// reload and hands them to new smtpd processes, a reload here starts a
// new SMTP server on the same sockets while the old one finishes its
// sessions. No connection is refused in between and no port is rebound.
// Each socket has one acceptor goroutine (a port) that hands connections
// to the current server's handoff listener.

// port is one listening socket of smtpd_listen.
type port struct {
	addr string // as configured
	ln   net.Listener
	done chan struct{}

	mu  sync.Mutex
	cur *handoff // the SMTP server taking connections now; nil: none

	// attached is closed when a server is first attached, quit when the
	// port closes: until then connections wait in the backlog.
	attached   chan struct{}
	attachOnce sync.Once
	quit       chan struct{}
	quitOnce   sync.Once
}

func (s *Server) openPort(addr string) (*port, error) {
	var ln net.Listener
	if s.opt.Listener != nil {
		// A root master may have opened it (a privileged port).
		l, err := s.opt.Listener(addr)
		if err != nil {
			return nil, fmt.Errorf("smtpd: inherited socket for %s: %w", addr, err)
		}
		ln = l
	}
	if ln == nil {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("smtpd: listen on %s: %w", addr, err)
		}
		ln = l
	}
	p := &port{addr: addr, ln: ln, done: make(chan struct{}), attached: make(chan struct{}), quit: make(chan struct{})}
	go p.accept()
	return p, nil
}

func (p *port) accept() {
	defer close(p.done)
	// A socket a root master opened has been listening since before
	// this process started: the connections in its backlog must wait
	// for the first SMTP server, not be accepted and closed.
	select {
	case <-p.attached:
	case <-p.quit:
		return
	}
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait a little
			// instead of spinning; the connection waits in the backlog.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		p.handOff(c)
	}
}

// handOff gives c to the current server; when that server stops taking
// connections before taking it, c goes to its successor, or is closed
// when there is none.
func (p *port) handOff(c net.Conn) {
	for {
		p.mu.Lock()
		h := p.cur
		p.mu.Unlock()
		if h == nil {
			c.Close()
			return
		}
		select {
		case h.conns <- c:
			return
		case <-h.closed:
			p.mu.Lock()
			stale := p.cur == h
			p.mu.Unlock()
			if stale {
				c.Close()
				return
			}
		}
	}
}

// attach makes h the receiver of new connections.
func (p *port) attach(h *handoff) {
	p.mu.Lock()
	p.cur = h
	p.mu.Unlock()
	p.attachOnce.Do(func() { close(p.attached) })
}

// close stops listening.
func (p *port) close() {
	p.quitOnce.Do(func() { close(p.quit) })
	p.ln.Close()
	<-p.done
}

// handoff is the net.Listener one SMTP server serves: its connections
// come from a port. Closing it (the server's Shutdown does) stops the
// server's accepting, not the socket.
type handoff struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case <-h.closed:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }
