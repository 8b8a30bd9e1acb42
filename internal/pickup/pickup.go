// Package pickup moves local submissions from maildrop/ through cleanup
// into the queue, as Postfix's pickup daemon does, and writes maildrop
// files for sendmail, as Postfix's postdrop does.
//
// # The path of a local submission
//
// sendmail writes maildrop/ID (Drop): an embryonic file at mode 0600,
// made ready (0744) after it is synced. Then it wakes pickup through the
// socket public/pickup, if a daemon listens there; when none does, the
// mail waits in maildrop/ and is picked up when the daemon starts.
//
// pickup scans maildrop/ every second and whenever it is woken. For each
// ready file it hands the envelope and content to cleanup, which writes
// a new queue file in incoming/ under a new ID and syncs it; only then is
// the maildrop file removed. Files that cannot be parsed are moved to
// corrupt/ with a warning, never dropped silently.
//
// # Crashes
//
// Between cleanup's commit and the removal of the maildrop file a crash
// would leave the message twice: once queued, once still in maildrop/.
// To deliver it once, pickup journals each hand-over: before cleanup
// commits, it records "maildrop ID → new queue ID" in pid/pickup/, synced.
// Recover, run when pickup starts (and before the queue manager starts,
// in sluice serve), settles every journal entry: if the new queue file
// exists and is complete, the hand-over finished and the maildrop file is
// removed; otherwise the maildrop file is kept and picked up again (and
// an incomplete new file, which nobody ever acknowledged, is removed). A
// crash before the journal entry is written leaves at most an embryonic
// file in incoming/, which readers skip. Two cases remain where mail
// could go out twice: the new message is delivered and removed before
// the maildrop file could be unlinked and the process then dies within
// that window; or, with short queue IDs, the new ID is reused by another
// message before recovery runs. Both need a crash inside a window of a
// few system calls.
package pickup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"sluice/internal/cleanup"
	"sluice/internal/maillog"
	"sluice/internal/milter"
	"sluice/internal/spool"
)

// Config is what pickup needs.
type Config struct {
	Spool    *spool.Spool
	Cleanup  *cleanup.Cleanup
	Log      *maillog.Logger
	Interval time.Duration // scan period; one second when zero
	// NoSocket stops Run from listening on public/pickup (tests that run
	// several pickups on one spool).
	NoSocket bool
	// Milters are non_smtpd_milters; nil means none.
	Milters *milter.Config
}

// Pickup moves maildrop files into the queue.
type Pickup struct {
	cfg  Config
	wake chan struct{}
	mu   sync.Mutex // one scan at a time
}

// New returns a Pickup.
func New(cfg Config) *Pickup {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	return &Pickup{cfg: cfg, wake: make(chan struct{}, 1)}
}

// SocketPath is where pickup listens for wake-ups: public/pickup, where
// Postfix's pickup listens, so postqueue -f and postdrop's triggers work.
func SocketPath(sp *spool.Spool) string { return filepath.Join(sp.Root, "public", "pickup") }

// Wake asks for a scan now.
func (p *Pickup) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// WakeDaemon wakes a running daemon's pickup by writing the trigger byte
// W to public/pickup. It fails quietly when nobody listens: the mail is
// picked up when the daemon starts.
func WakeDaemon(sp *spool.Spool) error {
	c, err := net.DialTimeout("unix", SocketPath(sp), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	_, err = c.Write([]byte("W"))
	return err
}

// Run recovers interrupted hand-overs, then scans maildrop/ every
// Interval and on every wake-up until ctx is done.
func (p *Pickup) Run(ctx context.Context) error {
	if err := p.Recover(); err != nil {
		p.cfg.Log.Warn("pickup", "%v", err)
	}
	if !p.cfg.NoSocket {
		l, err := p.listen()
		if err != nil {
			// Scanning still works; only the wake-up is lost.
			p.cfg.Log.Warn("pickup", "%v", err)
		} else {
			defer l.Close()
			go p.acceptWakes(l)
		}
	}
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := p.Scan(ctx); err != nil && ctx.Err() == nil {
			p.cfg.Log.Warn("pickup", "%v", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-p.wake:
		}
	}
}

func (p *Pickup) listen() (net.Listener, error) {
	l, err := spool.ListenSocket(SocketPath(p.cfg.Spool))
	if err != nil {
		return nil, fmt.Errorf("pickup: %w", err)
	}
	return l, nil
}

func (p *Pickup) acceptWakes(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 16)
			if n, _ := c.Read(buf); n > 0 {
				p.Wake()
			}
		}()
	}
}

// Scan processes every ready file in maildrop/ and returns how many it
// queued.
func (p *Pickup) Scan(ctx context.Context) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir := filepath.Join(p.cfg.Spool.Root, spool.Maildrop)
	d, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("pickup: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, fmt.Errorf("pickup: read maildrop: %w", err)
	}
	n := 0
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		if !spool.ValidID(name) {
			continue
		}
		done, err := p.pickOne(ctx, name)
		if err != nil {
			p.cfg.Log.Warn("pickup", "maildrop/%s: %v", name, err)
			if errors.Is(err, cleanup.ErrQueueWrite) {
				// The queue cannot take mail now; try again later
				// rather than fail every file in turn.
				return n, nil
			}
			continue
		}
		if done {
			n++
		}
	}
	return n, nil
}

// pickOne moves one maildrop file into the queue. It reports false for a
// file that is not ready (still being written) or vanished.
func (p *Pickup) pickOne(ctx context.Context, name string) (bool, error) {
	sp := p.cfg.Spool
	path := filepath.Join(sp.Root, spool.Maildrop, name)
	fi, err := os.Lstat(path)
	if err != nil || !spool.IsReady(fi.Mode()) {
		return false, nil
	}
	uid := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid = int(st.Uid)
	}
	msg, err := readDrop(path)
	if err != nil {
		if errors.Is(err, spool.ErrCorrupt) {
			return false, p.setAside(name, err)
		}
		return false, err
	}
	defer msg.content.Close()
	msg.m.Received = cleanup.ReceivedInfo{UID: max(uid, 0)}
	jpath := p.journalPath(name)
	msg.m.Started = func(id string) {
		p.cfg.Log.Log("pickup", "%s: uid=%d from=<%s>", id, max(uid, 0), msg.m.Sender)
		if err := writeJournal(sp, jpath, id); err != nil {
			p.cfg.Log.Warn("pickup", "journal for maildrop/%s: %v", name, err)
		}
	}
	if p.cfg.Milters != nil {
		mc := *p.cfg.Milters
		mc.Warn = func(format string, args ...any) { p.cfg.Log.Warn("cleanup", format, args...) }
		msg.m.Filter = milter.NewLocal(&mc, func(format string, args ...any) { p.cfg.Log.Log("cleanup", format, args...) })
	}
	_, err = p.cfg.Cleanup.Submit(ctx, msg.m, msg.content)
	if err != nil {
		os.Remove(jpath)
		var fr *cleanup.FilterRejectError
		switch {
		case errors.As(err, &fr) && !strings.HasPrefix(fr.Reply, "5"):
			// A milter said try later (or is down): the file stays in
			// maildrop/ for the next scan.
			return false, err
		case errors.As(err, &fr):
			// Refused for good: kept aside in corrupt/, never lost.
			return false, p.setAside(name, err)
		case errors.Is(err, cleanup.ErrNoRecipients), errors.Is(err, cleanup.ErrTooBig), errors.Is(err, spool.ErrCorrupt):
			return false, p.setAside(name, err)
		}
		return false, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return true, fmt.Errorf("remove after queueing: %w", err)
	}
	if err := syncDir(sp, filepath.Dir(path)); err != nil {
		return true, err
	}
	os.Remove(jpath)
	return true, nil
}

// setAside moves a maildrop file that can never be queued to corrupt/.
func (p *Pickup) setAside(name string, why error) error {
	if err := p.cfg.Spool.Move(name, spool.Maildrop, spool.Corrupt); err != nil {
		return fmt.Errorf("%v; and moving it to corrupt/: %w", why, err)
	}
	p.cfg.Log.Warn("pickup", "saving maildrop file %q to queue \"corrupt\": %v", name, why)
	return nil
}

func (p *Pickup) journalDir() string { return filepath.Join(p.cfg.Spool.Root, "pid", "pickup") }

func (p *Pickup) journalPath(name string) string { return filepath.Join(p.journalDir(), name) }

func writeJournal(sp *spool.Spool, path, id string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(id + "\n")
	if err == nil && !sp.NoSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncDir(sp, filepath.Dir(path))
}

// Recover settles hand-overs that a crash interrupted (see the package
// comment). Run calls it first; sluice serve should call it before the
// queue manager starts.
func (p *Pickup) Recover() error {
	sp := p.cfg.Spool
	ents, err := os.ReadDir(p.journalDir())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("pickup: recover: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		jpath := p.journalPath(name)
		data, err := os.ReadFile(jpath)
		if err != nil {
			continue
		}
		newID := strings.TrimSpace(string(data))
		mdPath := filepath.Join(sp.Root, spool.Maildrop, name)
		if _, err := os.Lstat(mdPath); err != nil {
			os.Remove(jpath) // the hand-over finished
			continue
		}
		if spool.ValidID(newID) && p.queued(newID) {
			if err := os.Remove(mdPath); err == nil || errors.Is(err, os.ErrNotExist) {
				syncDir(sp, filepath.Dir(mdPath))
				p.cfg.Log.Log("pickup", "maildrop/%s: already queued as %s, removed", name, newID)
				os.Remove(jpath)
			}
			continue
		}
		// Never completed: the maildrop file is picked up again.
		if spool.ValidID(newID) {
			p.removeEmbryo(newID)
		}
		os.Remove(jpath)
	}
	return nil
}

// queued reports whether a complete queue file with this ID exists.
func (p *Pickup) queued(id string) bool {
	for _, q := range []string{spool.Incoming, spool.Active, spool.Deferred, spool.Hold, spool.Corrupt} {
		fi, err := os.Lstat(p.cfg.Spool.Path(q, id))
		if err == nil && spool.IsReady(fi.Mode()) {
			return true
		}
	}
	return false
}

// removeEmbryo removes an incomplete incoming/ file left by a crash.
func (p *Pickup) removeEmbryo(id string) {
	path := p.cfg.Spool.Path(spool.Incoming, id)
	if fi, err := os.Lstat(path); err == nil && !spool.IsReady(fi.Mode()) {
		os.Remove(path)
	}
}

// dropMessage is a parsed maildrop file.
type dropMessage struct {
	m       *cleanup.Message
	content io.ReadCloser
}

// readDrop parses a maildrop file's envelope (the records postdrop
// writes, and the older DSN records) and opens its content.
//
// A maildrop file may also be a whole queue file that postsuper -r (or
// sluice queue requeue) renamed here, so the records only a queue file
// has are accepted too: done and canceled recipients (D, /) are not
// queued again, so the message comes back with the recipients still
// pending; the original-recipient, warning-time and queue-manager
// records (O, W, c, I, L, f, d, P, r, e, >, K, m) are cleanup's to
// write afresh; and the attributes create_time and log_ident, which name
// the old file, are dropped so the new one gets a new lifetime and ID.
func readDrop(path string) (*dropMessage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := spool.NewBytesReader(data)
	m := &cleanup.Message{}
	var notify int
	var orcpt string
	segment := 0 // envelope, content, extracted
	sawSender, sawEnd := false, false
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if segment == 1 {
			switch rec.Type {
			case spool.RecNorm, spool.RecCont:
				continue
			case spool.RecXtra:
				segment = 2
				continue
			}
			return nil, fmt.Errorf("%w: record type %d in the message content", spool.ErrCorrupt, rec.Type)
		}
		v := string(rec.Data)
		switch rec.Type {
		case spool.RecTime:
			if m.Arrival.IsZero() {
				if f := strings.Fields(v); len(f) > 0 {
					sec, _ := strconv.ParseInt(f[0], 10, 64)
					var usec int64
					if len(f) > 1 {
						usec, _ = strconv.ParseInt(f[1], 10, 64)
					}
					m.Arrival = time.Unix(sec, usec*1000)
				}
			}
		case spool.RecFullName:
			m.FullName = v
		case spool.RecSender:
			m.Sender, sawSender = v, true
		case spool.RecAttr:
			name, value, _ := strings.Cut(v, "=")
			switch name {
			case "envelope_id":
				m.EnvID = value
			case "ret_flags":
				m.Ret, _ = strconv.Atoi(value)
			case "notify_flags", "dsn_notify":
				notify, _ = strconv.Atoi(value)
			case "dsn_orig_rcpt":
				orcpt = value
			case "rewrite_context", "create_time", "log_ident":
			default:
				m.Attrs = append(m.Attrs, spool.Attr{Name: name, Value: value})
			}
		case spool.RecDSNEnvID:
			m.EnvID = v
		case spool.RecDSNRet:
			m.Ret, _ = strconv.Atoi(v)
		case spool.RecDSNNotify:
			notify, _ = strconv.Atoi(v)
		case spool.RecRcpt:
			m.Recipients = append(m.Recipients, cleanup.Recipient{Address: v, Notify: notify, ORCPT: orcpt, Extracted: segment == 2})
			notify, orcpt = 0, ""
		case spool.RecMesg:
			if segment != 0 {
				return nil, fmt.Errorf("%w: second content marker", spool.ErrCorrupt)
			}
			segment = 1
		case spool.RecEnd:
			sawEnd = true
		case spool.RecDone, spool.RecCanceled:
			notify, orcpt = 0, "" // delivered (or dropped) already
		case spool.RecVerp, spool.RecSize, spool.RecOrigRcpt, spool.RecWarn, spool.RecCreateTime,
			spool.RecInspector, spool.RecFilter, spool.RecFlags, spool.RecDelay, spool.RecPrio,
			spool.RecRRTO, spool.RecErrTo, spool.RecRedirect, spool.RecKill, spool.RecMilterCount:
		default:
			return nil, fmt.Errorf("%w: record type %d not allowed in a maildrop file", spool.ErrCorrupt, rec.Type)
		}
	}
	if !sawSender || !sawEnd || segment == 0 {
		return nil, fmt.Errorf("%w: incomplete maildrop file", spool.ErrCorrupt)
	}
	c, err := spool.OpenContent(path)
	if err != nil {
		return nil, err
	}
	return &dropMessage{m: m, content: c}, nil
}
