// Package cleanup turns an envelope and a message into a complete queue
// file in incoming/ (or hold/), as Postfix's cleanup daemon does for
// smtpd, pickup and the bounce daemon. It knows nothing of where mail came
// from beyond what the caller says in the Message.
//
// What it does to a message (reference §1.4, §2; checked against Postfix
// 3.7.11's queue files):
//
//   - Envelope: T (arrival), A create_time, the attributes of the origin
//     (rewrite_context, and for SMTP the log_* and client_* attributes),
//     F (full name), S (sender), W when delay_warning_time is set, and per
//     recipient A dsn_orig_rcpt, n (NOTIFY), O (the address as given) and
//     R (the address qualified with myorigin when it has no domain).
//   - Content: a Received: header first; then the message's headers, less
//     Bcc:, Resent-Bcc: and Content-Length: (message_drop_headers); then,
//     when missing and the origin allows it, Message-Id:, Date: and From:,
//     in that order, at the end of the header block; then the body. Lines
//     end at LF; a CR before the LF is dropped; lines longer than 2048
//     bytes are stored as L records and a final N.
//   - Extracted segment: recipients taken from To:, Cc: and Bcc: when the
//     message asks for it (sendmail -t), or given as extracted.
//
// # Durability
//
// Submit returns a queue ID only after the file is complete (mode 0700)
// and both the file and its directory entry are fsynced, so a caller may
// acknowledge the message (SMTP 250) the moment Submit returns. How the
// file gets to disk is Config.CommitMethod:
//
//   - CommitFsync: each file is fsynced on its own, and concurrent Submits
//     share directory syncs (group commit): one directory sync that starts
//     after a file was committed covers every file committed before it
//     started.
//   - CommitSyncFS: files are written complete without a sync of their
//     own, and concurrent Submits share one syncfs(2) of the spool's file
//     system, which makes every file written before it started and its
//     directory entry durable. One sync for a batch instead of one per
//     message, at the price of flushing other programs' dirty data on
//     the same file system too.
//
// Any failure removes the file and returns an error wrapping
// ErrQueueWrite (smtpd answers 451 4.3.0), so nothing half written stays
// behind and nothing unacknowledged is delivered. A failed shared sync
// fails every Submit that waited for it.
package cleanup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sluice/internal/event"
	"sluice/internal/maillog"
	"sluice/internal/spool"
)

// ErrTooBig is returned when a message exceeds message_size_limit; smtpd
// answers 552 5.3.4.
var ErrTooBig = errors.New("message size exceeds fixed limit")

// ErrQueueWrite wraps every failure to create, write or sync the queue
// file; smtpd answers 451 4.3.0. Nothing of the message stays in the
// queue when Submit returns it.
var ErrQueueWrite = errors.New("queue file write error")

// ErrNoRecipients is returned for a message with no recipients, neither
// given nor extracted.
var ErrNoRecipients = errors.New("no recipients specified")

// Config is what cleanup needs from the configuration and the process.
type Config struct {
	Spool            *spool.Spool
	MyHostname       string        // myhostname: Received, Message-Id
	MyOrigin         string        // myorigin: qualifies addresses without a domain
	MessageSizeLimit int64         // message_size_limit; 0 means no limit
	DelayWarningTime time.Duration // delay_warning_time; 0 means no W record
	MailName         string        // mail_name, shown in Received: ("sluice" when empty)
	Now              func() time.Time
	Log              *maillog.Logger
	// Notify is called with the queue ID of every message committed to
	// incoming/, after the commit; the queue manager's "scan incoming".
	// kept is what the commit kept of the file (spool.File.Kept), or
	// nil when it was too big to keep; Notify owns it from then on.
	Notify func(queueID string, kept *spool.Kept)
	// Events, when set, receives a Received for every queue file
	// committed and synced, before Notify is called.
	Events event.Observer
	// CommitMethod is how a queue file is made durable: CommitFsync
	// (the default when empty) or CommitSyncFS.
	CommitMethod string
	// HopcountLimit is hopcount_limit: 0 means 50, negative no limit
	// (see hops.go).
	HopcountLimit int
	// Notifier bounces local submissions that cleanup refuses (too many
	// hops); nil logs a warning instead.
	Notifier Notifier
}

// Commit methods (main.cf sluice_commit_method).
const (
	CommitFsync  = "fsync"  // fsync each file; directory syncs shared
	CommitSyncFS = "syncfs" // no per-file sync; one shared syncfs(2) per batch
)

// Cleanup writes queue files. It is safe for concurrent use.
type Cleanup struct {
	cfg Config
	// groups share syncs between concurrent Submits, one per queue
	// directory (a directory sync of incoming/ does not cover hold/);
	// with CommitSyncFS all use the incoming one.
	groups map[string]*syncGroup
	// syncFS makes everything written so far durable (CommitSyncFS);
	// the spool's SyncFS, replaced in tests.
	syncFS func() error
	// readers holds *bufio.Reader for message content, reused across
	// Submits.
	readers sync.Pool
	// writing counts the Submits writing a queue file that is not
	// waiting for its sync yet: a sync about to start waits a little for
	// them (syncGroup).
	writing atomic.Int32
}

// commitBatchDelay is how long a sync about to start waits for messages
// still being written (syncGroup).
const commitBatchDelay = 500 * time.Microsecond

// New returns a Cleanup for cfg.
func New(cfg Config) *Cleanup {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MailName == "" {
		cfg.MailName = "sluice"
	}
	if cfg.MyOrigin == "" {
		cfg.MyOrigin = cfg.MyHostname
	}
	if cfg.CommitMethod == "" {
		cfg.CommitMethod = CommitFsync
	}
	c := &Cleanup{cfg: cfg, syncFS: cfg.Spool.SyncFS}
	busy := func() bool { return c.writing.Load() > 0 }
	c.groups = map[string]*syncGroup{
		spool.Incoming: newSyncGroup(commitBatchDelay, busy),
		spool.Hold:     newSyncGroup(commitBatchDelay, busy),
	}
	return c
}

// DSN NOTIFY flags as stored in queue files (RFC 3461 §4.1).
const (
	NotifyNever   = 1
	NotifySuccess = 2
	NotifyFailure = 4
	NotifyDelay   = 8
)

// DSN RET values as stored in queue files (RFC 3461 §4.3).
const (
	RetFull = 1
	RetHdrs = 2
)

// Recipient is one envelope recipient.
type Recipient struct {
	Address string // as given; qualified with myorigin when it has no domain
	ORCPT   string // DSN original recipient, "rfc822;addr" (decoded), optional
	Notify  int    // DSN NOTIFY flags, 0 when not given
	// Extracted puts the recipient in the extracted segment, where
	// Postfix keeps recipients taken from headers (sendmail -t).
	Extracted bool
}

// ReceivedInfo says where a message came from, for the Received: header
// and the origin attributes. Protocol empty means a local submission
// (sendmail), identified by UID.
type ReceivedInfo struct {
	Protocol    string // SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP, ...; "" for local
	Helo        string // the HELO/EHLO argument
	ClientName  string // the client's verified name, "unknown" when none
	ReverseName string // the client's PTR name, "unknown" when none
	ClientAddr  string // IP address
	ClientPort  string
	ServerAddr  string
	ServerPort  string
	UID         int // local submissions: the submitter's user ID
	// The SMTP client's authentication (smtpd's AUTH), recorded as
	// Postfix records it: sasl_method, sasl_username, sasl_sender.
	SASLMethod, SASLUsername, SASLSender string
}

// Message is one message to queue.
type Message struct {
	Sender     string // "" is the null sender
	FullName   string // the sender's full name (sendmail -F), for From:
	Recipients []Recipient
	// ExtractRecipients takes recipients from the To:, Cc: and Bcc:
	// headers too (sendmail -t); they go into the extracted segment.
	ExtractRecipients bool
	Attrs             []spool.Attr // more envelope attributes, after cleanup's own
	Received          ReceivedInfo
	EnvID             string // DSN ENVID (decoded)
	Ret               int    // DSN RET: RetFull or RetHdrs, 0 when not given
	SMTPUTF8          bool
	Queue             string    // spool.Incoming (default) or spool.Hold
	Arrival           time.Time // the T record; zero means now
	// KeepHeaders stops cleanup from adding Message-Id:, Date: and From:
	// when they are missing, for mail from remote clients (Postfix adds
	// them only for clients in local_header_rewrite_clients).
	KeepHeaders bool
	// Started, when set, is called with the queue ID as soon as the queue
	// file is named, before the content is read: smtpd logs "ID:
	// client=..." and pickup "ID: uid=..." there, as Postfix does.
	Started func(queueID string)
	// Filter, when set, inspects and may edit the message before the
	// queue file is written (milters; see filter.go).
	Filter Filter
}

// Submit reads the message content from r (lines ending in LF or CRLF,
// no SMTP dot-stuffing) and writes a queue file. It returns the queue ID
// once the file and its directory are synced.
func (c *Cleanup) Submit(ctx context.Context, m *Message, r io.Reader) (string, error) {
	queue := m.Queue
	if queue == "" {
		queue = spool.Incoming
	}
	if queue != spool.Incoming && queue != spool.Hold {
		return "", fmt.Errorf("cleanup: queue %q is not incoming or hold", queue)
	}
	if len(m.Recipients) == 0 && !m.ExtractRecipients {
		return "", ErrNoRecipients
	}
	now := c.cfg.Now()
	arrival := m.Arrival
	if arrival.IsZero() {
		arrival = now
	}
	// Counted as writing until it waits for its sync, or gives up.
	c.writing.Add(1)
	writing := true
	defer func() {
		if writing {
			c.writing.Add(-1)
		}
	}()
	f, err := c.cfg.Spool.NewFile(queue, now)
	if err != nil {
		return "", fmt.Errorf("cleanup: %w: %w", ErrQueueWrite, err)
	}
	f.KeepImage = queue == spool.Incoming && c.cfg.Notify != nil
	id, hops, verdict, rcv, err := c.write(ctx, f, m, r, now, arrival)
	// What the commit kept goes to Notify; on every other way out it is
	// let go here.
	kept := f.Kept()
	defer func() { kept.Close() }()
	if err != nil {
		f.Abort()
		return "", err
	}
	switch verdict.Action {
	case FilterReject:
		f.Abort()
		return "", &FilterRejectError{Reply: verdict.Reply}
	case FilterDiscard:
		// Acknowledged but never queued, as Postfix's DISCARD.
		f.Abort()
		return f.ID, nil
	case FilterHold:
		queue = spool.Hold
	}
	group, syncDone := c.groups[queue], func() error { return c.cfg.Spool.SyncQueueDir(queue) }
	if c.cfg.CommitMethod == CommitSyncFS {
		group, syncDone = c.groups[spool.Incoming], c.syncFS
	}
	c.writing.Add(-1)
	writing = false
	if err := group.sync(syncDone); err != nil {
		// The file is complete but its name may not be durable; it was
		// not acknowledged, so remove it rather than deliver it.
		removeQuietly(c.cfg.Spool, queue, id)
		c.withdraw(rcv)
		return "", fmt.Errorf("cleanup: %w: %w", ErrQueueWrite, err)
	}
	if hops {
		// A local submission over the hop limit: queued only to be
		// returned to its sender.
		c.bounceHops(ctx, queue, id, arrival)
		return id, nil
	}
	if queue == spool.Incoming && c.cfg.Notify != nil {
		c.cfg.Notify(id, kept)
		kept = nil
	}
	return id, nil
}

// write writes the queue file. hops reports a local submission with too
// many hops, committed for a bounce; from SMTP that is an error.
func (c *Cleanup) write(ctx context.Context, f *spool.File, m *Message, r io.Reader, now, arrival time.Time) (id string, hops bool, verdict Verdict, rcv *event.Received, err error) {
	if m.Started != nil {
		m.Started(f.ID)
	}
	env := &spool.NewEnvelope{
		Arrival:    arrival,
		CreateTime: now,
		Attrs:      c.originAttrs(f.ID, m),
		FullName:   m.FullName,
		Sender:     c.qualify(m.Sender),
		SMTPUTF8:   boolInt(m.SMTPUTF8),
		DSNEnvID:   m.EnvID,
		DSNRet:     m.Ret,
	}
	if c.cfg.DelayWarningTime > 0 {
		env.WarnTime = arrival.Add(c.cfg.DelayWarningTime)
	}
	var extracted []spool.NewRecipient
	notifyAll := 0
	for _, rc := range m.Recipients {
		nr := c.newRecipient(rc)
		notifyAll |= rc.Notify
		if rc.Extracted {
			extracted = append(extracted, nr)
		} else {
			env.Recipients = append(env.Recipients, nr)
		}
	}
	// C record field 4 carries the sender's NOTIFY flags in bits 1..4
	// (reference §2.3): the union over the recipients, as Postfix stores.
	env.QmgrFlags = int64(notifyAll) << 1
	firstRcpt := ""
	if n := len(m.Recipients); n == 1 {
		firstRcpt = c.qualify(m.Recipients[0].Address)
	}
	received := c.receivedHeader(f.ID, m, firstRcpt, arrival)
	cw := &contentWriter{
		c: c, out: f, m: m, id: f.ID, now: now, arrival: arrival,
		limit: c.cfg.MessageSizeLimit, ctx: ctx,
	}
	var buf *spoolBuffer
	if m.Filter != nil {
		// The content waits in a buffer until the filter has seen it.
		buf = &spoolBuffer{}
		defer buf.close()
		cw.out = buf
	} else {
		if err := f.WriteEnvelope(env); err != nil {
			return "", false, verdict, nil, fmt.Errorf("cleanup: %w: %w", ErrQueueWrite, err)
		}
		for _, line := range received {
			f.WriteLine([]byte(line))
		}
	}
	if err := cw.copy(r); err != nil {
		return "", false, verdict, nil, err
	}
	if buf != nil && !cw.tooManyHops {
		verdict, err = c.filterAndWrite(ctx, f, m, env, received, buf)
		if err != nil || verdict.Action == FilterReject || verdict.Action == FilterDiscard {
			return "", false, verdict, nil, err
		}
	} else if buf != nil {
		// Refused or bounced for its hops: written as it came.
		if err := f.WriteEnvelope(env); err != nil {
			return "", false, verdict, nil, fmt.Errorf("cleanup: %w: %w", ErrQueueWrite, err)
		}
		ct := &Content{buf: buf}
		if err := ct.parse(received); err != nil || ct.writeTo(f) != nil {
			return "", false, verdict, nil, fmt.Errorf("cleanup: %w: copy spooled message", ErrQueueWrite)
		}
	}
	if cw.tooManyHops {
		if m.Received.Protocol != "" {
			return "", false, verdict, nil, errTooManyHops()
		}
		hops = true
	}
	for _, a := range cw.extracted {
		extracted = append(extracted, c.newRecipient(Recipient{Address: a}))
	}
	if len(env.Recipients)+len(extracted) == 0 {
		// (A filter may have deleted every recipient.)
		return "", false, verdict, nil, ErrNoRecipients
	}
	if err := ctx.Err(); err != nil {
		return "", false, verdict, nil, fmt.Errorf("cleanup: %w", err)
	}
	if verdict.Action == FilterHold && f.Queue == spool.Incoming {
		// Quarantined: the unfinished file (embryonic, mode 0600, which
		// the queue manager ignores, or not in a queue yet) goes to
		// hold/ before it is made ready.
		if err := f.MoveTo(spool.Hold); err != nil {
			return "", false, verdict, nil, fmt.Errorf("cleanup: %w: %w", ErrQueueWrite, err)
		}
	}
	rcv = &event.Received{ID: f.ID, Arrival: arrival, Size: f.ContentLen(), Sender: env.Sender,
		Recipients: make([]event.Recipient, 0, len(env.Recipients)+len(extracted))}
	for _, list := range [][]spool.NewRecipient{env.Recipients, extracted} {
		for _, nr := range list {
			rcv.Recipients = append(rcv.Recipients, event.Recipient{Address: nr.Address, Orig: nr.Orig})
		}
	}
	// The event goes out before the file is made ready: the queue
	// manager cannot take it before (it skips files that are not), so
	// every subscriber sees Received before anything the queue manager
	// does with the message. A commit that fails withdraws it. The
	// envelope is the one written, after the milters' edits, and the
	// queue the one the file is in (hold/ when quarantined).
	if !hops && c.cfg.Events != nil {
		rcv.Queue, rcv.Time = f.Queue, now
		c.cfg.Events.Observe(rcv)
	} else {
		rcv = nil
	}
	commit := f.CommitNoDirSync
	if c.cfg.CommitMethod == CommitSyncFS {
		commit = f.CommitNoSync
	}
	if err := commit(extracted...); err != nil {
		c.withdraw(rcv)
		return "", false, verdict, nil, fmt.Errorf("cleanup: %w: %w", ErrQueueWrite, err)
	}
	return f.ID, hops, verdict, rcv, nil
}

func (c *Cleanup) newRecipient(rc Recipient) spool.NewRecipient {
	addr := c.qualify(rc.Address)
	orcpt := rc.ORCPT
	if orcpt == "" {
		orcpt = "rfc822;" + addr
	}
	return spool.NewRecipient{Address: addr, Orig: rc.Address, DSNOrig: orcpt, Notify: rc.Notify}
}

// qualify appends @myorigin to an address without a domain, as Postfix's
// trivial-rewrite does in the local rewriting context (append_at_myorigin).
// The null sender stays empty.
func (c *Cleanup) qualify(addr string) string {
	if addr == "" || strings.ContainsRune(addr, '@') || c.cfg.MyOrigin == "" {
		return addr
	}
	return addr + "@" + c.cfg.MyOrigin
}

// lineSink takes content lines: a queue file, or the filter's buffer.
type lineSink interface {
	WriteLine(line []byte)
	WriteCont(part []byte)
}

// contentWriter copies message lines into the queue file, buffering one
// header at a time so headers can be dropped, inspected and completed.
type contentWriter struct {
	c       *Cleanup
	out     lineSink // the queue file, or the filter's buffer
	m       *Message
	id      string
	now     time.Time
	arrival time.Time
	limit   int64
	ctx     context.Context

	size      int64
	inHeaders bool
	header    []byte // the header being collected, with continuations joined by '\n'
	seen      map[string]bool
	messageID string
	extracted []string
	received  int // Received: headers, for the hop count
	// tooManyHops: received reached hopcount_limit.
	tooManyHops bool
}

func (w *contentWriter) copy(r io.Reader) error {
	br, _ := w.c.readers.Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(r, 64<<10)
	} else {
		br.Reset(r)
	}
	defer func() { br.Reset(nil); w.c.readers.Put(br) }()
	w.inHeaders = true
	w.seen = map[string]bool{}
	var line []byte
	lines := 0
	for {
		chunk, err := br.ReadSlice('\n')
		w.size += int64(len(chunk))
		if w.limit > 0 && w.size > w.limit {
			return ErrTooBig
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			line = w.spill(append(line, chunk...))
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("cleanup: read message: %w", err)
		}
		if len(line) > 0 {
			line = append(line, chunk...)
			chunk = line
		}
		if len(chunk) > 0 {
			eol := len(chunk) > 0 && chunk[len(chunk)-1] == '\n'
			if eol {
				chunk = chunk[:len(chunk)-1]
				if n := len(chunk); n > 0 && chunk[n-1] == '\r' {
					chunk = chunk[:n-1]
				}
			}
			w.line(chunk)
		}
		line = line[:0]
		if err != nil { // io.EOF
			break
		}
		if lines++; lines%1024 == 0 {
			if err := w.ctx.Err(); err != nil {
				return fmt.Errorf("cleanup: %w", err)
			}
		}
	}
	if w.inHeaders {
		w.endHeaders()
	}
	return nil
}

// spill bounds what a line without an end yet holds in memory: in the
// body, every full record's worth that cannot be the line's last piece
// is written out (a stripped CR at the end still leaves more than
// LineLengthLimit bytes after it, so the records match WriteLine's for
// the whole line); in the headers, a line past header_size_limit ends
// the headers, and it goes on as body. So a client that sends a
// message's worth of bytes without a line end costs a bounded buffer,
// not message_size_limit of memory.
func (w *contentWriter) spill(line []byte) []byte {
	if w.inHeaders {
		if len(line) <= headerSizeLimit {
			return line
		}
		w.endHeaders()
		w.out.WriteLine(nil)
	}
	n := 0
	for len(line)-n > spool.LineLengthLimit+1 {
		w.out.WriteCont(line[n : n+spool.LineLengthLimit])
		n += spool.LineLengthLimit
	}
	return append(line[:0], line[n:]...)
}

// line handles one content line without its terminator.
func (w *contentWriter) line(l []byte) {
	if !w.inHeaders {
		w.out.WriteLine(l)
		return
	}
	if len(l) > 0 && (l[0] == ' ' || l[0] == '\t') && len(w.header) > 0 {
		w.header = append(w.header, '\n')
		w.header = append(w.header, l...)
		if len(w.header) > headerSizeLimit {
			// A header this long ends header processing, as Postfix's
			// header_size_limit does: the rest is body.
			w.endHeaders()
		}
		return
	}
	if isHeaderStart(l) {
		w.flushHeader()
		w.header = append(w.header[:0], l...)
		return
	}
	w.endHeaders()
	if len(l) > 0 {
		// The first body line is not the empty separator (a message
		// without headers, or a malformed header): keep the header block
		// and the body apart.
		w.out.WriteLine(nil)
	}
	w.out.WriteLine(l)
}

// headerSizeLimit is Postfix's header_size_limit.
const headerSizeLimit = 102400

func (w *contentWriter) endHeaders() {
	w.flushHeader()
	w.inHeaders = false
	if w.c.tooManyHops(w.received) {
		// The rest is still read: smtpd answers at the end of DATA, and a
		// local submission is bounced with its content.
		w.tooManyHops = true
		w.c.cfg.Log.Warn("cleanup", "%s: message rejected: hopcount exceeded", w.id)
		if w.m.Received.Protocol != "" {
			// Postfix logs no message-id for mail it refuses to a client.
			return
		}
	}
	for _, h := range w.c.missingHeaders(w.id, w.m, w.seen, w.now, w.arrival) {
		if strings.HasPrefix(h, "Message-Id: ") {
			w.messageID = strings.TrimPrefix(h, "Message-Id: ")
		}
		w.out.WriteLine([]byte(h))
	}
	mid := w.messageID
	if mid == "" {
		mid = "<>"
	}
	w.c.cfg.Log.Log("cleanup", "%s: message-id=%s", w.id, mid)
}

// flushHeader writes the collected header unless it is one to drop, and
// notes what it is.
func (w *contentWriter) flushHeader() {
	if len(w.header) == 0 {
		return
	}
	h := w.header
	w.header = w.header[:0]
	name := strings.ToLower(string(h[:indexColon(h)]))
	name = strings.TrimRight(name, " \t")
	w.seen[name] = true
	value := strings.TrimSpace(unfold(string(h[indexColon(h)+1:])))
	switch name {
	case "message-id":
		if w.messageID == "" {
			w.messageID = value
		}
	case "received":
		w.received++
	}
	if w.m.ExtractRecipients {
		switch name {
		case "to", "cc", "bcc":
			w.extracted = append(w.extracted, ParseAddressList(value)...)
		}
	}
	if dropHeaders[name] {
		return
	}
	for len(h) > 0 {
		i := indexByte(h, '\n')
		if i < 0 {
			w.out.WriteLine(h)
			break
		}
		w.out.WriteLine(h[:i])
		h = h[i+1:]
	}
}

// dropHeaders are Postfix's message_drop_headers default.
var dropHeaders = map[string]bool{"bcc": true, "resent-bcc": true, "content-length": true}

func removeQuietly(s *spool.Spool, queue, id string) {
	// Best effort: the caller already reports the failure that got here.
	_ = s.Remove(queue, id)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// withdraw tells the subscribers that a file announced by a Received
// event did not become a message after all.
func (c *Cleanup) withdraw(rcv *event.Received) {
	if rcv != nil && c.cfg.Events != nil {
		c.cfg.Events.Observe(&event.Withdrawn{ID: rcv.ID, Queue: rcv.Queue})
	}
}
