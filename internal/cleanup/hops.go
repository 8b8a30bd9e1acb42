package cleanup

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"sluice/internal/bounce"
	"sluice/internal/maillog"
	"sluice/internal/spool"
)

// Hop counting: Postfix's defence against mail loops that no other check
// catches (a relayhost that points back here, two hosts that forward to
// each other). Checked against Postfix 3.7.11:
//
//   - Every Received: header counts, the one this host adds included;
//     Delivered-To: headers do not. A message whose count reaches
//     hopcount_limit (50) is refused: with 49 Received: headers in what
//     the client sends, smtpd's own makes 50.
//   - cleanup logs "ID: message rejected: hopcount exceeded" as a warning.
//   - SMTP: the reply at the end of DATA is "554 5.4.0 Error: too many
//     hops"; smtpd logs no reject line, and nothing is queued.
//   - Local submissions (sendmail, through pickup), which have no one to
//     answer: the message is bounced. cleanup logs, per recipient,
//     "ID: to=<rcpt>, relay=none, delay=…, delays=…, dsn=5.4.0,
//     status=bounced (too many hops)" and the sender gets a non-delivery
//     notification quoting the message; the message itself is removed.

// ErrTooManyHops is wrapped in the error Submit returns for a message
// from SMTP with too many Received: headers. The error is a *Reject that
// carries the reply: smtpd answers Reject.Reply(), "554 5.4.0 Error: too
// many hops", at the end of DATA. Nothing was queued.
var ErrTooManyHops = errors.New("too many hops")

// DefaultHopcountLimit is Postfix's hopcount_limit.
const DefaultHopcountLimit = 50

// Reject is a message cleanup refuses on its content, with the SMTP
// reply that says why.
type Reject struct {
	Code int    // 554
	DSN  string // 5.4.0
	Text string // "Error: too many hops"
	Err  error  // ErrTooManyHops
}

// Reply is the SMTP reply line without CRLF.
func (r *Reject) Reply() string { return strconv.Itoa(r.Code) + " " + r.DSN + " " + r.Text }

func (r *Reject) Error() string { return "cleanup: message rejected: " + r.Reply() }

func (r *Reject) Unwrap() error { return r.Err }

// errTooManyHops is the error for an SMTP message over the limit.
func errTooManyHops() error {
	return &Reject{Code: 554, DSN: "5.4.0", Text: "Error: too many hops", Err: ErrTooManyHops}
}

// Notifier sends a non-delivery notification (bounce.Bouncer does).
type Notifier interface {
	Send(ctx context.Context, r *bounce.Report) (string, error)
}

// hopLimit is the configured limit; 0 means Postfix's default, a
// negative value no limit.
func (c *Cleanup) hopLimit() int {
	switch {
	case c.cfg.HopcountLimit == 0:
		return DefaultHopcountLimit
	case c.cfg.HopcountLimit < 0:
		return 0
	}
	return c.cfg.HopcountLimit
}

// tooManyHops reports whether a message with received Received: headers
// of its own (this host's not counted) is over the limit.
func (c *Cleanup) tooManyHops(received int) bool {
	limit := c.hopLimit()
	return limit > 0 && received+1 >= limit
}

// bounceHops returns a committed local submission that had too many hops
// to its sender and removes it. A crash between the commit and the
// removal leaves the file in incoming/ for the queue manager, and the
// maildrop file for pickup; see the pickup package comment.
func (c *Cleanup) bounceHops(ctx context.Context, queue, id string, arrival time.Time) {
	path := c.cfg.Spool.Path(queue, id)
	defer removeQuietly(c.cfg.Spool, queue, id)
	env, _, err := spool.ReadFile(path, spool.ReadOptions{SkipContent: true})
	if err != nil {
		c.cfg.Log.Warn("cleanup", "%s: bounce: %v", id, err)
		return
	}
	now := c.cfg.Now()
	entries := make([]spool.LogEntry, 0, len(env.Recipients))
	for _, r := range env.Recipients {
		c.cfg.Log.Delivery("cleanup", maillog.Delivery{
			QueueID: id, To: r.Address, OrigTo: r.Orig, Relay: "none",
			Delay: now.Sub(arrival), Delays: [4]time.Duration{now.Sub(arrival)},
			DSN: "5.4.0", Status: "bounced", Text: "too many hops",
		})
		entries = append(entries, spool.LogEntry{
			Recipient: spool.QuoteAddress(r.Address), OrigRcpt: r.Orig, Offset: r.Offset,
			DSNOrigRcpt: r.DSNOrig, NotifyFlags: r.Notify, Status: "5.4.0", Action: "failed",
			Reason: "too many hops",
		})
	}
	if env.Sender == "" || c.cfg.Notifier == nil {
		if c.cfg.Notifier == nil && env.Sender != "" {
			c.cfg.Log.Warn("cleanup", "%s: no bounce service: notification to <%s> not sent", id, env.Sender)
		}
		return
	}
	if _, err := c.cfg.Notifier.Send(ctx, &bounce.Report{
		Kind: bounce.Failure, QueueID: id, Path: path, Envelope: env, Entries: entries,
	}); err != nil {
		c.cfg.Log.Warn("cleanup", "%s: %v", id, fmt.Errorf("bounce: %w", err))
	}
}
