package smtp

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"sluice/internal/event"
)

// Resolver looks up mail exchangers and addresses. *net.Resolver
// satisfies it.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// DSN NOTIFY flags, as Postfix stores them in the queue file.
const (
	NotifyNever   = 1
	NotifySuccess = 2
	NotifyFailure = 4
	NotifyDelay   = 8
)

// DSN RET values, as Postfix stores them.
const (
	RetFull = 1
	RetHdrs = 2
)

// Recipient is one recipient of a delivery.
type Recipient struct {
	Address string
	ORCPT   string // DSN original recipient, "rfc822;addr" (or a bare address)
	Notify  int    // NotifyNever, or an OR of NotifySuccess, NotifyFailure, NotifyDelay
	Offset  int64  // the R record's offset in the queue file, for the caller
}

// Message is what a delivery sends.
type Message struct {
	QueueID    string
	Sender     string // "" is the null sender
	Recipients []Recipient
	Size       int64 // for the SIZE parameter
	EightBit   bool  // BODY=8BITMIME
	SMTPUTF8   bool  // the message needs SMTPUTF8
	EnvID      string
	Ret        int // RetFull, RetHdrs or 0
	// Open returns the message text with LF line ends. It may be called
	// more than once (once per connection that gets as far as DATA).
	Open func() (io.ReadCloser, error)
}

// Status is a recipient's outcome.
type Status int

const (
	Sent Status = iota + 1
	Deferred
	Bounced
)

func (s Status) String() string {
	switch s {
	case Sent:
		return "sent"
	case Deferred:
		return "deferred"
	case Bounced:
		return "bounced"
	}
	return "unknown"
}

// Result is one recipient's outcome.
type Result struct {
	Recipient Recipient
	Status    Status
	DSN       string // 2.0.0, 4.4.1, 5.1.1, ...
	Reason    string // Postfix-style text, for the log and the defer log
	Relay     string // host[ip]:port, or "none" when no server was reached
	// Reply is the server's reply that decided the outcome (lines joined
	// with spaces), for a DSN's Diagnostic-Code; empty when the outcome
	// did not come from a reply (DNS, connection, TLS, local checks).
	Reply string
	// Class is the reason class of a failure (event.Classify), decided
	// from the reply's code, enhanced code and text, or from the kind
	// of error (connection refused, timeout, DNS, TLS); "" when sent.
	Class   string
	ConnUse int // how often the connection has been used, this time included
	// Delays are the connection setup (DNS, connect, greeting, EHLO, TLS)
	// and the transmission (MAIL FROM to the end of DATA).
	Delays [2]time.Duration
}

// Client delivers mail over SMTP. Its fields are read-only once Deliver
// has been called; Deliver may be called from several goroutines at once.
type Client struct {
	Resolver Resolver
	// Dial opens connections; nil means a net.Dialer.
	Dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	HeloName string // default "localhost"
	// RelayHost, when set, replaces every next hop: "[host]:port" skips
	// the MX lookup, "host:port" looks up MX records for host.
	RelayHost      string
	Port           int           // default 25
	ConnectTimeout time.Duration // default 30s (smtp_connect_timeout)
	CommandTimeout time.Duration // default 300s, for every read and write
	TLSLevel       string        // "none" (or ""), "may", "encrypt"
	// TLSConfig is used for STARTTLS; nil means no certificate
	// verification, as Postfix's may and encrypt levels.
	TLSConfig *tls.Config
	// MaxIdle is how long a connection is kept for the next message to the
	// same next hop; 0 closes connections after each delivery.
	MaxIdle time.Duration
	// MyHostname is this host's myhostname: a server on the standard
	// port that answers EHLO with it is this host (see loop.go). Empty
	// turns that check off.
	MyHostname string
	// IsSelf reports whether an address and port is one this host
	// receives mail on (its listeners, and proxy_interfaces on the
	// standard port); mail to it loops back. Nil: nothing is.
	IsSelf func(netip.AddrPort) bool
	// Warn logs a warning ("host … greeted me with my own hostname …");
	// nil drops them.
	Warn func(format string, args ...any)

	texts sync.Pool // *bufio.Reader over message texts (writeData), kept from one message to the next

	mu     sync.Mutex
	idle   map[string][]*session
	closed bool
}

// Limits Postfix applies with its default settings.
const (
	defaultPort           = 25
	defaultConnectTimeout = 30 * time.Second
	defaultCommandTimeout = 300 * time.Second
	maxAddresses          = 5                 // smtp_mx_address_limit
	maxSessions           = 2                 // smtp_mx_session_limit
	maxReuseAge           = 300 * time.Second // smtp_connection_reuse_time_limit
	lineLimit             = 998               // smtp_line_length_limit
)

func (c *Client) port() int {
	if c.Port > 0 {
		return c.Port
	}
	return defaultPort
}

func (c *Client) heloName() string {
	if c.HeloName != "" {
		return c.HeloName
	}
	return "localhost"
}

func (c *Client) connectTimeout() time.Duration {
	if c.ConnectTimeout > 0 {
		return c.ConnectTimeout
	}
	return defaultConnectTimeout
}

func (c *Client) commandTimeout() time.Duration {
	if c.CommandTimeout > 0 {
		return c.CommandTimeout
	}
	return defaultCommandTimeout
}

// failure is an outcome for some recipients: a soft or hard failure with
// its DSN code and Postfix-style reason.
type failure struct {
	soft   bool
	dsn    string
	reason string
	relay  string // "" means "none"
	reply  string // the server reply behind the failure, if any
	kind   event.Kind
	code   int // the reply code, when kind is event.KindReply
}

// class is the failure's reason class, decided here where the reply or
// the error is known (see event.Classify).
func (f failure) class() string {
	text := f.reply
	if text == "" {
		text = f.reason
	}
	return event.Classify(event.Failure{Kind: f.kind, Code: f.code, Enhanced: f.dsn, Text: text})
}

// delivery is the state of one Deliver call.
type delivery struct {
	c       *Client
	m       *Message
	results []Result
	decided []bool // a final outcome (sent or bounced) is known
	nexthop string // as configured, for "mail for … loops back to myself"
	setup   time.Duration
	xfer    time.Duration
}

// Deliver sends m to its recipients through nexthop (a domain, or
// "[host]:port"; ignored when the client has a RelayHost) and returns one
// result per recipient, in order.
func (c *Client) Deliver(ctx context.Context, nexthop string, m *Message) []Result {
	if m == nil {
		return nil
	}
	d := &delivery{
		c: c, m: m,
		results: make([]Result, len(m.Recipients)),
		decided: make([]bool, len(m.Recipients)),
	}
	for i, r := range m.Recipients {
		d.results[i] = Result{Recipient: r, Status: Deferred, DSN: "4.3.0", Reason: "delivery not attempted", Relay: "none"}
	}
	if len(m.Recipients) == 0 {
		return d.results
	}
	start := time.Now()
	d.run(ctx, nexthop)
	if d.setup == 0 && d.xfer == 0 {
		d.setup = time.Since(start)
	}
	for i := range d.results {
		d.results[i].Delays = [2]time.Duration{d.setup, d.xfer}
	}
	return d.results
}

func (d *delivery) run(ctx context.Context, nexthop string) {
	c := d.c
	hop := nexthop
	if c.RelayHost != "" {
		hop = c.RelayHost
	}
	d.nexthop = strings.TrimSpace(hop)
	dest, err := parseDestination(hop, c.port())
	if err != nil {
		d.fail(d.pending(), failure{soft: true, dsn: "4.3.5", reason: err.Error(), kind: event.KindLocal})
		return
	}

	// A cached connection to the same next hop comes first. If its RSET
	// probe fails, it is dropped without counting against the limits.
	if s := c.takeIdle(dest.key); s != nil {
		unbind := s.bind(ctx)
		stale := d.transaction(s, true)
		unbind()
		if !stale {
			c.release(s)
			return
		}
		s.close()
	}

	t0 := time.Now()
	targets, f := c.resolve(ctx, dest)
	d.setup += time.Since(t0)
	if f != nil {
		d.fail(d.pending(), *f)
		return
	}
	sessions := 0
	for _, t := range targets {
		if len(d.pending()) == 0 || sessions >= maxSessions || ctx.Err() != nil {
			break
		}
		if c.isSelf(t) {
			d.fail(d.pending(), loopFailure(d.nexthop, t.relay()))
			break
		}
		plaintext := false
		for {
			t0 := time.Now()
			s, f, retryPlain := c.connect(ctx, t, plaintext, d.nexthop)
			d.setup += time.Since(t0)
			if f != nil {
				d.fail(d.pending(), *f)
				if retryPlain && !plaintext {
					plaintext = true
					continue
				}
				if s != nil {
					sessions++
				}
				break
			}
			sessions++
			s.key = dest.key
			unbind := s.bind(ctx)
			d.transaction(s, false)
			unbind()
			c.release(s)
			break
		}
	}
}

// pending returns the recipients without a final outcome.
func (d *delivery) pending() []int {
	var out []int
	for i, done := range d.decided {
		if !done {
			out = append(out, i)
		}
	}
	return out
}

// fail records f for the recipients idx. A hard failure is final; a soft
// one stays open for the next server to improve on.
func (d *delivery) fail(idx []int, f failure) {
	relay := f.relay
	if relay == "" {
		relay = "none"
	}
	for _, i := range idx {
		r := &d.results[i]
		r.DSN, r.Reason, r.Relay, r.Reply, r.ConnUse = f.dsn, f.reason, relay, f.reply, 0
		r.Class = f.class()
		if f.soft {
			r.Status = Deferred
		} else {
			r.Status = Bounced
			d.decided[i] = true
		}
	}
}

// sent records a successful delivery.
func (d *delivery) sent(idx []int, rep reply, s *session) {
	for _, i := range idx {
		r := &d.results[i]
		r.Status, r.DSN, r.Reason, r.Relay, r.Reply, r.ConnUse = Sent, rep.dsn(), rep.text(), s.relay, rep.text(), s.uses
		r.Class = ""
		d.decided[i] = true
	}
}
