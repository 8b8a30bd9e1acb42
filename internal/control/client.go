package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"sluice/internal/manage"
)

// ErrNoDaemon reports that no daemon answers on the spool's socket.
var ErrNoDaemon = errors.New("control: no daemon is running on this spool")

// Client talks to a daemon's control socket.
type Client struct {
	hc    *http.Client
	path  string
	first chan net.Conn // the connection Dial made, until a request takes it
}

// Dial connects to the daemon of the spool at root. It returns ErrNoDaemon
// when there is no socket or nobody answers on it.
func Dial(root string) (*Client, error) {
	path := filepath.Join(root, SocketName)
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, ErrNoDaemon
	}
	// The first connection serves the first request, as in DialWith.
	first := make(chan net.Conn, 1)
	first <- c
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			select {
			case c := <-first:
				return wrapConn(c), nil
			default:
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, err
			}
			return wrapConn(c), nil
		},
	}
	return &Client{hc: &http.Client{Transport: tr}, path: path, first: first}, nil
}

// Close releases idle connections, and the first one if no request took
// it.
func (c *Client) Close() {
	c.hc.CloseIdleConnections()
	select {
	case conn := <-c.first:
		conn.Close()
	default:
	}
}

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://sluice"+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control: %s: %w", c.path, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden {
			// A refusal is the tool's fatal error, in the daemon's words.
			return nil, &FatalError{Msg: strings.TrimSpace(string(msg))}
		}
		return nil, errors.New(strings.TrimSpace(string(msg)))
	}
	return resp, nil
}

// ActAll applies op to ids through the daemon, calling fn with each
// result as it arrives.
func (c *Client) ActAll(ctx context.Context, op manage.Op, ids []string, queues []string, fn func(ActResult)) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/act", ActRequest{Op: op, IDs: ids, Queues: queues})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var r ActResult
		if err := dec.Decode(&r); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("control: read results: %w", err)
		}
		fn(r)
	}
}

// Act applies op to one message through the daemon.
func (c *Client) Act(ctx context.Context, op manage.Op, id string, queues []string) (manage.Outcome, error) {
	var res *ActResult
	err := c.ActAll(ctx, op, []string{id}, queues, func(r ActResult) { res = &r })
	if err != nil {
		return manage.Outcome{ID: id}, err
	}
	if res == nil {
		return manage.Outcome{ID: id}, errors.New("control: no result")
	}
	if res.NotFound {
		return res.Outcome, manage.ErrNotFound
	}
	if res.Error != "" {
		return res.Outcome, errors.New(res.Error)
	}
	return res.Outcome, nil
}

// Each lists the messages a selector picks, through the daemon.
func (c *Client) Each(ctx context.Context, sel *manage.Selector, full bool, fn func(*manage.Message) error) error {
	v := url.Values{}
	for _, t := range sel.Terms {
		v.Add("term", t.Text)
	}
	if full {
		v.Set("full", "1")
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/messages?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte(`{"error":`)) {
			var e struct{ Error string }
			json.Unmarshal(line, &e)
			return errors.New(e.Error)
		}
		var m manage.Message
		if err := json.Unmarshal(line, &m); err != nil {
			return fmt.Errorf("control: read messages: %w", err)
		}
		if err := fn(&m); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Flush asks the daemon to try deferred mail now: all of it (site "") or
// one destination's.
func (c *Client) Flush(ctx context.Context, site string) error {
	p := "/v1/flush"
	if site != "" {
		p += "?site=" + url.QueryEscape(site)
	}
	resp, err := c.do(ctx, http.MethodPost, p, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
