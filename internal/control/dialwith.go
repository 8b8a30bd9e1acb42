package control

import (
	"context"
	"net"
	"net/http"
)

// DialWith is Dial for a client that cannot connect to the socket itself:
// dial makes each connection (a local user whom public/, mode 2710, keeps
// out goes through the setgid helper, privsep.DialPublic). name is the
// socket's path, for messages. It returns ErrNoDaemon when the first
// connection fails.
func DialWith(name string, dial func() (net.Conn, error)) (*Client, error) {
	c, err := dial()
	if err != nil {
		return nil, ErrNoDaemon
	}
	// The first connection serves the first request: the helper is a
	// process start per connection, and the tools mostly make one.
	first := make(chan net.Conn, 1)
	first <- c
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			select {
			case c := <-first:
				return wrapConn(c), nil
			default:
			}
			c, err := dial()
			if err != nil {
				return nil, err
			}
			return wrapConn(c), nil
		},
	}
	return &Client{hc: &http.Client{Transport: tr}, path: name, first: first}, nil
}
