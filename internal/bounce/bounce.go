// Package bounce writes delivery status notifications: RFC 3464
// multipart/report messages that tell a sender what became of the
// recipients of one message, and hands them to cleanup as new mail from
// the null sender <>.
//
// Two kinds, worded as Postfix words them so that people and filters
// that know Postfix's notices recognise ours:
//
//   - Failure, "Undelivered Mail Returned to Sender": recipients that
//     bounced (5xx) or whose message expired (the defer log's reasons, with
//     Action: failed). The original message follows in full, or its
//     headers only when the sender asked for RET=HDRS or the message is
//     larger than bounce_size_limit.
//   - Delay, "Delayed Mail (still being retried)": the warning sent once
//     delay_warning_time has passed, with Action: delayed and the
//     original's headers.
//
// A notice is never sent to the null sender (that is how mail loops
// between two broken systems are avoided, RFC 5321 §4.5.5); Send refuses
// with ErrNullSender and the caller logs it.
package bounce

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"sluice/internal/event"
	"sluice/internal/maillog"
	"sluice/internal/spool"
)

// Kind says which notice to write.
type Kind int

// The kinds of notice.
const (
	Failure Kind = iota // the message could not be delivered to some recipients
	Delay               // the message is delayed and still being retried
)

// ErrNullSender is returned for a message whose sender is <>.
var ErrNullSender = errors.New("bounce: no notification for the null sender")

// DSN RET values as stored in the queue file's < record.
const (
	RetFull = 1
	RetHdrs = 2
)

// Report is what a notice is about: one queued message and the
// recipients to report, one log entry each (from the bounce or defer
// log, or made by the queue manager).
type Report struct {
	Kind     Kind
	QueueID  string
	Path     string // the queue file, to quote the original message from
	Envelope *spool.Envelope
	Entries  []spool.LogEntry
}

// Config is what a Bouncer needs.
type Config struct {
	MyHostname string
	// Submit queues a new message from <> to rcpt with the given text
	// (LF line ends) and returns its queue ID. cleanup does this.
	Submit    func(ctx context.Context, rcpt string, text []byte) (string, error)
	Now       func() time.Time
	Location  *time.Location // for dates in the text; time.Local when nil
	SizeLimit int            // bounce_size_limit: larger originals are returned as headers only (50000)
	// MaxLifetime and DelayWarning are quoted in a delay notice.
	MaxLifetime  time.Duration
	DelayWarning time.Duration
	Log          *maillog.Logger
	// Events, when set, receives a Notified for every notice sent, in
	// place of the log line (the mail log is then one of its
	// subscribers); when nil the line goes to Log.
	Events event.Observer
}

// Bouncer writes and sends notices.
type Bouncer struct{ cfg Config }

// New returns a Bouncer.
func New(cfg Config) *Bouncer {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.SizeLimit <= 0 {
		cfg.SizeLimit = 50000
	}
	if cfg.MyHostname == "" {
		cfg.MyHostname = "localhost"
	}
	return &Bouncer{cfg: cfg}
}

// Send writes the notice for r, submits it to the original sender and
// logs "ID: sender non-delivery notification: NEWID" (or "sender delay
// notification"). It returns the new message's queue ID.
func (b *Bouncer) Send(ctx context.Context, r *Report) (string, error) {
	if r.Envelope.Sender == "" {
		return "", ErrNullSender
	}
	if b.cfg.Submit == nil {
		return "", errors.New("bounce: no way to submit mail")
	}
	text, err := b.Compose(r)
	if err != nil {
		return "", err
	}
	id, err := b.cfg.Submit(ctx, r.Envelope.Sender, text)
	if err != nil {
		return "", fmt.Errorf("bounce: submit notification for %s: %w", r.QueueID, err)
	}
	what := "non-delivery"
	if r.Kind == Delay {
		what = "delay"
	}
	ev := &event.Notified{ID: r.QueueID, Kind: what, NoticeID: id, Time: b.cfg.Now()}
	if b.cfg.Events != nil {
		b.cfg.Events.Observe(ev)
	} else {
		b.cfg.Log.Observe(ev)
	}
	return id, nil
}

// Compose renders the notice as message text with LF line ends. cleanup
// adds Message-ID and Date.
func (b *Bouncer) Compose(r *Report) ([]byte, error) {
	now := b.cfg.Now().In(b.cfg.Location)
	env := r.Envelope
	host := b.cfg.MyHostname
	boundary := fmt.Sprintf("%s.%d/%s", r.QueueID, now.Unix(), host)
	var w bytes.Buffer

	subject := "Undelivered Mail Returned to Sender"
	if r.Kind == Delay {
		subject = "Delayed Mail (still being retried)"
	}
	fmt.Fprintf(&w, "From: MAILER-DAEMON@%s (Mail Delivery System)\n", host)
	fmt.Fprintf(&w, "Subject: %s\n", subject)
	fmt.Fprintf(&w, "To: %s\n", env.Sender)
	w.WriteString("Auto-Submitted: auto-replied\n") // RFC 3834 §5
	w.WriteString("MIME-Version: 1.0\n")
	fmt.Fprintf(&w, "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"%s\"\n", boundary)
	w.WriteString("Content-Transfer-Encoding: 8bit\n")
	w.WriteString("\nThis is a MIME-encapsulated message.\n\n")

	// Part 1: for people (RFC 3464 §2.1 asks for a human-readable part first).
	fmt.Fprintf(&w, "--%s\n", boundary)
	w.WriteString("Content-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n")
	fmt.Fprintf(&w, "This is the mail system at host %s.\n\n", host)
	if r.Kind == Delay {
		w.WriteString("####################################################################\n")
		w.WriteString("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n")
		w.WriteString("####################################################################\n\n")
		fmt.Fprintf(&w, "Your message could not be delivered for more than %s.\n", humanDuration(b.cfg.DelayWarning))
		fmt.Fprintf(&w, "It will be retried until it is %s old.\n\n", humanDuration(b.cfg.MaxLifetime))
	} else {
		w.WriteString("I'm sorry to have to inform you that your message could not\n")
		w.WriteString("be delivered to one or more recipients. It's attached below.\n\n")
		w.WriteString("For further assistance, please send mail to postmaster.\n\n")
		w.WriteString("If you do so, please include this problem report. You can\n")
		w.WriteString("delete your own text from the attached returned message.\n\n")
	}
	w.WriteString("                   The mail system\n")
	for _, e := range r.Entries {
		fmt.Fprintf(&w, "\n<%s>: %s\n", e.Recipient, e.Reason)
	}
	w.WriteString("\n")

	// Part 2: for machines, RFC 3464 §2.2 and §2.3.
	fmt.Fprintf(&w, "--%s\n", boundary)
	w.WriteString("Content-Description: Delivery report\nContent-Type: message/delivery-status\n\n")
	fmt.Fprintf(&w, "Reporting-MTA: dns; %s\n", host)
	fmt.Fprintf(&w, "X-Postfix-Queue-ID: %s\n", r.QueueID)
	fmt.Fprintf(&w, "X-Postfix-Sender: rfc822; %s\n", env.Sender)
	if env.DSNEnvID != "" {
		fmt.Fprintf(&w, "Original-Envelope-Id: %s\n", env.DSNEnvID)
	}
	fmt.Fprintf(&w, "Arrival-Date: %s\n", env.Arrival.In(b.cfg.Location).Format(rfc5322Date))
	for _, e := range r.Entries {
		w.WriteString("\n")
		fmt.Fprintf(&w, "Final-Recipient: rfc822; %s\n", e.Recipient)
		if orig := originalRecipient(e); orig != "" {
			fmt.Fprintf(&w, "Original-Recipient: %s\n", orig)
		}
		action := e.Action
		if action == "" {
			action = "failed"
			if r.Kind == Delay {
				action = "delayed"
			}
		}
		fmt.Fprintf(&w, "Action: %s\n", action)
		status := e.Status
		if status == "" {
			status = "5.0.0"
			if r.Kind == Delay {
				status = "4.0.0"
			}
		}
		fmt.Fprintf(&w, "Status: %s\n", status)
		if e.MTAType != "" && e.MTAName != "" {
			fmt.Fprintf(&w, "Remote-MTA: %s; %s\n", e.MTAType, e.MTAName)
		}
		if e.DiagType != "" && e.DiagText != "" {
			fmt.Fprintf(&w, "Diagnostic-Code: %s; %s\n", e.DiagType, e.DiagText)
		} else if e.Reason != "" {
			fmt.Fprintf(&w, "Diagnostic-Code: X-Postfix; %s\n", e.Reason)
		}
		if r.Kind == Delay {
			fmt.Fprintf(&w, "Will-Retry-Until: %s\n", env.Arrival.Add(b.cfg.MaxLifetime).In(b.cfg.Location).Format(rfc5322Date))
		}
	}
	w.WriteString("\n")

	// Part 3: the original, RFC 3462 (text/rfc822-headers) or message/rfc822.
	headersOnly := r.Kind == Delay || env.DSNRet&RetHdrs != 0
	orig, truncated, err := readOriginal(r.Path, headersOnly, b.cfg.SizeLimit)
	if err != nil {
		return nil, fmt.Errorf("bounce: read original of %s: %w", r.QueueID, err)
	}
	headersOnly = headersOnly || truncated
	fmt.Fprintf(&w, "--%s\n", boundary)
	if headersOnly {
		w.WriteString("Content-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n")
	} else {
		w.WriteString("Content-Description: Undelivered Message\nContent-Type: message/rfc822\n")
	}
	w.WriteString("Content-Transfer-Encoding: 8bit\n\n")
	w.Write(orig)
	if len(orig) > 0 && orig[len(orig)-1] != '\n' {
		w.WriteString("\n")
	}
	fmt.Fprintf(&w, "\n--%s--\n", boundary)
	return w.Bytes(), nil
}

const rfc5322Date = "Mon, 2 Jan 2006 15:04:05 -0700 (MST)"

// originalRecipient renders the Original-Recipient field: the DSN
// ORCPT ("rfc822;addr") as given, or the original recipient address.
func originalRecipient(e spool.LogEntry) string {
	if e.DSNOrigRcpt != "" {
		return e.DSNOrigRcpt
	}
	if e.OrigRcpt != "" {
		return "rfc822;" + e.OrigRcpt
	}
	return ""
}

// readOriginal returns the original message, or its headers. When the
// whole message is wanted but is larger than limit, it returns the
// headers and truncated=true.
func readOriginal(path string, headersOnly bool, limit int) (text []byte, truncated bool, err error) {
	c, err := spool.OpenContent(path)
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	if !headersOnly && c.Size <= int64(limit) {
		b, err := io.ReadAll(c)
		return b, false, err
	}
	var out bytes.Buffer
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if strings.TrimRight(line, "\r\n") == "" {
			break // the blank line between header and body, or the end
		}
		out.WriteString(line)
		if err != nil {
			break
		}
	}
	return out.Bytes(), !headersOnly, nil
}

// humanDuration words a duration as the delay notice does: "4 hour(s)",
// "5 day(s)".
func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0 second(s)"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d day(s)", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%d hour(s)", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%d minute(s)", d/time.Minute)
	}
	return fmt.Sprintf("%d second(s)", d/time.Second)
}
