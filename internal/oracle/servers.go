package oracle

import (
	"bufio"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreePort returns a loopback TCP port that was free a moment ago, for
// a Postfix instance or peer that binds it itself. It is drawn at random
// from 10000-31999, below Linux's ephemeral range (32768 up): the
// kernel's own choice for port 0 comes from that range, where the
// outgoing connections of every test and the next caller of port 0 take
// theirs too, and two test processes asking at once get neighbouring
// ports. A random pick outside it rarely meets either.
func FreePort(t testing.TB) int {
	t.Helper()
	for try := 0; try < 200; try++ {
		p := 10000 + rand.IntN(22000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("oracle: no free port in 10000-31999 after 200 tries")
	return 0
}

// Peer is a fake SMTP server on a loopback port for a Postfix instance
// to deliver to (route a domain to it with Options.Transports and
// "smtp:[127.0.0.1]:PORT"). It stops when the test ends.
type Peer struct {
	Port int

	ln        net.Listener
	mu        sync.Mutex
	conns     []net.Conn
	connected chan struct{}
	once      sync.Once
	wg        sync.WaitGroup
}

// Connected is closed when the first client has connected.
func (p *Peer) Connected() <-chan struct{} { return p.connected }

// Transport is the transport_maps value that routes a domain to p.
func (p *Peer) Transport() string { return "smtp:[127.0.0.1]:" + strconv.Itoa(p.Port) }

func startPeer(t testing.TB, serve func(p *Peer, c net.Conn)) *Peer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("oracle: listen: %v", err)
	}
	p := &Peer{Port: ln.Addr().(*net.TCPAddr).Port, ln: ln, connected: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			p.once.Do(func() { close(p.connected) })
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer c.Close()
				serve(p, c)
			}()
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *Peer) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TempFailPeer answers every RCPT TO with reply, e.g. "450 4.2.0 Mailbox
// busy, try again later"; Postfix then defers the recipient with the
// reason "host 127.0.0.1[127.0.0.1] said: <reply> (in reply to RCPT TO
// command)". Long replies give reasons past mailq's 76 columns.
func TempFailPeer(t testing.TB, reply string) *Peer {
	return startPeer(t, func(p *Peer, c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		r := bufio.NewReader(c)
		say := func(s string) bool {
			_, err := c.Write([]byte(s + "\r\n"))
			return err == nil
		}
		if !say("220 peer.test ESMTP oracle peer") {
			return
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			var ok bool
			switch {
			case strings.HasPrefix(cmd, "EHLO"):
				ok = say("250-peer.test") && say("250 8BITMIME")
			case strings.HasPrefix(cmd, "HELO"):
				ok = say("250 peer.test")
			case strings.HasPrefix(cmd, "RCPT"):
				ok = say(reply)
			case strings.HasPrefix(cmd, "QUIT"):
				say("221 2.0.0 Bye")
				return
			case strings.HasPrefix(cmd, "DATA"):
				ok = say("554 5.5.1 No valid recipients")
			default:
				ok = say("250 2.0.0 Ok")
			}
			if !ok {
				return
			}
		}
	})
}

// StallPeer accepts connections and never says anything, so a Postfix
// delivery to it hangs in the greeting for smtp_helo_timeout and its
// message stays in the active queue; stopping the instance then leaves
// the file in active/.
func StallPeer(t testing.TB) *Peer {
	return startPeer(t, func(p *Peer, c net.Conn) {
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
}
